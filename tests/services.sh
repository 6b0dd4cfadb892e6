#!/usr/bin/env bash
# PostgreSQL and Redis on 127.0.0.1 for the control service tests, from
# Debian's packages. Installs what is missing, starts what is down, and gives
# the `postgres` role a password kept in root's ~/.pgpass (libpq reads it), so
# pg_hba.conf keeps Debian's scram-sha-256 rules. Idempotent and quiet when
# everything is in place; make test and .ci/run both call it.
set -euo pipefail

packages=(postgresql redis-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "services: installing ${missing[*]}"
  apt-get update -q
  # policy-rc.d-less containers and machines without systemd: the packages'
  # own start attempts may fail; the clusters are started below either way.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

pg_version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)"
if [[ -z "$pg_version" ]]; then
  echo "services: no PostgreSQL cluster under /etc/postgresql" >&2
  exit 1
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi

# A password for the superuser role over TCP, known only to root's ~/.pgpass.
pgpass="${HOME}/.pgpass"
if ! grep -qs '^127\.0\.0\.1:5432:\*:postgres:' "$pgpass" ||
  ! PGCONNECT_TIMEOUT=3 psql -w -X -qAt -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
  secret="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
  # psql interpolates :'pw' only in input read from stdin, not in -c.
  echo "ALTER ROLE postgres PASSWORD :'pw';" |
    (cd / && runuser -u postgres -- psql -q -X -v ON_ERROR_STOP=1 -v pw="$secret") >/dev/null
  touch "$pgpass"
  chmod 0600 "$pgpass"
  grep -v '^127\.0\.0\.1:5432:\*:postgres:\|^localhost:5432:\*:postgres:\|^::1:5432:\*:postgres:' "$pgpass" >"$pgpass.new" || true
  printf '127.0.0.1:5432:*:postgres:%s\nlocalhost:5432:*:postgres:%s\n::1:5432:*:postgres:%s\n' \
    "$secret" "$secret" "$secret" >>"$pgpass.new"
  chmod 0600 "$pgpass.new"
  mv "$pgpass.new" "$pgpass"
  echo "services: postgres role password set (kept in $pgpass)"
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
