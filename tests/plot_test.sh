#!/usr/bin/env bash
# ctest (label "example"; "mpi" too for the scaling case): scripts/plot.py on the outputs of real
# runs (issue 18). Each case makes its input, draws it as PNG and as SVG, and checks the pictures:
# the PNG is valid (every chunk's CRC, the image data inflates to exactly height rows of width
# RGBA pixels) and has the size plot.py promises, and the SVG is well-formed XML holding the
# expected number of plotted series (plot.py gives each one an id "series-...").
#
#   plot_test.sh metrics <ember_mnist>                 2 epochs --limit, --metrics-every, fake MNIST
#   plot_test.sh cifar10 <ember_cifar10> <make_synthetic_cifar10>   the same on synthetic CIFAR-10
#   plot_test.sh scaling [LAUNCHER ARGS...] <ember_scaling>   a 2-rank run (1 without MPI) with --json
#   plot_test.sh bench                                 bench/cpu_bench_report.py --json on generated rows
#   plot_test.sh errors                                malformed inputs: one line, the file, exit 1 or 2
#
# Needs Debian's python3-matplotlib (bash scripts/setup.sh); exits 77 (ctest: skipped) without it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
plot="$root/scripts/plot.py"
py=/usr/bin/python3
what=${1:?usage: plot_test.sh metrics|cifar10|scaling|bench|errors ...}
shift
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

if ! "$py" -c 'import matplotlib' 2>/dev/null; then
  echo "SKIP: $py has no matplotlib (bash scripts/setup.sh installs python3-matplotlib)"
  exit 77
fi

# check_png FILE WIDTH HEIGHT
check_png() {
  "$py" - "$@" <<'PY'
import struct, sys, zlib
path, want_w, want_h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG signature"
pos, chunks, idat = 8, [], b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
    assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in chunk {kind}"
    chunks.append(kind)
    if kind == b"IHDR":
        w, h, depth, color = struct.unpack(">IIBB", body[:10])
    if kind == b"IDAT":
        idat += body
    pos += 12 + n
assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", f"{path}: chunks {chunks}"
assert (w, h) == (want_w, want_h), f"{path}: {w}x{h} pixels, expected {want_w}x{want_h}"
channels = {2: 3, 6: 4}[color]
raw = zlib.decompress(idat)
assert len(raw) == h * (1 + w * channels * depth // 8), f"{path}: image data of {len(raw)} bytes"
print(f"ok: {path} is a valid {w}x{h} PNG")
PY
}

# check_svg FILE SERIES: well-formed XML with exactly SERIES elements whose id starts "series-".
check_svg() {
  "$py" - "$@" <<'PY'
import sys, xml.etree.ElementTree as ET
path, want = sys.argv[1], int(sys.argv[2])
ids = [e.get("id") for e in ET.parse(path).iter() if (e.get("id") or "").startswith("series-")]
assert len(ids) == want, f"{path}: {len(ids)} plotted series {ids}, expected {want}"
print(f"ok: {path} holds {want} series: {' '.join(ids)}")
PY
}

# draw MODE SIZE SERIES INPUTS...: the PNG and the SVG of one plot.py call, both checked.
draw() {
  local mode=$1 size=$2 series=$3
  shift 3
  "$py" "$plot" "$mode" "$@" -o "$dir/$mode.png"
  check_png "$dir/$mode.png" ${size/x/ }
  "$py" "$plot" "$mode" "$@" -o "$dir/$mode.svg"
  check_svg "$dir/$mode.svg" "$series"
}

# expect_error PATTERN EXIT ARGS...: plot.py must exit EXIT with one stderr line matching PATTERN.
expect_error() {
  local pattern=$1 want=$2
  shift 2
  local rc=0
  "$py" "$plot" "$@" >"$dir/out" 2>"$dir/err" || rc=$?
  local lines
  lines=$(wc -l <"$dir/err")
  if ((rc != want)) || ((lines != 1)) || ! grep -Eq -- "$pattern" "$dir/err" || grep -q Traceback "$dir/err"; then
    echo "FAIL: plot.py $*: exit $rc (expected $want), $lines stderr line(s), expected /$pattern/:"
    cat "$dir/err"
    exit 1
  fi
  echo "ok: exit $rc: $(cat "$dir/err")"
}

case $what in
metrics)
  bin=${1:?ember_mnist}
  "$py" "$here/make_fake_mnist.py" "$dir" 256 64
  # 2 epochs of 256 samples at batch 32: 8 steps an epoch, a step row every 3 steps.
  "$bin" --model lenet --epochs 2 --limit 256 --batch-size 32 --threads 1 --workers 0 --data "$dir" \
    --metrics "$dir/run.csv" --metrics-every 3 >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }
  kinds=$(cut -d, -f1-3 "$dir/run.csv" | tr '\n' ' ')
  want="kind,epoch,step step,1,3 step,1,6 epoch,1,8 step,2,9 step,2,12 step,2,15 epoch,2,16 "
  [[ $kinds == "$want" ]] || { echo "rows (kind,epoch,step): $kinds"; echo "expected: $want"; exit 1; }
  cp "$dir/run.csv" "$dir/run2.csv"
  # per run: loss per step, train and test loss per epoch, test accuracy, learning rate
  draw metrics 1300x400 5 "$dir/run.csv"
  draw metrics 1300x400 10 "$dir/run.csv" "$dir/run2.csv"
  ;;
cifar10)
  bin=${1:?ember_cifar10} synth=${2:?make_synthetic_cifar10}
  "$synth" --out "$dir/data" --train 200 --test 50 >/dev/null
  # 2 epochs of 128 samples at batch 32: 4 steps an epoch, a step row every 2 steps.
  "$bin" --model resnet8 --epochs 2 --limit 128 --batch-size 32 --threads 1 --workers 0 --data "$dir/data" \
    --metrics "$dir/cifar.csv" --metrics-every 2 >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }
  head -n 1 "$dir/cifar.csv" | grep -q '^# synthetic' || { echo "no synthetic comment line"; head -2 "$dir/cifar.csv"; exit 1; }
  kinds=$(grep -v '^#' "$dir/cifar.csv" | cut -d, -f1-3 | tr '\n' ' ')
  want="kind,epoch,step step,1,2 step,1,4 epoch,1,4 step,2,6 step,2,8 epoch,2,8 "
  [[ $kinds == "$want" ]] || { echo "rows (kind,epoch,step): $kinds"; echo "expected: $want"; exit 1; }
  draw metrics 1300x400 5 "$dir/cifar.csv"
  ;;
scaling)
  (($# >= 1)) || { echo "usage: plot_test.sh scaling [LAUNCHER ARGS...] <ember_scaling>"; exit 2; }
  "$@" --steps 2 --warmup 1 --batch-size 8 --global-batch 16 --threads 1 --json "$dir/scaling.json" \
    >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }
  world=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["world_size"])' "$dir/scaling.json")
  # weak and strong: measured and model (2 each); step time: compute and exposed comm, measured and model
  draw scaling 1500x450 8 "$dir/scaling.json"
  echo "ok: scaling measured at $world rank(s)"
  ;;
bench)
  # Generated rows (no timing is run): 2 benchmarks x 2 frameworks x 3 runs.
  "$py" - "$dir/rows.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for fw, t in (("ember", 1.0), ("libtorch", 1.4)):
        for model in ("mlp", "resnet20"):
            for run in (1, 2, 3):
                f.write(json.dumps({"framework": fw, "model": model, "run": run, "command": f"{fw} {model}",
                                    "batch": 128, "threads": 2, "loop_s": t * (1 + 0.1 * run), "process_s": 2.0,
                                    "rss_mb": 100.0, "accuracy": None, "libs": [], "samples": 64}) + "\n")
PY
  "$py" "$root/bench/cpu_bench_report.py" report "$dir/rows.jsonl" --threads 2 --runs 3 --limit 64 \
    --csv "$dir/r.csv" --json "$dir/r.json" >/dev/null
  "$py" -c '
import json, sys
b = json.load(open(sys.argv[1]))["benchmarks"][0]["results"]["libtorch"]
assert (round(b["min"], 6), round(b["median"], 6), round(b["max"], 6), b["runs"]) == (1.54, 1.68, 1.82, 3), b
' "$dir/r.json"
  draw bench 1000x500 2 "$dir/r.json"
  "$py" "$root/bench/cpu_bench_report.py" json "$dir/r.csv" --out "$dir/from_csv.json"
  draw bench 1000x500 2 "$dir/from_csv.json"
  ;;
errors)
  header="kind,epoch,step,loss,lr,samples_per_second,wall_seconds,epoch_seconds,train_loss,train_accuracy,test_loss,test_accuracy"
  : >"$dir/empty.csv"
  echo "$header" >"$dir/header_only.csv"
  printf 'epoch,train_loss,train_accuracy,test_loss,test_accuracy,epoch_seconds,samples_per_second\n1,0.5,0.8,0.4,0.9,1,100\n' >"$dir/old.csv"
  printf '%s\nstep,1,3,abc,0.01,100,1,,,,,\n' "$header" >"$dir/nan.csv"
  printf '%s\nstep,1,3,0.5,0.01\n' "$header" >"$dir/short.csv"
  printf '%s\nbatch,1,3,0.5,0.01,100,1,,,,,\n' "$header" >"$dir/kind.csv"
  printf '%s,extra\n' "$header" >"$dir/extra.csv"
  printf '{"measured": [' >"$dir/torn.json"
  : >"$dir/empty.json"
  echo '{"measured": [], "projection": {}}' >"$dir/nopoints.json"
  echo '{"measured": [{"mode": "weak", "ranks": "two"}], "projection": {"points": []}}' >"$dir/badranks.json"
  echo '[1, 2]' >"$dir/list.json"
  echo '{"benchmarks": [{"name": "mlp", "unit": "s", "results": {"ember": {"min": 2, "median": 1, "max": 3}}}]}' \
    >"$dir/order.json"
  echo '{"benchmarks": []}' >"$dir/nobench.json"
  printf '%s\nepoch,1,8,,0.01,100,1,1,0.5,0.8,0.4,0.9\n' "$header" >"$dir/good.csv"
  echo '{"benchmarks": [{"name": "mlp", "unit": "s", "results": {"ember": {"min": 1, "median": 2, "max": 3}}}]}' \
    >"$dir/good.json"
  expect_error "$dir/nope.csv: no such file" 1 metrics "$dir/nope.csv" -o "$dir/x.png"
  expect_error "$dir/empty.csv: empty file" 1 metrics "$dir/empty.csv" -o "$dir/x.png"
  expect_error "$dir/header_only.csv: no rows after the header" 1 metrics "$dir/header_only.csv" -o "$dir/x.png"
  expect_error "$dir/old.csv: missing column\(s\) kind, step, loss, lr, wall_seconds" 1 metrics "$dir/old.csv" -o "$dir/x.png"
  expect_error "$dir/extra.csv: unknown column\(s\) 'extra'" 1 metrics "$dir/extra.csv" -o "$dir/x.png"
  expect_error "$dir/nan.csv line 2: column 'loss' = 'abc' is not a number" 1 metrics "$dir/nan.csv" -o "$dir/x.png"
  expect_error "$dir/short.csv line 2: 5 cells, expected 12" 1 metrics "$dir/short.csv" -o "$dir/x.png"
  expect_error "$dir/kind.csv line 2: kind 'batch'" 1 metrics "$dir/kind.csv" -o "$dir/x.png"
  # the second file is bad: nothing is drawn
  expect_error "$dir/empty.csv: empty file" 1 metrics "$dir/good.csv" "$dir/empty.csv" -o "$dir/x.png"
  expect_error "$dir/torn.json: not valid JSON \(line 1 column 15: Expecting value" 1 scaling "$dir/torn.json" -o "$dir/x.png"
  expect_error "$dir/empty.json: empty file" 1 scaling "$dir/empty.json" -o "$dir/x.svg"
  expect_error "$dir/nopoints.json: projection: missing 'points'" 1 scaling "$dir/nopoints.json" -o "$dir/x.png"
  expect_error "$dir/badranks.json: measured\[0\].ranks = \"two\" is not a finite number" 1 \
    scaling "$dir/badranks.json" -o "$dir/x.png"
  expect_error "$dir/list.json: expected a JSON object" 1 bench "$dir/list.json" -o "$dir/x.png"
  expect_error "$dir/order.json: benchmarks\[0\].results.ember: min 2" 1 bench "$dir/order.json" -o "$dir/x.png"
  expect_error "$dir/nobench.json: benchmarks is empty" 1 bench "$dir/nobench.json" -o "$dir/x.png"
  expect_error "$dir/x.jpg: unknown picture type '.jpg'" 2 bench "$dir/order.json" -o "$dir/x.jpg"
  expect_error "unknown mode 'curves'" 2 curves "$dir/nan.csv" -o "$dir/x.png"
  expect_error "metrics: -o OUT.png or -o OUT.svg is required" 2 metrics "$dir/nan.csv"
  expect_error "scaling: takes one input file, got 2" 2 scaling "$dir/a.json" "$dir/b.json" -o "$dir/x.png"
  expect_error "$dir/nodir/x.png: cannot write the picture" 1 bench "$dir/good.json" -o "$dir/nodir/x.png"
  "$py" "$plot" metrics "$dir/good.csv" -o "$dir/good.png" >/dev/null  # the good inputs are good
  "$py" "$plot" bench "$dir/good.json" -o "$dir/good.svg" >/dev/null
  [[ ! -e $dir/x.png && ! -e $dir/x.svg ]] || { echo "FAIL: a picture was written for a bad input"; exit 1; }
  ;;
*)
  echo "plot_test.sh: unknown case '$what'"
  exit 2
  ;;
esac
echo "ok: plot_test.sh $what"
