#!/usr/bin/env bash
# Starts Redis (port 6390) and the three nodes of examples/node{1,2,3}.ini on
# this machine; Ctrl-C (or SIGTERM) stops them all, nodes first, by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh wscluster
workdir=$(mktemp -d -t wscluster-cluster-XXXXXX)
pids=()
stop() {
  trap - INT TERM EXIT
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "cluster stopped; logs in $workdir" >&2
}
trap stop INT TERM EXIT
redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$workdir" >"$workdir/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p 6390 ping >/dev/null 2>&1 && break; sleep 0.1; done
for i in 1 2 3; do
  build/wscluster --config-file=examples/node$i.ini >"$workdir/n$i.log" 2>&1 &
  pids+=($!)
done
echo "redis 127.0.0.1:6390; nodes ws://127.0.0.1:808{1,2,3}/ws; logs in $workdir" >&2
echo "dashboard: http://127.0.0.1:8081/dashboard — Ctrl-C stops everything" >&2
wait -n "${pids[@]}" || true
