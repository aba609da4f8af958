#!/usr/bin/env bash
# Starts the local database servers the SQL plugins' tests use, if they are not running:
# PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306). Idempotent; CI calls it.
# Exit code 0 when both answer, 1 otherwise (tests then skip with the reason).
set -u
ok=0
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start 2>&1 || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break; sleep 0.5; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { echo "PostgreSQL is not running"; ok=1; }

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
  || { echo "MariaDB is not running"; ok=1; }
exit $ok
