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
# shellcheck source=tests/faults/snapshot.sh
source "$ROOT/tests/faults/snapshot.sh"
snapshot_node_binary run.sh faults
export PYTHONDONTWRITEBYTECODE=1
/usr/bin/python3 "$ROOT/tests/faults/faults.py" "$@"
