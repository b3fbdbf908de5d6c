#!/bin/sh
# Renders slapd.conf from .env on every start and, on first start (no database yet), loads the
# bootstrap LDIF with slapadd; then runs the command (none: configure only and exit).
# The image's paths are defaults; LDAP_ETC, LDAP_SHARE, LDAP_DATA and LDAP_RUN override them so
# the harness can run this same script outside a container.
set -eu
: "${LDAP_ETC:=/etc/ldap/postern}" "${LDAP_SHARE:=/usr/share/postern/ldap}" "${LDAP_DATA:=/var/lib/ldap}"
: "${LDAP_RUN:=/run/slapd}"
: "${POSTERN_LDAP_SUFFIX:=dc=example,dc=org}" "${POSTERN_LDAP_BIND_DN:=cn=postfix,$POSTERN_LDAP_SUFFIX}"
: "${POSTERN_LDAP_BIND_PW:?POSTERN_LDAP_BIND_PW must be set}" "${LDAP_ROOT_PASSWORD:?LDAP_ROOT_PASSWORD must be set}"
case "$POSTERN_LDAP_SUFFIX" in
  dc=*) LDAP_DC=$(printf '%s\n' "$POSTERN_LDAP_SUFFIX" | sed 's/^dc=\([^,]*\).*/\1/') ;;
  *) echo "ldap: POSTERN_LDAP_SUFFIX must start with dc=, not $POSTERN_LDAP_SUFFIX" >&2; exit 1 ;;
esac
LDAP_ROOT_HASH=$(slappasswd -s "$LDAP_ROOT_PASSWORD")
LDAP_BIND_HASH=$(slappasswd -s "$POSTERN_LDAP_BIND_PW")
export LDAP_ETC LDAP_DATA LDAP_RUN POSTERN_LDAP_SUFFIX POSTERN_LDAP_BIND_DN LDAP_DC LDAP_ROOT_HASH LDAP_BIND_HASH
vars='${LDAP_RUN} ${LDAP_DATA} ${POSTERN_LDAP_SUFFIX} ${POSTERN_LDAP_BIND_DN} ${LDAP_ROOT_HASH} ${LDAP_DC} ${LDAP_BIND_HASH}'
mkdir -p "$LDAP_ETC" "$LDAP_DATA" "$LDAP_RUN"
umask 027
envsubst "$vars" < "$LDAP_SHARE/slapd.conf.in" > "$LDAP_ETC/slapd.conf"
if [ ! -e "$LDAP_DATA/data.mdb" ]; then
  envsubst "$vars" < "$LDAP_SHARE/bootstrap.ldif.in" | slapadd -q -f "$LDAP_ETC/slapd.conf"
fi
if id openldap >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  chown -R openldap:openldap "$LDAP_DATA" "$LDAP_RUN"
  chgrp openldap "$LDAP_ETC/slapd.conf"
fi
exec "$@"
