#!/bin/sh
# Render the bootstrap config from the bundle baked in or mounted at FINOPS_BOOTSTRAP_BUNDLE, then start LiteLLM.
set -eu
python -m routing.proxy.bootstrap --bundle "${FINOPS_BOOTSTRAP_BUNDLE:-/etc/finops/bundle.json}" --out /srv/config.yaml
exec litellm --config /srv/config.yaml --host 0.0.0.0 --port "${PORT:-4000}"
