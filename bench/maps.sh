#!/usr/bin/env bash
# bench/maps.sh — lookup-table speed: cached lookups/s, and uncached `mysql:`/`pgsql:` lookups
# against a local MariaDB/PostgreSQL compared with a bare sqlx loop sending the same SQL text.
# Starts both servers with scripts/peers/{mariadb,pg}.sh on free ports in temp dirs (never the
# system's), loads 1000 alias rows, builds the `maps_bench` example (release) and runs it once per
# backend. Options: SECONDS (default 3) = how long the cached loop runs (uncached: a third of it).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-3}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MYPORT=$(free_port); PGPORT=$(free_port)
MYDIR=$(scripts/peers/mariadb.sh "$MYPORT")
PGDIR=$(scripts/peers/pg.sh "$PGPORT")
WORK=$(mktemp -d /tmp/mb.XXXXXX)
cleanup() {
  scripts/peers/mariadb.sh stop "$MYDIR" || true
  scripts/peers/pg.sh stop "$PGDIR" || true
  rm -rf "$MYDIR" "$PGDIR" "$WORK"
}
trap cleanup EXIT

rows() { # $1 = true literal
  printf "INSERT INTO alias (address, goto, active) VALUES "
  for i in $(seq 1 1000); do
    [ "$i" = 1 ] || printf ", "
    printf "('user%d@example.com', 'box%d@example.com', %s)" "$i" "$i" "$1"
  done
  printf ";\n"
}
{ echo "CREATE DATABASE postfix; USE postfix;"
  echo "CREATE TABLE alias (address varchar(255) PRIMARY KEY, goto text NOT NULL, active tinyint(1) NOT NULL DEFAULT 1);"
  rows 1; } | mariadb --no-defaults -h127.0.0.1 -P"$MYPORT" -uroot
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE postfix"
{ echo "CREATE TABLE alias (address varchar(255) PRIMARY KEY, goto text NOT NULL, active boolean NOT NULL DEFAULT true);"
  rows true; } | psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postfix

Q="SELECT goto FROM alias WHERE address='%s' AND active = '1'"
cat >"$WORK/my.cf" <<EOF
hosts = inet:127.0.0.1:$MYPORT
user = root
dbname = postfix
query = $Q
EOF
cat >"$WORK/pg.cf" <<EOF
hosts = inet:127.0.0.1:$PGPORT
user = postgres
dbname = postfix
query = $Q
EOF
KEY=user500@example.com
SQL=${Q//%s/$KEY}

cargo build --release -p postern --example maps_bench >&2
BIN=${CARGO_TARGET_DIR:-target}/release/examples/maps_bench
"$BIN" "mysql:$WORK/my.cf" "$KEY" "mysql://root@127.0.0.1:$MYPORT/postfix" "$SQL" "$SECS"
"$BIN" "pgsql:$WORK/pg.cf" "$KEY" "postgres://postgres@127.0.0.1:$PGPORT/postfix" "$SQL" "$SECS"
