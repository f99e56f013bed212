#!/usr/bin/env bash
# Stand-in base images for a machine that cannot reach Docker Hub (CI here): a Debian bookworm root filesystem
# made by debootstrap from the machine's configured Debian mirror, imported with `docker import`, then Python,
# Postgres 15 and Redis 7 installed on top through apt. The host's CA certificates
# (/usr/local/share/ca-certificates/*.crt) are copied in, so apt and pip inside builds trust the same TLS
# interception the host does. Prints the variables to pass to compose (BASE_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE).
# Needs root, debootstrap and a running Docker engine. Images already present are kept (rebuild: --force).
set -euo pipefail
PREFIX=${FINOPS_CI_IMAGE_PREFIX:-finops-ci}
DEBIAN_IMAGE=$PREFIX/debian:bookworm
PYTHON_IMAGE=$PREFIX/python:3.11-bookworm
POSTGRES_IMAGE=$PREFIX/postgres:15
REDIS_IMAGE=$PREFIX/redis:7
force=false
[ "${1:-}" = "--force" ] && force=true

have() { ! $force && docker image inspect "$1" >/dev/null 2>&1; }
log() { echo "ci-base-images: $*" >&2; }

mirror() {  # the first Debian mirror apt is configured with (deb822 or one-line sources)
  local url
  url=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list \
    | grep -v security | sed -E 's/^URIs:\s*//; s/^deb (\[[^]]*\] )?//' | awk '{print $1}' | head -n1)
  echo "${url:-http://deb.debian.org/debian}"
}

if ! have "$DEBIAN_IMAGE"; then
  command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  root=$(mktemp -d /tmp/finops-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  log "debootstrap bookworm from $(mirror) (about a minute)"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$(mirror)" >/dev/null
  shopt -s nullglob
  certs=(/usr/local/share/ca-certificates/*.crt)
  if [ ${#certs[@]} -gt 0 ]; then
    cp "${certs[@]}" "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  # pip's own certificate bundle would not hold the host's CAs: point it at the system one
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
  cp /etc/apt/sources.list "$root/etc/apt/sources.list" 2>/dev/null || true
  [ -d /etc/apt/sources.list.d ] && cp -r /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/" 2>/dev/null || true
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    -c 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

if ! have "$PYTHON_IMAGE"; then
  log "building $PYTHON_IMAGE (Debian's python3 3.11, like python:3.11-slim-bookworm)"
  docker build -q -t "$PYTHON_IMAGE" - >/dev/null <<DOCKERFILE
FROM $DEBIAN_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && ln -s /usr/bin/python3 /usr/local/bin/python && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
DOCKERFILE
fi

if ! have "$POSTGRES_IMAGE"; then
  log "building $POSTGRES_IMAGE (Debian's postgresql-15; POSTGRES_USER/PASSWORD/DB as the official image)"
  ctx=$(mktemp -d /tmp/finops-pgctx.XXXXXX)
  cat >"$ctx/entrypoint.sh" <<'SH'
#!/bin/sh
# The official image's contract, reduced: first start creates the cluster, the user and the database.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
BIN=/usr/lib/postgresql/15/bin
USER_NAME=${POSTGRES_USER:-postgres}
mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
  pw=$(mktemp); printf '%s' "$POSTGRES_PASSWORD" >"$pw"; chown postgres "$pw"
  runuser -u postgres -- "$BIN/initdb" -D "$PGDATA" -U "$USER_NAME" --pwfile="$pw" \
    --auth-host=scram-sha-256 --auth-local=trust >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  db=${POSTGRES_DB:-$USER_NAME}
  if [ "$db" != postgres ]; then
    runuser -u postgres -- "$BIN/psql" -v ON_ERROR_STOP=1 -U "$USER_NAME" -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
  fi
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec runuser -u postgres -- "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
SH
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $DEBIAN_IMAGE
RUN mkdir -p /etc/postgresql-common && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf \
    && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "/usr/local/bin/docker-entrypoint.sh"]
DOCKERFILE
  docker build -q -t "$POSTGRES_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

if ! have "$REDIS_IMAGE"; then
  log "building $REDIS_IMAGE (Debian's redis-server 7)"
  docker build -q -t "$REDIS_IMAGE" - >/dev/null <<DOCKERFILE
FROM $DEBIAN_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
DOCKERFILE
fi

echo "BASE_IMAGE=$PYTHON_IMAGE"
echo "POSTGRES_IMAGE=$POSTGRES_IMAGE"
echo "REDIS_IMAGE=$REDIS_IMAGE"
