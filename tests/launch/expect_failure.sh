#!/usr/bin/env bash
# A failure must end the command non-zero and quickly, with a message that names what failed.
# Usage: bash expect_failure.sh MAX_SECONDS 'expected text'... -- COMMAND [ARGS...]
# Fails unless COMMAND exits non-zero within MAX_SECONDS and its output holds every text.
set -uo pipefail
max_seconds=$1
shift
texts=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do texts+=("$1"); shift; done
shift  # the --
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start_ms=$(($(date +%s%N) / 1000000))
timeout --kill-after=5 "$((max_seconds + 30))" "$@" >"$out" 2>&1
rc=$?
elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
cat "$out"
echo "---- exit code $rc after ${elapsed_ms} ms (limit ${max_seconds} s)"
status=0
if [ "$rc" -eq 0 ]; then echo "FAIL: exited 0; the failure must fail the command"; status=1; fi
# 124/137 are timeout's codes, but 137 is also what ember-run returns when a rank died of SIGKILL:
# it hung only if timeout's limit was reached.
if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && [ "$elapsed_ms" -ge "$(((max_seconds + 30) * 1000))" ]; then
  echo "FAIL: it hung (killed by timeout)"; status=1
fi
if [ "$elapsed_ms" -gt "$((max_seconds * 1000))" ]; then echo "FAIL: took ${elapsed_ms} ms > ${max_seconds} s"; status=1; fi
for text in "${texts[@]}"; do
  if ! grep -qF -- "$text" "$out"; then echo "FAIL: output lacks: $text"; status=1; fi
done
[ "$status" -eq 0 ] && echo "PASS"
exit "$status"
