#!/usr/bin/env bash
# Starts the local database servers the SQL plugins' tests use, if they are not running:
# PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306). Idempotent; CI calls it.
# A server that cannot be started is reported on stderr; the exit code stays 0 (the tests
# that need it then skip, saying why) unless --strict is given.
set -u
strict=0; [ "${1:-}" = "--strict" ] && strict=1
ok=0
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start 2>&1 || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break; sleep 0.5; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { echo "ensure-services: PostgreSQL is not running" >&2; ok=1; }

if ! mysqladmin -h 127.0.0.1 -P 3306 -uroot --connect-timeout=2 ping >/dev/null 2>&1; then
  if [ -x /usr/sbin/mariadbd ]; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 2>&1 || true
  fi
  for _ in $(seq 1 30); do
    mysqladmin -h 127.0.0.1 -P 3306 -uroot --connect-timeout=2 ping >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
mysqladmin -h 127.0.0.1 -P 3306 -uroot --connect-timeout=2 ping >/dev/null 2>&1 \
  || { echo "ensure-services: MariaDB is not running" >&2; ok=1; }
[ "$strict" = 1 ] && exit $ok
exit 0
