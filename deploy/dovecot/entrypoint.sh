#!/bin/sh
# Renders the SQL settings from .env (Dovecot cannot read environment variables there).
set -eu
: "${POSTERN_DB_ENGINE:=mysql}" "${POSTERN_DB_HOST:=db}" "${POSTERN_DB_NAME:=postfix}" "${POSTERN_DB_USER:=postfix}"
: "${POSTERN_DB_PASSWORD:?POSTERN_DB_PASSWORD must be set}"
case "$POSTERN_DB_ENGINE" in
  mysql) export DOVECOT_SQL_DRIVER=mysql HOME_EXPR="CONCAT('/var/mail/vmail/', maildir)" QUOTA_EXPR="CONCAT('*:bytes=', quota)" ;;
  pgsql) export DOVECOT_SQL_DRIVER=pgsql HOME_EXPR="'/var/mail/vmail/' || maildir" QUOTA_EXPR="'*:bytes=' || quota" ;;
  *) echo "dovecot: POSTERN_DB_ENGINE must be mysql or pgsql" >&2; exit 1 ;;
esac
envsubst < /usr/share/postern/dovecot-sql.conf.ext.in > /etc/dovecot/dovecot-sql.conf.ext
chmod 600 /etc/dovecot/dovecot-sql.conf.ext
mkdir -p /var/mail/vmail /run/dovecot && chown vmail:vmail /var/mail/vmail
exec "$@"
