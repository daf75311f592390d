#!/usr/bin/env bash
# Tests of the JS client against real wscluster nodes: `npm ci` (installs the `ws`
# devDependency) then node's test runner. Extra arguments go to `node --test`.
# Env: WSC_BINARY (node binary, default <repo>/build/wscluster).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
timeout 600 npm ci --no-audit --no-fund --loglevel=error
exec timeout 600 node --test --test-concurrency=1 --test-timeout=120000 "$@" test/*.test.js
