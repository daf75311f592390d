#!/usr/bin/env bash
# Redis time per durable message of the `append_batch` script alone, with
# redis-benchmark (bench/PROFILE.md, "Redis key layout 4"): a private Redis on
# a free 127.0.0.1 port, 1000 receivers online (one binding each), EVALSHA of
# the script as adapters/redis_scripts.hpp builds it (via bench/redis_cost.py),
# M messages per call of 100 bytes, one receiver each, 20 clients, pipeline 8.
# Prints Redis' time per message (INFO commandstats: EVALSHA usec / M) and the
# redis-server's CPU per message (/proc/PID/stat over the run), then the
# commands inside.
#
#   bench/append_batch_cost.sh [-n CALLS] [-m M] [-d]
#     -n CALLS  EVALSHA calls (default 20000)
#     -m M      messages per call (default 16)
#     -d        each receiver has an inbox (entry 0-1) and a device cursor
#               already (durable resume)
# The arguments are layout 4's (the packed entry, the uids' key bases): run it
# from a tree of that layout. Only the redis-server it started is stopped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

calls=20000 per=16 devices=0
while getopts "n:m:d" opt; do
  case $opt in
    n) calls=$OPTARG ;;
    m) per=$OPTARG ;;
    d) devices=1 ;;
    *) exit 2 ;;
  esac
done

work=$(mktemp -d /tmp/wsc-append-cost.XXXXXX)
port=$(free_port)
trap 'stop_pidfile "$work/pids"; rm -rf "$work"' EXIT
start_redis "$port" "$work/pids" "$work"
redis_pid=$(head -1 "$work/pids")
cli() { redis-cli -p "$port" "$@"; }

for i in $(seq 0 999); do
  printf 'HSET P:{u:u%012d}:b c1 n1|1\n' "$i"
  if (( devices )); then
    printf 'XADD P:{u:u%012d}:in 0-1 m x\n' "$i"
    printf 'HSET P:{u:u%012d}:cur d1 1\n' "$i"
  fi
done | cli >/dev/null
sha=$(cli script load "$(cd "$here" && python3 -c \
  'import redis_cost; print(redis_cost.script_sources()["append_batch"], end="")')")
now=$(date +%s%3N)
data='{"text":"'$(printf 'x%.0s' $(seq 88))'"}'
args=()
for m in $(seq 1 "$per"); do
  id="m-$m"
  # redis-benchmark puts a random number (0..999, 12 digits) per __rand_int__.
  args+=("$now,0,${#id},5,0,${id}alice$data" 1 "P:{u:u__rand_int__}:")
done
cli config resetstat >/dev/null
cpu0=$(awk '{print $14 + $15}' "/proc/$redis_pid/stat")
redis-benchmark -p "$port" -c 20 -P 8 -n "$calls" -r 1000 -q \
  EVALSHA "$sha" 1 'P:{u:x}:' P 1000 $((now - 3600000)) 86400000 1048576 \
  "${args[@]}" >/dev/null
cpu1=$(awk '{print $14 + $15}' "/proc/$redis_pid/stat")
stats=$(cli info commandstats)
usec=$(sed -n 's/^cmdstat_evalsha:calls=[0-9]*,usec=\([0-9]*\),.*/\1/p' <<<"$stats")
failed=$(sed -n 's/^cmdstat_evalsha:.*failed_calls=\([0-9]*\).*/\1/p' <<<"$stats")
msgs=$((calls * per))
awk -v u="$usec" -v c=$((cpu1 - cpu0)) -v t="$(getconf CLK_TCK)" -v n="$msgs" \
  -v f="$failed" -v m="$per" 'BEGIN {
    printf "append_batch, %d per call: %.2f us/msg (commandstats), %.2f us/msg (redis-server CPU), %d failed calls\n",
      m, u / n, c * 1e6 / t / n, f }'
grep -E '^cmdstat_' <<<"$stats" | grep -vE 'config|evalsha|script|hset|info' |
  sed -E 's/^cmdstat_([^:]*):calls=([0-9]*),usec=([0-9]*),.*/\1 \2 \3/' |
  awk -v n="$msgs" '{ printf "  %-8s %.2f calls/msg %.2f us/msg\n", $1, $2 / n, $3 / n }'
