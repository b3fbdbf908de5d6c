#!/bin/sh
# Renders dovecot.conf (paths only) and the SQL settings from .env (Dovecot cannot read
# environment variables there) on every start, then runs the command (none: render only and
# exit, as server/tests/it/compose_native.rs does).
# The image's paths and the vmail ids are defaults; DOVECOT_ETC, DOVECOT_SHARE, DOVECOT_MAIL,
# DOVECOT_RUN, VMAIL_UID and VMAIL_GID override them so the harness runs this same script
# outside a container.
set -eu
: "${DOVECOT_ETC:=/etc/dovecot}" "${DOVECOT_SHARE:=/usr/share/postern}" "${DOVECOT_MAIL:=/var/mail/vmail}"
: "${DOVECOT_RUN:=/run/dovecot}" "${VMAIL_UID:=5000}" "${VMAIL_GID:=5000}"
export VMAIL_UID VMAIL_GID DOVECOT_ETC DOVECOT_RUN
: "${POSTERN_DB_ENGINE:=mysql}" "${POSTERN_DB_HOST:=db}" "${POSTERN_DB_NAME:=postfix}" "${POSTERN_DB_USER:=postfix}"
: "${POSTERN_DB_PASSWORD:?POSTERN_DB_PASSWORD must be set}"
case "$POSTERN_DB_ENGINE" in
  mysql) : "${POSTERN_DB_PORT:=3306}"
         export DOVECOT_SQL_DRIVER=mysql HOME_EXPR="CONCAT('$DOVECOT_MAIL/', maildir)" QUOTA_EXPR="CONCAT('*:bytes=', quota)" ;;
  pgsql) : "${POSTERN_DB_PORT:=5432}"
         export DOVECOT_SQL_DRIVER=pgsql HOME_EXPR="'$DOVECOT_MAIL/' || maildir" QUOTA_EXPR="'*:bytes=' || quota" ;;
  *) echo "dovecot: POSTERN_DB_ENGINE must be mysql or pgsql" >&2; exit 1 ;;
esac
export POSTERN_DB_PORT
mkdir -p "$DOVECOT_ETC"
# Only these two: dovecot.conf has its own $settings and %variables.
envsubst '${DOVECOT_ETC} ${DOVECOT_RUN}' < "$DOVECOT_SHARE/dovecot.conf" > "$DOVECOT_ETC/dovecot.conf"
envsubst < "$DOVECOT_SHARE/dovecot-sql.conf.ext.in" > "$DOVECOT_ETC/dovecot-sql.conf.ext"
chmod 600 "$DOVECOT_ETC/dovecot-sql.conf.ext"
mkdir -p "$DOVECOT_MAIL" "$DOVECOT_RUN" && chown "$VMAIL_UID:$VMAIL_GID" "$DOVECOT_MAIL"
exec "$@"
