#!/usr/bin/env python3
"""PyTorch autocast side of ember's `--amp bf16` runs (scripts/gpu_check.sh, stage amp).

Runs one of the existing PyTorch benchmarks, unchanged, with the whole run inside
torch.autocast(device, dtype=torch.bfloat16), and adds "amp": "bf16" to each JSON line it prints:

    python3 bench/amp_pytorch.py --amp bf16 mnist   --device cuda --model cnn --data data/mnist
    python3 bench/amp_pytorch.py --amp bf16 cifar10 --device cuda --model resnet20 --limit 5000 ...

Everything after the benchmark's name goes to bench/mnist_pytorch.py or bench/cifar10_pytorch.py, so
the models, data handling, optimizers and timing are exactly theirs (one definition of each). The
autocast region covers the forward, the loss and the test pass as in ember's trainer
(examples/common/trainer.cpp); it also covers backward() and the optimizer step, which autocast
leaves alone (backward ops run in their forward's dtypes; optimizers are not on autocast's lists).
Parameters stay float32 (master weights), as in ember. bf16 only: float16 would also need a
GradScaler in the benchmark's loop, which these scripts do not have.
"""
import argparse
import contextlib
import io
import json
import os
import runpy
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = {"mnist": "mnist_pytorch.py", "cifar10": "cifar10_pytorch.py"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--amp", choices=["bf16"], default="bf16")
    ap.add_argument("bench", choices=sorted(SCRIPTS))
    ap.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark script")
    a = ap.parse_args()
    device = "cuda" if any(x.startswith("cuda") for x in a.args) else "cpu"
    script = os.path.join(HERE, SCRIPTS[a.bench])
    sys.path.insert(0, HERE)  # cifar10_pytorch.py imports resnet20_pytorch from its folder
    sys.argv = [script] + a.args
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), torch.autocast(device, dtype=torch.bfloat16):
            runpy.run_path(script, run_name="__main__")
    finally:  # also when the script exits (--help, a bad flag): its output is not lost
        for line in out.getvalue().splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                row["amp"] = a.amp
                line = json.dumps(row)
            print(line)


if __name__ == "__main__":
    main()
