#!/usr/bin/env bash
# The CPU benchmark: ember against its anchors, side by side in one run.
#
#   bash bench/run_cpu_bench.sh [--threads 1|2] [--runs 3] [--models "mlp lenet cnn resnet20"]
#                               [--no-python] [--csv FILE] [--json FILE] [--limit N] [--steps 20] [--warmup 5]
#                               [--workers 1] [--build-dir build] [--no-build]
#
# For each model it runs, interleaved run by run so that drift in the machine hits all sides alike:
#   ember     build/examples/ember_mnist --json (MNIST) or build/bench/ember_resnet20_step (--build-dir:
#             another build folder than build/)
#   libtorch  build-libtorch/libtorch_mnist or libtorch_resnet20 (bench/libtorch/, the C++ anchor,
#             built here against Debian's libtorch 1.13)
#   libtorch-cl  ResNet-20 only: the same anchor with --memory-format channels_last (NHWC activations
#             and weights, PyTorch's other CPU layout; on the Zen 5 it ran batch 32 faster than NCHW
#             and batch 128 slower, so both run and the report shows each)
#   pytorch   bench/mnist_pytorch.py or bench/resnet20_pytorch.py on Debian's python3-torch (eager
#             mode; --no-python skips it)
# each --runs times (default 3), all on the same thread count: OMP_NUM_THREADS and the program's own
# thread setting (--threads, torch.set_num_threads). The anchors run with
# LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp, so that whatever the system's
# libopenblas.so.0 / libblas.so.3 alternatives say, they load the OpenMP OpenBLAS and not the pthread
# build, whose own threads fight PyTorch's OpenMP pool. Every process, ember's included, runs with
# GLIBC_TUNABLES=glibc.malloc.hugetlb=1: glibc then asks the kernel for transparent huge pages on the
# memory it maps for malloc. libtorch 1.13 returns large freed buffers to the kernel and maps them
# afresh on the next step, and in a virtual machine each 4 KiB page fault is expensive: on the
# Zen 5 under PVM the tunable ran libtorch's ResNet-20 step ~2x faster (batch 32 channels_last
# 48-54 against 91-117 ms) and changed neither libtorch's MNIST epochs nor ember's
# (bench/RESULTS.md). ember asks for huge pages on its large blocks itself (core/allocator.cpp);
# newer PyTorch allocators can, behind C10_THP_MEM_ALLOC_ENABLE=1 (1.13's has no such switch).
# Each side evaluates MNIST's test set at its best batch size (the anchors at the training batch
# size; libtorch 1.13's CPU convolution is ~10x slower per image at batch 1000).
#
# Measured for every process, the same way for every side:
#   loop     the training loop alone, as the program reports it: MNIST, the epoch loop's seconds
#            (timer around the loop only, no data loading before it, no test pass); ResNet-20, the
#            median step of --steps timed steps after --warmup untimed ones
#   process  the wall time of the whole command (start-up, data loading, training, test pass), from
#            GNU time (/usr/bin/time -f %e)
#   RSS      peak resident memory of the process, from GNU time (%M: the kernel's maxrss of the
#            child, whatever language it is written in)
#   libs     the BLAS / oneDNN / MKL files the process had mapped, sampled from /proc/PID/maps while it
#            runs (every 0.2 s) and joined with what the program printed of its own maps at the end
# The report (markdown, stdout): median with min and max over the runs, ember/libtorch and
# ember/pytorch ratios of the medians, test accuracies, peak RSS, the libraries, and the exact
# commands. --csv FILE also writes one row per framework and model (bench/roofline.py reads it);
# --json FILE the training-loop medians with min and max per benchmark and framework, which
# `scripts/plot.py bench FILE -o bench.png` draws (the schema is in bench/cpu_bench_report.py).
#
# --limit N trains MNIST on N samples only and --steps/--warmup shorten ResNet-20: smoke tests of the
# harness, whose numbers mean nothing. Timing needs a quiet machine: the whole run holds
# /tmp/ember-bench.lock (flock), so two benchmarks started through this script never overlap, and
# it prints the load average before and after. Needs: bash scripts/setup.sh --torch --bench, and
# data/mnist (bash scripts/fetch_mnist.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2 runs=3 models="mlp lenet cnn resnet20" python=1 csv="" json="" limit=0 steps=20 warmup=5 workers=1 build=1
build_dir=build
resnet_batches="128 32"
usage() { sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case "$1" in
    --threads) threads=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --models) models=${2:?}; shift 2 ;;
    --no-python) python=0; shift ;;
    --csv) csv=${2:?}; shift 2 ;;
    --json) json=${2:?}; shift 2 ;;
    --limit) limit=${2:?}; shift 2 ;;
    --steps) steps=${2:?}; shift 2 ;;
    --warmup) warmup=${2:?}; shift 2 ;;
    --workers) workers=${2:?}; shift 2 ;;
    --build-dir) build_dir=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) usage ;;
    *) echo "run_cpu_bench.sh: unknown option '$1'" >&2; usage ;;
  esac
done
for n in threads runs limit steps warmup workers; do
  [[ "${!n}" =~ ^[0-9]+$ ]] || { echo "run_cpu_bench.sh: --$n needs a whole number, got '${!n}'" >&2; exit 2; }
done
((threads >= 1 && runs >= 1 && steps >= 1)) || { echo "run_cpu_bench.sh: --threads, --runs and --steps must be >= 1" >&2; exit 2; }
for m in $models; do
  [[ "$m" =~ ^(mlp|lenet|cnn|resnet20)$ ]] || { echo "run_cpu_bench.sh: unknown model '$m' (mlp lenet cnn resnet20)" >&2; exit 2; }
done

OPENBLAS_OPENMP_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
need() { echo "run_cpu_bench.sh: $1" >&2; exit 1; }
[[ -x /usr/bin/time ]] || need "/usr/bin/time (GNU time) missing: bash scripts/setup.sh --bench"
[[ -d $OPENBLAS_OPENMP_DIR ]] || need "$OPENBLAS_OPENMP_DIR missing: bash scripts/setup.sh"
[[ -f /usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake ]] || need "libtorch-dev missing: bash scripts/setup.sh --torch"
if [[ " $models " =~ \ (mlp|lenet|cnn)\  ]]; then
  [[ -f data/mnist/train-images-idx3-ubyte ]] || need "data/mnist missing: bash scripts/fetch_mnist.sh"
fi
if ((python)); then /usr/bin/python3 -c 'import torch' 2>/dev/null || need "python3-torch missing: bash scripts/setup.sh --torch (or --no-python)"; fi

# One benchmark at a time on this machine, whoever starts it.
exec 9>/tmp/ember-bench.lock
if ! flock -n 9; then
  echo "run_cpu_bench.sh: another benchmark holds /tmp/ember-bench.lock; waiting for it" >&2
  flock 9
fi

if ((build)); then
  echo "building ember ($build_dir/) and the libtorch anchor (build-libtorch/)" >&2
  [[ -f $build_dir/build.ninja || -f $build_dir/Makefile ]] || cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build "$build_dir" --target ember_mnist ember_resnet20_step >&2
  [[ -f build-libtorch/build.ninja || -f build-libtorch/Makefile ]] || cmake -S bench/libtorch -B build-libtorch -G Ninja >&2
  cmake --build build-libtorch >&2
fi
for p in "$build_dir/examples/ember_mnist" "$build_dir/bench/ember_resnet20_step" build-libtorch/libtorch_mnist build-libtorch/libtorch_resnet20; do
  [[ -x $p ]] || need "$p missing (run without --no-build)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=$work/results.jsonl

# The commands of one model: "framework|command" lines, environment included (printed as run).
commands_for() {
  local m=$1 ember_env="env GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_NUM_THREADS=$threads"
  local anchor_env="env GLIBC_TUNABLES=glibc.malloc.hugetlb=1 LD_LIBRARY_PATH=$OPENBLAS_OPENMP_DIR OMP_NUM_THREADS=$threads"
  local limit_arg=""
  ((limit > 0)) && limit_arg=" --limit $limit"
  if [[ $m == resnet20 ]]; then
    for b in $resnet_batches; do
      local args="--batch $b --threads $threads --warmup $warmup --steps $steps"
      echo "ember|$ember_env $build_dir/bench/ember_resnet20_step $args"
      echo "libtorch|$anchor_env build-libtorch/libtorch_resnet20 $args"
      echo "libtorch-cl|$anchor_env build-libtorch/libtorch_resnet20 $args --memory-format channels_last"
      ((python)) && echo "pytorch|$anchor_env /usr/bin/python3 bench/resnet20_pytorch.py $args"
    done
  else
    echo "ember|$ember_env $build_dir/examples/ember_mnist --model $m --epochs 1 --threads $threads --workers $workers --data data/mnist --json$limit_arg"
    echo "libtorch|$anchor_env build-libtorch/libtorch_mnist --model $m --threads $threads --data data/mnist$limit_arg"
    ((python)) && echo "pytorch|$anchor_env /usr/bin/python3 bench/mnist_pytorch.py --model $m --threads $threads --data data/mnist$limit_arg"
  fi
  return 0
}

# Math libraries mapped by the children of $1 (the program GNU time runs), until $1 exits.
sample_libraries() {
  local pid=$1 child
  while kill -0 "$pid" 2>/dev/null; do
    for child in $(pgrep -P "$pid" || true); do
      awk '$6 ~ /\/lib(openblas|blas|dnnl|mkl)[^\/]*$/ {print $6}' "/proc/$child/maps" 2>/dev/null || true
    done
    sleep 0.2
  done
}

# Runs one command under GNU time, samples its maps, and appends its JSON line, extended with
# what was measured from outside, to $results.
measure() {
  local framework=$1 model=$2 run=$3 command=$4
  local out=$work/out err=$work/err rss=$work/rss
  local rc=0
  # GNU time's own clock (%e) gives the process time: the sampling below may notice the exit late.
  # shellcheck disable=SC2086  # the command is a word list on purpose
  /usr/bin/time -f 'maxrss_kb=%M elapsed_s=%e' -o "$rss" $command >"$out" 2>"$err" &
  local pid=$!
  sample_libraries "$pid" | sort -u >"$work/libs"
  wait "$pid" || rc=$?
  if ((rc != 0)) || ! grep -q '^{' "$out"; then
    echo "run_cpu_bench.sh: '$command' failed (exit $rc); its output:" >&2
    tail -n 20 "$out" "$err" >&2
    exit 1
  fi
  /usr/bin/python3 bench/cpu_bench_report.py row --framework "$framework" --model "$model" --run "$run" \
    --command "$command" --output "$out" --time "$rss" --libs "$work/libs" \
    --limit "$limit" >>"$results"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for m in $models; do
  mapfile -t cmds < <(commands_for "$m")
  for ((run = 1; run <= runs; ++run)); do
    for entry in "${cmds[@]}"; do measure "${entry%%|*}" "$m" "$run" "${entry#*|}"; done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load after: $load_after" >&2

/usr/bin/python3 bench/cpu_bench_report.py report "$results" --threads "$threads" --runs "$runs" --limit "$limit" \
  --load-after "$load_after" ${csv:+--csv "$csv"} ${json:+--json "$json"}
