#!/usr/bin/env bash
# ctest: ember_ddp_mnist as 2 ranks where rank 1 differs from rank 0 (or dies). The job must end
# non-zero within MAX_SECONDS and print every expected text: never hang, never crash with a heap
# error, never exit 0.
# Usage: run_ranks_disagree_test.sh MAX_SECONDS SCENARIO MPIRUN_LOCAL BINARY 'expected text'...
#   SCENARIO  what rank 1 gets on top of the flags both ranks share:
#     bad-data    --data naming a folder without MNIST (fails before its communicator exists)
#     bad-flag    --epochs 0 (rejected by the flag parser, before MPI starts on that rank)
#     limit       --limit 50 where rank 0 has --limit 100 (fewer steps per epoch)
#     model       --model mlp where rank 0 has lenet (another parameter list)
#     epochs      --epochs 3 where rank 0 has 2
#     device      --device cuda where rank 0 has cpu
#     kill        nothing; rank 1 is killed with SIGKILL once training has started
# Rank 0 and rank 1 are given separate argument lists through mpirun's MPMD form ("A : B").
set -uo pipefail
max_seconds=$1 scenario=$2 mpirun_local=$3 binary=$4
shift 4
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/../../tests/make_fake_mnist.py" "$dir" 200 50

# Each flag once per rank (CLI11 rejects a repeated option): rank 1 starts as a copy of rank 0.
declare -A r0=([--model]=lenet [--batch-size]=16 [--epochs]=2 [--data]="$dir" [--workers]=1 [--device]=cpu)
declare -A r1
for k in "${!r0[@]}"; do r1[$k]=${r0[$k]}; done
case "$scenario" in
  bad-data) r1[--data]="$dir/missing" ;;
  bad-flag) r1[--epochs]=0 ;;
  limit) r0[--limit]=100 r1[--limit]=50 ;;
  model) r1[--model]=mlp ;;
  epochs) r1[--epochs]=3 ;;
  device) r1[--device]=cuda ;;
  kill) r0[--batch-size]=1 r1[--batch-size]=1 r0[--epochs]=1000 r1[--epochs]=1000 ;;
  *) echo "unknown scenario $scenario"; exit 2 ;;
esac
args0=() args1=()
for k in "${!r0[@]}"; do args0+=("$k" "${r0[$k]}"); done
for k in "${!r1[@]}"; do args1+=("$k" "${r1[$k]}"); done

out="$dir/log"
start_ms=$(($(date +%s%N) / 1000000))
notes="$dir/notes"  # what this script did, checked with the job's output
: >"$notes"
timeout --kill-after=5 "$((max_seconds + 30))" bash "$mpirun_local" 1 "$binary" "${args0[@]}" \
  : -np 1 "$binary" "${args1[@]}" >"$out" 2>&1 &
job=$!

if [ "$scenario" = kill ]; then
  # Wait until rank 0 reports that training has started, then SIGKILL rank 1 (found by its rank
  # variable among this job's processes), and time from the kill.
  for _ in $(seq 600); do grep -q "samples per rank per epoch" "$out" && break; sleep 0.1; done
  # Only this job's processes: other tests may run the same binary at the same time. Read from
  # /proc, so the test needs no procps.
  children() {
    local stat line ppid
    for stat in /proc/[0-9]*/stat; do
      { read -r line <"$stat"; } 2>/dev/null || continue  # the process may have exited
      read -r _ ppid _ <<<"${line##*) }"  # after the command name: state, parent pid, ...
      if [ "$ppid" = "$1" ]; then stat=${stat#/proc/}; echo "${stat%/stat}"; fi
    done
  }
  descendants() { for child in $(children "$1"); do echo "$child"; descendants "$child"; done; }
  victim=""
  for pid in $(descendants "$job"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -Eq '^(OMPI_COMM_WORLD_RANK|PMI_RANK)=1$'; then
      victim=$pid
    fi
  done
  [ -n "$victim" ] || { cat "$out"; echo "FAIL: found no rank 1 to kill"; kill "$job"; exit 1; }
  sleep 1
  echo "killing rank 1 (pid $victim) with SIGKILL" | tee -a "$notes"
  start_ms=$(($(date +%s%N) / 1000000))
  kill -9 "$victim"
fi

wait "$job"
rc=$?
elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
cat "$out"
cat "$out" >>"$notes"
echo "---- exit code $rc after ${elapsed_ms} ms (limit ${max_seconds} s)"
status=0
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0 although rank 1 disagreed or died"; status=1; fi
if [ "$elapsed_ms" -gt "$((max_seconds * 1000))" ]; then echo "FAIL: took ${elapsed_ms} ms > ${max_seconds} s"; status=1; fi
if grep -Eq "free\(\)|double free|corrupted|Segmentation fault|AddressSanitizer" "$out"; then
  echo "FAIL: a rank crashed instead of reporting the disagreement"; status=1
fi
for text in "$@"; do
  if ! grep -qF -- "$text" "$notes"; then echo "FAIL: output lacks: $text"; status=1; fi
done
[ "$status" -eq 0 ] && echo "PASS"
exit "$status"
