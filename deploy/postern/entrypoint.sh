#!/bin/sh
# First start: write /etc/postern from the templates and .env, migrate the database, create the
# superadmin. Later starts keep /etc/postern as the operator left it. Then run the command (none:
# configure only and exit, as server/tests/it/compose_native.rs does).
# The image's paths are defaults; POSTERN_ETC, POSTERN_SHARE, POSTERN_SPOOL and POSTERN_DOVECOT_RUN
# override them so the harness runs this same script outside a container.
set -eu
: "${POSTERN_ETC:=/etc/postern}" "${POSTERN_SHARE:=/usr/share/postern}" "${POSTERN_SPOOL:=/var/spool/postern}"
: "${POSTERN_DOVECOT_RUN:=/run/dovecot}"
export POSTERN_SPOOL POSTERN_DOVECOT_RUN
ETC=$POSTERN_ETC
: "${POSTERN_DB_ENGINE:=mysql}" "${POSTERN_DB_HOST:=db}" "${POSTERN_DB_NAME:=postfix}" "${POSTERN_DB_USER:=postfix}"
: "${POSTERN_DB_PASSWORD:?POSTERN_DB_PASSWORD must be set}" "${POSTERN_HOSTNAME:=$(hostname -f)}"
case "$POSTERN_DB_ENGINE" in
  mysql) scheme=mysql; : "${POSTERN_DB_PORT:=3306}" ;;
  pgsql) scheme=postgres; : "${POSTERN_DB_PORT:=5432}" ;;
  *) echo "postern: POSTERN_DB_ENGINE must be mysql or pgsql, not $POSTERN_DB_ENGINE" >&2; exit 1 ;;
esac
export POSTERN_DB_URL="$scheme://$POSTERN_DB_USER:$POSTERN_DB_PASSWORD@$POSTERN_DB_HOST:$POSTERN_DB_PORT/$POSTERN_DB_NAME"
# The MTA's lookup tables: the database (sql, the default) or the `ldap` profile's directory.
# The panel and Dovecot always use the database.
: "${POSTERN_TABLES:=sql}"
case "$POSTERN_TABLES" in
  sql) tables=$POSTERN_DB_ENGINE ;;
  ldap) tables=ldap
        : "${POSTERN_LDAP_HOST:=ldap}" "${POSTERN_LDAP_PORT:=389}" "${POSTERN_LDAP_SUFFIX:=dc=example,dc=org}"
        : "${POSTERN_LDAP_BIND_DN:=cn=postfix,$POSTERN_LDAP_SUFFIX}"
        : "${POSTERN_LDAP_BIND_PW:?POSTERN_LDAP_BIND_PW must be set with POSTERN_TABLES=ldap}" ;;
  *) echo "postern: POSTERN_TABLES must be sql or ldap, not $POSTERN_TABLES" >&2; exit 1 ;;
esac
# main.cf.in: proxy:$POSTERN_MAP_TYPE:$POSTERN_TABLES/<table>.cf
export POSTERN_MAP_TYPE="$tables" POSTERN_TABLES="$ETC/$tables"
if [ ! -e "$ETC/main.cf" ]; then
  mkdir -p "$POSTERN_TABLES"
  for f in "$POSTERN_SHARE"/conf/"$tables"/*.cf; do
    if [ "$tables" = ldap ]; then
      sed -e "s|^server_host *=.*|server_host = ldap://$POSTERN_LDAP_HOST:$POSTERN_LDAP_PORT|" \
          -e "s|^bind_dn *=.*|bind_dn = $POSTERN_LDAP_BIND_DN|" -e "s|^bind_pw *=.*|bind_pw = $POSTERN_LDAP_BIND_PW|" \
          -e "/^search_base *=/s|dc=example,dc=org|$POSTERN_LDAP_SUFFIX|" \
          "$f" > "$POSTERN_TABLES/$(basename "$f")"
    else
      sed -e "s|^hosts *=.*|hosts = inet:$POSTERN_DB_HOST:$POSTERN_DB_PORT|" -e "s|^user *=.*|user = $POSTERN_DB_USER|" \
          -e "s|^password *=.*|password = $POSTERN_DB_PASSWORD|" -e "s|^dbname *=.*|dbname = $POSTERN_DB_NAME|" \
          "$f" > "$POSTERN_TABLES/$(basename "$f")"
    fi
  done
  chmod 640 "$POSTERN_TABLES"/*.cf
  envsubst < "$POSTERN_SHARE/main.cf.in" > "$ETC/main.cf"
  cp "$POSTERN_SHARE/master.cf" "$ETC/master.cf"
  postern admin -c "$ETC" migrate
  if [ -n "${POSTERN_ADMIN:-}" ] && [ -n "${POSTERN_ADMIN_PASSWORD:-}" ]; then
    printf '%s\n' "$POSTERN_ADMIN_PASSWORD" | postern admin -c "$ETC" admin add "$POSTERN_ADMIN" --superadmin --password-stdin
  fi
fi
mkdir -p "$POSTERN_SPOOL"
exec "$@"
