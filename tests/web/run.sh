#!/usr/bin/env bash
# Browser end-to-end tests of the demo chat and the dashboard, plus the /metrics format
# check: installs what is missing (Debian's chromium and redis-server, as root), runs
# `npm ci` here, then node's test runner. Extra arguments go to `node --test`.
#
# Env: WSC_BINARY (node binary, default <repo>/build/wscluster), WSC_CHROMIUM (default
# /usr/bin/chromium), WSC_WEB_ARTIFACTS (screenshots, default <repo>/build/web-artifacts).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chromium="${WSC_CHROMIUM:-/usr/bin/chromium}"

if ! command -v node >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "tests/web: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

missing=()
[ -x "$chromium" ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/web: missing ${missing[*]}; run as root to install them, or: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "tests/web: installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -q
  timeout 900 apt-get install -y -q "${missing[@]}"
fi

cd "$here"
timeout 600 npm ci --no-audit --no-fund --loglevel=error
exec timeout 900 node --test --test-concurrency=1 --test-timeout=300000 "$@" ./*.test.js
