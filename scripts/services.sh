#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis that the tests use are reachable on 127.0.0.1,
# starting local ones when they are not. Does nothing when both already answer.
set -euo pipefail
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}

if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    for version in $(ls /etc/postgresql 2>/dev/null); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
  fi
  for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 1; done
  pg_isready -h "$PGHOST" -p "$PGPORT" || { echo "PostgreSQL is not reachable on $PGHOST:$PGPORT" >&2; exit 1; }
fi

if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis_dir=$(mktemp -d)
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir "$redis_dir" --logfile "$redis_dir/redis.log"
  for _ in $(seq 1 30); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "Redis is not reachable on port $REDIS_PORT" >&2; exit 1; }
fi
