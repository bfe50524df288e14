#!/usr/bin/env bash
# Installs the Debian 12 packages ember needs to build, test and run. Safe to re-run: it asks apt
# only for what is missing, and does nothing at all when everything is present.
#
#   bash scripts/setup.sh           build, test and example dependencies
#   bash scripts/setup.sh --torch   the same plus python3-torch, used only by the PyTorch
#                                   reference/benchmark scripts (the test suite never needs it)
#
# Runs apt-get directly as root, through sudo otherwise. The CUDA toolkit is not a Debian
# package here: the build uses /usr/local/cuda when it exists and skips the CUDA backend otherwise.
set -euo pipefail

packages=(
  build-essential cmake ninja-build    # compiler, build system
  libeigen3-dev                        # dense linear algebra (CPU matmul fallback)
  libopenblas-dev libopenblas0-openmp  # BLAS for CPU matmul, OpenMP build (shares ember's thread pool)
  libspdlog-dev libfmt-dev             # logging
  libgtest-dev libgmock-dev            # unit tests
  libbenchmark-dev                     # micro-benchmarks
  libcli11-dev                         # command-line parsing in examples and tools
  nlohmann-json3-dev                   # JSON (reference values, configs, metrics)
  libopenmpi-dev openmpi-bin           # multi-process (distributed) training
  clang libclang-rt-dev libomp-dev     # libFuzzer + ASan/UBSan fuzz targets (tests/fuzz), clang's OpenMP
)
for arg in "$@"; do
  case "$arg" in
    --torch) packages+=(python3-torch) ;;
    *) echo "setup.sh: unknown option '$arg' (expected --torch)" >&2; exit 2 ;;
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
