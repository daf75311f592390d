#!/usr/bin/env bash
# wscluster fault suite: one command. Starts Redis (AOF, fsync always) and a
# 3-node cluster per scenario on 127.0.0.1, runs ~300 clients, prints the
# report table, writes build/faults/report.json and build/faults/report.md.
# Exit status 0 only when every acceptance point holds.
#
#   tests/faults/run.sh            # full suite (~6 min)
#   tests/faults/run.sh --quick    # CI mode (< 2.5 min)
#   tests/faults/run.sh --help     # options (--only, --clients, --rate, --seed, --out)
#
# The node binary is $WSC_BINARY (default build/wscluster). It is copied first,
# so a rebuild during the run cannot swap it under a node being restarted.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${WSC_BINARY:-$ROOT/build/wscluster}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
if [[ ! -x "$BIN" || ! -s "$BIN" ]]; then
  echo "run.sh: node binary $BIN missing or empty (build it: ninja -C build wscluster)" >&2
  exit 2
fi
SNAP_DIR="$ROOT/build/faults/bin"
mkdir -p "$SNAP_DIR"
SNAP="$SNAP_DIR/wscluster.$$"
cp "$BIN" "$SNAP"
trap 'rm -f "$SNAP"' EXIT
export WSC_BINARY="$SNAP"
export WSC_BINARY_SOURCE="$BIN"
export PYTHONDONTWRITEBYTECODE=1
/usr/bin/python3 "$ROOT/tests/faults/faults.py" "$@"
