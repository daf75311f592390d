#!/usr/bin/env bash
# Builds wscluster with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/ (-DWSC_SANITIZE=ON, Debug) and runs the unit tests and the
# integration tests against that build (WSC_BINARY = the ASan node binary).
#
#   scripts/sanitize.sh                  # build + every unit and integration test
#   scripts/sanitize.sh -R test_security # extra arguments go to ctest
#   WSC_SANITIZE_BUILD_ONLY=1 scripts/sanitize.sh
#
# Any ASan/UBSan/LSan report aborts the process that hit it (abort_on_error,
# halt_on_error), so a finding fails the test that triggered it; failing
# tests print their nodes' log tails, which hold the report. The whole ctest
# output is kept in build-asan/sanitize.log and the reports are listed at the
# end, with those found in any node log (kept in build-asan/test-tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${WSC_ASAN_BUILD_DIR:-build-asan}
jobs=${WSC_ASAN_JOBS:-1}
mkdir -p "$build"

# -- one known false alarm in CAF 0.17.6's headers ---------------------------------
# caf/detail/init_fun_factory.hpp stores a null shared_ptr<std::tuple<>> when
# a function-based actor is spawned without arguments (e.g. spawn(memory_store))
# and then binds `*args_` to a `std::tuple<>&`: formally "reference binding to
# null pointer", never read. With -fno-sanitize-recover=undefined (CMakeLists)
# UBSan aborts there before any test can run, and suppressions only work for
# recoverable checks. So the `null` check is made recoverable (the launcher
# below appends -fsanitize-recover=null after CMake's flags) and only that
# header is suppressed; halt_on_error=1 keeps every other report fatal.
# Once CMakeLists.txt itself adds -fsanitize-recover=null the launcher is off.
supp="$root/$build/ubsan.supp"
# Matched against function or source file names; long CAF names are often
# left mangled by the runtime, hence the mangled spelling as well.
cat >"$supp" <<'EOF'
null:std::__shared_ptr_access<std::tuple<>*
null:_ZNKSt19__shared_ptr_accessISt5tupleIJEE*
null:/usr/include/caf/detail/init_fun_factory.hpp
EOF
# -- one known leak of CAF 0.17.6 at exit ------------------------------------------
# Now and then (seen with TLS nodes; 1 in 3 fresh-clone runs before, once in
# ~20 runs of test_cluster_port under sharing) the BASP broker is still alive
# when a node exits: LSan reports it and its own tables as indirect leaks (a
# cycle, no root of ours). Until the 18th session this was suppressed as
# `leak:libcaf_openssl.so`, the module its spawn is attributed to; our TLS no
# longer uses that library, so the broker is named instead. Every other leak
# stays fatal.
lsan_supp="$root/$build/lsan.supp"
echo 'leak:caf::io::basp_broker' >"$lsan_supp"
export LSAN_OPTIONS="suppressions=$lsan_supp"
launcher_args=()
if ! grep -q 'fsanitize-recover=null' CMakeLists.txt; then
  launcher="$root/$build/recover-null.sh"
  printf '#!/bin/sh\nexec "$@" -fsanitize-recover=null\n' >"$launcher"
  chmod +x "$launcher"
  launcher_args=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher")
else
  launcher_args=(-DCMAKE_CXX_COMPILER_LAUNCHER=)
fi

cmake -S . -B "$build" -G Ninja -DWSC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
  "${launcher_args[@]}" >/dev/null
ninja -C "$build" -j "$jobs" wscluster wsc-unit-tests wsc-audit-node \
  wsc-custom-store-node wsc-redis-cluster-check
[[ -n "${WSC_SANITIZE_BUILD_ONLY:-}" ]] && exit 0

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS_EXTRA:+:$ASAN_OPTIONS_EXTRA}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp"
# CTest points WSC_BINARY at this build's own node for every integration
# test; export it too for tools run outside CTest.
export WSC_BINARY="$root/$build/wscluster"
export WSC_AUDIT_BINARY="$root/$build/examples/wsc-audit-node"
# ASan slows start-up and every request: give health checks more room.
export WSC_HEALTH_TIMEOUT=${WSC_HEALTH_TIMEOUT:-40}

# Keep every node's log (harness.py writes them under $TMPDIR) so that reports
# from processes whose test still passed - e.g. a leak found at exit - are
# seen too.
export TMPDIR="$root/$build/test-tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"
export WSC_KEEP_LOGS=1

log="$root/$build/sanitize.log"
set +e
(cd "$build" && ctest --output-on-failure --timeout 900 -j "${WSC_TEST_JOBS:-1}" \
   -L 'unit|integration' -E 'integration.test_embedding' "$@") 2>&1 \
   | tee "$log"
status=${PIPESTATUS[0]}
set -e
grep -q -E '^[0-9]+% tests passed, 0 tests failed' "$log" || status=1

pattern='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Undefined|Leak)'
reports=$(grep -n -E "$pattern" "$log" || true)
node_reports=$(grep -r -l -E "$pattern" "$TMPDIR" 2>/dev/null || true)
if [[ -n "$reports" || -n "$node_reports" ]]; then
  echo "sanitize.sh: sanitizer reports (details in $log and the node logs):" >&2
  [[ -n "$reports" ]] && echo "$reports" | head -40 >&2
  for f in $node_reports; do
    echo "---- $f" >&2
    grep -E -A12 "$pattern" "$f" | head -30 >&2
  done
  status=1
else
  echo "sanitize.sh: no ASan/UBSan/LSan report in the test output or any node log"
fi
exit $status
