#!/bin/sh
# First start: write /etc/postern from the templates and .env, migrate the database, create the
# superadmin. Later starts keep /etc/postern as the operator left it. Then run the command.
set -eu
ETC=/etc/postern
: "${POSTERN_DB_ENGINE:=mysql}" "${POSTERN_DB_HOST:=db}" "${POSTERN_DB_NAME:=postfix}" "${POSTERN_DB_USER:=postfix}"
: "${POSTERN_DB_PASSWORD:?POSTERN_DB_PASSWORD must be set}" "${POSTERN_HOSTNAME:=$(hostname -f)}"
case "$POSTERN_DB_ENGINE" in
  mysql) scheme=mysql ;;
  pgsql) scheme=postgres ;;
  *) echo "postern: POSTERN_DB_ENGINE must be mysql or pgsql, not $POSTERN_DB_ENGINE" >&2; exit 1 ;;
esac
export POSTERN_DB_URL="$scheme://$POSTERN_DB_USER:$POSTERN_DB_PASSWORD@$POSTERN_DB_HOST/$POSTERN_DB_NAME"
export POSTERN_TABLES="$ETC/$POSTERN_DB_ENGINE"
if [ ! -e "$ETC/main.cf" ]; then
  mkdir -p "$POSTERN_TABLES"
  for f in /usr/share/postern/conf/"$POSTERN_DB_ENGINE"/*.cf; do
    sed -e "s|^hosts *=.*|hosts = $POSTERN_DB_HOST|" -e "s|^user *=.*|user = $POSTERN_DB_USER|" \
        -e "s|^password *=.*|password = $POSTERN_DB_PASSWORD|" -e "s|^dbname *=.*|dbname = $POSTERN_DB_NAME|" \
        "$f" > "$POSTERN_TABLES/$(basename "$f")"
  done
  chmod 640 "$POSTERN_TABLES"/*.cf
  envsubst < /usr/share/postern/main.cf.in > "$ETC/main.cf"
  cp /usr/share/postern/master.cf "$ETC/master.cf"
  postern admin -c "$ETC" migrate
  if [ -n "${POSTERN_ADMIN:-}" ] && [ -n "${POSTERN_ADMIN_PASSWORD:-}" ]; then
    printf '%s\n' "$POSTERN_ADMIN_PASSWORD" | postern admin -c "$ETC" admin add "$POSTERN_ADMIN" --superadmin --password-stdin
  fi
fi
mkdir -p /var/spool/postern
exec "$@"
