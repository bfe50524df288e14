#!/usr/bin/env bash
# MNIST training benchmark, ember vs libtorch and PyTorch: bench/run_cpu_bench.sh for the MNIST
# networks only (it measures them honestly: OpenMP OpenBLAS forced for the anchors, same threads,
# medians of 3 runs, training loop and whole process, peak RSS, loaded libraries).
#   bash bench/run_mnist_bench.sh [models...] [-- run_cpu_bench.sh options]   (default: mlp lenet cnn)
# THREADS (default 2) sets --threads.
set -euo pipefail
models=()
while (($#)) && [[ $1 != -- ]]; do models+=("$1"); shift; done
(($#)) && shift  # the --
((${#models[@]})) || models=(mlp lenet cnn)
exec bash "$(dirname "$0")/run_cpu_bench.sh" --threads "${THREADS:-2}" --models "${models[*]}" "$@"
