#!/usr/bin/env bash
# Builds tests/package/consumer, a project outside ember's tree, against this ember build; ctest runs
# it (tests/package/CMakeLists.txt says what each mode covers).
#
#   run_package_test.sh find_package|add_subdirectory EMBER_BUILD_DIR EMBER_SOURCE_DIR WORK_DIR [-DVAR=VALUE...]
#
# find_package:     cmake --install EMBER_BUILD_DIR into WORK_DIR/prefix, then configure, build and
#                   run the consumer with CMAKE_PREFIX_PATH=WORK_DIR/prefix.
# add_subdirectory: configure the consumer with EMBER_SOURCE_DIR as a subdirectory (the -D options
#                   go to ember's configure) and compile the consumer's main.cpp only.
# Either way the consumer's compile command for main.cpp must ask for C++20 and carry none of
# ember's private flags. Prints "<mode> OK" and exits 0 when every check passed.
set -euo pipefail

mode=$1 ember_build=$2 ember_source=$3 work=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
consumer_source=$here/consumer

fail() { echo "package test ($mode) FAILED: $*" >&2; exit 1; }

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
# Only CMAKE_* options matter to an installed package; the EMBER_* ones configure ember's source.
cmake_options=()
for option in "$@"; do
  if [[ $mode == add_subdirectory || $option == -DCMAKE_* ]]; then cmake_options+=("$option"); fi
done

build=$work/consumer-$mode
rm -rf "$build"
case $mode in
  find_package)
    prefix=$work/prefix
    rm -rf "$prefix"
    echo "---- cmake --install $ember_build --prefix $prefix"
    cmake --install "$ember_build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
    for file in include/ember/core/tensor.h include/ember/nn/nn.h include/ember/core/version.h \
                lib/cmake/ember/emberConfig.cmake lib/cmake/ember/emberConfigVersion.cmake; do
      [[ -f $prefix/$file ]] || fail "the install has no $file"
    done
    echo "---- configure the consumer with find_package(ember)"
    cmake -S "$consumer_source" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_PREFIX_PATH="$prefix" "${cmake_options[@]}" || fail "configure"
    ;;
  add_subdirectory)
    echo "---- configure the consumer with add_subdirectory($ember_source)"
    cmake -S "$consumer_source" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
          -DEMBER_SOURCE_DIR="$ember_source" "${cmake_options[@]}" || fail "configure"
    # Included by another project, ember builds none of its tests, examples or benchmarks.
    for option in EMBER_BUILD_TESTS EMBER_BUILD_EXAMPLES EMBER_BUILD_BENCH EMBER_INSTALL; do
      grep -qx "$option:BOOL=OFF" "$build/CMakeCache.txt" || fail "$option is not OFF when ember is a subdirectory"
    done
    ;;
  *) fail "unknown mode '$mode' (expected find_package or add_subdirectory)" ;;
esac

echo "---- the flags that reached the consumer's main.cpp"
object=$(python3 "$here/check_compile_commands.py" "$build/compile_commands.json" "$consumer_source/main.cpp" \
         "$([[ $mode == add_subdirectory ]] && echo "$ember_source/core/tensor.cpp")") || fail "compile flags"

if [[ $mode == add_subdirectory ]]; then
  if ((${#generator[@]} == 0)); then
    echo "---- not compiling main.cpp: building one object file by name needs Ninja"
  else
    echo "---- compile the consumer's main.cpp against ember's source tree"
    cmake --build "$build" --target "$object" || fail "compiling main.cpp"
  fi
  echo "add_subdirectory OK"
  exit 0
fi

echo "---- build and run the consumer"
cmake --build "$build" || fail "build"
if command -v ldd >/dev/null && grep -q "openblas-openmp" "$prefix/lib/cmake/ember/emberConfig.cmake"; then
  # ember links the OpenMP OpenBLAS by path; the loader must pick that file for the consumer too,
  # not the pthread build Debian's alternatives point libopenblas.so.0 at.
  # (ldd's output is kept first: under pipefail, grep -q quitting early would fail the pipe.)
  libraries=$(ldd "$build/ember_consumer")
  grep openblas <<<"$libraries" || true
  grep -q "openblas-openmp/libopenblas" <<<"$libraries" || fail "the consumer does not load the OpenMP OpenBLAS"
fi
"$build/ember_consumer" || fail "the consumer program"
echo "find_package OK"
