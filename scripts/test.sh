#!/usr/bin/env bash
# Sets up this machine, builds ember and runs the whole test suite. CI runs exactly this
# (.ci/run); it needs no GPU and no PyTorch.
#
# Phases (each one timed; a failure in any phase fails the script, after the later phases have run
# so one CI log shows everything):
#   1. setup       scripts/setup.sh (installs only missing Debian packages)
#   2. build       Release, EMBER_CUDA=AUTO: with the CUDA toolkit present the CUDA backend is
#                  compiled too (for sm_90), and every CPU test must pass in that build without a GPU
#   3. test        ctest, 2 tests at a time
#   4. asan-build  ASan + UBSan build (EMBER_SANITIZE=ON; CUDA, oneDNN and benchmarks off)
#   5. asan-test   the same suite under the sanitizers
# EMBER_TEST_SKIP_SANITIZE=1 skips phases 4-5 for a quick local run.
#
# Why the sanitizer pass is in CI: it fits the 90-minute budget several times over. Measured on the
# 2-core dev machine with 1042 tests, while other builds shared it (so wall times are inflated):
# build 473 s, test 33 s, asan-build 932 s, asan-test 106 s; 26 minutes in all, for 19 minutes of
# CPU time (user + sys), i.e. roughly 10-12 minutes on an idle 2-core machine. It finds what the
# Release run cannot: in its first runs it caught a use-after-free in a test and an out-of-bounds
# read that the Release build only saw as a segfault (or did not see at all).
set -uo pipefail
cd "$(dirname "$0")/.."

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

configure_and_build() {  # configure_and_build BUILD_DIR CMAKE_ARGS...
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja "$@" && cmake --build "$dir" -j "$jobs"
}

build_and_test() {  # build_and_test PHASE_PREFIX BUILD_DIR CMAKE_ARGS...
  local prefix=$1 dir=$2
  shift 2
  run_phase "${prefix}build" configure_and_build "$dir" "$@" &&
    run_phase "${prefix}test" ctest --test-dir "$dir" --output-on-failure -j "$ctest_jobs"
}

run_phase setup bash scripts/setup.sh || { echo "setup failed: cannot build" >&2; exit 1; }

build_and_test "" build-test -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=AUTO

if [[ "${EMBER_TEST_SKIP_SANITIZE:-0}" != 1 ]]; then
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

echo "==== summary"
printf '%s\n' "${timings[@]}"
if ((${#failed[@]} > 0)); then
  echo "FAILED phases: ${failed[*]}"
  exit 1
fi
echo "all phases passed"
