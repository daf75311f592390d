#!/usr/bin/env bash
# One command for issue 7's benchmark: builds Release (wscluster + wsc-loadgen), then for
# each repetition runs the C++ load generator's scenarios against a fresh Redis + 2-node
# wscluster, and the shared Node harness (../shared/bench-peers) with socketio, wsredis
# and wscluster (bench/peer) -- same machine, same run -- and writes bench/RESULTS.md.
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
#   SKIP_HARNESS=1, SKIP_CPP=1.
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
  CPP_SCEN=${CPP_SCEN:-"s1:2000 s2:2000 s2:20000 s3:1000 s4:250 search"}
  HARNESS_SCEN=${HARNESS_SCEN:-"s1:2000 s2:2000 s3:1000 s4:250"}
  export S2_DURATION=${S2_DURATION:-3} S4_DURATION=${S4_DURATION:-3} S3_BROADCASTS=${S3_BROADCASTS:-5}
  SEARCH_ARGS=${SEARCH_ARGS:-"--duration 2 --search-steps 4"}
else
  CPP_SCEN=${CPP_SCEN:-"s1:10000 s2:2000 s2:5000 s2:10000 s2:50000 s3:5000 s4:250 search"}
  HARNESS_SCEN=${HARNESS_SCEN:-"s1:2000 s1:10000 s2:2000 s2:5000 s2:10000 s3:5000 s4:250"}
  SEARCH_ARGS=${SEARCH_ARGS:-"--duration 5 --search-steps 9"}
fi
S2_DURATION=${S2_DURATION:-10}; S2_SENDERS=${S2_SENDERS:-100}; S2_RECEIVERS=${S2_RECEIVERS:-1000}
S3_BROADCASTS=${S3_BROADCASTS:-20}; S4_GROUPS=${S4_GROUPS:-100}; S4_GROUP_SIZE=${S4_GROUP_SIZE:-20}
S4_DURATION=${S4_DURATION:-10}

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
cpp_one() { # scenario[:arg] rep
  local sc=${1%%:*} arg=${1#*:} rep=$2 opts=()
  if [[ $arg == "$1" ]]; then arg=""; fi
  case $sc in
    s1) opts=(--n "${arg:-10000}") ;;
    s2) opts=(--rate "${arg:-10000}" --duration "$S2_DURATION" --senders "$S2_SENDERS" --receivers "$S2_RECEIVERS") ;;
    s3) opts=(--clients "${arg:-5000}" --broadcasts "$S3_BROADCASTS") ;;
    s4) opts=(--rate "${arg:-250}" --groups "$S4_GROUPS" --group-size "$S4_GROUP_SIZE" --duration "$S4_DURATION") ;;
    # shellcheck disable=SC2206
    search) opts=(--senders "$S2_SENDERS" --receivers "$S2_RECEIVERS" $SEARCH_ARGS) ;;
  esac
  stop_pidfile "$PIDFILE"
  start_cluster "$PIDFILE" "$RES/logs" || { log "!! cluster did not start for $1 rep $rep"; return 0; }
  wait_quiet
  log "C++ $1 rep=$rep"
  timeout 600 "$WSC_LOADGEN" --scenario "$sc" --ports "$P1,$P2" \
    --server-pids "$NODE1_PID,$NODE2_PID" --redis-pid "$REDIS_PID" --label "rep$rep" \
    --out "$CPP_OUT" --max-seconds 540 "${opts[@]}" >/dev/null 2>>"$RES/logs/cpp-loadgen.log" ||
    log "!! C++ $1 rep=$rep failed ($?), see $RES/logs/cpp-loadgen.log"
  tail -n 3 "$RES/logs/cpp-loadgen.log" >&2 || true
  stop_pidfile "$PIDFILE"
  sleep 1
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
commands+=("S2: duration ${S2_DURATION}s, ${S2_SENDERS} senders, ${S2_RECEIVERS} receivers; S3: ${S3_BROADCASTS} broadcasts; S4: ${S4_GROUPS} groups x ${S4_GROUP_SIZE}, ${S4_DURATION}s; search: $SEARCH_ARGS")

# -- 4. report ------------------------------------------------------------------------------
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
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
    "wscluster flags": "--state=redis --cluster-listen=127.0.0.1:0 --client-broadcast=true --rate-limit=0 --max-connections=200000 --max-connections-per-address=0 --log-level=warn (bench/peer/start.sh)",
    "raw results": os.path.relpath(os.path.dirname(out), os.getcwd()),
    "commands": cmds,
}
json.dump(meta, open(out, "w"), indent=1)
EOF
python3 "$BENCH_HERE/report.py" --cpp "$CPP_OUT" --peers "$PEERS_OUT" --meta "$RES/meta.json" --out "$OUT_MD"
if [[ -s $PEERS_OUT ]]; then
  { echo; echo "## Node harness's own report (same data)"; echo;
    node "$BENCH_PEERS/loadgen/report.js" "$PEERS_OUT" 2>/dev/null || true; } >> "$OUT_MD"
fi
log "results: $OUT_MD (raw: $RES)"
