#!/usr/bin/env bash
# The ten-node run of issue 15 (acceptance 3), one command: a Redis Cluster of
# 3 masters + 3 replicas, 2, 4 and 10 wscluster nodes in turn with 10,000
# connections, CPU per delivery, then kill -9 of three nodes and a Redis
# master under load. Writes build/tennode/report.{json,md} and the section
# between <!-- tennode:begin --> and <!-- tennode:end --> in docs/scaling.md.
#
#   bench/tennode.sh             # full (~12 min on 2 cores)
#   bench/tennode.sh --quick     # CI mode (< 3 min): 1,000 connections, checks asserted
#   bench/tennode.sh --help      # options
#
# The node binary is $WSC_BINARY (default build/wscluster), copied first so a
# rebuild during the run cannot swap it; the idle connections come from
# $WSC_LOADGEN (default build/bench/wsc-loadgen).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tests/faults/snapshot.sh
source "$ROOT/tests/faults/snapshot.sh"
snapshot_node_binary tennode.sh tennode
# 10,000 connections: the nodes and the generator need the descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export PYTHONDONTWRITEBYTECODE=1
/usr/bin/python3 "$ROOT/bench/tennode.py" "$@"
