#!/usr/bin/env bash
# The README's first command: set up, fetch real MNIST, build, and train.
#   bash scripts/train_mnist.sh                 # LeNet, 1 epoch, on the CPU
#   bash scripts/train_mnist.sh --model cnn --epochs 3 --device cuda
# Any arguments are passed to examples/mnist (build/examples/ember_mnist --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_mnist.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target ember_mnist
if [ $# -eq 0 ]; then set -- --model lenet --epochs 1; fi
exec build/examples/ember_mnist --data data/mnist "$@"
