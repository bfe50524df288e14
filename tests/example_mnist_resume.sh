#!/usr/bin/env bash
# ctest: examples/mnist end to end on small generated MNIST-format files — training, metrics CSV,
# checkpoint, and --resume reproducing an uninterrupted run's per-epoch losses exactly.
# Usage: example_mnist_resume.sh <path to ember_mnist>
set -euo pipefail
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import os, random, struct, sys
d = sys.argv[1]; rng = random.Random(0)
def write(name, n, images):
    with open(os.path.join(d, name), "wb") as f:
        if images:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28)); f.write(bytes(rng.randrange(256) for _ in range(n * 784)))
        else:
            f.write(struct.pack(">II", 0x801, n)); f.write(bytes(rng.randrange(10) for _ in range(n)))
write("train-images-idx3-ubyte", 256, True); write("train-labels-idx1-ubyte", 256, False)
write("t10k-images-idx3-ubyte", 64, True); write("t10k-labels-idx1-ubyte", 64, False)
PY
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
