#!/bin/sh
# Render the bootstrap config from the bundle baked in or mounted at FINOPS_BOOTSTRAP_BUNDLE (also seeding the
# state dir with it as last-known-good), then start LiteLLM. Binds 0.0.0.0 inside the container only: compose
# publishes the port on the host's 127.0.0.1.
set -eu
: "${LITELLM_MASTER_KEY:?set LITELLM_MASTER_KEY: LiteLLM refuses to start without a master key}"
if [ -n "${FINOPS_CONTROL_PLANE_URL:-}" ]; then
  : "${FINOPS_PROXY_TOKEN:?set FINOPS_PROXY_TOKEN (register the proxy on the Fleet page) or unset FINOPS_CONTROL_PLANE_URL}"
fi
: "${FINOPS_BUNDLE_PUBLIC_KEYS:?set FINOPS_BUNDLE_PUBLIC_KEYS to the control plane's bundle public key: unsigned bundles are never applied}"
# The control plane's settings may come from the same env file: LiteLLM would treat DATABASE_URL as its own
# Prisma database and fail to start, and the proxy needs neither Postgres nor Redis.
unset DATABASE_URL DIRECT_URL REDIS_URL CELERY_BROKER_URL
python -m routing.proxy.bootstrap --bundle "${FINOPS_BOOTSTRAP_BUNDLE:-/etc/finops/bundle.json}" \
  --out /srv/config.yaml --state-dir "${FINOPS_STATE_DIR:-/var/lib/finops-proxy}"
exec litellm --config /srv/config.yaml --host 0.0.0.0 --port "${PORT:-4000}"
