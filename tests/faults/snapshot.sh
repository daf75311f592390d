# Sourced by the fault-suite runners (tests/faults/run.sh, bench/tennode.sh):
# `snapshot_node_binary NAME SUBDIR` checks $WSC_BINARY (default
# build/wscluster) and runs the suite on a copy in build/SUBDIR/bin, so that a
# rebuild during the run cannot swap the binary under a node being
# restarted. Exports WSC_BINARY (the copy) and WSC_BINARY_SOURCE; the copy
# goes when the shell exits. Needs ROOT.
snapshot_node_binary() {
  local name=$1 subdir=$2
  local bin="${WSC_BINARY:-$ROOT/build/wscluster}"
  case "$bin" in /*) ;; *) bin="$ROOT/$bin" ;; esac
  if [[ ! -x "$bin" || ! -s "$bin" ]]; then
    echo "$name: node binary $bin missing or empty (build it: scripts/build.sh)" >&2
    exit 2
  fi
  local dir="$ROOT/build/$subdir/bin"
  mkdir -p "$dir"
  SNAPSHOT="$dir/wscluster.$$"
  cp "$bin" "$SNAPSHOT"
  trap 'rm -f "$SNAPSHOT"' EXIT
  export WSC_BINARY="$SNAPSHOT"
  export WSC_BINARY_SOURCE="$bin"
}
