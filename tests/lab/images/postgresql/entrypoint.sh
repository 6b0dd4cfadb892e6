#!/bin/sh
# Managed by chutes.miner tests/lab/images/postgresql: initialise PGDATA on first start
# (password authentication from every address), then run postgres in the foreground.
set -eu
: "${PGDATA:?PGDATA is not set}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    password="$(cat "$POSTGRES_PASSWORD_FILE")"
  else
    password="${POSTGRES_PASSWORD:-}"
  fi
  if [ -z "$password" ]; then
    echo "lab-postgres: POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required to initialise $PGDATA" >&2
    echo "lab-postgres: 初始化 $PGDATA 需要 POSTGRES_PASSWORD 或 POSTGRES_PASSWORD_FILE" >&2
    exit 2
  fi
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  pwfile="$(mktemp)"
  printf '%s\n' "$password" >"$pwfile"
  initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=scram-sha-256 \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: no server listens while the database is created.
    echo "CREATE DATABASE \"$db\" OWNER \"$user\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "lab-postgres: initialised $PGDATA (user $user, database $db)"
fi
exec postgres -D "$PGDATA" "$@"
