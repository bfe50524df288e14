#!/usr/bin/env bash
# Installs the Debian 12 packages ember needs to build, test and run. Safe to re-run: it asks apt
# only for what is missing, and does nothing at all when everything is present.
#
#   bash scripts/setup.sh           build, test and example dependencies
#   bash scripts/setup.sh --torch   the same plus python3-torch and libtorch-dev (Debian's PyTorch
#                                   1.13, Python and C++), used only by the PyTorch reference
#                                   scripts and the benchmark anchors (the test suite never needs them)
#   bash scripts/setup.sh --bench   the same plus linux-perf (bench/profile.sh) and GNU time
#                                   (/usr/bin/time: peak RSS in bench/run_cpu_bench.sh)
# Options combine: bash scripts/setup.sh --torch --bench is what bench/run_cpu_bench.sh needs.
#
# BLAS is the OpenMP build of OpenBLAS (libopenblas-openmp-dev), not the libopenblas-dev meta
# package: that one pulls the pthread build, whose higher priority switches the system-wide
# libopenblas.so.0 / libblas.so.3 alternatives to it on a user's machine. This script never runs
# update-alternatives or changes any other system setting: it only installs packages (ember itself
# links the openblas-openmp file by path, whatever the alternatives say).
#
# Runs apt-get directly as root, through sudo otherwise. The CUDA toolkit is not a Debian
# package here: the build uses /usr/local/cuda when it exists and skips the CUDA backend otherwise.
set -euo pipefail

packages=(
  build-essential cmake ninja-build    # compiler, build system
  libeigen3-dev                        # dense linear algebra (CPU matmul fallback)
  libopenblas-openmp-dev               # BLAS for CPU matmul, OpenMP build (shares ember's thread pool)
  libdnnl-dev                          # oneDNN: CPU GEMM/convolution engine (and bench/peak, bench/gemm_sweep)
  libspdlog-dev libfmt-dev             # logging
  libgtest-dev libgmock-dev            # unit tests
  libbenchmark-dev                     # micro-benchmarks
  libcli11-dev                         # command-line parsing in examples and tools
  nlohmann-json3-dev                   # JSON (reference values, configs, metrics)
  libopenmpi-dev openmpi-bin           # multi-process (distributed) training under mpirun
  libgloo-dev                          # CPU collectives without MPI (distributed/gloo_communicator.cpp)
  clang libclang-rt-dev libomp-dev     # libFuzzer + ASan/UBSan fuzz targets (tests/fuzz), clang's OpenMP
  python3-matplotlib                   # scripts/plot.py: training curves, scaling and benchmark pictures
)
for arg in "$@"; do
  case "$arg" in
    --torch) packages+=(python3-torch libtorch-dev) ;;
    --bench) packages+=(linux-perf time) ;;
    *) echo "setup.sh: unknown option '$arg' (expected --torch or --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo); fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
