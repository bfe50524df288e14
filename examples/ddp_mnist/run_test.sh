#!/usr/bin/env bash
# ctest: examples/ddp_mnist end to end on small generated MNIST-format files.
# Usage: run_test.sh [launcher args...] <path to ember_ddp_mnist>
#   e.g. run_test.sh bash tests/distributed/mpirun_local.sh 2 build/examples/ember_ddp_mnist
set -euo pipefail
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
write("train-images-idx3-ubyte", 200, True); write("train-labels-idx1-ubyte", 200, False)
write("t10k-images-idx3-ubyte", 50, True); write("t10k-labels-idx1-ubyte", 50, False)
PY
if ! "$@" --model lenet --batch-size 16 --epochs 2 --data "$dir" --workers 1 --checkpoint "$dir/model.safetensors" \
    >"$dir/log" 2>&1; then
  cat "$dir/log"; exit 1
fi
cat "$dir/log"
grep -q "test accuracy:" "$dir/log" || { echo "no final test accuracy printed"; exit 1; }
[ -s "$dir/model.safetensors" ] || { echo "rank 0 wrote no checkpoint"; exit 1; }
# The checkpoint has the plain model's names (no "module." prefix).
grep -aq '"0.weight"' "$dir/model.safetensors" || { echo "checkpoint lacks the plain model's names"; exit 1; }
