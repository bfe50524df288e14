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
#                                     make_synthetic_cifar10 for sm_90, stripped and gzipped (*.gz:
#                                     each holds the whole CUDA backend), plus the non-system,
#                                     non-CUDA libraries they load (carry/bin/lib); gpu_check.sh
#                                     unpacks them and skips its configure and build stage (up to
#                                     300 s of GPU time) and its nccl stage (no ember_dist_tests).
#                                     carry/prefix is left out then (nothing is built there).
# --binaries builds in build-carry/ with EMBER_NATIVE=OFF (the GPU machine's CPU may lack this
# one's instructions), without MPI, OpenBLAS and oneDNN (not on the GPU machine, and libdnnl alone
# is 38 MiB; Eigen's GEMM serves the CPU), and with CUDA: cuDNN, NCCL, cuBLAS and the CUDA runtime
# are loaded there from PyTorch's nvidia/* packages, so this machine's CUDA major version must be
# theirs (13 for torch 2.11+cu130). It is slow on a 2-core machine (the whole CUDA backend), so it
# is opt-in; ccache is used when installed.
# Fails if carry/ plus the checkout's other travelling files (tracked and untracked-not-ignored)
# reach 64 MiB: the device tool's limit for everything that travels. The tool sends the checkout
# its session started in: run this there (carry/ is ignored by git, so it travels only when a
# run names it in `carry`).
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
  launcher=()
  if command -v ccache >/dev/null; then
    export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$ROOT")}"  # hits across checkouts side by side
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S "$ROOT" -B "$BUILD_CARRY" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=ON -DEMBER_NATIVE=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DEMBER_BUILD_BENCH=ON -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON \
    -DEMBER_OPENBLAS=OFF -DEMBER_ONEDNN=OFF "${launcher[@]}" >/dev/null
  targets=(ember_tests ember_mnist ember_gpu_ops ember_cifar10 make_synthetic_cifar10)
  nice -n 19 cmake --build "$BUILD_CARRY" -j"$(nproc)" --target "${targets[@]}"
  mkdir -p "$CARRY/bin/lib"
  for t in tests/ember_tests examples/ember_mnist bench/ember_gpu_ops examples/ember_cifar10 \
    examples/make_synthetic_cifar10; do
    strip -o "$CARRY/bin/$(basename "$t")" "$BUILD_CARRY/$t"
  done
  # The libraries they load that the GPU machine may lack (spdlog, fmt, OpenMP's libgomp, which
  # comes with g++ there but costs little to bring). glibc and libstdc++ are older here than there.
  carried=("$CARRY"/bin/ember_* "$CARRY"/bin/make_synthetic_cifar10)
  ldd "${carried[@]}" | awk '/=> \//{print $3}' | sort -u | while IFS= read -r lib; do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libstdc++.so* | libgcc_s.so* | ld-linux* | libpthread.so* | libdl.so* | \
        librt.so* | libcuda.so* | libcudart.so* | libcublas*.so* | libcudnn*.so* | libnccl.so*) ;;
      *) cp -L "$lib" "$CARRY/bin/lib/" ;;
    esac
  done
  # Anything they load from this machine that is neither copied nor on the list above would be
  # missing there: say so now rather than on the GPU machine.
  ldd "${carried[@]}" | awk '/not found/{print}' | sort -u | sed 's/^/  not found here: /'
  echo "  libraries carried: $(cd "$CARRY/bin/lib" && ls | tr '\n' ' ')"
  # Compressed: five binaries of about 20 MB each (ember and its CUDA kernels linked into every one)
  # would not fit beside MNIST otherwise.
  for t in "${carried[@]}"; do
    unpacked=$(stat -c %s "$t")
    gzip -9 -n "$t"
    echo "  $(basename "$t"): $unpacked bytes stripped, $(stat -c %s "$t.gz") gzipped"
  done
  echo "sm_90, EMBER_NATIVE=OFF, $(git -C "$ROOT" describe --always --dirty) on $(date -u '+%Y-%m-%d %H:%M UTC')" \
    >"$CARRY/bin/BUILT"
  du -sh "$CARRY/bin" | sed 's/^/  binaries: /'
fi

{
  echo "made by scripts/make_carry.sh on $(date -u '+%Y-%m-%d %H:%M UTC') from:"
  for p in "${packages[@]}"; do dpkg-query -W -f='  ${Package} ${Version}\n' "$p"; done
} >"$CARRY/MANIFEST"

bytes=$(du -sb "$CARRY" | cut -f1)
# The rest of what travels with it: the checkout's tracked and untracked-not-ignored files.
tree=$(git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
  (cd "$ROOT" && xargs -0 stat -L -c %s 2>/dev/null) | awk '{s += $1} END {print s + 0}')
echo "carry/: $(find "$CARRY" -type f | wc -l) files, $bytes bytes ($((bytes / 1024 / 1024)) MiB);" \
  "with the checkout's $tree bytes: $(((bytes + tree) / 1024 / 1024)) MiB of the 64 MiB limit"
du -sh "$CARRY"/*/ | sed 's/^/  /'
((bytes + tree < LIMIT)) || die "carry/ ($bytes bytes) and the checkout ($tree bytes) reach the 64 MiB limit"
