# shellcheck shell=bash
# Helpers for bench/run.sh and bench/smoke.sh. Only processes whose pids these scripts
# recorded in a pidfile are ever stopped. Everything listens on 127.0.0.1.
BENCH_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_HERE/.." && pwd)"

# free_port: prints a TCP port that is free on 127.0.0.1 right now
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# load_flags BINARY: node flags that lift the per-address limits, for load that
# comes from one address (127.0.0.1); only those the binary knows (A/Bs run
# older binaries).
load_flags() {
  local flags="--max-connections-per-address=0" help
  # Read whole first: `--help | grep -q` under pipefail fails whenever grep
  # quits before the binary's last write (SIGPIPE), which dropped the flag.
  help=$("$1" --help 2>&1)
  local limit
  for limit in handshake-rate-per-address stored-bytes-rate-per-address; do
    if grep -q -- "--$limit" <<< "$help"; then
      flags+=" --$limit=0"
    fi
  done
  echo "$flags"
}

# start_redis PORT PIDFILE LOGDIR: private, non-persistent Redis; appends its pid
start_redis() {
  local port=$1 pidfile=$2 logdir=$3
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --protected-mode yes \
    --daemonize no --maxclients 10000 >"$logdir/redis-$port.log" 2>&1 &
  echo $! >> "$pidfile"
  for _ in $(seq 1 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis on $port did not start (log: $logdir/redis-$port.log)" >&2
  return 1
}

# stop_pidfile FILE: stops the pids in FILE in reverse order of their lines (the nodes
# before the Redis they write their state to on the way out): TERM, KILL after 8 s.
# Safe under `set -e`.
stop_pidfile() {
  local f=$1 pid i j k alive
  local pids=()
  if [[ ! -f $f ]]; then return 0; fi
  mapfile -t pids < "$f"
  for (( i = ${#pids[@]} - 1; i >= 0; i-- )); do
    pid=${pids[i]}
    if [[ -z $pid ]]; then continue; fi
    kill -TERM "$pid" 2>/dev/null || true
    # the nodes (every line but the first) stop together; then the first line (Redis)
    if (( i <= 1 )); then
      for (( j = 0; j < 80; j++ )); do
        alive=0
        for (( k = i; k < ${#pids[@]}; k++ )); do
          if [[ -n ${pids[k]} ]] && kill -0 "${pids[k]}" 2>/dev/null; then alive=1; fi
        done
        if (( alive == 0 )); then break; fi
        sleep 0.1
      done
      for (( k = i; k < ${#pids[@]}; k++ )); do
        if [[ -n ${pids[k]} ]]; then kill -KILL "${pids[k]}" 2>/dev/null || true; fi
      done
    fi
  done
  rm -f "$f"
  return 0
}

# start_cluster PIDFILE LOGDIR: fresh Redis + 2 wscluster nodes on free ports.
# Sets REDIS_PORT P1 P2 REDIS_PID NODE1_PID NODE2_PID. Needs WSC_BINARY.
start_cluster() {
  local pidfile=$1 logdir=$2
  : > "$pidfile"
  REDIS_PORT=$(free_port); P1=$(free_port); P2=$(free_port)
  while [[ $P1 == "$REDIS_PORT" ]]; do P1=$(free_port); done
  while [[ $P2 == "$P1" || $P2 == "$REDIS_PORT" ]]; do P2=$(free_port); done
  start_redis "$REDIS_PORT" "$pidfile" "$logdir" || return 1
  LOG_DIR=$logdir BENCH_DIR='' "$BENCH_HERE/peer/start.sh" "$P1" "$P2" "$REDIS_PORT" "$pidfile" || return 1
  mapfile -t _pids < "$pidfile"
  REDIS_PID=${_pids[0]}; NODE1_PID=${_pids[1]}; NODE2_PID=${_pids[2]}
}
