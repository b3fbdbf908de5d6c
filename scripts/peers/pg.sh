#!/bin/bash
# Start a throw-away PostgreSQL on 127.0.0.1:PORT in a fresh temp dir; prints the dir.
# Stop: scripts/peers/pg.sh stop DIR   (as root the server runs as nobody)
set -euo pipefail
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then AS="setpriv --reuid=nobody --regid=nogroup --clear-groups"; else AS=""; fi
if [ "${1:-}" = stop ]; then
    D=$2; $AS env HOME="$D" "$BIN/pg_ctl" -D "$D/data" stop -m fast >/dev/null; exit 0
fi
PORT=${1:-55432}
D=$(mktemp -d /tmp/pg.XXXXXX); chmod 755 "$D"
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$D"
$AS env HOME="$D" "$BIN/initdb" -D "$D/data" -U postgres --auth=trust -E UTF8 --no-locale >"$D/initdb.log" 2>&1
$AS env HOME="$D" "$BIN/pg_ctl" -D "$D/data" -l "$D/pg.log" -w \
    -o "-p $PORT -k $D -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
echo "$D"      # URL: postgres://postgres@127.0.0.1:$PORT/postgres
