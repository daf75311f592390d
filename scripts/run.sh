#!/usr/bin/env bash
# Quick start: install what is missing, build, start one node on the embedded
# default (in-memory state, ws://127.0.0.1:8080/ws). Extra arguments go to
# the node, e.g. scripts/run.sh --listen=127.0.0.1:9000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh wscluster
exec build/wscluster "$@"
