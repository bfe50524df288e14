#!/usr/bin/env bash
# ctest: examples/mnist end to end on small generated MNIST-format files — training, metrics CSV,
# checkpoint, and --resume reproducing an uninterrupted run's per-epoch losses exactly.
# Usage: example_mnist_resume.sh <path to ember_mnist>
set -euo pipefail
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/make_fake_mnist.py" "$dir" 256 64
run() { "$bin" --model lenet --batch-size 32 --data "$dir" --threads 1 --workers 1 "$@" >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }; }
run --epochs 3 --metrics "$dir/full.csv"
run --epochs 1 --metrics "$dir/resumed.csv" --checkpoint "$dir/ckpt.safetensors"
run --epochs 3 --metrics "$dir/resumed.csv" --resume "$dir/ckpt.safetensors"
grep -q "test accuracy:" "$dir/log" || { echo "no final test accuracy printed"; exit 1; }
# epoch, train loss/accuracy, test loss/accuracy must match exactly (timings may differ)
if ! diff <(cut -d, -f1-5 "$dir/full.csv") <(cut -d, -f1-5 "$dir/resumed.csv"); then
  echo "resumed run diverged from the uninterrupted one"; exit 1
fi
[ "$(wc -l <"$dir/full.csv")" -eq 4 ] || { echo "expected a header and 3 epochs in the CSV"; exit 1; }
# a missing data folder names the fetch command
if "$bin" --data "$dir/nope" >"$dir/err" 2>&1; then echo "missing data did not fail"; exit 1; fi
grep -q "scripts/fetch_mnist.sh" "$dir/err" || { cat "$dir/err"; exit 1; }
echo "ok: resume reproduces the uninterrupted run"
