#!/usr/bin/env bash
# Configures and builds wscluster into build/ (the contract's build/wscluster).
set -euo pipefail
cd "$(dirname "$0")/.."
build_type=${WSC_BUILD_TYPE:-RelWithDebInfo}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type" >/dev/null
ninja -C build "$@"
