#!/usr/bin/env bash
# ctest: examples/mnist end to end on small generated MNIST-format files — training, metrics CSV
# (epoch rows and --metrics-every step rows, schema in examples/mnist/metrics_csv.h), checkpoint,
# and --resume reproducing an uninterrupted run's rows exactly, without duplicates, even after a
# run that died in the middle of an epoch.
# Usage: example_mnist_resume.sh <path to ember_mnist>
set -euo pipefail
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/make_fake_mnist.py" "$dir" 256 64
run() { "$bin" --model lenet --batch-size 32 --data "$dir" --threads 1 --workers 1 "$@" >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }; }
# 256 samples at batch 32: 8 steps an epoch; a step row every 3 steps (3, 6, .., 24).
run --epochs 3 --metrics "$dir/full.csv" --metrics-every 3
run --epochs 1 --metrics "$dir/resumed.csv" --metrics-every 3 --checkpoint "$dir/ckpt.safetensors"
# A run that died in epoch 2: its step rows and a torn last row are in the file, past the checkpoint.
grep '^step,2,' "$dir/full.csv" | head -n 2 >>"$dir/resumed.csv"
printf 'step,2,1' >>"$dir/resumed.csv"
run --epochs 3 --metrics "$dir/resumed.csv" --metrics-every 3 --resume "$dir/ckpt.safetensors"
grep -q "test accuracy:" "$dir/log" || { echo "no final test accuracy printed"; exit 1; }
# kind, epoch, step, loss, lr and the epoch rows' train/test loss and accuracy must match exactly
# (the timing columns 6-8 may differ)
if ! diff <(cut -d, -f1-5,9-12 "$dir/full.csv") <(cut -d, -f1-5,9-12 "$dir/resumed.csv"); then
  echo "resumed run diverged from the uninterrupted one"; exit 1
fi
[ "$(grep -c '^epoch,' "$dir/full.csv")" -eq 3 ] || { echo "expected 3 epoch rows in the CSV"; exit 1; }
[ "$(grep -c '^step,' "$dir/full.csv")" -eq 8 ] || { echo "expected 8 step rows in the CSV"; exit 1; }
[ "$(wc -l <"$dir/full.csv")" -eq 12 ] || { echo "expected a header and 11 rows in the CSV"; exit 1; }
dups=$(cut -d, -f1,3 "$dir/resumed.csv" | sort | uniq -d)
[ -z "$dups" ] || { echo "duplicate rows (kind,step): $dups"; exit 1; }
# the wall clock continues across the resume: wall_seconds never goes back
awk -F, 'NR > 1 { if ($7 + 0 < last) { print "wall_seconds went back at line " NR; exit 1 } last = $7 + 0 }' \
  "$dir/resumed.csv"
# a missing data folder names the fetch command
if "$bin" --data "$dir/nope" >"$dir/err" 2>&1; then echo "missing data did not fail"; exit 1; fi
grep -q "scripts/fetch_mnist.sh" "$dir/err" || { cat "$dir/err"; exit 1; }
# a metrics file of another schema is refused before training, not mixed with this one's rows
printf 'epoch,train_loss\n1,0.5\n' >"$dir/old.csv"
if "$bin" --model lenet --batch-size 32 --data "$dir" --metrics "$dir/old.csv" >"$dir/err" 2>&1; then
  echo "an old-schema metrics file was accepted"; exit 1
fi
grep -q "old.csv starts with the header 'epoch,train_loss'" "$dir/err" || { cat "$dir/err"; exit 1; }
[ "$(wc -l <"$dir/old.csv")" -eq 2 ] || { echo "the old metrics file was changed"; exit 1; }
echo "ok: resume reproduces the uninterrupted run"
