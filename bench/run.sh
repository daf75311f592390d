#!/usr/bin/env bash
# One command for issue 7's benchmark: builds Release (wscluster + wsc-loadgen), then for
# each repetition runs the C++ load generator's scenarios against a fresh Redis + 2-node
# wscluster, and the shared Node harness (../shared/bench-peers) with socketio, wsredis
# and wscluster (bench/peer) -- same machine, same run -- and writes bench/RESULTS.md.
# The C++ scenario `fanout:C` (issue 14's "one node, io-threads=1 -> 2") instead starts ONE
# node with --state=memory (no Redis) per value of FANOUT_IO_THREADS and saturates it with
# closed-loop broadcasts to C local clients (wsc-loadgen --scenario fanout).
#
#   bench/run.sh [-r REPS] [-q] [-o RESULTS.md]
#     -r REPS   repetitions (default 3; medians need >= 3)
#     -q        quick: fewer and shorter scenarios (a check of the pipeline, not numbers)
#     -o FILE   where to write the report (default bench/RESULTS.md)
#     -R DIR    only write the report again from an earlier run's bench/results/<stamp>
# Env: JOBS (ninja -j, default 1), WSC_BENCH_BUILD_DIR (default build-release),
#   CPP_SCEN / HARNESS_SCEN (scenario lists, see below), BENCH_PEERS (shared harness
#   folder, default ../shared/bench-peers), QUIET (wait before each run until the box
#   uses fewer cores than this, default 0.5, at most QUIET_MAX_WAIT=20 s), SKIP_BUILD=1,
#   SKIP_HARNESS=1, SKIP_CPP=1. Fan-out: FANOUT_IO_THREADS ("1 2"; the order alternates
#   per repetition), FANOUT_DURATION (10 s, quick 3), FANOUT_SENDERS (4), FANOUT_WINDOW (4
#   broadcasts in flight per sender), FANOUT_NODE_FLAGS (the node's options besides
#   --listen, --node-id and --io-threads), FANOUT_ARGS (more wsc-loadgen options, e.g.
#   "--threads 2" when its one thread is saturated).
# Every run is bounded (wsc-loadgen --max-seconds, `timeout` around every run); only
# the processes this script started (their pids are in a pidfile) are ever stopped.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

REPS=3; QUICK=0; OUT_MD=$BENCH_HERE/RESULTS.md; REPORT_ONLY=""
while getopts "r:qo:R:" o; do
  case $o in r) REPS=$OPTARG ;; q) QUICK=1 ;; o) OUT_MD=$OPTARG ;; R) REPORT_ONLY=$OPTARG ;; *) exit 2 ;; esac
done
JOBS=${JOBS:-1}
BUILD_DIR=${WSC_BENCH_BUILD_DIR:-$REPO_ROOT/build-release}
BENCH_PEERS=${BENCH_PEERS:-$REPO_ROOT/../shared/bench-peers}
QUIET=${QUIET:-0.5}; QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-20}
if (( QUICK )); then
  CPP_SCEN=${CPP_SCEN:-"s1:2000 s2:2000 s2:20000 s3:1000 s4:250 search fanout:500 floor"}
  HARNESS_SCEN=${HARNESS_SCEN:-"s1:2000 s2:2000 s3:1000 s4:250"}
  export S2_DURATION=${S2_DURATION:-3} S4_DURATION=${S4_DURATION:-3} S3_BROADCASTS=${S3_BROADCASTS:-5}
  FANOUT_DURATION=${FANOUT_DURATION:-3}
  SEARCH_ARGS=${SEARCH_ARGS:-"--duration 2 --search-steps 4"}
else
  CPP_SCEN=${CPP_SCEN:-"s1:10000 s2:2000 s2:5000 s2:10000 s2:50000 s3:5000 s4:250 search fanout:1000 floor"}
  HARNESS_SCEN=${HARNESS_SCEN:-"s1:2000 s1:10000 s2:2000 s2:5000 s2:10000 s3:5000 s4:250"}
  SEARCH_ARGS=${SEARCH_ARGS:-"--duration 5 --search-steps 9"}
fi
S2_DURATION=${S2_DURATION:-10}; S2_SENDERS=${S2_SENDERS:-100}; S2_RECEIVERS=${S2_RECEIVERS:-1000}
S3_BROADCASTS=${S3_BROADCASTS:-20}; S4_GROUPS=${S4_GROUPS:-100}; S4_GROUP_SIZE=${S4_GROUP_SIZE:-20}
S4_DURATION=${S4_DURATION:-10}
FANOUT_IO_THREADS=${FANOUT_IO_THREADS:-"1 2"}; FANOUT_DURATION=${FANOUT_DURATION:-10}
FLOOR_DURATION=${FLOOR_DURATION:-10}
FANOUT_SENDERS=${FANOUT_SENDERS:-4}; FANOUT_WINDOW=${FANOUT_WINDOW:-4}; FANOUT_ARGS=${FANOUT_ARGS:-}
FANOUT_NODE_FLAGS=${FANOUT_NODE_FLAGS:-"--state=memory --client-broadcast=true --rate-limit=0 --max-connections=200000 --max-connections-per-address=0 --handshake-rate-per-address=0 --stored-bytes-rate-per-address=0 --log-level=warn"}

stamp=$(date +%Y%m%d-%H%M%S)
RES=$BENCH_HERE/results/$stamp
if [[ -n $REPORT_ONLY ]]; then
  RES=$(cd "$REPORT_ONLY" && pwd); stamp=$(basename "$RES")
  python3 "$BENCH_HERE/report.py" --cpp "$RES/cpp.jsonl" --peers "$RES/peers.jsonl" \
    --meta "$RES/meta.json" --out "$OUT_MD"
  if [[ -s $RES/peers.jsonl ]]; then
    { echo; echo "## Node harness's own report (same data)"; echo;
      node "$BENCH_PEERS/loadgen/report.js" "$RES/peers.jsonl" 2>/dev/null || true; } >> "$OUT_MD"
  fi
  exit 0
fi
mkdir -p "$RES/logs"
CPP_OUT=$RES/cpp.jsonl; PEERS_OUT=$RES/peers.jsonl
PIDFILE=$RES/current.pids
WORK=""
cleanup() { stop_pidfile "$PIDFILE"; [[ -n $WORK ]] && rm -rf "$WORK"; return 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
commands=()

# -- 1. build (Release) --------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building Release into $BUILD_DIR (ninja -j$JOBS)"
  cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSC_TESTS=OFF >/dev/null
  ninja -C "$BUILD_DIR" -j"$JOBS" wscluster
  if ninja -C "$BUILD_DIR" -t targets all 2>/dev/null | grep -q '^wsc-loadgen:'; then
    ninja -C "$BUILD_DIR" -j"$JOBS" wsc-loadgen
  else # the top level does not add_subdirectory(bench) (yet): build bench/ on its own
    cmake -S "$BENCH_HERE" -B "$BUILD_DIR/bench" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    ninja -C "$BUILD_DIR/bench" -j"$JOBS" wsc-loadgen
  fi
fi
export WSC_BINARY=${WSC_BINARY:-$BUILD_DIR/wscluster}
WSC_LOADGEN=${WSC_LOADGEN:-$BUILD_DIR/bench/wsc-loadgen}
[[ -x $WSC_BINARY && -x $WSC_LOADGEN ]] || { echo "missing $WSC_BINARY or $WSC_LOADGEN" >&2; exit 1; }
commands+=("cmake -S . -B ${BUILD_DIR#"$REPO_ROOT"/} -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSC_TESTS=OFF && ninja -C ${BUILD_DIR#"$REPO_ROOT"/} wscluster wsc-loadgen")

# -- 2. the shared harness: a writable copy with its node_modules ----------------------
if [[ ${SKIP_HARNESS:-0} != 1 ]]; then
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsc-bench-peers.XXXXXX")
  cp -r "$BENCH_PEERS" "$WORK/bench-peers"
  chmod -R u+w "$WORK/bench-peers"
  rm -rf "$WORK/bench-peers/results/"*.jsonl "$WORK/bench-peers/node_modules"
  log "npm ci in $WORK/bench-peers"
  (cd "$WORK/bench-peers" && timeout 600 npm ci --no-audit --no-fund >"$RES/logs/npm-ci.log" 2>&1) ||
    { echo "npm ci failed, see $RES/logs/npm-ci.log" >&2; exit 1; }
fi

# wait_quiet: up to QUIET_MAX_WAIT s until the box uses < QUIET cores (other tenants)
wait_quiet() {
  local waited=0 a b busy
  while (( waited < QUIET_MAX_WAIT )); do
    a=$(head -1 /proc/stat); sleep 1; b=$(head -1 /proc/stat)
    busy=$(awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," ");split(b,y," ");ba=0;bb=0;for(i=2;i<=9;i++){ba+=x[i];bb+=y[i]};ba-=x[5]+x[6];bb-=y[5]+y[6];printf "%.2f",(bb-ba)/100}')
    if awk -v v="$busy" -v l="$QUIET" 'BEGIN{exit !(v<l)}'; then return 0; fi
    waited=$((waited + 1))
  done
  log "box not quiet after ${QUIET_MAX_WAIT}s (busy=$busy cores), running anyway"
}

# -- 3. C++ generator runs ----------------------------------------------------------------
# run_loadgen WHAT ARGS...: one wsc-loadgen run against the processes in PIDFILE (started
# by the caller), its JSON line appended to CPP_OUT; then stops them.
run_loadgen() {
  local what=$1; shift
  wait_quiet
  log "C++ $what"
  timeout 600 "$WSC_LOADGEN" --out "$CPP_OUT" --max-seconds 540 "$@" \
    >/dev/null 2>>"$RES/logs/cpp-loadgen.log" ||
    log "!! C++ $what failed ($?), see $RES/logs/cpp-loadgen.log"
  tail -n 3 "$RES/logs/cpp-loadgen.log" >&2 || true
  stop_pidfile "$PIDFILE"
  sleep 1
}

# start_node IO_THREADS: one wscluster node (FANOUT_NODE_FLAGS: no Redis) on a free port,
# its pid in PIDFILE. Sets NODE_PORT NODE_PID.
start_node() {
  local io=$1
  : > "$PIDFILE"
  NODE_PORT=$(free_port)
  # shellcheck disable=SC2086
  "$WSC_BINARY" --listen="127.0.0.1:$NODE_PORT" --node-id=fanout --io-threads="$io" \
    $FANOUT_NODE_FLAGS >"$RES/logs/wscluster-fanout-$NODE_PORT.log" 2>&1 &
  NODE_PID=$!
  echo "$NODE_PID" >> "$PIDFILE"
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$NODE_PORT/healthz" 2>/dev/null && return 0
    kill -0 "$NODE_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "node on $NODE_PORT did not answer /healthz (log: $RES/logs/wscluster-fanout-$NODE_PORT.log)" >&2
  return 1
}

# fanout_one CLIENTS REP: the fan-out scenario on a fresh node per FANOUT_IO_THREADS value,
# in reverse order in even repetitions (neither value always runs first).
fanout_one() {
  local clients=${1:-1000} rep=$2 io ios=() extra=()
  read -ra ios <<< "$FANOUT_IO_THREADS"
  read -ra extra <<< "$FANOUT_ARGS"
  if (( rep % 2 == 0 )); then mapfile -t ios < <(printf '%s\n' "${ios[@]}" | tac); fi
  for io in "${ios[@]}"; do
    stop_pidfile "$PIDFILE"
    start_node "$io" || { log "!! node did not start for fanout:$clients io-threads=$io rep $rep"; continue; }
    run_loadgen "fanout:$clients io-threads=$io rep=$rep" --scenario fanout --ports "$NODE_PORT" \
      --server-pids "$NODE_PID" --node-io-threads "$io" --label "rep$rep" --clients "$clients" \
      --senders "$FANOUT_SENDERS" --window "$FANOUT_WINDOW" --duration "$FANOUT_DURATION" "${extra[@]}"
  done
}

# floor_one REP: bench/floor.py, the kernel floor of this box without wscluster (a bare
# epoll server: S2's read + ack + delivery at 10k/s and 2k/s, the writes of S3's broadcasts
# and of S4's group messages), its JSON lines appended to CPP_OUT for the goals table.
# FLOOR_DURATION stays 10 s in quick mode too: stime counts in clock ticks.
FLOOR_SHAPES=("--rate 10000" "--rate 2000" "--rate 4 --senders 1 --receivers 5000 --fanout 5000"
              "--rate 250 --senders 100 --receivers 2000 --fanout 20")
floor_one() {
  local rep=$1 args
  for args in "${FLOOR_SHAPES[@]}"; do
    wait_quiet
    log "floor $args rep=$rep"
    # shellcheck disable=SC2086 # args is a list of words
    timeout 120 python3 "$BENCH_HERE/floor.py" --runs 1 --duration "$FLOOR_DURATION" $args \
      --out "$CPP_OUT" >>"$RES/logs/floor.log" 2>&1 || log "!! floor $args failed ($?), see $RES/logs/floor.log"
  done
}

cpp_one() { # scenario[:arg] rep
  local sc=${1%%:*} arg=${1#*:} rep=$2 opts=()
  if [[ $arg == "$1" ]]; then arg=""; fi
  # shellcheck disable=SC2206 # SEARCH_ARGS is a list of words
  case $sc in
    fanout) fanout_one "$arg" "$rep"; return 0 ;;
    floor) floor_one "$rep"; return 0 ;;
    s1) opts=(--n "${arg:-10000}") ;;
    s2) opts=(--rate "${arg:-10000}" --duration "$S2_DURATION" --senders "$S2_SENDERS" --receivers "$S2_RECEIVERS") ;;
    s3) opts=(--clients "${arg:-5000}" --broadcasts "$S3_BROADCASTS") ;;
    s4) opts=(--rate "${arg:-250}" --groups "$S4_GROUPS" --group-size "$S4_GROUP_SIZE" --duration "$S4_DURATION") ;;
    search) opts=(--senders "$S2_SENDERS" --receivers "$S2_RECEIVERS" $SEARCH_ARGS) ;;
  esac
  stop_pidfile "$PIDFILE"
  start_cluster "$PIDFILE" "$RES/logs" || { log "!! cluster did not start for $1 rep $rep"; return 0; }
  run_loadgen "$1 rep=$rep" --scenario "$sc" --ports "$P1,$P2" \
    --server-pids "$NODE1_PID,$NODE2_PID" --redis-pid "$REDIS_PID" --label "rep$rep" "${opts[@]}"
}

harness_rep() { # rep
  local rep=$1 scen=$HARNESS_SCEN hp1 hp2 hrp
  if (( rep == 1 )); then scen="smoke $scen"; fi
  hrp=$(free_port); hp1=$(free_port); hp2=$(free_port)
  log "Node harness rep=$rep: $scen"
  (cd "$WORK/bench-peers" &&
    REDIS_PORT=$hrp P1=$hp1 P2=$hp2 QUIET=$QUIET QUIET_MAX_WAIT=$QUIET_MAX_WAIT \
    S2_DURATION=$S2_DURATION S2_SENDERS=$S2_SENDERS S2_RECEIVERS=$S2_RECEIVERS \
    S3_BROADCASTS=$S3_BROADCASTS S4_GROUPS=$S4_GROUPS S4_GROUP_SIZE=$S4_GROUP_SIZE \
    S4_DURATION=$S4_DURATION \
    timeout 3600 ./bench.sh -r 1 -p "socketio,wsredis,$BENCH_HERE/peer" -s "$scen" -o "$PEERS_OUT" \
      >"$RES/logs/harness-rep$rep.md" 2>"$RES/logs/harness-rep$rep.log") ||
    log "!! harness rep $rep exited $?; see $RES/logs/harness-rep$rep.log"
  grep -E '^!!' "$RES/logs/harness-rep$rep.log" >&2 || true
}

for rep in $(seq 1 "$REPS"); do
  if [[ ${SKIP_CPP:-0} != 1 ]]; then
    for sc in $CPP_SCEN; do cpp_one "$sc" "$rep"; done
  fi
  if [[ ${SKIP_HARNESS:-0} != 1 ]]; then harness_rep "$rep"; fi
done
quick_flag=""; if (( QUICK )); then quick_flag=" -q"; fi
commands+=("bench/run.sh -r $REPS$quick_flag   # everything below")
commands+=("wsc-loadgen --scenario SC --ports P1,P2 --server-pids N1,N2 --redis-pid R ...   # per C++ run: $CPP_SCEN")
commands+=("(copy of shared/bench-peers) ./bench.sh -r 1 -p socketio,wsredis,$BENCH_HERE/peer -s \"$HARNESS_SCEN\"   # per repetition (+smoke in rep 1)")
commands+=("bench/floor.py --runs 1 --duration $FLOOR_DURATION [$(printf '%s | ' "${FLOOR_SHAPES[@]}" | sed 's/ | $//')]   # per repetition: the box's kernel floor")
commands+=("S2: duration ${S2_DURATION}s, ${S2_SENDERS} senders, ${S2_RECEIVERS} receivers; S3: ${S3_BROADCASTS} broadcasts; S4: ${S4_GROUPS} groups x ${S4_GROUP_SIZE}, ${S4_DURATION}s; search: $SEARCH_ARGS")
fanout_flags=""
if [[ " $CPP_SCEN" == *" fanout"* ]]; then
  fanout_flags="--io-threads=N $FANOUT_NODE_FLAGS"
  commands+=("fanout:C (one node per io-threads in: $FANOUT_IO_THREADS): wscluster --io-threads=N $FANOUT_NODE_FLAGS; wsc-loadgen --scenario fanout --ports P --server-pids PID --node-io-threads N --clients C --senders $FANOUT_SENDERS --window $FANOUT_WINDOW --duration $FANOUT_DURATION $FANOUT_ARGS")
fi

# -- 4. report ------------------------------------------------------------------------------
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
FANOUT_FLAGS=$fanout_flags \
python3 - "$RES/meta.json" "$stamp" "$REPS" "$cpu_model" "${commands[@]}" <<'EOF'
import json, os, platform, subprocess, sys
out, stamp, reps, cpu = sys.argv[1:5]
cmds = sys.argv[5:]
def run(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except Exception:
        return "?"
mem = run("free -m | awk '/Mem:/{print $2\" MB\"}'")
meta = {
    "date": stamp, "repetitions": reps,
    "machine": f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.system()} {platform.release()}",
    "fd limit per process": run("ulimit -Hn"),
    "toolchain": run("c++ --version") + "; " + run("node --version") + "; " + run("redis-server --version"),
    "wscluster flags": "--state=redis --cluster-listen=127.0.0.1:0 --client-broadcast=true --rate-limit=0 --max-connections=200000 --max-connections-per-address=0 --handshake-rate-per-address=0 --stored-bytes-rate-per-address=0 --log-level=warn (bench/peer/start.sh)",
    "raw results": os.path.relpath(os.path.dirname(out), os.getcwd()),
    "commands": cmds,
}
if os.environ.get("FANOUT_FLAGS"):
    meta["wscluster flags (fanout: one node)"] = os.environ["FANOUT_FLAGS"]
json.dump(meta, open(out, "w"), indent=1)
EOF
python3 "$BENCH_HERE/report.py" --cpp "$CPP_OUT" --peers "$PEERS_OUT" --meta "$RES/meta.json" --out "$OUT_MD"
if [[ -s $PEERS_OUT ]]; then
  { echo; echo "## Node harness's own report (same data)"; echo;
    node "$BENCH_PEERS/loadgen/report.js" "$PEERS_OUT" 2>/dev/null || true; } >> "$OUT_MD"
fi
log "results: $OUT_MD (raw: $RES)"
