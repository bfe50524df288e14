#!/usr/bin/python3
"""Writes tests/data/reference_models.json: PyTorch's view of ember's model zoo (nn/models/).

Run from anywhere, with Debian's python3 (it has torch 1.13 CPU):

    /usr/bin/python3 scripts/make_reference_models.py

The PyTorch ResNets are bench/resnet20_pytorch.py's (the benchmark anchor), so the zoo, the benchmark
and this reference are one architecture. Two sections:

  "names"    for every zoo ResNet: parameter names in order, state-dict names with shapes, and the
             parameter count (tests/test_models.cpp compares ember's with them)
  "forward"  a tiny ResNet (2 stages of 1 block, 4 and 8 channels, 3 classes) from fixed weights on
             a fixed [2, 3, 8, 8] input: the training-mode output (batch statistics), the running
             statistics after it, and the eval-mode output — the whole forward pass, strides and
             projection shortcut included

Weights and inputs lie on a 1/256 grid (exact in float32) and everything is seeded, so re-running the
script writes an identical file.
"""
import os
import sys
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import make_reference as ref  # noqa: E402  (tensor_json, dump, _quantise)
from resnet20_pytorch import MODELS, ResNet  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "data", "reference_models.json")


def names(model):
    return {
        "parameters": [n for n, _ in model.named_parameters()],
        "state_dict": [[n, list(t.shape)] for n, t in model.state_dict().items()],
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def forward():
    g = torch.Generator().manual_seed(zlib.crc32(b"tiny_resnet"))
    model = ResNet([1, 1], [4, 8], num_classes=3).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(ref._quantise(torch.rand(p.shape, generator=g, dtype=torch.float64) - 0.5))
    initial = {n: ref.tensor_json(t) for n, t in model.state_dict().items()}
    x = ref._quantise(torch.rand([2, 3, 8, 8], generator=g, dtype=torch.float64) * 2 - 1)
    model.train()
    train_out = model(x)
    model.eval()
    eval_out = model(x)
    return {
        "state_dict": initial, "input": ref.tensor_json(x), "train_output": ref.tensor_json(train_out),
        "state_after": {n: ref.tensor_json(t) for n, t in model.state_dict().items() if "running" in n},
        "eval_output": ref.tensor_json(eval_out),
    }


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    entries = {name: names(make()) for name, make in MODELS.items()}
    lines = ["{", ' "generator": "scripts/make_reference_models.py",',
             ' "torch_version": %s,' % ref.dump(torch.__version__), ' "names": {']
    lines += ["  %s: %s%s" % (ref.dump(k), ref.dump(v), "," if i + 1 < len(entries) else "")
              for i, (k, v) in enumerate(entries.items())]
    lines.append(" },")
    lines.append(' "forward": %s' % ref.dump(forward()))
    lines.append("}")
    path = os.path.normpath(OUT)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
