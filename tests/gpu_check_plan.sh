#!/usr/bin/env bash
# ctest gpu_check_plan: `scripts/gpu_check.sh --dry-run` (no GPU, no build) must end with the line
# "plan: N stages, worst case W s, budget 540 s" for the default budget, with W <= 540, and the
# first verdict (the CUDA parity tests and one MNIST model against PyTorch) inside that plan; a
# smaller budget must shrink the plan, not overrun it.
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

n_default=$(check_plan 540)
PLAN_TEXT=$(bash "$script" --dry-run)
for s in parity mnist_lenet; do
  grep -qE "^ +[0-9]+\. $s " <<<"$PLAN_TEXT" || fail "the default plan leaves out $s (the first verdict)"
done
n_small=$(check_plan 200 --budget 200)
((n_small < n_default)) || fail "a 200 s budget should plan fewer stages than 540 s ($n_small vs $n_default)"
echo "gpu_check_plan: ok ($n_default stages in 540 s, $n_small in 200 s)"
