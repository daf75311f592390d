#!/usr/bin/env bash
# Builds the libFuzzer targets into build/fuzz and runs each for a bounded
# time over its seed corpus (fuzz/corpus/<target>).
#
#   fuzz/run.sh                  # build + run every target FUZZ_TIME s (default 20)
#   fuzz/run.sh jwt_fuzzer 60    # one target, 60 s
#   FUZZ_BUILD_ONLY=1 fuzz/run.sh
#   fuzz/run.sh --regressions    # replay fuzz/regressions/<target>-* (known findings)
#
# Only the few sources each target needs are compiled (clang++ with
# -fsanitize=fuzzer,address,undefined; objects are cached by mtime). New
# inputs go to build/fuzz/corpus-<target>, crashes to build/fuzz/artifacts/
# (FUZZ_BUILD_DIR moves build/fuzz elsewhere).
# Exits non-zero when a target crashes, leaks, hits UB or a broken invariant.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=${FUZZ_BUILD_DIR:-$root/build/fuzz}
mkdir -p "$out/obj" "$out/artifacts"
time_per_target=${FUZZ_TIME:-20}

# -- toolchain: clang 14 with libFuzzer (Debian: clang + libclang-rt-14-dev) ----
find_clang() {
  for c in clang++-14 clang++; do
    command -v "$c" >/dev/null 2>&1 && { echo "$c"; return; }
  done
}
fuzzer_works() {
  local cxx=$1
  echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
    > "$out/probe.cpp"
  "$cxx" -fsanitize=fuzzer,address,undefined "$out/probe.cpp" -o "$out/probe" >/dev/null 2>&1
}
CXX=$(find_clang || true)
if [[ -z "$CXX" ]] || ! fuzzer_works "$CXX"; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "fuzz/run.sh: installing clang and libclang-rt-14-dev" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clang libclang-rt-14-dev >/dev/null
    CXX=$(find_clang)
  fi
  if [[ -z "$CXX" ]] || ! fuzzer_works "$CXX"; then
    echo "fuzz/run.sh: clang++ with -fsanitize=fuzzer is not available" \
         "(apt-get install -y clang libclang-rt-14-dev)" >&2
    exit 1
  fi
fi

flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer -I"$root"
       -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
       -DBOOST_ASIO_NO_DEPRECATED -Wno-deprecated-declarations)
link_flags=(-fsanitize=fuzzer,address,undefined)
libs=(-lcaf_core -lcrypto -pthread)

# Newest mtime of the project headers: an object older than that is rebuilt.
headers_mtime=$(find actors config middleware protocol -name '*.hpp' -printf '%T@\n' | sort -n | tail -1)

compile() { # source -> object path on stdout
  local src=$1
  local obj="$out/obj/$(echo "$src" | tr '/' '_').o"
  local src_mtime obj_mtime
  src_mtime=$(stat -c %Y "$src")
  obj_mtime=$(stat -c %Y "$obj" 2>/dev/null || echo 0)
  if (( obj_mtime < src_mtime )) || (( obj_mtime < ${headers_mtime%.*} )); then
    "$CXX" "${flags[@]}" -c "$src" -o "$obj.tmp" >&2
    mv "$obj.tmp" "$obj"
  fi
  echo "$obj"
}

declare -A sources=(
  [frames_fuzzer]="protocol/frames.cpp protocol/json_syntax.cpp protocol/error.cpp middleware/middleware.cpp protocol/names.cpp protocol/ws_frame.cpp middleware/jwt.cpp util/hmac.cpp"
  [jwt_fuzzer]="middleware/jwt.cpp middleware/middleware.cpp protocol/names.cpp protocol/ws_frame.cpp util/hmac.cpp"
  [handshake_fuzzer]="middleware/jwt.cpp middleware/middleware.cpp protocol/names.cpp protocol/ws_frame.cpp util/hmac.cpp"
  [options_fuzzer]="config/options.cpp config/option_table.cpp protocol/error.cpp"
  [ws_frame_fuzzer]="protocol/ws_frame.cpp"
  [codec_fuzzer]="protocol/codec.cpp protocol/frames.cpp protocol/json_syntax.cpp protocol/error.cpp middleware/middleware.cpp protocol/names.cpp protocol/ws_frame.cpp middleware/jwt.cpp util/hmac.cpp"
)
all_targets=(frames_fuzzer jwt_fuzzer handshake_fuzzer options_fuzzer codec_fuzzer ws_frame_fuzzer)

build_target() {
  local t=$1 objs=() s
  for s in fuzz/$t.cpp ${sources[$t]}; do
    objs+=("$(compile "$s")")
  done
  local newest=0 o m
  for o in "${objs[@]}"; do
    m=$(stat -c %Y "$o"); (( m > newest )) && newest=$m
  done
  if [[ ! -x "$out/$t" ]] || (( $(stat -c %Y "$out/$t") < newest )); then
    "$CXX" "${link_flags[@]}" "${objs[@]}" "${libs[@]}" -o "$out/$t.tmp"
    mv "$out/$t.tmp" "$out/$t"
  fi
}

regressions=0
targets=()
if [[ "${1:-}" == "--regressions" ]]; then
  regressions=1
  shift
fi
if [[ $# -ge 1 ]]; then
  targets=("$1")
  [[ $# -ge 2 ]] && time_per_target=$2
else
  targets=("${all_targets[@]}")
fi

for t in "${targets[@]}"; do
  [[ -n "${sources[$t]:-}" ]] || { echo "fuzz/run.sh: unknown target $t" >&2; exit 2; }
  echo "== build $t"
  build_target "$t"
done
[[ -n "${FUZZ_BUILD_ONLY:-}" ]] && exit 0

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

if (( regressions )); then
  status=0
  for t in "${targets[@]}"; do
    for f in fuzz/regressions/"$t"-*; do
      [[ -e "$f" ]] || continue
      echo "== $t $f"
      if "$out/$t" -rss_limit_mb=2048 "$f" >"$out/artifacts/regression.log" 2>&1; then
        echo "   no crash"
      else
        echo "   CRASH (still reproduces):"
        grep -m3 -E 'ERROR|runtime error|SUMMARY' "$out/artifacts/regression.log" | sed 's/^/     /'
        status=1
      fi
    done
  done
  exit $status
fi

status=0
for t in "${targets[@]}"; do
  work="$out/corpus-$t"
  mkdir -p "$work"
  echo "== fuzz $t for ${time_per_target}s"
  if ! "$out/$t" -max_total_time="$time_per_target" -rss_limit_mb=2048 -timeout=10 \
        -max_len=8192 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" \
        "$work" "fuzz/corpus/$t" >"$out/$t.log" 2>&1; then
    echo "fuzz/run.sh: $t FAILED; see $out/$t.log" >&2
    grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$out/$t.log" | head -10 >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$out/$t.log" | tr '\n' ' '
    echo
  fi
done
if (( status == 0 )); then
  echo "fuzz: ${#targets[@]} targets, no crash"
fi
exit $status
