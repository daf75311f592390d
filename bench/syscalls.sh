#!/usr/bin/env bash
# The kernel floor of one S2 run: per delivered message, each process's user and
# kernel CPU (/proc/PID/stat) and its system calls by name (perf stat on the
# syscalls tracepoints), measured over a window in the middle of the load.
# Starts a fresh Redis + two nodes on 127.0.0.1 (as bench/ab.sh does), runs
# wsc-loadgen s2, stops only what it started.
#
#   bench/syscalls.sh [BINARY] [-- loadgen options]
#     BINARY        default build-release/wscluster
#   Env: RATE (default 10000), WINDOW (seconds measured, default 5),
#        WSC_LOADGEN (default build-release/bench/wsc-loadgen). Needs perf.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

bin=$repo/build-release/wscluster
if (( $# > 0 )) && [[ $1 != -- ]]; then bin=$1; shift; fi
if [[ ${1:-} == -- ]]; then shift; fi
rate=${RATE:-10000} window=${WINDOW:-5}
loadgen=${WSC_LOADGEN:-$repo/build-release/bench/wsc-loadgen}
command -v perf >/dev/null || { echo "syscalls.sh: needs perf (linux-perf)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/wsc-syscalls.XXXXXX")
pidfile=$work/pids
trap 'stop_pidfile "$pidfile"' EXIT

rp=$(free_port); p1=$(free_port); p2=$(free_port)
start_redis "$rp" "$pidfile" "$work"
common=(--state=redis "--redis=redis://127.0.0.1:$rp" --cluster-listen=127.0.0.1:0
        --rate-limit=0 --max-connections=200000 --log-level=warn)
read -ra per_address <<< "$(load_flags "$bin")"
common+=("${per_address[@]}")
"$bin" --listen="127.0.0.1:$p1" --node-id=n1 "${common[@]}" >"$work/n1.log" 2>&1 &
echo $! >> "$pidfile"
"$bin" --listen="127.0.0.1:$p2" --node-id=n2 "${common[@]}" >"$work/n2.log" 2>&1 &
echo $! >> "$pidfile"
mapfile -t pids < "$pidfile"
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$p1/api/nodes" 2>/dev/null | grep -q '"n2"' && break
  sleep 0.1
done
timeout 120 "$loadgen" --scenario s2 --ports "$p1,$p2" --server-pids "${pids[1]},${pids[2]}" \
  --redis-pid "${pids[0]}" --label syscalls --out "$work/run.jsonl" --max-seconds 100 \
  --rate "$rate" --duration $((window + 7)) --senders 100 --receivers 1000 "$@" \
  >/dev/null 2>"$work/loadgen.log" &
lg=$!
sleep 4 # connected, warmed up

events=raw_syscalls:sys_enter
for s in sendmsg recvmsg epoll_wait epoll_ctl sendto recvfrom write read writev futex timerfd_settime; do
  events+=",syscalls:sys_enter_$s"
done
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # utime stime
names=(redis node1 node2)
declare -a before perfs
for i in 0 1 2; do before[i]=$(ticks "${pids[i]}"); done
for i in 0 1 2; do
  perf stat -e "$events" -p "${pids[i]}" -o "$work/perf.${names[i]}" -- sleep "$window" &
  perfs[i]=$!
done
wait "${perfs[@]}"
declare -a after
for i in 0 1 2; do after[i]=$(ticks "${pids[i]}"); done
wait "$lg" || echo "syscalls.sh: loadgen failed, see $work/loadgen.log" >&2

msgs=$((rate * window))
hz=$(getconf CLK_TCK)
echo "S2 at $rate/s, a ${window}s window = $msgs messages (per message; binary $bin)"
for i in 1 2 0; do
  python3 - "${names[i]}" "${before[i]}" "${after[i]}" "$work/perf.${names[i]}" "$msgs" "$hz" <<'PY'
import re, sys
name, before, after, path, msgs, hz = sys.argv[1:]
msgs, hz = int(msgs), int(hz)
bu, bs = map(int, before.split()); au, as_ = map(int, after.split())
counts = {}
for line in open(path):
    m = re.match(r"\s*([\d,]+)\s+(\S+)", line)
    if m:
        counts[m.group(2)] = int(m.group(1).replace(",", ""))
total = counts.pop("raw_syscalls:sys_enter", 0)
parts = ", ".join("%s %.2f" % (k.split("sys_enter_")[1], v / msgs)
                  for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v)
print("%-6s user %5.1f us  sys %5.1f us  syscalls %5.2f: %s"
      % (name, (au - bu) / hz * 1e6 / msgs, (as_ - bs) / hz * 1e6 / msgs, total / msgs, parts))
PY
done
echo "runs and logs: $work"
