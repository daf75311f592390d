#!/usr/bin/env bash
# wscluster as a peer of ../shared/bench-peers (see its README, "A system that lives
# outside this folder"): starts two wscluster nodes sharing the Redis on REDIS_PORT.
# Usage: bench/peer/start.sh PORT1 PORT2 REDIS_PORT PIDFILE
# Binary: $WSC_BINARY, else <repo>/build/wscluster (build it Release for numbers).
# Appends the two node pids (node 1 first) to PIDFILE and returns once both answer
# /healthz and each lists both nodes in GET /api/nodes. Listens on 127.0.0.1 only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
p1=${1:?PORT1}; p2=${2:?PORT2}; rp=${3:?REDIS_PORT}; pidfile=${4:?PIDFILE}
bin=${WSC_BINARY:-$repo/build/wscluster}
[[ -x $bin ]] || { echo "wscluster binary not found: $bin (set WSC_BINARY)" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$here/../lib.sh"   # load_flags

if [[ -n ${BENCH_DIR:-} && -f $BENCH_DIR/scripts/common.sh ]]; then
  # shellcheck disable=SC1091
  source "$BENCH_DIR/scripts/common.sh"   # wait_http, raise_nofile, LOG_DIR
else
  LOG_DIR=${LOG_DIR:-${TMPDIR:-/tmp}/wsc-bench-logs}; mkdir -p "$LOG_DIR"
  raise_nofile() { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }
  wait_http() {
    local port=$1 t=${2:-20} i=0
    while (( i < t * 10 )); do
      curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && return 0
      sleep 0.1; i=$((i + 1))
    done
    echo "port $port did not come up in ${t}s" >&2; return 1
  }
fi
raise_nofile

common=(--state=redis "--redis=redis://127.0.0.1:$rp" --cluster-listen=127.0.0.1:0
        --client-broadcast=true --rate-limit=0 --max-connections=200000
        --log-level=warn)
read -ra per_address <<< "$(load_flags "$bin")"
common+=("${per_address[@]}")
# shellcheck disable=SC2086
"$bin" --listen="127.0.0.1:$p1" --node-id=n1 "${common[@]}" ${WSC_EXTRA_FLAGS:-} \
  >"$LOG_DIR/wscluster-$p1.log" 2>&1 &
echo $! >> "$pidfile"
# shellcheck disable=SC2086
"$bin" --listen="127.0.0.1:$p2" --node-id=n2 "${common[@]}" ${WSC_EXTRA_FLAGS:-} \
  >"$LOG_DIR/wscluster-$p2.log" 2>&1 &
echo $! >> "$pidfile"

wait_http "$p1" 30 && wait_http "$p2" 30

# Both nodes must know each other before a cross-node message can be routed.
nodes_seen() { # port -> number of nodes listed by GET /api/nodes
  curl -fsS "http://127.0.0.1:$1/api/nodes" 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0
}
for _ in $(seq 1 300); do
  if [[ $(nodes_seen "$p1") -ge 2 && $(nodes_seen "$p2") -ge 2 ]]; then exit 0; fi
  sleep 0.1
done
echo "wscluster nodes on $p1 and $p2 did not see each other within 30 s" \
     "(/api/nodes: $(nodes_seen "$p1") and $(nodes_seen "$p2"); logs in $LOG_DIR)" >&2
exit 1
