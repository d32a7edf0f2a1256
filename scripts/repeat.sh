#!/usr/bin/env bash
# Runs timing-dependent tests again and again, in debug and in release, and counts the
# runs that passed; a test that fails now and then is a defect, and this is how to find it
# before it lands.
#
#   bash scripts/repeat.sh [-n RUNS] [-p debug|release|both] -- CARGO-TEST-ARGS...
#   bash scripts/repeat.sh -n 30 -- --all-features --test cluster --test cluster_presence --test groups --test isolation
#
# Prints one line per profile: runs passed out of runs, and the names of the tests that
# failed in the others (their output is kept under target/repeat/).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=30
profiles="debug release"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) runs="$2"; shift 2 ;;
    -p) profiles="$2"; [ "$profiles" = both ] && profiles="debug release"; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [-n RUNS] [-p debug|release|both] -- CARGO-TEST-ARGS..." >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "give the cargo test arguments after --" >&2; exit 2; }
mkdir -p target/repeat
# The tests that run examples (cluster_chat, chat, echo_server) as processes of their own
# find them where cargo build puts them, for the profile they run in; a missing peer fails
# instead of skipping.
export AMW_REQUIRE_PEERS=1
status=0
for profile in $profiles; do
  flag=(); [ "$profile" = release ] && flag=(--release)
  cargo build -q "${flag[@]}" --all-features --example cluster_chat --example chat --example echo_server || exit 1
  cargo test -q "${flag[@]}" "$@" --no-run 2>/dev/null || cargo test "${flag[@]}" "$@" --no-run || exit 1
  passed=0
  failed_names=()
  for i in $(seq 1 "$runs"); do
    log="target/repeat/$profile-$i.log"
    if cargo test "${flag[@]}" "$@" >"$log" 2>&1; then
      passed=$((passed + 1))
      rm -f "$log"
    else
      failed_names+=("$(grep -E '^    [a-z_0-9:]+$' "$log" | tr -d ' ' | sort -u | tr '\n' ' ')(run $i)")
    fi
  done
  echo "$profile: $passed of $runs runs passed"
  for f in "${failed_names[@]}"; do echo "  failed: $f"; done
  [ "$passed" -eq "$runs" ] || status=1
done
exit $status
