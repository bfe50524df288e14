#!/usr/bin/env bash
# ctest: examples/cifar10 end to end on a small synthetic data set (make_synthetic_cifar10):
#   learns   resnet8, one epoch of --limit 1280 images: test accuracy well above chance (10%), and
#            every output says the data is synthetic (log lines, --json, the metrics CSV's comment)
#   resume   a 2-epoch run against the same run stopped after epoch 1 (--stop-after) and resumed,
#            with everything that has state (EMA, Cutout, a validation split, the warm-up + cosine
#            schedule, --metrics-every): the final checkpoints are byte for byte the same, and so
#            are the CSV rows (timing columns aside)
# Usage: example_cifar10.sh <ember_cifar10> <make_synthetic_cifar10>
set -euo pipefail
bin=$1 synth=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$synth" --out "$dir/data" --train 1500 --test 500 --seed 7 >/dev/null
run() { "$bin" --data "$dir/data" --threads 2 --workers 1 "$@" >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }; }
fail() { echo "FAIL: $*"; sed 's/^/    | /' "$dir/log"; exit 1; }

# ---- learns ----
run --model resnet8 --epochs 1 --limit 1280 --batch-size 64 --json
acc=$(grep '^{' "$dir/log" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["test_accuracy"])')
python3 -c "import sys; sys.exit(0 if float('$acc') >= 30 else 1)" || fail "test accuracy $acc% is not well above chance (10%)"
echo "ok: resnet8, 1 epoch of 1280 synthetic images: test accuracy $acc%"
grep -q '"data":"synthetic"' "$dir/log" || fail "the --json line does not say the data is synthetic"
grep -Eq "epoch 1: .*synthetic" "$dir/log" || fail "the epoch line does not say synthetic"
grep -Eq "^test accuracy: .*synthetic" "$dir/log" || fail "the final line does not say synthetic"

# ---- resume, bit for bit ----
common=(--model resnet8 --limit 192 --batch-size 32 --val-split 64 --ema 0.9 --cutout 8 --warmup-epochs 0.5
        --metrics-every 2)
run "${common[@]}" --epochs 2 --checkpoint "$dir/full.safetensors" --metrics "$dir/full.csv"
# --stop-after 1: the same 2-epoch run (the schedule spans both epochs), stopped after the first.
run "${common[@]}" --epochs 2 --stop-after 1 --checkpoint "$dir/part.safetensors" --metrics "$dir/part.csv"
grep -q "stopping after epoch 1 of 2" "$dir/log" || fail "no --stop-after line"
run "${common[@]}" --epochs 2 --checkpoint "$dir/part.safetensors" --metrics "$dir/part.csv" --resume "$dir/part.safetensors"
grep -q "resumed from" "$dir/log" || fail "no 'resumed from' line"
grep -q "validation (64 images)" "$dir/log" || fail "no validation line"
cmp "$dir/full.safetensors" "$dir/part.safetensors" || fail "the resumed run's checkpoint differs from the uninterrupted run's"
# kind, epoch, step, loss, lr and the epoch rows' train/test loss and accuracy (timing columns 6-8 aside)
diff <(cut -d, -f1-5,9-12 "$dir/full.csv") <(cut -d, -f1-5,9-12 "$dir/part.csv") ||
  fail "the resumed run's metrics differ from the uninterrupted run's"
head -n 1 "$dir/full.csv" | grep -q '^# synthetic' || fail "the metrics CSV does not start with the synthetic comment"
# 128 training images at batch 32: 4 steps an epoch, a step row every 2 -> 4 step rows + 2 epoch rows
[ "$(grep -c '^step,' "$dir/full.csv")" -eq 4 ] || fail "expected 4 step rows: $(cat "$dir/full.csv")"
[ "$(grep -c '^epoch,' "$dir/full.csv")" -eq 2 ] || fail "expected 2 epoch rows: $(cat "$dir/full.csv")"
# make_synthetic_cifar10 never writes over batch files it did not write (they may be CIFAR-10),
# and writes its SYNTHETIC.txt marker before any batch file.
mkdir -p "$dir/real" && : >"$dir/real/data_batch_1.bin"
if "$synth" --out "$dir/real" --train 10 --test 10 >"$dir/err" 2>&1; then echo "overwrote unmarked batch files"; exit 1; fi
grep -q "refusing to overwrite" "$dir/err" || { cat "$dir/err"; exit 1; }
[ ! -s "$dir/real/data_batch_1.bin" ] || { echo "the unmarked batch file was changed"; exit 1; }
echo "ok: --resume reproduces the uninterrupted run bit for bit (checkpoint bytes and metrics rows)"
