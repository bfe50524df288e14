#!/usr/bin/env bash
# ctest (label "hostile"): runs examples/mnist the way a hostile or careless user would — bad
# flags, truncated and crafted files, a full disk (/dev/full), a FIFO, a symlink loop, a crash
# between a metrics row and its checkpoint — and checks that every case ends within a time bound
# in a clear message and a non-zero exit (or, where the input is legitimate, a correct result):
# never a signal, a hang, or exit 0 with garbage. Issue 12, items 5-9.
# Usage: hostile_sweep.sh <path to ember_mnist>
#        hostile_sweep.sh --cifar10 <path to ember_cifar10> <path to make_synthetic_cifar10>
#          (examples/cifar10: its own flags, CIFAR-10 batch files truncated, of the wrong size, with
#          bad labels, missing; a checkpoint of another model; a metrics file of other data)
set -uo pipefail
mode=mnist
if [[ ${1:-} == --cifar10 ]]; then
  mode=cifar10
  shift
fi
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
limit=30  # seconds per case; each takes well under one on fake data
failures=0
if [[ $mode == mnist ]]; then
  python3 "$(dirname "$0")/make_fake_mnist.py" "$dir" 128 32
  flags=(--model mlp --threads 1 --workers 0 --limit 64)  # small and quick
  base=("${flags[@]}" --data "$dir" --batch-size 32)
fi

fail() {
  echo "FAIL [$name]: $*"
  sed 's/^/    | /' "$dir/out"
  failures=$((failures + 1))
}

# expect_error NAME PATTERN ARGS...: must exit 1..125 (not a signal, not the timeout) within
# $limit seconds, and print PATTERN (an extended regex) and none of the raw-library words.
expect_error() {
  name=$1 pattern=$2
  shift 2
  timeout -k 5 "$limit" "$bin" "$@" >"$dir/out" 2>&1
  local rc=$?
  if ((rc == 0)); then fail "exit 0, expected an error"; return; fi
  if ((rc == 124 || rc == 137)); then fail "hung: killed after $limit s"; return; fi
  if ((rc > 125)); then fail "died with exit $rc (a signal?)"; return; fi
  grep -Eq -- "$pattern" "$dir/out" || { fail "message lacks /$pattern/"; return; }
  if grep -Eq 'stoi|map::at|bad_alloc|nlohmann|filesystem error|terminate called' "$dir/out"; then
    fail "raw library error in the message"
    return
  fi
  echo "ok   [$name] exit $rc: $(grep -Em1 -- "$pattern" "$dir/out" | cut -c1-150)"
}

# expect_ok NAME ARGS...: must exit 0 within the limit.
expect_ok() {
  name=$1
  shift
  timeout -k 5 "$limit" "$bin" "$@" >"$dir/out" 2>&1 || { fail "exit $?, expected success"; return 1; }
  echo "ok   [$name]"
}

# craft SRC DST PYTHON: rewrites a safetensors checkpoint; PYTHON edits `meta` (the metadata dict)
# and `tensors` ({name: [dtype, shape, bytes]}), and may define fix(text) to edit the header text.
craft() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
src, dst, code = sys.argv[1:]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
meta = header.pop("__metadata__", {})
tensors = {k: [v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]] for k, v in header.items()}
exec(code)
out, blob = {"__metadata__": meta}, b""
for k, (dt, shape, b) in tensors.items():
    out[k] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(b)]}
    blob += b
text = json.dumps(out)
text = globals().get("fix", lambda t: t)(text)
text += " " * ((8 - len(text) % 8) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text.encode() + blob)
PY
}

if [[ $mode == cifar10 ]]; then
  synth=$2
  "$synth" --out "$dir/c" --train 80 --test 20 --seed 2 >/dev/null || { echo "make_synthetic_cifar10 failed"; exit 1; }
  flags=(--model resnet8 --threads 1 --workers 0 --limit 64)
  base=("${flags[@]}" --data "$dir/c" --batch-size 16)
  nomodel=(--threads 1 --workers 0 --limit 64 --data "$dir/c" --batch-size 16)
  # ---- flags ----
  expect_error model-unknown "model: resnet21 not in" "${nomodel[@]}" --model resnet21
  expect_error schedule-unknown "schedule: linear not in" "${base[@]}" --schedule linear
  expect_error ema-above-1 "ema must be in .0, 1. .0: off., got" "${base[@]}" --ema 1.5
  expect_error ema-of-1 "ema must be in .0, 1. .0: off., got" "${base[@]}" --ema 1
  expect_error cutout-too-large "cutout: Value 40 not in range" "${base[@]}" --cutout 40
  expect_error warmup-negative "warmup-epochs: Value -1 not in range" "${base[@]}" --warmup-epochs -1
  expect_error label-smoothing-2 "label-smoothing: Value 2 not in range" "${base[@]}" --label-smoothing 2
  expect_error weight-decay-nan "weight-decay.*not a finite" "${base[@]}" --weight-decay nan
  expect_error val-split-all "--val-split 64 leaves no training images of the 64" "${base[@]}" --val-split 64
  expect_error batch-too-large "--batch-size 128 is larger than the 64 training samples" "${flags[@]}" --data "$dir/c" \
    --batch-size 128
  expect_error metrics-every-alone "metrics-every requires --metrics" "${base[@]}" --metrics-every 5
  expect_error lr-diverges "diverged.*epoch 1 by step" "${base[@]}" --lr 1e300
  bin=$synth expect_error synthetic-train-4 "train: Value 4 not in range" --out "$dir/x" --train 4
  # ---- the data folder ----
  expect_error data-missing "CIFAR-10 file $dir/nope/data_batch_1.bin not found.*scripts/fetch_cifar10.sh.*make_synthetic_cifar10" \
    "${flags[@]}" --batch-size 16 --data "$dir/nope"
  for bad in truncated extra label empty; do mkdir -p "$dir/$bad" && cp "$dir"/c/*.bin "$dir/$bad/"; done
  head -c 5000 "$dir/c/data_batch_2.bin" >"$dir/truncated/data_batch_2.bin"
  expect_error batch-truncated "data_batch_2.bin' is truncated: 5000 bytes is not a whole number of 3073-byte records" \
    "${flags[@]}" --batch-size 16 --data "$dir/truncated"
  printf 'x' >>"$dir/extra/test_batch.bin"
  expect_error batch-extra-byte "test_batch.bin' is truncated: 61461 bytes.*record 20 at byte offset 61460 has only 1" "${flags[@]}" --batch-size 16 --data "$dir/extra"
  printf '\x0c' | dd of="$dir/label/data_batch_1.bin" bs=1 seek=3073 conv=notrunc status=none
  expect_error label-12 "label 12 of record 1 \(byte offset 3073\) is out of range \[0, 9\]" "${flags[@]}" \
    --batch-size 16 --data "$dir/label"
  : >"$dir/empty/data_batch_5.bin"
  expect_error batch-empty "data_batch_5.bin' is empty" "${flags[@]}" --batch-size 16 --data "$dir/empty"
  # ---- checkpoints and metrics ----
  expect_ok checkpoint "${base[@]}" --checkpoint "$dir/r8.safetensors" --metrics "$dir/m.csv"
  expect_error resume-other-model "holds a 'resnet8' model, not 'resnet20'" "${nomodel[@]}" --model resnet20 \
    --resume "$dir/r8.safetensors"
  head -c 100 "$dir/r8.safetensors" >"$dir/r8t.safetensors"
  expect_error resume-truncated "r8t.safetensors" "${base[@]}" --resume "$dir/r8t.safetensors"
  # The metrics file of a synthetic run is not continued by a run on other data (the same batch
  # files without the marker), so real and synthetic rows never share a file.
  cp "$dir"/c/*.bin "$dir/truncated/"
  expect_error metrics-other-data "m.csv was written for other data" "${flags[@]}" --batch-size 16 --data "$dir/truncated" \
    --metrics "$dir/m.csv"
  expect_error metrics-dev-full "metrics.*/dev/full" "${base[@]}" --metrics /dev/full
  echo "---- $failures failure(s)"
  ((failures == 0))
  exit
fi

# ---- bad flags (item 7, item 9) ----
expect_error seed-negative "seed" "${base[@]}" --seed -1
# The engine switches come from the environment: a typo is an error naming the variable, not a
# silent fallback (EMBER_CONV is read at the first convolution, so the model must have one).
EMBER_GEMM=fast expect_error gemm-engine-typo "EMBER_GEMM: expected 'auto', 'measured', 'onednn', 'blas' or 'eigen', got 'fast'" "${base[@]}"
EMBER_CONV=fft expect_error conv-engine-typo "EMBER_CONV: expected 'auto', 'onednn', 'winograd' or 'im2col', got 'fft'" \
  --model lenet --threads 1 --workers 0 --limit 64 --data "$dir" --batch-size 32
EMBER_CONV_KEEP_COLUMNS_MB=lots expect_error conv-columns-typo \
  "EMBER_CONV_KEEP_COLUMNS_MB: expected a whole number of MiB from 0, got 'lots'" \
  --model lenet --threads 1 --workers 0 --limit 64 --data "$dir" --batch-size 32
expect_error seed-too-large "seed" "${base[@]}" --seed 18446744073709551616
expect_error workers-int-max "workers" "${base[@]}" --workers 2147483647
expect_error workers-100000 "workers" "${base[@]}" --workers 100000
expect_error threads-huge "threads" "${base[@]}" --threads 2147483647
expect_error device-huge-index "cuda:99999999999.*out of range" "${base[@]}" --device cuda:99999999999
expect_error batch-size-int64-max "batch-size 9223372036854775807 is larger than" "${flags[@]}" --data "$dir" \
  --batch-size 9223372036854775807
expect_error lr-inf "lr" "${base[@]}" --lr inf
expect_error lr-diverges "diverged.*epoch 1 by step" "${base[@]}" --lr 1e300
expect_error epochs-negative "epochs" "${base[@]}" --epochs -3
# --metrics-every (issue 18): a whole number in [1, 10^9], and only with --metrics
expect_error metrics-every-zero "metrics-every.*0 not in range" "${base[@]}" --metrics "$dir/me.csv" --metrics-every 0
expect_error metrics-every-negative "metrics-every.*-5 not in range" "${base[@]}" --metrics "$dir/me.csv" --metrics-every -5
expect_error metrics-every-huge "metrics-every.*2000000000 not in range" "${base[@]}" --metrics "$dir/me.csv" \
  --metrics-every 2000000000
expect_error metrics-every-overflow "metrics-every.*99999999999999999999" "${base[@]}" --metrics "$dir/me.csv" \
  --metrics-every 99999999999999999999
expect_error metrics-every-text "metrics-every.*ten" "${base[@]}" --metrics "$dir/me.csv" --metrics-every ten
expect_error metrics-every-fraction "metrics-every.*2.5" "${base[@]}" --metrics "$dir/me.csv" --metrics-every 2.5
expect_error metrics-every-alone "metrics-every requires --metrics" "${base[@]}" --metrics-every 5
[ -e "$dir/me.csv" ] && { name=metrics-every; fail "a rejected command line created the metrics file"; }

# ---- the data folder (items 2, 7, 9) ----
mkdir -p "$dir/loop" && ln -s "$dir/loop/a" "$dir/loop/b" && ln -s "$dir/loop/b" "$dir/loop/a"
ln -s "$dir/loop/a" "$dir/loop/train-images-idx3-ubyte"
expect_error symlink-loop "MNIST file $dir/loop/train-images-idx3-ubyte" "${flags[@]}" --batch-size 32 --data "$dir/loop"
for bad in empty-split huge-header truncated; do
  mkdir -p "$dir/$bad" && cp "$dir"/*-ubyte "$dir/$bad/"
done
python3 -c "import struct,sys; open(sys.argv[1],'wb').write(struct.pack('>IIII',0x803,0,28,28))" \
  "$dir/empty-split/train-images-idx3-ubyte"
python3 -c "import struct,sys; open(sys.argv[1],'wb').write(struct.pack('>II',0x801,0))" \
  "$dir/empty-split/train-labels-idx1-ubyte"
expect_error empty-idx-split "holds no images" "${flags[@]}" --batch-size 32 --data "$dir/empty-split"
python3 -c "import struct,sys; open(sys.argv[1],'wb').write(struct.pack('>IIII',0x803,0,0xffffffff,0xffffffff))" \
  "$dir/huge-header/t10k-images-idx3-ubyte"
expect_error idx-huge-rows-cols "byte offsets 4, 8, 12" "${flags[@]}" --batch-size 32 --data "$dir/huge-header"
head -c 1000 "$dir/train-images-idx3-ubyte" >"$dir/truncated/train-images-idx3-ubyte"
expect_error idx-truncated "truncated" "${flags[@]}" --batch-size 32 --data "$dir/truncated"

# ---- files written: metrics and checkpoints (item 5) ----
expect_error metrics-dev-full "metrics.*/dev/full" "${base[@]}" --metrics /dev/full
long=$(printf 'c%.0s' $(seq 245))
expect_error checkpoint-name-245 "file name is 245 characters" "${base[@]}" --checkpoint "$dir/$long"
grep -q "epoch 1:" "$dir/out" && fail "the long checkpoint name was only refused after training"
expect_error checkpoint-no-folder "does not exist" "${base[@]}" --checkpoint "$dir/nope/c.safetensors"

# A stale temporary file of a dead process is removed by the next save.
sh -c 'exit 0' & dead=$!
wait $dead
touch "$dir/c.safetensors.tmp.$dead.0"
expect_ok checkpoint-first-epoch "${base[@]}" --epochs 1 --checkpoint "$dir/c.safetensors" --metrics "$dir/m.csv"
[ -e "$dir/c.safetensors.tmp.$dead.0" ] && { name=stale-temp; fail "stale temporary file not removed"; }
accuracy=$(grep "test accuracy:" "$dir/out")

# A run killed between writing epoch 2's metrics row and its checkpoint: the row exists, the
# checkpoint is still epoch 1's. Resuming must leave exactly one row per epoch.
cp "$dir/m.csv" "$dir/m1.csv"
tail -n 1 "$dir/m.csv" | sed 's/^epoch,1,/epoch,2,/' >>"$dir/m.csv"
expect_ok metrics-resume-no-duplicates "${base[@]}" --epochs 2 --resume "$dir/c.safetensors" --metrics "$dir/m.csv"
name=metrics-resume-no-duplicates
[ "$(cut -d, -f1,2 "$dir/m.csv" | tr '\n' ' ')" == "kind,epoch epoch,1 epoch,2 " ] ||
  fail "rows: $(cut -d, -f1,2 "$dir/m.csv" | tr '\n' ' ')"

# Resuming a checkpoint already at --epochs evaluates it: the same accuracy, exit 0.
expect_ok resume-at-epochs "${base[@]}" --epochs 1 --resume "$dir/c.safetensors"
name=resume-at-epochs
grep -qF "$accuracy" "$dir/out" || fail "expected '$accuracy' (the trained model's accuracy)"

# ---- --resume with bad files (items 6, 8, 9) ----
mkfifo "$dir/fifo"
expect_error resume-fifo "not a regular file" "${base[@]}" --resume "$dir/fifo"
head -c 100 "$dir/c.safetensors" >"$dir/trunc.safetensors"
expect_error resume-truncated "trunc.safetensors" "${base[@]}" --resume "$dir/trunc.safetensors"
craft "$dir/c.safetensors" "$dir/e.safetensors" 'meta["epoch"] = "1e3"'
expect_error resume-epoch-1e3 "'epoch' = '1e3' is not an integer" "${base[@]}" --resume "$dir/e.safetensors"
craft "$dir/c.safetensors" "$dir/ne.safetensors" 'del meta["epoch"]'
expect_error resume-no-epoch "no 'epoch' entry" "${base[@]}" --resume "$dir/ne.safetensors"
craft "$dir/c.safetensors" "$dir/lr.safetensors" 'meta["optimizer.param_groups.0.lr"] = "inf"'
expect_error resume-lr-inf "lr' = 'inf' is not a finite number" "${base[@]}" --resume "$dir/lr.safetensors"
craft "$dir/c.safetensors" "$dir/i64.safetensors" '
import struct
k = next(k for k in tensors if k.startswith("model.") and k.endswith("weight"))
dt, shape, b = tensors[k]
tensors[k] = ["I64", shape, b"\0" * (2 * len(b))]'
expect_error resume-int64-weights "dtype mismatch.*int64" "${base[@]}" --resume "$dir/i64.safetensors"
craft "$dir/c.safetensors" "$dir/nan.safetensors" '
import struct
k = next(k for k in tensors if k.startswith("model.") and k.endswith("weight"))
dt, shape, b = tensors[k]
tensors[k] = [dt, shape, struct.pack("<f", float("nan")) + b[4:]]'
expect_error resume-nan-weights "holds nan at flat index 0" "${base[@]}" --resume "$dir/nan.safetensors"
craft "$dir/c.safetensors" "$dir/huge.safetensors" 'n = 1 << 62; tensors["x"] = ["F32", [0, n, n], b""]'
expect_error resume-zero-beside-huge "\"shape\"" "${base[@]}" --resume "$dir/huge.safetensors"
craft "$dir/c.safetensors" "$dir/1e400.safetensors" 'fix = lambda t: t.replace("\"shape\": [", "\"shape\": [1e400, ", 1)'
expect_error resume-number-1e400 "not valid JSON" "${base[@]}" --resume "$dir/1e400.safetensors"

echo "---- $failures failure(s)"
((failures == 0))
