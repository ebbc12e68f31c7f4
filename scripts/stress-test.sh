#!/usr/bin/env bash
# Runs the whole test suite (scripts/test.sh) N times in a row while another process keeps
# every CPU busy (stress-ng --cpu <nproc>, installed with apt-get if missing), and prints how
# long each run took: the check that no test depends on how fast or idle the machine is.
# Usage: scripts/stress-test.sh [N=3] [extra cargo test arguments]
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
runs="${1:-3}"
shift || true
if ! command -v stress-ng >/dev/null 2>&1; then
    echo "stress-test.sh: installing stress-ng with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null; } \
        || { echo "stress-test.sh: cannot install stress-ng (apt-get install stress-ng, as root)" >&2; exit 1; }
fi
stress-ng --cpu "$(nproc)" --quiet &
hog=$!
trap 'kill "$hog" 2>/dev/null; wait "$hog" 2>/dev/null || true' EXIT
log_dir="$(mktemp -d)"
for run in $(seq 1 "$runs"); do
    start=$(date +%s)
    if scripts/test.sh "$@" >"$log_dir/run$run.log" 2>&1; then
        result=passed
    else
        result=FAILED
    fi
    took=$(($(date +%s) - start))
    summary="$(grep -E '^test result:' "$log_dir/run$run.log" | awk '{p+=$4; f+=$6} END {print p " passed, " f " failed"}')"
    echo "stress-test.sh: run $run of $runs $result in ${took}s ($summary; load $(cut -d' ' -f1 /proc/loadavg)); log: $log_dir/run$run.log"
    [[ "$result" == passed ]] || exit 1
done
