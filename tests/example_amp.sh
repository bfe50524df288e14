#!/usr/bin/env bash
# ctest: --amp in the shared trainer (examples/common/trainer.cpp) end to end, on small generated
# MNIST-format files: bf16 and fp16 runs train and report "amp" in --json; an fp16 run resumed from
# its checkpoint reproduces the uninterrupted run's rows exactly (the GradScaler's state travels in
# the checkpoint); --amp bf16 goes with --device cuda; a bad --amp value is refused naming the flag.
# Usage: example_amp.sh <path to ember_mnist>
set -euo pipefail
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/make_fake_mnist.py" "$dir" 256 64
run() { "$bin" --model lenet --batch-size 32 --data "$dir" --threads 1 --workers 1 --json "$@" >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }; }
for amp in bf16 fp16; do
  run --epochs 1 --amp "$amp"
  grep -q "\"amp\":\"$amp\"" "$dir/log" || { echo "--amp $amp: no \"amp\":\"$amp\" in the --json line"; cat "$dir/log"; exit 1; }
  acc=$(sed -n 's/.*"test_accuracy":\([0-9.eE+-]*\).*/\1/p' "$dir/log")
  awk -v a="$acc" 'BEGIN { exit !(a == a + 0 && a >= 0 && a <= 100) }' || { echo "--amp $amp: bad test_accuracy '$acc'"; exit 1; }
done
run --epochs 2 --amp fp16 --metrics "$dir/full.csv"
run --epochs 2 --stop-after 1 --amp fp16 --metrics "$dir/resumed.csv" --checkpoint "$dir/ckpt.safetensors"
grep -q '"scaler.scale"' "$dir/ckpt.safetensors" || { echo "the fp16 checkpoint holds no GradScaler state"; exit 1; }
run --epochs 2 --amp fp16 --metrics "$dir/resumed.csv" --resume "$dir/ckpt.safetensors"
if ! diff <(cut -d, -f1-5,9-12 "$dir/full.csv") <(cut -d, -f1-5,9-12 "$dir/resumed.csv"); then
  echo "--amp fp16: the resumed run diverged from the uninterrupted one"; exit 1
fi
# a resume under another --amp is refused naming both modes
if "$bin" --model lenet --batch-size 32 --data "$dir" --threads 1 --epochs 3 --amp bf16 --resume "$dir/ckpt.safetensors" >"$dir/err" 2>&1; then
  echo "a fp16 checkpoint resumed under --amp bf16"; exit 1
fi
grep -q "written with --amp fp16, this run has --amp bf16" "$dir/err" || { echo "the --amp mismatch error:"; cat "$dir/err"; exit 1; }
# --amp bf16 with --device cuda (scripts/gpu_check.sh's amp stage): on a GPU it trains and reports
# bf16; without one (or in a build without CUDA, like the sanitizer pass) the run stops for want of a
# device, not over the flags.
if "$bin" --model lenet --batch-size 32 --data "$dir" --threads 1 --workers 1 --json --epochs 1 --amp bf16 \
  --device cuda >"$dir/log" 2>&1; then
  grep -q '"amp":"bf16"' "$dir/log" || { echo "--amp bf16 --device cuda: no \"amp\":\"bf16\""; cat "$dir/log"; exit 1; }
else
  grep -q -E "device cuda:0: (not available|ember was built without CUDA)" "$dir/log" ||
    { echo "--amp bf16 --device cuda failed:"; cat "$dir/log"; exit 1; }
fi
if "$bin" --data "$dir" --amp fp8 >"$dir/err" 2>&1; then echo "--amp fp8 was accepted"; exit 1; fi
grep -q -- "--amp" "$dir/err" || { echo "the --amp error does not name the flag:"; cat "$dir/err"; exit 1; }
echo "amp: ok"
