#!/usr/bin/env bash
# The GPU check: one script for a GPU machine (nvcc, CMake, ninja, g++, PyTorch with CUDA; no Debian
# -dev packages, no network) that builds ember with CUDA for the card it finds, runs the whole test
# suite, trains each bench network for one epoch on CUDA with ember and with PyTorch, times the GPU
# op benchmarks against PyTorch, and prints one table (also written as markdown for the way back).
#
#   bash scripts/make_carry.sh                 # here, once: fills carry/ (headers, libs, MNIST)
#   bash scripts/gpu_check.sh                  # there, from the repo root, with carry/ carried
#   bash scripts/gpu_check.sh --dry-run        # here (no GPU): every step that needs none, then stops
#
# Options:
#   --dry-run       build in build-gpucheck-dry/, run the CPU tests, stop at the first GPU step
#   --out DIR       where the table and logs go (default: $OUT if set, else out/gpu_check)
#   --build DIR     build folder (default: build-gpucheck, or build-gpucheck-dry with --dry-run)
#   --no-build      reuse the build folder as it is (a rerun on the same warm machine)
#   --jobs N        build parallelism (default: all cores)
# Environment: CTEST_ARGS (extra ctest arguments, e.g. "-R Cuda"), T_BUILD, T_CTEST, T_TRAIN,
# T_OPS (stage time limits in seconds).
#
# Every stage runs under `timeout` and a failed stage is reported, not fatal: the table says which
# stage failed and the log has its output. Results are rewritten after each stage, so a run killed
# at its wall-clock limit still leaves a table of what finished.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DRY=0 NO_BUILD=0 JOBS="$(nproc)" BUILD="" OUTDIR="${OUT:-}"
while (($#)); do
  case "$1" in
    --dry-run) DRY=1 ;;
    --no-build) NO_BUILD=1 ;;
    --out) OUTDIR="$2"; shift ;;
    --build) BUILD="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$BUILD" ]] || { ((DRY)) && BUILD=build-gpucheck-dry || BUILD=build-gpucheck; }
[[ -n "$OUTDIR" ]] || OUTDIR=out/gpu_check
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
T_BUILD=${T_BUILD:-420} T_CTEST=${T_CTEST:-300} T_TRAIN=${T_TRAIN:-150} T_OPS=${T_OPS:-150}
CARRY="$ROOT/carry"
PREFIX="$CARRY/prefix"
LOG="$OUTDIR/gpu_check.log"
RESULTS="$OUTDIR/results.jsonl"  # one JSON object per line: stages, tests, runs; the table reads it
: >"$LOG"
: >"$RESULTS"
exec > >(tee -a "$LOG") 2>&1

PY=python3  # on the GPU machine the python3 that holds PyTorch
say() { printf '\n=== [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
record() { echo "$1" >>"$RESULTS"; }  # one JSON line
stage() {  # stage NAME STATUS DETAIL: recorded for the table (detail on one line, no quotes)
  local detail=${3//$'\n'/ }
  detail=${detail//\\//}
  record "{\"kind\":\"stage\",\"name\":\"$1\",\"status\":\"$2\",\"detail\":\"${detail//\"/\'}\"}"
}
# table: reads results.jsonl, prints the summary table and writes it as markdown to gpu_check.md.
table() {
  "$PY" - "$RESULTS" "$OUTDIR/gpu_check.md" <<'PY' || true
import json, sys
rows = []
for line in open(sys.argv[1]):
    try:
        rows.append(json.loads(line))
    except ValueError:
        pass
md = ["# ember GPU check", ""]
stages = [r for r in rows if r.get("kind") == "stage"]
gpu = next((s["detail"] for s in stages if s["name"] == "gpu"), "?")
md += [f"GPU: {gpu}", ""]
tests = [r for r in rows if r.get("kind") == "tests"]
if tests:
    t = tests[-1]
    md += [f"Tests: **{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped** "
           f"(of {t['total']}; ctest rc {t['rc']})", ""]

def runs(fw):
    return {r["model"]: r for r in rows if r.get("framework") == fw and "model" in r and r.get("kind") != "op"}
em, pt = runs("ember"), runs("pytorch")
goal = {"mlp": 0.5, "lenet": 0.5, "cnn": 0.33}
def f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)
def verdict(ok):
    return "-" if ok is None else ("PASS" if ok else "MISS")
if em or pt:
    md += ["| network | ember s/epoch | PyTorch s/epoch | ratio | goal | | ember acc % | PyTorch acc % | acc | "
           "ember peak MiB | PyTorch peak MiB | mem | launches/step |", "|" + "---|" * 13]
    for m in ["mlp", "lenet", "cnn"]:
        e, p = em.get(m, {}), pt.get(m, {})
        es, ps = e.get("epoch_seconds"), p.get("epoch_seconds")
        ratio = es / ps if es and ps else None
        ea, pa = e.get("test_accuracy"), p.get("test_accuracy")
        em_mb, pt_mb = e.get("peak_device_mb"), p.get("peak_device_mb")
        md.append(f"| {m} | {f(es)} | {f(ps)} | {f(ratio)} | <= {goal[m]} | "
                  f"{verdict(None if ratio is None else ratio <= goal[m])} | {f(ea)} | {f(pa)} | "
                  f"{verdict(None if ea is None or pa is None else abs(ea - pa) <= 0.5)} | {f(em_mb, '{:.0f}')} | "
                  f"{f(pt_mb, '{:.0f}')} | {verdict(None if em_mb is None or pt_mb is None else em_mb <= pt_mb)} | "
                  f"{f(e.get('launches_per_step'), '{:.1f}')} |")
    md.append("")
ops = {}
for r in rows:
    if r.get("kind") == "op":
        ops.setdefault(r["op"], {})[r["framework"]] = r
if ops:
    md += ["| op | ember ms | PyTorch ms | ember TFLOP/s | PyTorch TFLOP/s | PyTorch time / ember time | goal | |",
           "|" + "---|" * 8]
    for op, d in ops.items():
        e, p = d.get("ember", {}), d.get("pytorch", {})
        ratio = p["ms"] / e["ms"] if e.get("ms") and p.get("ms") else None
        md.append(f"| {op} | {f(e.get('ms'), '{:.3f}')} | {f(p.get('ms'), '{:.3f}')} | {f(e.get('tflops'), '{:.1f}')} | "
                  f"{f(p.get('tflops'), '{:.1f}')} | {f(ratio)} | >= 0.9 | {verdict(None if ratio is None else ratio >= 0.9)} |")
    md.append("")
md += ["| stage | status | detail |", "|---|---|---|"]
md += [f"| {s['name']} | {s['status']} | {s['detail']} |" for s in stages]
text = "\n".join(md) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
}
finish() {  # finish EXIT_CODE [why]
  if [[ -n "${2:-}" ]]; then say "STOP: $2"; stage stop stopped "$2"; fi
  say "summary (also $OUTDIR/gpu_check.md)"
  table
  exit "$1"
}

# ---------------------------------------------------------------------------------------------
say "1. machine: GPU, driver, compilers"
uname -a
GPU=0 ARCH=90
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.sm,clocks.max.sm --format=csv
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  [[ "$cap" =~ ^[0-9]+$ ]] && ARCH=$cap
  card=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
  stage gpu ok "$card, sm_$ARCH"
  GPU=1
else
  echo "no GPU: nvidia-smi $(command -v nvidia-smi >/dev/null && echo 'lists no device' || echo 'not found');" \
    "building for sm_$ARCH (H100/H200)"
  stage gpu none "no GPU visible (nvidia-smi $(command -v nvidia-smi >/dev/null && echo 'lists none' || echo 'absent'))"
fi
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[[ -x "$NVCC" ]] && "$NVCC" --version | tail -2 || echo "nvcc: not found"
for t in g++ cmake ninja "$PY"; do printf '%-8s %s\n' "$t" "$("$t" --version 2>&1 | head -1)"; done
"$PY" - <<'PY' 2>&1 || true
try:
    import torch
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
          f"cuda available: {torch.cuda.is_available()}"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
except Exception as e:
    print("torch: not importable here:", e)
PY

# ---------------------------------------------------------------------------------------------
say "2. cuDNN, NCCL, cuBLAS: headers and libraries (CUDA folder, /usr, or PyTorch's nvidia/* packages)"
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
search=("$CUDA_HOME" "$CUDA_HOME/targets/x86_64-linux" /usr/local/cuda /usr /usr/lib/x86_64-linux-gnu)
nvidia_pkgs=$("$PY" -c 'import nvidia, os; print("\n".join(os.path.abspath(p) for p in nvidia.__path__))' 2>/dev/null)
while IFS= read -r p; do [[ -n "$p" ]] && search+=("$p"/*); done <<<"$nvidia_pkgs"
echo "nvidia Python packages: ${nvidia_pkgs:-none}"
# find_one PATTERN: the first file matching PATTERN under include/ or lib*/ of a search folder.
find_one() {
  local d hit
  for d in "${search[@]}"; do
    [[ -d "$d" ]] || continue
    hit=$(find -L "$d" -maxdepth 3 \( -path '*/include/*' -o -path '*/lib*/*' \) -name "$1" 2>/dev/null | sort | head -1)
    [[ -n "$hit" ]] && { echo "$hit"; return 0; }
  done
  return 1
}
# find_lib NAME: libNAME.so, else the versioned libNAME.so.N that pip wheels ship (no dev link).
find_lib() { find_one "lib$1.so" || find_one "lib$1.so.[0-9]*"; }
CUDNN_H=$(find_one cudnn.h) CUDNN_LIB=$(find_lib cudnn)
NCCL_H=$(find_one nccl.h) NCCL_LIB=$(find_lib nccl)
CUBLAS_H=$(find_one cublas_v2.h) CUBLAS_LIB=$(find_lib cublas) CUBLASLT_LIB=$(find_lib cublasLt)
libdirs=() incdirs=() missing=()
for v in CUDNN_H CUDNN_LIB NCCL_H NCCL_LIB CUBLAS_H CUBLAS_LIB CUBLASLT_LIB; do
  printf '  %-13s %s\n' "$v" "${!v:-NOT FOUND}"
  if [[ -z "${!v}" ]]; then missing+=("$v"); continue; fi
  case "$v" in *_H) incdirs+=("$(dirname "${!v}")") ;; *) libdirs+=("$(dirname "${!v}")") ;; esac
done
[[ -n "$CUDNN_H" ]] && grep -h -E '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$(dirname "$CUDNN_H")"/cudnn_version.h 2>/dev/null | tr '\n' ' ' && echo
[[ -n "$NCCL_H" ]] && grep -h -E '#define NCCL_(MAJOR|MINOR|PATCH) ' "$NCCL_H" | tr '\n' ' ' && echo
uniq_join() { printf '%s\n' "$@" | awk 'NF && !seen[$0]++' | paste -sd:; }
LIBPATH=$(uniq_join "${libdirs[@]}" "$PREFIX/lib/x86_64-linux-gnu")
INCPATH=$(uniq_join "${incdirs[@]}")
export LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LIBRARY_PATH="$LIBPATH${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CPATH="$INCPATH${CPATH:+:$CPATH}"  # cublas_v2.h etc. when they sit outside the toolkit's include/
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
if ((${#missing[@]})); then stage libs fail "not found: ${missing[*]}"; else stage libs ok "cuDNN $CUDNN_LIB; NCCL $NCCL_LIB; cuBLAS $CUBLAS_LIB"; fi

# ---------------------------------------------------------------------------------------------
say "3. carry/: headers, libraries and MNIST brought from the CPU machine"
[[ -d "$PREFIX/include" ]] || { stage carry fail "carry/prefix missing"; finish 1 "carry/ not found: run bash scripts/make_carry.sh on the CPU machine and carry it"; }
cat "$CARRY/MANIFEST" 2>/dev/null
mkdir -p data/mnist
for gz in "$CARRY"/mnist/*.gz; do
  f="data/mnist/$(basename "$gz" .gz)"
  [[ -f "$f" ]] || gzip -dc "$gz" >"$f"
done
if (cd data/mnist && sha256sum -c "$CARRY/mnist/SHA256SUMS"); then stage data ok "MNIST verified (SHA-256)"; else stage data fail "MNIST checksum mismatch"; fi

# ---------------------------------------------------------------------------------------------
if ((NO_BUILD)); then
  say "4. build: skipped (--no-build), using $BUILD"
else
  say "4. configure + build ($BUILD, EMBER_CUDA=ON, sm_$ARCH, Release, -j$JOBS)"
  lib=$PREFIX/lib/x86_64-linux-gnu
  cfg=(-S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=ON
    -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$ARCH"
    -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_POLICY_VERSION_MINIMUM=3.5
    -DEigen3_DIR="$PREFIX/share/eigen3/cmake" -Dnlohmann_json_DIR="$PREFIX/share/cmake/nlohmann_json"
    -DGTest_DIR="$lib/cmake/GTest" -DCLI11_DIR="$PREFIX/share/cmake/CLI11"
    -Dspdlog_DIR="$lib/cmake/spdlog" -Dfmt_DIR="$lib/cmake/fmt")
  [[ -n "$CUDNN_H" ]] && cfg+=(-DEMBER_CUDNN_INCLUDE_DIR="$(dirname "$CUDNN_H")" -DEMBER_CUDNN_LIBRARY="$CUDNN_LIB")
  [[ -n "$NCCL_H" ]] && cfg+=(-DEMBER_NCCL_INCLUDE_DIR="$(dirname "$NCCL_H")" -DEMBER_NCCL_LIBRARY="$NCCL_LIB")
  [[ -n "$CUBLAS_LIB" ]] && cfg+=(-DCUDA_cublas_LIBRARY="$CUBLAS_LIB")
  [[ -n "$CUBLASLT_LIB" ]] && cfg+=(-DCUDA_cublasLt_LIBRARY="$CUBLASLT_LIB")
  echo "cmake ${cfg[*]}"
  if ! timeout 180 cmake "${cfg[@]}"; then stage configure fail "cmake configure failed (see log)"; finish 1 "configure failed"; fi
  # The configure must have taken the carried packages, not stray system ones.
  grep -E '^(Eigen3|nlohmann_json|GTest|CLI11|spdlog|fmt)_DIR:' "$BUILD/CMakeCache.txt"
  stage configure ok "sm_$ARCH, prefix carry/prefix"
  t0=$(date +%s)
  # -k 0: ninja builds every target it can, so one broken file still leaves the other binaries to
  # run; the stages below report whatever is missing.
  if timeout "$T_BUILD" cmake --build "$BUILD" -j"$JOBS" -- -k 0; then
    stage build ok "$(($(date +%s) - t0)) s"
  else
    rc=$?
    stage build fail "rc $rc after $(($(date +%s) - t0)) s (124 = timeout ${T_BUILD}s); continuing with what was built"
    grep -h -A6 '^FAILED: ' "$LOG" | grep -E '^FAILED: |error' | head -30  # the failures, once more, at the end
  fi
fi

# ---------------------------------------------------------------------------------------------
say "5. ctest (-j8, 300 s per test, ${T_CTEST} s in all) ${CTEST_ARGS:-}"
ctest_log="$OUTDIR/ctest.log"
# shellcheck disable=SC2086
timeout "$T_CTEST" ctest --test-dir "$BUILD" -j8 --timeout 300 --output-on-failure ${CTEST_ARGS:-} >"$ctest_log" 2>&1
rc=$?
tail -n 40 "$ctest_log"
# Each result line: "  12/980 Test  #12: Suite.Name ....   Passed    0.01 sec" (or ***Skipped, ***Failed, ...)
passed=$(grep -cE 'Test +#[0-9]+: .* Passed ' "$ctest_log")
skipped=$(grep -cE 'Test +#[0-9]+: .*\*\*\*Skipped' "$ctest_log")
failed=$(grep -E 'Test +#[0-9]+: ' "$ctest_log" | grep -vcE ' Passed |\*\*\*Skipped')
total=$(grep -oE 'tests failed out of [0-9]+' "$ctest_log" | grep -oE '[0-9]+$')
record "{\"kind\":\"tests\",\"passed\":$passed,\"failed\":$failed,\"skipped\":$skipped,\"total\":${total:-null},\"rc\":$rc}"
grep -E 'Test +#[0-9]+: ' "$ctest_log" | grep -vE ' Passed |\*\*\*Skipped' | head -50 >"$OUTDIR/ctest_failed.txt"
if ((rc == 124)); then stage ctest fail "timed out after ${T_CTEST}s; counts are partial"
elif ((failed)); then stage ctest fail "$failed failed (list: ctest_failed.txt)"
else stage ctest ok "rc $rc"; fi
table

# ---------------------------------------------------------------------------------------------
MODELS=(mlp lenet cnn)
if ((!GPU)); then
  finish 0 "dry run: no GPU here. Everything that needs none has run; the next step is
      $BUILD/examples/ember_mnist --device cuda --epochs 1 --model {mlp,lenet,cnn} --json
  then bench/mnist_pytorch.py --device cuda and the GPU op benchmarks (ember_gpu_ops, bench/gpu_ops_pytorch.py)."
fi

say "6. MNIST, one epoch per network, ember on CUDA"
# run_json NAME CMD...: runs CMD under the training time limit, shows its output, records its last
# JSON line (a line starting with '{'), or a failed stage when there is none.
run_json() {
  local name=$1 out rc line
  shift
  out=$(timeout "$T_TRAIN" "$@" 2>&1)
  rc=$?
  echo "$out"
  line=$(grep '^{' <<<"$out" | tail -1)
  if [[ -n "$line" ]]; then record "$line"; else stage "$name" fail "no result line, rc $rc (124 = timeout ${T_TRAIN}s; see log)"; fi
}
for m in "${MODELS[@]}"; do
  echo "--- ember $m"
  run_json "ember_$m" "$BUILD/examples/ember_mnist" --device cuda --epochs 1 --model "$m" --data data/mnist --json
  table >/dev/null
done

say "7. MNIST, one epoch per network, PyTorch (eager) on the same GPU"
for m in "${MODELS[@]}"; do
  echo "--- pytorch $m"
  run_json "pytorch_$m" "$PY" bench/mnist_pytorch.py --device cuda --model "$m" --data data/mnist
  table >/dev/null
done

say "8. GPU op benchmarks: matmul 4096^3 TF32, conv2d 64->64 3x3 on [256,64,56,56]; ember then PyTorch"
# run_ops NAME CMD...: every JSON line of CMD is recorded; a non-zero exit is a failed stage.
run_ops() {
  local name=$1 out rc
  shift
  out=$(timeout "$T_OPS" "$@" 2>&1)
  rc=$?
  echo "$out"
  grep '^{' <<<"$out" >>"$RESULTS"
  if ((rc)); then stage "$name" fail "rc $rc (124 = timeout ${T_OPS}s; a failed result check also fails it)"; fi
}
if [[ -x "$BUILD/bench/ember_gpu_ops" ]]; then
  run_ops ember_ops "$BUILD/bench/ember_gpu_ops"
else
  stage ember_ops fail "$BUILD/bench/ember_gpu_ops not built"
fi
run_ops pytorch_ops "$PY" bench/gpu_ops_pytorch.py
nvidia-smi --query-gpu=name,temperature.gpu,clocks.sm,power.draw --format=csv

finish 0
