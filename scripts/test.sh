#!/usr/bin/env bash
# Sets up this machine, builds ember and runs the whole test suite. CI runs exactly this
# (.ci/run); it needs no GPU and no PyTorch.
#
# Phases (each one timed; a failure in any phase fails the script, after the later phases have run
# so one CI log shows everything):
#   1. setup       scripts/setup.sh (installs only missing Debian packages)
#   2. build       Release, EMBER_CUDA=AUTO: with the CUDA toolkit present the CUDA backend is
#                  compiled too (for sm_90), and every CPU test must pass in that build without a GPU
#   3. test        ctest, 2 tests at a time (package.* in tests/package also installs this build
#                  into build-test/tests/package/prefix and builds a consumer project against it)
#   4. asan-build  ASan + UBSan build (EMBER_SANITIZE=ON; CUDA, oneDNN and benchmarks off)
#   5. asan-test   the same suite under the sanitizers (the package tests too: the consumer links the
#                  sanitized library through ember::ember's link option, its own code uninstrumented)
#   6. fuzz        builds the libFuzzer targets (tests/fuzz, clang + ASan + UBSan) and runs each on
#                  its committed corpus for EMBER_FUZZ_SECONDS (default 60) seconds; a crash, a
#                  sanitizer report or an escaping non-ember exception fails the phase. Skipped,
#                  with a line saying why, when clang++ is not installed.
# EMBER_TEST_SKIP_SANITIZE=1 skips phases 4-5 for a quick local run; EMBER_FUZZ_SECONDS=0 skips 6.
#
# --fast: setup, the Release build and `ctest -L unit` only (no reference, example, mpi, gpu or fuzz
# label, no sanitizer or fuzz phase): the quick loop while editing. CI never passes it.
#
# Why the sanitizer pass is in CI: it fits the 90-minute budget several times over. Measured on the
# 2-core dev machine with 1042 tests, while other builds shared it (so wall times are inflated):
# build 473 s, test 33 s, asan-build 932 s, asan-test 106 s; 26 minutes in all, for 19 minutes of
# CPU time (user + sys), i.e. roughly 10-12 minutes on an idle 2-core machine. It finds what the
# Release run cannot: in its first runs it caught a use-after-free in a test and an out-of-bounds
# read that the Release build only saw as a segfault (or did not see at all).
set -uo pipefail
cd "$(dirname "$0")/.."

fast=0
for arg in "$@"; do
  case "$arg" in
    --fast) fast=1 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$arg' (known: --fast, --help)" >&2; exit 2 ;;
  esac
done

jobs=$(nproc)
ctest_jobs=2
failed=()
timings=()

# run_phase NAME CMD...: runs CMD, records its time, remembers a failure and carries on.
run_phase() {
  local name=$1
  shift
  echo "==== [$name] $*"
  local start=$SECONDS
  if "$@"; then
    timings+=("$(printf '%-11s %5d s  ok' "$name" $((SECONDS - start)))")
  else
    timings+=("$(printf '%-11s %5d s  FAILED' "$name" $((SECONDS - start)))")
    failed+=("$name")
    return 1
  fi
}

configure_and_build() {  # configure_and_build BUILD_DIR [-S SOURCE_DIR] CMAKE_ARGS...
  local dir=$1 src=.
  shift
  if [[ "${1:-}" == -S ]]; then src=$2; shift 2; fi
  cmake -S "$src" -B "$dir" -G Ninja "$@" && cmake --build "$dir" -j "$jobs"
}

ctest_labels=()
if ((fast)); then ctest_labels=(-L '^unit$'); fi

# CI keeps only the tail of this script's output, so a failing ctest phase is repeated in the
# summary: the names of its failed tests and the last lines each one printed.
failed_tests=()
run_ctest() {  # run_ctest BUILD_DIR
  local dir=$1
  ctest --test-dir "$dir" --output-on-failure -j "$ctest_jobs" "${ctest_labels[@]}" && return 0
  local status=$? list="$dir/Testing/Temporary/LastTestsFailed.log" name
  if [[ -f "$list" ]]; then
    while IFS= read -r name; do failed_tests+=("$dir ${name#*:}"); done <"$list"
  fi
  return $status
}

# failed_test_tails: for each failed test, the last 30 lines of its output from ctest's LastTest.log.
failed_test_tails() {
  local entry dir name
  for entry in "${failed_tests[@]}"; do
    dir=${entry%% *} name=${entry#* }
    echo "---- $dir: $name (last lines of its output)"
    awk -v name="$name" '
      $0 ~ "^[0-9]+/[0-9]+ Test: " name "$" { keep = 1; n = 0; next }
      keep && /^[0-9]+\/[0-9]+ Testing: / { keep = 0 }
      keep { lines[n++ % 30] = $0 }
      END { start = n > 30 ? n - 30 : 0; for (i = start; i < n; i++) print lines[i % 30] }
    ' "$dir/Testing/Temporary/LastTest.log" 2>/dev/null
  done
}

build_and_test() {  # build_and_test PHASE_PREFIX BUILD_DIR CMAKE_ARGS...
  local prefix=$1 dir=$2
  shift 2
  run_phase "${prefix}build" configure_and_build "$dir" "$@" &&
    run_phase "${prefix}test" run_ctest "$dir"
}

run_phase setup bash scripts/setup.sh || { echo "setup failed: cannot build" >&2; exit 1; }

build_and_test "" build-test -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=AUTO

if ((fast)); then
  echo "==== [asan] skipped: --fast"
elif [[ "${EMBER_TEST_SKIP_SANITIZE:-0}" != 1 ]]; then
  # halt_on_error: any report fails its test. Leak checking stays on (autograd cycles leak).
  # allocator_may_return_null: a request no machine can satisfy returns null like the real malloc, so
  # the tests see ember's OutOfMemoryError instead of ASan's allocation-size-too-big report.
  export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0:allocator_may_return_null=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  # Built without oneDNN: the whole suite then runs the fallback CPU engine (im2col convolution,
  # Eigen/OpenBLAS GEMM) that a machine without libdnnl gets, while the Release pass above runs
  # oneDNN. (Each pass also switches engines at run time in the engine tests.)
  build_and_test "asan-" build-test-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_SANITIZE=ON -DEMBER_CUDA=OFF \
    -DEMBER_BUILD_BENCH=OFF -DEMBER_ONEDNN=OFF
fi

# fuzz_all: builds tests/fuzz and runs every target for EMBER_FUZZ_SECONDS each. Cost: the build
# (the library once more, with clang and the sanitizers) plus 4 x 60 s, about 10 minutes of the
# CI's 90 beside today's ~15 (estimated, not measured). New inputs go to a scratch copy of the
# corpus, so the committed one changes only by hand; a crash leaves its input in build-fuzz/.
fuzz_all() {
  local seconds=${EMBER_FUZZ_SECONDS:-60}
  configure_and_build build-fuzz -S tests/fuzz -DCMAKE_CXX_COMPILER=clang++ || return 1
  local status=0 target
  for target in idx cifar safetensors checkpoint; do
    local work="build-fuzz/corpus-$target"
    rm -rf "$work" && mkdir -p "$work"
    echo "---- fuzz_$target for ${seconds} s"
    (cd build-fuzz && ./"fuzz_$target" -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=4096 \
       -print_final_stats=1 "corpus-$target" "../tests/fuzz/corpus/$target") || status=1
  done
  return $status
}

if ((fast)); then
  echo "==== [fuzz] skipped: --fast"
elif [[ "${EMBER_FUZZ_SECONDS:-60}" == 0 ]]; then
  echo "==== [fuzz] skipped: EMBER_FUZZ_SECONDS=0"
elif ! command -v clang++ >/dev/null; then
  echo "==== [fuzz] skipped: clang++ not found (scripts/setup.sh installs clang and libclang-rt-dev)"
else
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 run_phase fuzz fuzz_all
fi

echo "==== summary"
if ((${#failed_tests[@]} > 0)); then
  failed_test_tails
  printf 'failed test: %s\n' "${failed_tests[@]}"
fi
printf '%s\n' "${timings[@]}"
if ((${#failed[@]} > 0)); then
  echo "FAILED phases: ${failed[*]}"
  exit 1
fi
echo "all phases passed"
