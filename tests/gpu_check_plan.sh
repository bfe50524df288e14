#!/usr/bin/env bash
# ctest gpu_check_plan: `scripts/gpu_check.sh --dry-run` (no GPU, no build) must end with the line
# "plan: N stages, worst case W s, budget 540 s" for the default budget, with W <= 540, and the
# first verdict (the CUDA parity tests and one MNIST model against PyTorch) inside that plan; a
# smaller budget must shrink the plan, not overrun it. With binaries carried from the CPU machine
# (make_carry.sh --binaries; a stand-in carry/bin here) the plan has no build stage and, in the
# default budget, every stage but nccl (ember_dist_tests is not carried).
set -euo pipefail
script=$1
fail() { echo "gpu_check_plan: $*" >&2; exit 1; }

check_plan() {  # check_plan EXPECTED_BUDGET ARGS...: prints the stage count
  local budget=$1 out last
  shift
  out=$(bash "$script" --dry-run "$@") || fail "--dry-run $* exited non-zero:"$'\n'"$out"
  last=$(tail -n 1 <<<"$out")
  [[ "$last" =~ ^plan:\ ([0-9]+)\ stages,\ worst\ case\ ([0-9]+)\ s,\ budget\ ([0-9]+)\ s$ ]] ||
    fail "last line is not the plan line: '$last'"
  local n=${BASH_REMATCH[1]} w=${BASH_REMATCH[2]} b=${BASH_REMATCH[3]}
  ((b == budget)) || fail "budget $b, expected $budget"
  ((n >= 1)) || fail "no stage planned"
  ((w <= b)) || fail "worst case $w s exceeds the budget $b s"
  echo "$out" >&2
  echo "$n"
}

# The default plan is the one without carried binaries: an empty carry folder, so that a carry/
# left in the checkout by make_carry.sh --binaries does not change what is tested.
nocarry=$(mktemp -d)
carry=$(mktemp -d)
trap 'rm -rf "$nocarry" "$carry"' EXIT
n_default=$(check_plan 540 --carry "$nocarry")
PLAN_TEXT=$(bash "$script" --dry-run --carry "$nocarry")
for s in parity mnist_lenet; do
  grep -qE "^ +[0-9]+\. $s " <<<"$PLAN_TEXT" || fail "the default plan leaves out $s (the first verdict)"
done
n_small=$(check_plan 200 --budget 200 --carry "$nocarry")
((n_small < n_default)) || fail "a 200 s budget should plan fewer stages than 540 s ($n_small vs $n_default)"
grep -qE '^ +[0-9]+\. build ' <<<"$PLAN_TEXT" || fail "the default plan (no carried binaries) has no build stage"

# Carried binaries: a stand-in carry/ with bin/ember_tests.gz, as make_carry.sh --binaries leaves
# it (never unpacked or run by --dry-run).
mkdir -p "$carry/bin"
printf '#!/bin/sh\nexit 1\n' | gzip >"$carry/bin/ember_tests.gz"
echo "sm_90, stand-in" >"$carry/bin/BUILT"
n_carried=$(check_plan 540 --carry "$carry")
CARRIED_TEXT=$(bash "$script" --dry-run --carry "$carry")
grep -q '^  binaries: carried in .*no configure or build' <<<"$CARRIED_TEXT" || fail "the carried plan does not say so"
grep -qE '^ +[0-9]+\. (build|nccl) ' <<<"$CARRIED_TEXT" && fail "the carried plan has a build or nccl stage"
for s in probe parity mnist_lenet mnist_rest ops; do
  grep -qE "^ +[0-9]+\. $s " <<<"$CARRIED_TEXT" || fail "the carried plan leaves out $s in the default budget"
done
((n_carried > n_default)) || fail "carried binaries should leave room for more stages ($n_carried vs $n_default)"
echo "gpu_check_plan: ok ($n_default stages in 540 s, $n_small in 200 s, $n_carried with carried binaries)"
