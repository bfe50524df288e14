#!/usr/bin/env bash
# A failure scenario must end the whole job, non-zero and quickly, with a message that names what
# failed. Usage:
#   bash run_failure_test.sh MAX_SECONDS TEST_BINARY GTEST_FILTER 'expected text' ['expected text'...]
# Runs TEST_BINARY as 2 ranks (the failure tests are DISABLED_ so the normal run skips them), and
# fails unless the job exits non-zero within MAX_SECONDS and its output contains every text.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
max_seconds=$1 binary=$2 filter=$3
shift 3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start_ms=$(($(date +%s%N) / 1000000))
timeout --kill-after=5 "$((max_seconds + 30))" \
  bash "$here/mpirun_local.sh" 2 "$binary" --gtest_also_run_disabled_tests --gtest_color=no --gtest_filter="$filter" >"$out" 2>&1
rc=$?
elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
cat "$out"
echo "---- exit code $rc after ${elapsed_ms} ms (limit ${max_seconds} s)"
status=0
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0; a failed rank must fail the job"; status=1; fi
if [ "$elapsed_ms" -gt "$((max_seconds * 1000))" ]; then echo "FAIL: took ${elapsed_ms} ms > ${max_seconds} s"; status=1; fi
for text in "$@"; do
  if ! grep -qF -- "$text" "$out"; then echo "FAIL: output lacks: $text"; status=1; fi
done
[ "$status" -eq 0 ] && echo "PASS"
exit "$status"
