#!/usr/bin/env bash
# A/B of two wscluster binaries on one C++ load-generator scenario, interleaved
# (A, B, A, B, ...) so that the noise of this shared machine hits both alike.
# Each run: a fresh Redis + two nodes on 127.0.0.1, then wsc-loadgen. Prints
# each run's line and the medians of the servers' CPU per message.
#
#   bench/ab.sh OLD_BIN NEW_BIN [-r REPS] [-s SCENARIO] [-- loadgen options]
#     -r REPS       runs per binary (default 3)
#     -s SCENARIO   s2 (default), s3 or s4 (loadgen --scenario)
#   Env: WSC_LOADGEN (default build/bench/wsc-loadgen), A_FLAGS / B_FLAGS (extra
#   node flags per binary, e.g. options the old one does not know; the same
#   binary twice with different flags A/Bs an option, e.g.
#   B_FLAGS="--max-connections-per-address=0 --scheduler-policy=loop").
# Also prints the servers' voluntary context switches per delivered message
# (both nodes, all threads, over the load-generator run); WSC_AB_THREADS=1
# also lists them per thread name (runs and logs folder, LABEL.threads);
# WSC_AB_REDIS_STATS=1 prints Redis' INFO commandstats of each run (calls and
# microseconds per command, reset before the load generator starts).
# Every run is bounded (loadgen --max-seconds, timeout); only the processes this
# script started are stopped, by pid.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

old=${1:?OLD_BIN}; new=${2:?NEW_BIN}; shift 2
reps=3 scenario=s2
while (( $# )); do
  case $1 in
    -r) reps=$2; shift 2 ;;
    -s) scenario=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "ab.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
loadgen=${WSC_LOADGEN:-$repo/build/bench/wsc-loadgen}
extra=("$@")
if (( ${#extra[@]} == 0 )); then
  case $scenario in
    s2) extra=(--rate 5000 --duration 10 --senders 100 --receivers 1000) ;;
    s3) extra=(--clients 2000 --broadcasts 5) ;;
    s4) extra=(--rate 250 --groups 20 --group-size 50 --duration 10) ;;
  esac
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/wsc-ab.XXXXXX")
pidfile=$work/pids
trap 'stop_pidfile "$pidfile"' EXIT

ctx_switches() { # pids: sum of voluntary_ctxt_switches over all their threads
  local pid sum=0 n
  for pid in "$@"; do
    for n in $(awk '/^voluntary_ctxt_switches/ {print $2}' /proc/"$pid"/task/*/status 2>/dev/null); do
      sum=$((sum + n))
    done
  done
  echo "$sum"
}

thread_switches() { # pids: "name switches" per thread, summed by name
  local pid task
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*; do
      printf '%s %s\n' "$(tr ' ' _ < "$task/comm" 2>/dev/null)" \
        "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status" 2>/dev/null)"
    done
  done | awk 'NF == 2 {s[$1] += $2} END {for (k in s) print k, s[k]}' | sort
}

run_one() { # label binary flags
  local label=$1 bin=$2 flags=$3 rp p1 p2 common per_address
  : > "$pidfile"
  rp=$(free_port); p1=$(free_port); p2=$(free_port)
  start_redis "$rp" "$pidfile" "$work" || return 1
  common=(--state=redis "--redis=redis://127.0.0.1:$rp" --cluster-listen=127.0.0.1:0
          --rate-limit=0 --max-connections=200000 --log-level=warn)
  read -ra per_address <<< "$(load_flags "$bin")"
  common+=("${per_address[@]}")
  # shellcheck disable=SC2086
  "$bin" --listen="127.0.0.1:$p1" --node-id=n1 "${common[@]}" $flags >"$work/$label-n1.log" 2>&1 &
  echo $! >> "$pidfile"
  # shellcheck disable=SC2086
  "$bin" --listen="127.0.0.1:$p2" --node-id=n2 "${common[@]}" $flags >"$work/$label-n2.log" 2>&1 &
  echo $! >> "$pidfile"
  mapfile -t pids < "$pidfile"
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$p1/api/nodes" 2>/dev/null | grep -q '"n2"' &&
       curl -fsS "http://127.0.0.1:$p2/api/nodes" 2>/dev/null | grep -q '"n1"'; then break; fi
    sleep 0.1
  done
  local cs0 cs1
  cs0=$(ctx_switches "${pids[1]}" "${pids[2]}")
  [[ ${WSC_AB_THREADS:-0} == 1 ]] && thread_switches "${pids[1]}" "${pids[2]}" > "$work/$label.threads0"
  [[ ${WSC_AB_REDIS_STATS:-0} == 1 ]] && redis-cli -p "$rp" config resetstat >/dev/null
  timeout 300 "$loadgen" --scenario "$scenario" --ports "$p1,$p2" \
    --server-pids "${pids[1]},${pids[2]}" --redis-pid "${pids[0]}" --label "$label" \
    --out "$work/$label.jsonl" --max-seconds 240 "${extra[@]}" >/dev/null 2>>"$work/loadgen.log" ||
    echo "!! $label: loadgen failed ($?), see $work/loadgen.log" >&2
  cs1=$(ctx_switches "${pids[1]}" "${pids[2]}")
  if [[ ${WSC_AB_REDIS_STATS:-0} == 1 ]]; then
    redis-cli -p "$rp" info commandstats | tr -d '\r' | grep '^cmdstat_' > "$work/$label.redis"
    echo "$label redis: $(awk -F'[:,=]' '{printf "%s calls=%s usec=%s per_call=%s; ", $1, $3, $5, $7}' "$work/$label.redis")"
  fi
  if [[ ${WSC_AB_THREADS:-0} == 1 ]]; then
    thread_switches "${pids[1]}" "${pids[2]}" |
      join -a1 - "$work/$label.threads0" | awk '{print $1, $2 - ($3 == "" ? 0 : $3)}' > "$work/$label.threads"
    echo "$label switches per thread name: $(tr '\n' ' ' < "$work/$label.threads")"
  fi
  echo $((cs1 - cs0)) > "$work/$label.ctxsw"
  stop_pidfile "$pidfile"
  sleep 1
}

for r in $(seq 1 "$reps"); do
  run_one "A$r" "$old" "${A_FLAGS:-}"
  run_one "B$r" "$new" "${B_FLAGS:---max-connections-per-address=0}"
done

python3 - "$work" "$reps" <<'EOF'
import json, statistics, sys, glob, os
work, reps = sys.argv[1], int(sys.argv[2])
def values(prefix, key):
    out = []
    for r in range(1, reps + 1):
        path = os.path.join(work, "%s%d.jsonl" % (prefix, r))
        if not os.path.exists(path):
            continue
        for line in open(path):
            rec = json.loads(line)
            v = rec.get("cpu", {}).get(key)
            if v is not None:
                out.append(v)
    return out
for key in ("servers_cpu_us_per_msg", "servers_plus_redis_cpu_us_per_msg"):
    a, b = values("A", key), values("B", key)
    if a and b:
        ma, mb = statistics.median(a), statistics.median(b)
        print("%-36s A %s -> median %.1f | B %s -> median %.1f | B/A %.2f"
              % (key, a, ma, b, mb, mb / ma))
    else:
        print("%-36s missing (A %s, B %s)" % (key, a, b))
def switches(prefix):
    out = []
    for r in range(1, reps + 1):
        path = os.path.join(work, "%s%d" % (prefix, r))
        if not (os.path.exists(path + ".ctxsw") and os.path.exists(path + ".jsonl")):
            continue
        delivered = sum(json.loads(l).get("delivered", 0) for l in open(path + ".jsonl"))
        if delivered:
            out.append(round(int(open(path + ".ctxsw").read()) / delivered, 2))
    return out
a, b = switches("A"), switches("B")
if a and b:
    print("%-36s A %s -> median %.2f | B %s -> median %.2f"
          % ("ctx_switches_per_msg", a, statistics.median(a), b, statistics.median(b)))
print("runs and logs: " + work)
EOF
