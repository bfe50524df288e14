#!/usr/bin/env bash
# Where one MNIST epoch of ember spends its time: a `perf record` profile of build/examples/ember_mnist
# and its 10 hottest symbols.
#
#   bash bench/profile.sh [mlp|lenet|cnn] [--threads N] [--limit N] [--out DIR] [--build-dir build]
#
# Records with call graphs off (self time per symbol is what the top-10 needs, and it keeps the
# file small) into DIR/perf-MODEL.data (default DIR: build/profile), then prints the top 10 of
#   perf report --stdio --sort dso,symbol
# (the library beside each symbol: stripped ones such as libgomp show only addresses). Open the full profile with: perf report -i DIR/perf-MODEL.data
#
# Needs perf (bash scripts/setup.sh --bench installs linux-perf) and the build
# (cmake --build build --target ember_mnist) and data/mnist (bash scripts/fetch_mnist.sh).
# If perf says it may not open events: as a non-root user, either allow it for this boot with
#   sudo sysctl kernel.perf_event_paranoid=1
# (or -1 for kernel symbols too), or run this script with sudo. Kernel symbols show as [k] only when
# /proc/sys/kernel/kptr_restrict is 0.
set -euo pipefail
cd "$(dirname "$0")/.."

model=lenet threads=2 limit=0 out=build/profile build_dir=build
while (($#)); do
  case "$1" in
    mlp|lenet|cnn) model=$1; shift ;;
    --threads) threads=${2:?}; shift 2 ;;
    --limit) limit=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --build-dir) build_dir=${2:?}; shift 2 ;;
    *) echo "profile.sh: unknown argument '$1' (expected mlp|lenet|cnn, --threads N, --limit N, --out DIR, --build-dir DIR)" >&2; exit 2 ;;
  esac
done
[[ "$threads" =~ ^[1-9][0-9]*$ && "$limit" =~ ^[0-9]+$ ]] || { echo "profile.sh: --threads and --limit need whole numbers" >&2; exit 2; }

command -v perf >/dev/null || { echo "profile.sh: perf not found: bash scripts/setup.sh --bench" >&2; exit 1; }
mnist=$build_dir/examples/ember_mnist
[[ -x $mnist ]] || { echo "profile.sh: $mnist missing: cmake --build $build_dir --target ember_mnist" >&2; exit 1; }
[[ -f data/mnist/train-images-idx3-ubyte ]] || { echo "profile.sh: data/mnist missing: bash scripts/fetch_mnist.sh" >&2; exit 1; }
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo "?")
if [[ $(id -u) -ne 0 && "$paranoid" =~ ^[0-9]+$ ]] && ((paranoid > 1)); then
  echo "profile.sh: kernel.perf_event_paranoid is $paranoid, which forbids profiling a user process's CPU cycles;" >&2
  echo "  run: sudo sysctl kernel.perf_event_paranoid=1   (until reboot), or run this script with sudo" >&2
  exit 1
fi

mkdir -p "$out"
data=$out/perf-$model.data
limit_arg=()
((limit > 0)) && limit_arg=(--limit "$limit")
echo "profiling one $model epoch on $threads thread(s) into $data" >&2
OMP_NUM_THREADS=$threads perf record -q -o "$data" -- "$mnist" --model "$model" --epochs 1 \
  --threads "$threads" --workers 1 --data data/mnist "${limit_arg[@]}" >&2
echo
echo "top 10 symbols, $model, $threads thread(s) (self time, all threads; [k] = kernel):"
# Sorted by library and symbol, not symbol alone: stripped libraries (libgomp, OpenBLAS) show as bare
# addresses, and the library name says whose they are. The sed drops perf's empty trailing columns;
# head closes the pipe early, so perf's SIGPIPE is expected, not a failure.
perf report -i "$data" --stdio --sort dso,symbol 2>/dev/null | grep -v -e '^#' -e '^$' |
  sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' | head -n 10 || true
