#!/bin/sh
# Build-stage only: drop from /opt/venv what the image's role never loads at run time, then the final stage
# copies what is left. Usage: slim-venv.sh web|proxy. docker/image_check.py proves afterwards, still in the
# build stage, that every module the role runs imports without what was dropped.
#   web   (gunicorn, Celery worker and beat): plotly (only its plotly.min.js is served, collected before this
#         runs) and what litellm's Router validation and price map never import: the AWS SDK, the Hugging Face
#         hub and tokenizers, and litellm's own proxy server (the web side never runs LiteLLM).
#   proxy (LiteLLM with our plugin): LiteLLM's admin web UI (Next.js build; our proxies are driven by the
#         control plane; LiteLLM logs that the UI is missing and serves the API as usual).
# Both: pip and setuptools, test suites shipped inside packages, type stubs, translation sources (*.po;
# Django reads the compiled *.mo), and the bytecode of all that. Each remaining module keeps one .pyc (pip
# compiled it at install): /opt/venv is read-only for the service user, so without it every process would
# recompile litellm (~100 MB of source) at start.
set -eu
role=${1:?usage: slim-venv.sh web|proxy}
venv=${VENV:-/opt/venv}
site=$(echo "$venv"/lib/python3*/site-packages)
[ -d "$site" ] || { echo "slim-venv: no site-packages under $venv" >&2; exit 1; }

case "$role" in
  web)
    drop="plotly narwhals boto3 botocore s3transfer jmespath huggingface-hub hf-xet tokenizers"
    drop_dirs="litellm/proxy"
    ;;
  proxy)
    drop=""
    drop_dirs="litellm/proxy/_experimental/out"
    ;;
  *) echo "slim-venv: unknown role $role (web or proxy)" >&2; exit 2 ;;
esac

before=$(du -sm "$site" | cut -f1)
# shellcheck disable=SC2086  # word splitting wanted: one argument per package
[ -z "$drop" ] || "$venv/bin/python" -m pip uninstall -y -q $drop
for d in $drop_dirs; do rm -rf "${site:?}/$d"; done
find "$site" -depth -type d -name tests -exec rm -rf {} +
find "$site" -type f \( -name '*.pyi' -o -name '*.po' \) -delete
"$venv/bin/python" -m pip uninstall -y -q pip setuptools
# bytecode whose source is gone (pip's own, the removed directories'), then empty cache directories
"$venv/bin/python" - "$site" <<'PY'
import pathlib, sys
for pyc in pathlib.Path(sys.argv[1]).rglob("__pycache__/*.pyc"):
    if not (pyc.parent.parent / (pyc.name.split(".")[0] + ".py")).exists():
        pyc.unlink()
PY
find "$site" -depth -type d -empty -delete
echo "slim-venv: $role site-packages ${before} MB -> $(du -sm "$site" | cut -f1) MB" >&2
