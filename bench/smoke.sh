#!/usr/bin/env bash
# Quick correctness smoke of every wsc-loadgen scenario against a fresh Redis + 2-node
# wscluster (state=redis). Checks only that everything was delivered exactly once
# (wsc-loadgen --check): no timing assertions. Each scenario gets its own cluster.
# Usage: bench/smoke.sh [s1 s2 s3 s4 search]     (default: s1 s2 s3 s4)
# Env: WSC_BINARY (default build/wscluster), WSC_LOADGEN (default build/bench/wsc-loadgen)
set -uo pipefail
source "$(dirname "$0")/lib.sh"
WSC_BINARY=${WSC_BINARY:-$REPO_ROOT/build/wscluster}
WSC_LOADGEN=${WSC_LOADGEN:-$REPO_ROOT/build/bench/wsc-loadgen}
export WSC_BINARY
for f in "$WSC_BINARY" "$WSC_LOADGEN"; do
  [[ -x $f ]] || { echo "smoke: missing $f (set WSC_BINARY / WSC_LOADGEN)" >&2; exit 2; }
done
command -v redis-server >/dev/null || { echo "smoke: redis-server not installed" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/wsc-bench-smoke.XXXXXX")
pidfile=$work/pids
cleanup() { stop_pidfile "$pidfile"; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

scenarios=("$@")
(( ${#scenarios[@]} )) || scenarios=(s1 s2 s3 s4)
failed=0
for sc in "${scenarios[@]}"; do
  case $sc in
    s1) args=(--n 50 --settle 0.5) ;;
    s2) args=(--rate 200 --duration 2 --senders 5 --receivers 20) ;;
    s3) args=(--clients 20 --broadcasts 3 --gap-ms 50) ;;
    # --group-self 0: the smoke checks the tool, not the contract; it passes whether or not
    # the server echoes a group message to the publishing connection (benchmarks default to 1)
    s4) args=(--groups 4 --group-size 5 --rate 40 --duration 2 --group-self 0) ;;
    search) args=(--senders 5 --receivers 20 --duration 1 --search-from 200 --search-steps 2 --search-max 400) ;;
    *) echo "smoke: unknown scenario $sc" >&2; exit 2 ;;
  esac
  if ! start_cluster "$pidfile" "$work"; then
    echo "smoke $sc: cluster did not start; logs:" >&2; tail -n 20 "$work"/*.log >&2; exit 1
  fi
  echo "== smoke $sc (nodes $P1 $P2, redis $REDIS_PORT)" >&2
  if timeout 90 "$WSC_LOADGEN" --scenario "$sc" --ports "$P1,$P2" \
       --server-pids "$NODE1_PID,$NODE2_PID" --redis-pid "$REDIS_PID" \
       --max-seconds 60 --drain-idle 1 --drain-max 5 --check --label smoke "${args[@]}" \
       > "$work/$sc.json"; then
    echo "smoke $sc: ok" >&2
  else
    rc=$?
    echo "smoke $sc: FAILED (exit $rc): $(cat "$work/$sc.json")" >&2
    tail -n 20 "$work"/wscluster-*.log >&2
    failed=1
  fi
  stop_pidfile "$pidfile"
done
exit $failed
