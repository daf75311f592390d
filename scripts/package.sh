#!/usr/bin/env bash
# Builds the operator package (build/wscluster_<version>_<arch>.deb): the
# binary, web files, JS client, example INI and systemd unit. Extra arguments
# go to cpack (e.g. -B /tmp/out for another output folder).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
cd build
cpack -G DEB "$@"
ls -1 "$PWD"/wscluster_*.deb 2>/dev/null || true
