#!/usr/bin/env bash
# Starts the local servers the plugins' tests use, if they are not running: PostgreSQL
# (127.0.0.1:5432, with wal_level = logical), MariaDB (127.0.0.1:3306), and the message
# queues the streaming sources follow: NATS with JetStream (4222), RabbitMQ (5672) and
# Redis (6379).
# Idempotent; CI calls it.
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
# Streaming from PostgreSQL (logical replication with pgoutput) needs wal_level = logical,
# which takes a restart: what a user does once on their own server (docs/realtime.md).
pg_sql() { psql -h 127.0.0.1 -U postgres -d postgres -Atqc "$1" 2>/dev/null; }
if [ "$(pg_sql 'show wal_level')" = "replica" ] || [ "$(pg_sql 'show wal_level')" = "minimal" ]; then
  pg_sql "alter system set wal_level = logical" >/dev/null
  cluster=$(ls /etc/postgresql 2>/dev/null | head -1)
  if [ -n "$cluster" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main restart 2>&1 || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break; sleep 0.5; done
fi
[ "$(pg_sql 'show wal_level')" = "logical" ] \
  || echo "ensure-services: PostgreSQL's wal_level is not logical (streaming tests skip)" >&2

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
# The message queues (the nats, rabbitmq and redis_streams sources).
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do listening "$1" && return 0; sleep 0.5; done; return 1; }
if ! listening 4222 && command -v nats-server >/dev/null; then
  mkdir -p /tmp/conn-nats
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/conn-nats >/dev/null 2>&1 &
  wait_port 4222
fi
listening 4222 || { echo "ensure-services: NATS is not running" >&2; ok=1; }
if ! listening 6379 && command -v redis-server >/dev/null; then
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null 2>&1 || true
  wait_port 6379
fi
listening 6379 || { echo "ensure-services: Redis is not running" >&2; ok=1; }
if ! listening 5672 && command -v rabbitmq-server >/dev/null; then
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port 5672
fi
listening 5672 || { echo "ensure-services: RabbitMQ is not running" >&2; ok=1; }

[ "$strict" = 1 ] && exit $ok
exit 0
