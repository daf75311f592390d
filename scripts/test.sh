#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite: the
# deterministic actor tests and the integration tests (real node processes,
# real redis-server on free ports, real WebSocket clients over loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure --timeout 900 -j "${WSC_TEST_JOBS:-2}" "$@")
# The same unit and integration tests under ASan + UBSan, in build-asan/.
if [ -z "${WSC_SKIP_SANITIZE:-}" ]; then
  # Two tests at a time, as above: most of an integration test's time is
  # waiting (timeouts, heartbeats), and both cores stay busy.
  WSC_ASAN_JOBS=${WSC_ASAN_JOBS:-2} WSC_TEST_JOBS=${WSC_TEST_JOBS:-2} \
    scripts/sanitize.sh
fi
