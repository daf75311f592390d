#!/usr/bin/env bash
# Installs every Debian package that building, running and testing wscluster
# needs. Idempotent: quiet and quick when everything is present.
set -euo pipefail

packages=(
  # build
  cmake ninja-build g++ pkg-config
  libcaf-dev libboost1.81-dev libhiredis-dev nlohmann-json3-dev
  libspdlog-dev libssl-dev libjemalloc-dev
  # run and test
  redis-server python3 procps openssl iproute2
  # the PHP example backend (examples/php/) and its integration test
  php-cli
  # browser tests of the demo and dashboard
  chromium
  # fuzzing (libFuzzer) and the RFC 6455 reference server (Beast's examples)
  clang libclang-rt-14-dev libboost1.81-doc
)
# The JS client and browser tests need Node.js (>= 20 on the machines we
# test on); Debian's own is only installed where there is none.
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
