#!/usr/bin/env bash
# Fills carry/ (ignored by git) with what the GPU machine lacks to build and run ember: the headers,
# static/shared libraries and CMake package files of the Debian packages the build finds with
# find_package, copied from this machine's installed packages (dpkg -L), plus MNIST (gzipped).
# scripts/gpu_check.sh then builds there with CMAKE_PREFIX_PATH=carry/prefix.
#
#   bash scripts/make_carry.sh            # then: carry/ travels with the GPU check (carry: ["carry"])
#
# The GPU machine has nvcc, CMake, ninja, g++ and PyTorch (with cuDNN/NCCL/cuBLAS in its Python
# packages) but no Debian -dev packages and no network. Layout (Debian's own, so each package's
# CMake files find their headers and libraries relative to themselves):
#   carry/prefix/include/{eigen3,nlohmann,gtest,gmock,CLI,spdlog,fmt}
#   carry/prefix/share/{eigen3/cmake,cmake/nlohmann_json,cmake/CLI11}
#   carry/prefix/lib/x86_64-linux-gnu/{libgtest*.a,libgmock*.a,libspdlog.so*,libfmt.so*,cmake/{GTest,spdlog,fmt}}
#   carry/mnist/*.gz                  the four IDX files, gzipped (53 MB -> 11 MB)
#   carry/bin/ (with --binaries)      ember_tests, ember_mnist, ember_gpu_ops, ember_cifar10 and
#                                     make_synthetic_cifar10 for sm_90, stripped,
#                                     plus the non-system, non-CUDA libraries they load
#                                     (carry/bin/lib); gpu_check.sh then skips its configure and
#                                     build stage (up to 300 s of GPU time) and its nccl stage
#                                     (ember_dist_tests would not fit in 64 MiB beside them).
#                                     carry/prefix is left out then (nothing is built there).
# --binaries builds in build-carry/ with EMBER_NATIVE=OFF (the GPU machine's CPU may lack this
# one's instructions), without MPI and OpenBLAS (not on the GPU machine; Eigen's GEMM serves the
# CPU), and with CUDA: cuDNN, NCCL and cuBLAS are loaded there from PyTorch's nvidia/* packages.
# It is slow on a 2-core machine (the whole CUDA backend), so it is opt-in.
# Fails if carry/ reaches 64 MiB (the device tool's limit for everything that travels).
set -euo pipefail
BINARIES=0
[[ "${1:-}" == --binaries ]] && BINARIES=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/carry"
PREFIX="$CARRY/prefix"
LIMIT=$((64 * 1024 * 1024))

die() { echo "make_carry.sh: error: $*" >&2; exit 1; }

# Package -> why the build needs it (find_package in CMakeLists.txt, tests/, examples/).
packages=(
  libeigen3-dev       # find_package(Eigen3) in CMakeLists.txt
  nlohmann-json3-dev  # find_package(nlohmann_json) in CMakeLists.txt, tests/
  libgtest-dev        # find_package(GTest) in tests/ (static libgtest.a, libgtest_main.a)
  libgmock-dev        # GTestConfig.cmake includes GMockTargets.cmake
  libcli11-dev        # find_package(CLI11) in examples/
  libspdlog-dev       # find_package(spdlog) in examples/ (shared libspdlog.so, needs fmt)
  libfmt-dev          # spdlog's dependency
)
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    die "Debian package $p is not installed here (bash scripts/setup.sh installs it)"
done

rm -rf "$CARRY"
mkdir -p "$PREFIX" "$CARRY/mnist"

# Copies every file and symlink of the packages under /usr/include, /usr/lib and /usr/share/*/cmake
# or /usr/share/cmake, keeping paths relative to /usr. Docs and pkg-config files stay behind.
# With --binaries the GPU machine builds nothing, so the prefix stays behind: that keeps carry/
# under 64 MiB (ember_tests alone is about 17 MB stripped).
((BINARIES)) && packages_to_copy=() || packages_to_copy=("${packages[@]}")
for p in "${packages_to_copy[@]}"; do
  while IFS= read -r f; do
    case "$f" in
      /usr/include/* | /usr/lib/x86_64-linux-gnu/*.a | /usr/lib/x86_64-linux-gnu/*.so* | \
        /usr/lib/x86_64-linux-gnu/cmake/* | /usr/share/cmake/* | /usr/share/eigen3/cmake/*) ;;
      *) continue ;;
    esac
    [[ -f "$f" || -L "$f" ]] || continue  # directories are made as needed
    rel="${f#/usr/}"
    mkdir -p "$PREFIX/$(dirname "$rel")"
    cp -P "$f" "$PREFIX/$rel"
  done < <(dpkg -L "$p")
done
# The -dev packages hold only the libspdlog.so / libfmt.so links; the files they point to belong to
# the runtime packages (libspdlog1.1, libfmt9). Copy the targets too, resolving the link chain.
for link in "$PREFIX"/lib/x86_64-linux-gnu/*.so; do
  [[ -L "$link" ]] || continue  # (no match with --binaries: the glob stays literal)
  src="/usr/lib/x86_64-linux-gnu/$(basename "$link")"
  while [[ -L "$src" ]]; do
    next="$(readlink "$src")"
    [[ "$next" == /* ]] || next="$(dirname "$src")/$next"
    cp -P "$src" "$PREFIX/lib/x86_64-linux-gnu/" 2>/dev/null || true
    src="$next"
  done
  cp "$src" "$PREFIX/lib/x86_64-linux-gnu/"
done
# Every link must resolve inside the prefix, or CMake would point at a file the GPU machine lacks.
while IFS= read -r l; do
  [[ -e "$l" ]] || die "dangling link in carry: $l -> $(readlink "$l")"
done < <(find "$PREFIX" -type l)

# MNIST: verified by fetch_mnist.sh (size + SHA-256) here; gpu_check.sh re-checks the SHA-256 there.
bash "$ROOT/scripts/fetch_mnist.sh" "$ROOT/data/mnist"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  gzip -9 -c "$ROOT/data/mnist/$f" >"$CARRY/mnist/$f.gz"
  (cd "$ROOT/data/mnist" && sha256sum "$f") >>"$CARRY/mnist/SHA256SUMS"
done

# Binaries for the GPU machine: build, strip, and copy with the libraries it lacks. CUDA's own
# libraries (libcudart is linked statically or comes with the toolkit; cuDNN, NCCL, cuBLAS come
# from PyTorch's packages there) and the C/C++ runtime (g++ is there) stay behind.
if ((BINARIES)); then
  BUILD_CARRY="$ROOT/build-carry"
  cmake -S "$ROOT" -B "$BUILD_CARRY" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=ON -DEMBER_NATIVE=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DEMBER_BUILD_BENCH=ON -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON \
    -DEMBER_BLAS_LIBRARY=EMBER_BLAS_LIBRARY-NOTFOUND >/dev/null
  targets=(ember_tests ember_mnist ember_gpu_ops ember_cifar10 make_synthetic_cifar10)
  nice -n 19 cmake --build "$BUILD_CARRY" -j"$(nproc)" --target "${targets[@]}"
  mkdir -p "$CARRY/bin/lib"
  for t in tests/ember_tests examples/ember_mnist bench/ember_gpu_ops examples/ember_cifar10 \
    examples/make_synthetic_cifar10; do
    strip -o "$CARRY/bin/$(basename "$t")" "$BUILD_CARRY/$t"
  done
  # The libraries they load that the GPU machine may lack (spdlog, fmt, ...).
  ldd "$CARRY"/bin/ember_* | awk '/=> \//{print $3}' | sort -u | while IFS= read -r lib; do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libstdc++.so* | libgcc_s.so* | libgomp.so* | ld-linux* | libpthread.so* | libdl.so* | \
        librt.so* | libcuda.so* | libcudart.so* | libcublas*.so* | libcudnn*.so* | libnccl.so*) ;;
      *) cp -L "$lib" "$CARRY/bin/lib/" ;;
    esac
  done
  echo "sm_90, EMBER_NATIVE=OFF, $(git -C "$ROOT" rev-parse --short HEAD) on $(date -u '+%Y-%m-%d %H:%M UTC')" \
    >"$CARRY/bin/BUILT"
  du -sh "$CARRY/bin" | sed 's/^/  binaries: /'
fi

{
  echo "made by scripts/make_carry.sh on $(date -u '+%Y-%m-%d %H:%M UTC') from:"
  for p in "${packages[@]}"; do dpkg-query -W -f='  ${Package} ${Version}\n' "$p"; done
} >"$CARRY/MANIFEST"

bytes=$(du -sb "$CARRY" | cut -f1)
echo "carry/: $(find "$CARRY" -type f | wc -l) files, $bytes bytes ($((bytes / 1024 / 1024)) MiB; limit 64 MiB)"
du -sh "$CARRY"/*/ | sed 's/^/  /'
((bytes < LIMIT)) || die "carry/ is $bytes bytes, at or over the 64 MiB limit"
