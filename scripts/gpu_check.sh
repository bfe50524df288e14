#!/usr/bin/env bash
# The GPU check, sized for lent GPU time (at most 600 s per command, about 15 minutes per task,
# machine start included). On a GPU machine with nvcc, CMake, ninja, g++ and PyTorch with CUDA
# (no Debian -dev packages, no network) it runs, in priority order, each stage given what is left
# of ONE deadline for the whole call (--budget):
#
#   stage        worst case  what
#   probe            20 s    GPU, driver, cuDNN/NCCL/cuBLAS, carry/ (every call)
#   build           300 s    configure + build ember_tests, ember_mnist, ember_gpu_ops, ember_dist_tests
#                            (skipped when carry/bin holds binaries made here by make_carry.sh --binaries)
#   parity           90 s    the CUDA parity and CUDA kernel tests (gtest filter '*Cuda*')
#   mnist_lenet      90 s    LeNet, one epoch, ember then PyTorch on the same GPU: the first verdict
#   mnist_rest      120 s    mlp and cnn, the same way
#   ops              90 s    op benchmarks: ember (cudnn benchmark on) then PyTorch (cudnn.benchmark)
#   nccl             30 s    NCCL on one GPU: init, collectives, finalize+destroy; init timeout+abort
#                            (not with carried binaries: ember_dist_tests is not carried)
#   cifar           120 s    ResNet-20 on synthetic CIFAR-10 (make_synthetic_cifar10, 5000 training
#                            images: 40 steps of 128), one epoch with ember_cifar10 then the same
#                            recipe in PyTorch eager (bench/cifar10_pytorch.py) on the same GPU
#   amp             200 s    mixed precision: the bfloat16/float16 CUDA parity suites (CudaParityHalf*),
#                            then the MNIST cnn and that ResNet-20 with --amp bf16, then PyTorch
#                            autocast bf16 (bench/amp_pytorch.py) on the same GPU; PyTorch's runs are
#                            skipped, saying so, when no PyTorch with CUDA is here
#
# A stage starts only when what is left covers its minimum; otherwise it is skipped with a line
# saying so, and stays pending. `--resume` (same warm machine) runs the pending stages only, with
# no configure and no build; results accumulate in the same table ($OUT/gpu_check.md).
#
#   bash scripts/make_carry.sh [--binaries]       # here, once: fills carry/ (see that script)
#   bash scripts/gpu_check.sh                     # there: first verdict (budget 540 s)
#   bash scripts/gpu_check.sh --resume --budget 200   # there, same machine: the rest
#   bash scripts/gpu_check.sh --dry-run           # anywhere: print the plan only (CI checks it)
#
# Options:
#   --budget S      seconds for the whole call (default 540); stages get what is left of it
#   --resume        run only the stages an earlier call left pending (needs its build folder)
#   --dry-run, --plan-only   print the plan and its last line "plan: N stages, worst case W s,
#                   budget B s" (W <= B: the stages that fit; the others are left for --resume);
#                   needs no GPU and no build; exits 1 if even the first stage cannot fit
#   --out DIR       table and logs (default: $OUT if set, else out/gpu_check)
#   --build DIR     build folder (default: build-gpucheck)
#   --carry DIR     what make_carry.sh made (default: carry/ of this checkout)
#   --jobs N        build parallelism (default: all cores)
#
# Nothing here has run on a GPU yet: the first lent GPU will be its first test.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

START=$(date +%s)
BUDGET=540 RESUME=0 PLAN_ONLY=0 JOBS="$(nproc)" BUILD=build-gpucheck OUTDIR="${OUT:-}" CARRY="$ROOT/carry"
while (($#)); do
  case "$1" in
    --budget) BUDGET="$2"; shift ;;
    --resume) RESUME=1 ;;
    --dry-run | --plan-only) PLAN_ONLY=1 ;;
    --out) OUTDIR="$2"; shift ;;
    --build) BUILD="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    --carry) CARRY="$2"; shift ;;
    -h | --help) sed -n '2,41' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$BUDGET" =~ ^[0-9]+$ ]] || { echo "gpu_check.sh: --budget wants whole seconds, got '$BUDGET'" >&2; exit 2; }
DEADLINE=$((START + BUDGET))
RESERVE=15  # kept back at every point for the final table

# Stages in priority order: name, worst case (its time limit) and minimum worth starting with.
STAGES=(probe build parity mnist_lenet mnist_rest ops nccl cifar amp)
declare -A WORST=([probe]=20 [build]=300 [parity]=90 [mnist_lenet]=90 [mnist_rest]=120 [ops]=90 [nccl]=30 [cifar]=120
                  [amp]=200)
declare -A MINIMUM=([probe]=20 [build]=120 [parity]=30 [mnist_lenet]=40 [mnist_rest]=40 [ops]=30 [nccl]=15
                    [cifar]=50 [amp]=60)
CARRY="$(cd "$CARRY" 2>/dev/null && pwd || echo "$CARRY")"
PREFIX="$CARRY/prefix"
STATE="$BUILD/gpu_check.done"  # stages finished by earlier calls (for --resume)
CARRIED_BIN="$CARRY/bin"

stage_done() { [[ -f "$STATE" ]] && grep -qx "$1" "$STATE"; }
# The stages this call will try, in order: all of them, or with --resume the ones still pending
# (probe always: it sets up the library paths). Carried binaries need no build, and bring no
# ember_dist_tests for the nccl stage.
# has_carried NAME: carry/bin holds binary NAME, gzipped (make_carry.sh --binaries) or not.
has_carried() { [[ -x "$CARRIED_BIN/$1" || -f "$CARRIED_BIN/$1.gz" ]]; }
carried() { has_carried ember_tests; }
planned_stages() {
  local s
  for s in "${STAGES[@]}"; do
    [[ "$s" == build ]] && carried && continue
    [[ "$s" == nccl ]] && carried && ! has_carried ember_dist_tests && continue
    if ((RESUME)) && [[ "$s" != probe ]]; then
      [[ "$s" == build ]] && continue  # --resume never configures or builds
      stage_done "$s" && continue
    fi
    echo "$s"
  done
}

# The plan: the stages whose worst cases fit the budget, in order; the rest wait for --resume.
print_plan() {
  local n=0 worst=$RESERVE s deferred=()
  echo "gpu_check plan (budget $BUDGET s, $RESERVE s kept for the table$( ((RESUME)) && echo ', --resume'))"
  if carried; then
    echo "  binaries: carried in $CARRIED_BIN ($(cat "$CARRIED_BIN/BUILT" 2>/dev/null || echo 'no BUILT file')):" \
      "no configure or build$(has_carried ember_dist_tests || echo ', no nccl stage (ember_dist_tests not carried)')"
  else
    echo "  binaries: built here (the build stage), into $BUILD"
  fi
  for s in $(planned_stages); do
    if ((${#deferred[@]} == 0 && worst + WORST[$s] <= BUDGET)); then
      n=$((n + 1)) worst=$((worst + WORST[$s]))
      printf '  %d. %-12s up to %3d s (starts with at least %d s left)\n' "$n" "$s" "${WORST[$s]}" "${MINIMUM[$s]}"
    else
      deferred+=("$s")
    fi
  done
  ((${#deferred[@]})) && echo "  later (run again with --resume, or earlier if time is left): ${deferred[*]}"
  echo "plan: $n stages, worst case $worst s, budget $BUDGET s"
  ((n > 0))
}

if ((PLAN_ONLY)); then
  print_plan
  exit $?
fi

[[ -n "$OUTDIR" ]] || OUTDIR=out/gpu_check
mkdir -p "$OUTDIR" "$BUILD"
OUTDIR="$(cd "$OUTDIR" && pwd)"
LOG="$OUTDIR/gpu_check.log"
RESULTS="$OUTDIR/results.jsonl"  # one JSON object per line: stages, tests, runs; the table reads it
if ((RESUME)); then
  [[ -f "$STATE" ]] || { echo "gpu_check.sh: --resume: no earlier call recorded in $STATE" >&2; exit 2; }
  # $OUT is emptied before each device command: keep the earlier results in the build folder.
  [[ -f "$BUILD/results.jsonl" && ! -s "$RESULTS" ]] && cp "$BUILD/results.jsonl" "$RESULTS"
else
  : >"$RESULTS"
  : >"$STATE"
fi
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

PY=python3  # on the GPU machine the python3 that holds PyTorch
say() { printf '\n=== [%s, %d s left] %s\n' "$(date -u +%H:%M:%S)" "$(left)" "$*"; }
left() { echo $((DEADLINE - $(date +%s))); }
record() { echo "$1" >>"$RESULTS"; cp "$RESULTS" "$BUILD/results.jsonl"; }  # one JSON line
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

def run_key(r):  # "cnn", or "cnn amp bf16" for a mixed-precision run (its own rows, below)
    amp = r.get("amp", "none")
    return r["model"] if amp == "none" else f"{r['model']} amp {amp}"
def runs(fw):
    return {run_key(r): r for r in rows if r.get("framework") == fw and "model" in r and r.get("kind") != "op"}
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
        if m not in em and m not in pt:
            continue
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
if "resnet20" in em or "resnet20" in pt:
    e, p = em.get("resnet20", {}), pt.get("resnet20", {})
    es, ps = e.get("epoch_seconds"), p.get("epoch_seconds")
    md += ["| ResNet-20, synthetic CIFAR-10, 40 steps | ember s | PyTorch s | ratio | ember acc % | PyTorch acc % | "
           "ember peak MiB | PyTorch peak MiB |", "|" + "---|" * 8,
           f"| one epoch of 5000 | {f(es)} | {f(ps)} | {f(es / ps if es and ps else None)} | "
           f"{f(e.get('test_accuracy'))} | {f(p.get('test_accuracy'))} | {f(e.get('peak_device_mb'), '{:.0f}')} | "
           f"{f(p.get('peak_device_mb'), '{:.0f}')} |", ""]
amp_rows = [k for k in ["cnn amp bf16", "resnet20 amp bf16"] if k in em or k in pt]
if amp_rows:
    md += ["| mixed precision (bf16 autocast) | ember s/epoch | PyTorch s/epoch | ratio | ember acc % | PyTorch acc % | "
           "ember float32 s/epoch | ember peak MiB | PyTorch peak MiB |", "|" + "---|" * 9]
    for k in amp_rows:
        e, p = em.get(k, {}), pt.get(k, {})
        es, ps = e.get("epoch_seconds"), p.get("epoch_seconds")
        f32 = em.get(k.split()[0], {}).get("epoch_seconds")
        md.append(f"| {k} | {f(es)} | {f(ps)} | {f(es / ps if es and ps else None)} | {f(e.get('test_accuracy'))} | "
                  f"{f(p.get('test_accuracy'))} | {f(f32)} | {f(e.get('peak_device_mb'), '{:.0f}')} | "
                  f"{f(p.get('peak_device_mb'), '{:.0f}')} |")
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

# limit_for NAME: the seconds stage NAME may run: its worst case, or what is left if less.
limit_for() {
  local avail=$(($(left) - RESERVE))
  ((avail < WORST[$1])) && echo "$avail" || echo "${WORST[$1]}"
}
# begin NAME: true when the stage may start; otherwise says why it is skipped (it stays pending).
# Once one stage is out of time every lower one is skipped too, so --resume continues in order.
OUT_OF_TIME=0
begin() {
  local avail=$(($(left) - RESERVE))
  if ((OUT_OF_TIME)); then
    say "$1: SKIPPED, a higher-priority stage was out of time; run again with --resume"
    stage "$1" skipped "after an earlier stage ran out of time; pending for --resume"
    return 1
  fi
  if ((avail < MINIMUM[$1])); then
    OUT_OF_TIME=1
    say "$1: SKIPPED, $avail s left of the budget and it needs at least ${MINIMUM[$1]} s; run again with --resume"
    stage "$1" skipped "out of time ($avail s left, needs ${MINIMUM[$1]} s); pending for --resume"
    return 1
  fi
  say "$1 (up to $(limit_for "$1") s)"
}
done_stage() { echo "$1" >>"$STATE"; }

print_plan || finish 1 "the budget of $BUDGET s fits no stage"

# ---------------------------------------------------------------------------------------------
say "probe: machine, GPU, driver, compilers"
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
say "probe: cuDNN, NCCL, cuBLAS (CUDA folder, /usr, or PyTorch's nvidia/* packages)"
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

say "probe: carry/ (headers, libraries, MNIST, maybe binaries) from the CPU machine"
cat "$CARRY/MANIFEST" 2>/dev/null
[[ -d "$PREFIX/include" ]] || carried ||
  finish 1 "carry/ not found: run bash scripts/make_carry.sh on the CPU machine and carry it"
mkdir -p data/mnist
for gz in "$CARRY"/mnist/*.gz; do
  [[ -f "$gz" ]] || continue
  f="data/mnist/$(basename "$gz" .gz)"
  [[ -f "$f" ]] || gzip -dc "$gz" >"$f"
done
if [[ -f "$CARRY/mnist/SHA256SUMS" ]] && (cd data/mnist && sha256sum --quiet -c "$CARRY/mnist/SHA256SUMS"); then
  stage data ok "MNIST verified (SHA-256)"
else
  stage data fail "MNIST missing or checksum mismatch"
fi
done_stage probe

# ---------------------------------------------------------------------------------------------
# The binaries: carried ones (built on the CPU machine for sm_90, stripped and gzipped, with the
# non-CUDA libraries they need in carry/bin/lib; unpacked into the build folder), or this build
# folder's.
if carried; then
  BIN="$CARRIED_BIN"
  if [[ -f "$CARRIED_BIN/ember_tests.gz" ]]; then
    BIN="$BUILD/carried-bin"
    mkdir -p "$BIN"
    for gz in "$CARRIED_BIN"/*.gz; do
      exe="$BIN/$(basename "$gz" .gz)"
      [[ -x "$exe" ]] || { gzip -dc "$gz" >"$exe.part" && chmod +x "$exe.part" && mv "$exe.part" "$exe"; }
    done
  fi
  export LD_LIBRARY_PATH="$CARRIED_BIN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export EMBER_TEST_DATA_DIR="$ROOT/tests/data"  # the binaries were built in another folder (tests/data_dir.h)
  say "build: not needed, using the binaries carried in carry/bin ($(cat "$CARRIED_BIN/BUILT" 2>/dev/null))"
  stage build ok "carried binaries"
  done_stage build
else
  BIN_TESTS="$BUILD/tests" BIN_EXAMPLES="$BUILD/examples" BIN_BENCH="$BUILD/bench" BIN_DIST="$BUILD/tests/distributed"
  BIN=""
fi
bin() {  # bin NAME: the path of binary NAME (carried, or in the build folder)
  if [[ -n "$BIN" ]]; then echo "$BIN/$1"; return; fi
  case "$1" in
    ember_tests) echo "$BIN_TESTS/$1" ;; ember_mnist | ember_cifar10 | make_synthetic_cifar10) echo "$BIN_EXAMPLES/$1" ;;
    ember_gpu_ops) echo "$BIN_BENCH/$1" ;; ember_dist_tests) echo "$BIN_DIST/$1" ;;
  esac
}

if [[ -z "$BIN" ]] && ((!RESUME)) && begin build; then
  cfg_start=$(date +%s)
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
  if ! timeout "$(limit_for build)" cmake "${cfg[@]}" >"$OUTDIR/configure.log" 2>&1; then
    tail -30 "$OUTDIR/configure.log"
    stage configure fail "cmake configure failed (configure.log)"
    finish 1 "configure failed"
  fi
  grep -E '^(Eigen3|nlohmann_json|GTest|CLI11|spdlog|fmt)_DIR:' "$BUILD/CMakeCache.txt"
  # Only what the later stages run; -k 0 builds every target it can, so one broken file still
  # leaves the other binaries to run.
  targets=(ember_tests ember_mnist ember_cifar10 make_synthetic_cifar10)
  grep -q 'ember_gpu_ops' "$BUILD/build.ninja" 2>/dev/null && targets+=(ember_gpu_ops)
  grep -q 'ember_dist_tests' "$BUILD/build.ninja" 2>/dev/null && targets+=(ember_dist_tests)
  if timeout "$(limit_for build)" cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}" -- -k 0; then
    stage build ok "$(($(date +%s) - cfg_start)) s: ${targets[*]}"
    done_stage build
  else
    rc=$?
    stage build fail "rc $rc after $(($(date +%s) - cfg_start)) s (124 = out of time); continuing with what was built"
  fi
fi

# ---------------------------------------------------------------------------------------------
# run_json NAME LIMIT CMD...: runs CMD under LIMIT seconds, shows its output, records its last JSON
# line (a line starting with '{'), or a failed stage when there is none.
run_json() {
  local name=$1 limit=$2 out rc line
  shift 2
  out=$(timeout "$limit" "$@" 2>&1)
  rc=$?
  echo "$out" | tail -n 30
  line=$(grep '^{' <<<"$out" | tail -1)
  if [[ -n "$line" ]]; then record "$line"; else stage "$name" fail "no result line, rc $rc (124 = out of time, ${limit}s)"; fi
}
# mnist MODEL: one epoch with ember, then PyTorch, splitting the stage's time between them.
mnist() {
  local m=$1 half=$(( ($(limit_for "$2") + 1) / 2 ))
  echo "--- ember $m"
  run_json "ember_$m" "$half" "$(bin ember_mnist)" --device cuda --epochs 1 --model "$m" --data data/mnist --json
  echo "--- pytorch $m"
  run_json "pytorch_$m" "$(limit_for "$2")" "$PY" bench/mnist_pytorch.py --device cuda --model "$m" --data data/mnist
  table >/dev/null
}

if ! stage_done parity && begin parity; then
  out="$OUTDIR/parity.log"
  # The bfloat16/float16 parity suites (CudaParityHalf*) run in the amp stage, after the first verdict.
  timeout "$(limit_for parity)" "$(bin ember_tests)" --gtest_filter='*Cuda*:*cuda*:-*CudaParityHalf*' --gtest_brief=1 \
    >"$out" 2>&1
  rc=$?
  tail -n 40 "$out"
  passed=$(grep -oE '\[  PASSED  \] [0-9]+' "$out" | grep -oE '[0-9]+$')
  failed=$(grep -oE '\[  FAILED  \] [0-9]+ test' "$out" | grep -oE '[0-9]+' | head -1)
  skipped=$(grep -oE '\[  SKIPPED \] [0-9]+' "$out" | grep -oE '[0-9]+$' | head -1)
  record "{\"kind\":\"tests\",\"passed\":${passed:-0},\"failed\":${failed:-0},\"skipped\":${skipped:-0},\"total\":null,\"rc\":$rc}"
  if ((rc == 0)); then stage parity ok "${passed:-0} passed"; done_stage parity
  else stage parity fail "rc $rc (124 = out of time); failures in parity.log"; fi
  table >/dev/null
fi

if ! stage_done mnist_lenet && begin mnist_lenet; then
  mnist lenet mnist_lenet
  done_stage mnist_lenet
fi

if ! stage_done mnist_rest && begin mnist_rest; then
  for m in mlp cnn; do mnist "$m" mnist_rest; done
  done_stage mnist_rest
fi

if ! stage_done ops && begin ops; then
  # Every JSON line of each program is recorded; a non-zero exit is a failed stage.
  for prog in ember pytorch; do
    if [[ $prog == ember ]]; then cmd=("$(bin ember_gpu_ops)"); else cmd=("$PY" bench/gpu_ops_pytorch.py); fi
    [[ $prog == pytorch || -x "${cmd[0]}" ]] || { stage ember_ops fail "ember_gpu_ops not built"; continue; }
    limit=$(limit_for ops)
    [[ $prog == ember ]] && limit=$(( (limit + 1) / 2 ))
    out=$(timeout "$limit" "${cmd[@]}" 2>&1)
    rc=$?
    echo "$out" | tail -n 20
    grep '^{' <<<"$out" >>"$RESULTS"
    ((rc)) && stage "${prog}_ops" fail "rc $rc (124 = out of time; a failed result check also fails it)"
  done
  cp "$RESULTS" "$BUILD/results.jsonl"
  done_stage ops
fi

if ! stage_done nccl && begin nccl; then
  if [[ -x "$(bin ember_dist_tests)" ]]; then
    # NCCL_DEBUG=WARN: NCCL says why, should an init or a collective fail.
    if NCCL_DEBUG=WARN timeout "$(limit_for nccl)" "$(bin ember_dist_tests)" --gtest_filter='NcclComm*' \
      --gtest_brief=1 >"$OUTDIR/nccl.log" 2>&1; then
      tail -n 5 "$OUTDIR/nccl.log"
      stage nccl ok "world size 1: init, collectives, finalize+destroy; init timeout then abort"
    else
      rc=$?
      tail -n 40 "$OUTDIR/nccl.log"
      stage nccl fail "rc $rc (124 = out of time); nccl.log"
    fi
  else
    stage nccl skipped "ember_dist_tests not built (no MPI here?) or not carried"
  fi
  done_stage nccl
fi

if ! stage_done cifar && begin cifar; then
  # Bounded: 5000 images at batch 128 = 40 steps of ResNet-20 (one epoch), then the test pass over 1000.
  if [[ -x "$(bin ember_cifar10)" && -x "$(bin make_synthetic_cifar10)" ]]; then
    "$(bin make_synthetic_cifar10)" --out data/cifar10-synthetic --train 5000 --test 1000 --seed 1
    half=$(( ($(limit_for cifar) + 1) / 2 ))
    echo "--- ember resnet20 (synthetic CIFAR-10)"
    run_json ember_cifar10 "$half" "$(bin ember_cifar10)" --device cuda --model resnet20 --epochs 1 --limit 5000 \
      --workers 4 --data data/cifar10-synthetic --json
    echo "--- pytorch resnet20 (synthetic CIFAR-10)"
    run_json pytorch_cifar10 "$(limit_for cifar)" "$PY" bench/cifar10_pytorch.py --device cuda --model resnet20 \
      --epochs 1 --limit 5000 --data data/cifar10-synthetic
  else
    stage cifar skipped "ember_cifar10 or make_synthetic_cifar10 not built (or not carried)"
  fi
  table >/dev/null
  done_stage cifar
fi

if ! stage_done amp && begin amp; then
  # The 16-bit parity suites, then --amp bf16: the MNIST cnn (one epoch) and ResNet-20 on synthetic
  # CIFAR-10 (5000 images, as the cifar stage), each with ember's autocast and then PyTorch's
  # (bench/amp_pytorch.py runs the float32 benchmark scripts inside torch.autocast), on the same
  # card. Each of the five runs gets a fifth of the stage's time; the table puts the training runs
  # beside the float32 runs of earlier stages.
  part=$(( ($(limit_for amp) + 4) / 5 ))
  out="$OUTDIR/parity_half.log"
  timeout "$part" "$(bin ember_tests)" --gtest_filter='*CudaParityHalf*' --gtest_brief=1 >"$out" 2>&1
  rc=$?
  tail -n 40 "$out"
  passed=$(grep -oE '\[  PASSED  \] [0-9]+' "$out" | grep -oE '[0-9]+$')
  if ((rc == 0)); then stage parity_half ok "${passed:-0} passed (bfloat16 and float16 against the CPU)"
  else stage parity_half fail "rc $rc (124 = out of time); failures in parity_half.log"; fi
  if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    has_torch=1
  else
    has_torch=0
    say "amp: PyTorch with CUDA is not importable by $PY: its autocast runs are skipped"
    stage pytorch_amp skipped "no PyTorch with CUDA for $PY"
  fi
  if [[ -x "$(bin ember_mnist)" ]]; then
    echo "--- ember cnn --amp bf16"
    run_json ember_cnn_amp "$part" "$(bin ember_mnist)" --device cuda --epochs 1 --model cnn --amp bf16 \
      --data data/mnist --json
  else
    stage ember_cnn_amp skipped "ember_mnist not built (or not carried)"
  fi
  if ((has_torch)); then
    echo "--- pytorch cnn, autocast bf16"
    run_json pytorch_cnn_amp "$part" "$PY" bench/amp_pytorch.py --amp bf16 mnist --device cuda --model cnn \
      --data data/mnist
  fi
  if [[ -x "$(bin ember_cifar10)" && -x "$(bin make_synthetic_cifar10)" ]]; then
    [[ -f data/cifar10-synthetic/SYNTHETIC.txt ]] ||
      "$(bin make_synthetic_cifar10)" --out data/cifar10-synthetic --train 5000 --test 1000 --seed 1
    echo "--- ember resnet20 --amp bf16 (synthetic CIFAR-10)"
    run_json ember_cifar10_amp "$part" "$(bin ember_cifar10)" --device cuda --model resnet20 --epochs 1 \
      --limit 5000 --workers 4 --amp bf16 --data data/cifar10-synthetic --json
    if ((has_torch)); then
      echo "--- pytorch resnet20, autocast bf16 (synthetic CIFAR-10)"
      run_json pytorch_cifar10_amp "$(limit_for amp)" "$PY" bench/amp_pytorch.py --amp bf16 cifar10 --device cuda \
        --model resnet20 --epochs 1 --limit 5000 --data data/cifar10-synthetic
    fi
  else
    stage ember_cifar10_amp skipped "ember_cifar10 or make_synthetic_cifar10 not built (or not carried)"
  fi
  table >/dev/null
  done_stage amp
fi

nvidia-smi --query-gpu=name,temperature.gpu,clocks.sm,power.draw --format=csv 2>/dev/null
finish 0
