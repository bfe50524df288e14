#!/usr/bin/env bash
# ember-run end to end, with small bash programs as the ranks. Usage: launcher_test.sh EMBER_RUN
# Each case checks the exit code, the time it took and the messages; every case is bounded.
set -uo pipefail
run=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
fail() { echo "FAIL [$case]: $*"; failures=$((failures + 1)); }
expect_in() { grep -qF -- "$1" "$2" || fail "output lacks: $1"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Runs ember-run with a time limit; sets rc and ms, output in $dir/out (stdout) and $dir/err.
launch() {
  local start
  start=$(now_ms)
  timeout --kill-after=5 60 "$run" "$@" >"$dir/out" 2>"$dir/err"
  rc=$?
  ms=$(($(now_ms) - start))
  echo "---- [$case] exit $rc after $ms ms"; cat "$dir/out" "$dir/err"
}

case="variables and prefixes"
launch --nproc-per-node 3 bash -c \
  'echo "r=$RANK w=$WORLD_SIZE l=$LOCAL_RANK lw=$LOCAL_WORLD_SIZE n=$NODE_RANK a=$MASTER_ADDR omp=$OMP_NUM_THREADS"; echo "to stderr" >&2; printf "no newline"'
[ "$rc" -eq 0 ] || fail "exit code $rc, expected 0"
for r in 0 1 2; do
  expect_in "[rank $r] r=$r w=3 l=$r lw=3 n=0 a=127.0.0.1 omp=1" "$dir/out"
  expect_in "[rank $r] to stderr" "$dir/err"
  expect_in "[rank $r] no newline" "$dir/out"
done
launch --nproc-per-node 2 bash -c 'echo "port=$MASTER_PORT"'
[ "$(grep -o 'port=[0-9]*' "$dir/out" | sort -u | wc -l)" -eq 1 ] || fail "the ranks got different MASTER_PORTs"
grep -q 'port=[1-9][0-9]*' "$dir/out" || fail "no MASTER_PORT picked"

case="second node of two"
launch --nnodes 2 --node-rank 1 --master-addr 127.0.0.1 --master-port 23456 --nproc-per-node 2 bash -c \
  'echo "r=$RANK w=$WORLD_SIZE l=$LOCAL_RANK p=$MASTER_PORT"'
[ "$rc" -eq 0 ] || fail "exit code $rc"
expect_in "[rank 2] r=2 w=4 l=0 p=23456" "$dir/out"
expect_in "[rank 3] r=3 w=4 l=1 p=23456" "$dir/out"

case="a rank fails"
launch --nproc-per-node 3 bash -c 'if [ "$RANK" = 1 ]; then sleep 0.3; echo "rank one gives up" >&2; exit 3; fi; sleep 60'
[ "$rc" -eq 3 ] || fail "exit code $rc, expected rank 1's 3"
[ "$ms" -lt 10000 ] || fail "took $ms ms to stop the other ranks"
expect_in "[rank 1] rank one gives up" "$dir/err"
expect_in "ember-run: rank 1 (pid" "$dir/err"
expect_in "failed with exit code 3; stopping the other ranks" "$dir/err"
expect_in "ember-run: failed: rank 1 exited with exit code 3" "$dir/err"

case="a rank is killed"
launch --nproc-per-node 2 bash -c 'if [ "$RANK" = 0 ]; then sleep 0.3; kill -9 $$; fi; sleep 60'
[ "$rc" -eq 137 ] || fail "exit code $rc, expected 128 + 9"
[ "$ms" -lt 10000 ] || fail "took $ms ms"
expect_in "ember-run: failed: rank 0 exited with signal 9 (SIGKILL)" "$dir/err"

case="ranks that ignore SIGTERM are killed after the grace period"
launch --nproc-per-node 2 --kill-grace 1 bash -c 'trap "" TERM; if [ "$RANK" = 1 ]; then exit 1; fi; sleep 60'
[ "$rc" -eq 1 ] || fail "exit code $rc"
[ "$ms" -lt 8000 ] || fail "took $ms ms; the grace period is 1 s"
expect_in "sending SIGKILL" "$dir/err"

for sig in TERM INT; do
  case="SIG$sig is forwarded to every rank"
  start=$(now_ms)
  "$run" --nproc-per-node 2 bash -c "trap 'echo got $sig; exit 0' $sig; echo ready; while true; do sleep 0.1; done" \
    >"$dir/out" 2>"$dir/err" &
  pid=$!
  for _ in $(seq 100); do [ "$(grep -c ready "$dir/out")" -eq 2 ] && break; sleep 0.1; done
  kill -"$sig" "$pid"
  # Bounded: ember-run gets 20 s to stop (no background watchdog: a subshell could run our EXIT trap).
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid"; rc=$?
  echo "---- [$case] exit $rc after $(($(now_ms) - start)) ms"; cat "$dir/out" "$dir/err"
  expect_in "[rank 0] got $sig" "$dir/out"
  expect_in "[rank 1] got $sig" "$dir/out"
  expect_in "ember-run: got SIG$sig: forwarding it to every rank" "$dir/err"
  expected=$((128 + $(kill -l "$sig")))
  [ "$rc" -eq "$expected" ] || fail "exit code $rc, expected $expected"
done

case="bad flags"
launch --nproc-per-node 0 true
[ "$rc" -eq 2 ] || fail "exit code $rc, expected 2"
expect_in "ember-run: --nproc-per-node: 0 is out of range [1, 4096]" "$dir/err"
expect_in "usage: ember-run" "$dir/err"
launch --nnodes 2 --node-rank 0 true
expect_in "--nnodes 2 needs --master-addr" "$dir/err"
launch --nproc-per-node 2
expect_in "no PROGRAM to run" "$dir/err"

case="a program that does not exist"
launch --nproc-per-node 2 /nonexistent/program --flag
[ "$rc" -eq 127 ] || fail "exit code $rc, expected 127"
expect_in "ember-run: cannot run '/nonexistent/program': no such executable file" "$dir/err"

case="help"
launch --help
[ "$rc" -eq 0 ] || fail "exit code $rc"
expect_in "usage: ember-run --nproc-per-node N" "$dir/out"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo PASS
