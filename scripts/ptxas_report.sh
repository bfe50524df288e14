#!/usr/bin/env bash
# Registers, stack and spills of every CUDA kernel, as ptxas reports them (-Xptxas -v), one line a
# kernel: what issue 19 asks to compare before and after a kernel change ("no new spills"). Needs
# nvcc only (no GPU); compiles each .cu on its own, for sm_90 by default, with the build's flags.
#
#   bash scripts/ptxas_report.sh                      # every cuda/*.cu of this checkout
#   bash scripts/ptxas_report.sh cuda/cuda_reduce.cu  # some of them
#   ARCH=80 ROOT=/path/to/other/checkout bash scripts/ptxas_report.sh   # another tree (a baseline)
#
# Output: "regs stack spill_stores spill_loads file kernel" (sizes in bytes), sorted by file and
# kernel, then a line counting the kernels that spill or use a stack frame (-1: ptxas printed no
# stack line for that kernel). Slow on a small CPU
# (the reductions instantiate many kernels): run it with nice.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ARCH="${ARCH:-90}"
NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
FILT="$(dirname "$NVCC")/cu++filt"
[[ -x "$FILT" ]] || FILT="$(command -v c++filt || echo cat)"
cd "$ROOT"
files=("$@")
((${#files[@]})) || files=(cuda/*.cu)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for f in "${files[@]}"; do
  # The flags of cuda/CMakeLists.txt (Release); -cubin compiles the device code only (what ptxas
  # reports on), skipping the host compile that -c would add.
  "$NVCC" -I"$ROOT" -O3 -DNDEBUG "--generate-code=arch=compute_$ARCH,code=sm_$ARCH" --expt-relaxed-constexpr \
    -diag-suppress=186,173 -std=c++20 -x cu -Xptxas -v -cubin "$f" -o "$tmp/out.cubin" 2>"$tmp/log" ||
    { cat "$tmp/log" >&2; echo "ptxas_report.sh: $f failed to compile" >&2; exit 1; }
  # ptxas prints, per kernel: "Compiling entry function 'NAME'", "N bytes stack frame, S bytes
  # spill stores, L bytes spill loads", "Used R registers, ...". Device functions that are not
  # kernels ("Function properties for" without an entry) are skipped.
  awk -v file="$(basename "$f")" '
    /Compiling entry function/ { match($0, /'\''[^'\'']+'\''/); name = substr($0, RSTART + 1, RLENGTH - 2); entry = 1; stack = st = ld = -1; next }
    /Function properties for/ { props = $NF }
    /bytes stack frame/ && entry && props == name { stack = $1; st = $5; ld = $9 }
    /Used [0-9]+ registers/ && entry {
      match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15)
      print regs, stack, st, ld, file, name; entry = 0
    }' "$tmp/log" >>"$tmp/kernels"
done

# Demangle the names (the last field) and shorten them: drop the namespaces, "void " and the
# parameter list (the template arguments say which kernel it is).
while read -r regs stack st ld file name; do
  printf '%3d %4d %4d %4d %-22s %s\n' "$regs" "$stack" "$st" "$ld" "$file" \
    "$(echo "$name" | "$FILT" | sed -e 's/ember::cuda:://g' -e 's/(anonymous namespace):://g' -e 's/ember:://g' \
      -e 's/^void //' -e 's/>(.*)$/>/')"
done <"$tmp/kernels" | sort -k5,5 -k6
echo "kernels: $(wc -l <"$tmp/kernels"), spilling: $(awk '$3 + $4 > 0' "$tmp/kernels" | wc -l)," \
  "with a stack frame: $(awk '$2 > 0' "$tmp/kernels" | wc -l), unparsed: $(awk '$2 < 0' "$tmp/kernels" | wc -l)"
