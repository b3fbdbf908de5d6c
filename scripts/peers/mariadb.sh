#!/bin/bash
# Start a throw-away MariaDB on 127.0.0.1:PORT in a fresh temp dir; prints the dir.
# Stop: scripts/peers/mariadb.sh stop DIR   (as root the server runs as nobody)
set -euo pipefail
if [ "${1:-}" = stop ]; then
    D=$2; kill "$(cat "$D/mariadbd.pid")"
    for i in $(seq 100); do [ -e "$D/mariadbd.pid" ] || break; sleep 0.1; done; exit 0
fi
PORT=${1:-53306}
D=$(mktemp -d /tmp/maria.XXXXXX); chmod 755 "$D"
if [ "$(id -u)" = 0 ]; then chown nobody:nogroup "$D"; AS="setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=$D"; else AS=""; fi
$AS mariadb-install-db --no-defaults --datadir="$D/data" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve >"$D/install.log" 2>&1
$AS mariadbd --no-defaults --datadir="$D/data" --socket="$D/mysql.sock" --port="$PORT" \
    --bind-address=127.0.0.1 --pid-file="$D/mariadbd.pid" --log-error="$D/err.log" \
    --skip-name-resolve --innodb-flush-log-at-trx-commit=2 --skip-log-bin >/dev/null 2>&1 &
for i in $(seq 100); do mariadb-admin --no-defaults -h127.0.0.1 -P"$PORT" -uroot ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "$D"      # URL: mysql://root@127.0.0.1:$PORT/mysql
