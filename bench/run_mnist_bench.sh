#!/usr/bin/env bash
# MNIST training benchmark, ember vs PyTorch, side by side in one run.
#   bash bench/run_mnist_bench.sh [models...]      (default: mlp lenet cnn)
# For each network it trains one epoch with ember (build/examples/ember_mnist) and then with
# PyTorch (bench/mnist_pytorch.py, Debian's python3-torch), both on 2 threads with the same
# settings, and prints: seconds per epoch, ratio ember/PyTorch, test accuracy, peak resident memory.
# Needs: the build (cmake --build build --target ember_mnist), data/mnist (scripts/fetch_mnist.sh),
# /usr/bin/python3 with torch (apt-get install python3-torch libopenblas0-openmp).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(mlp lenet cnn)
[ -x build/examples/ember_mnist ] || { echo "build/examples/ember_mnist missing: cmake --build build --target ember_mnist" >&2; exit 1; }
[ -f data/mnist/train-images-idx3-ubyte ] || { echo "data/mnist missing: bash scripts/fetch_mnist.sh" >&2; exit 1; }
out=$(mktemp)
for m in "${models[@]}"; do
  OMP_NUM_THREADS=$THREADS build/examples/ember_mnist --model "$m" --epochs 1 --threads "$THREADS" --workers 1 \
    --data data/mnist --json 2>/dev/null | grep '^{' >>"$out"
  OMP_NUM_THREADS=$THREADS /usr/bin/python3 bench/mnist_pytorch.py --model "$m" --threads "$THREADS" --data data/mnist >>"$out"
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["framework"], r["model"]): r for r in rows}
print(f"{'model':6} {'ember s/epoch':>13} {'torch s/epoch':>13} {'ratio':>6} {'ember acc':>9} {'torch acc':>9} {'ember RSS MB':>12} {'torch RSS MB':>12}")
for m in dict.fromkeys(r["model"] for r in rows):
    e, t = by[("ember", m)], by[("pytorch", m)]
    print(f"{m:6} {e['epoch_seconds']:13.2f} {t['epoch_seconds']:13.2f} {e['epoch_seconds']/t['epoch_seconds']:6.2f} "
          f"{e['test_accuracy']:9.2f} {t['test_accuracy']:9.2f} {e['peak_rss_mb']:12.0f} {t['peak_rss_mb']:12.0f}")
PY
rm -f "$out"
