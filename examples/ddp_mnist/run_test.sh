#!/usr/bin/env bash
# ctest: examples/ddp_mnist end to end on small generated MNIST-format files.
# Usage: run_test.sh [launcher args...] <path to ember_ddp_mnist>
#   e.g. run_test.sh bash tests/distributed/mpirun_local.sh 2 build/examples/ember_ddp_mnist
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/../../tests/make_fake_mnist.py" "$dir" 200 50
if ! "$@" --model lenet --batch-size 16 --epochs 2 --data "$dir" --workers 1 --checkpoint "$dir/model.safetensors" \
    >"$dir/log" 2>&1; then
  cat "$dir/log"; exit 1
fi
cat "$dir/log"
grep -q "test accuracy:" "$dir/log" || { echo "no final test accuracy printed"; exit 1; }
[ -s "$dir/model.safetensors" ] || { echo "rank 0 wrote no checkpoint"; exit 1; }
# The checkpoint has the plain model's names (no "module." prefix).
grep -aq '"0.weight"' "$dir/model.safetensors" || { echo "checkpoint lacks the plain model's names"; exit 1; }
