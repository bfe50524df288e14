#!/usr/bin/env python3
"""bfloat16 / float16 interoperability with PyTorch, both ways (run with /usr/bin/python3; needs torch).

    /usr/bin/python3 scripts/make_half_safetensors.py            # writes tests/data/half_torch.safetensors
    /usr/bin/python3 scripts/make_half_safetensors.py FILE ...   # opens ember-written files in PyTorch

The first form converts a list of float32 values (ties, 1/3, the float16 range edges, subnormals, inf,
NaN) with PyTorch's own .to(torch.bfloat16) / .to(torch.float16) and writes the results, with the
float32 inputs, as a safetensors file; tests/test_half_checkpoint.cpp loads it and checks that ember's
conversion of each input gives PyTorch's bits, and that ember reads the BF16/F16 data. The second form
loads each tensor of ember-written files into torch (torch.frombuffer with the header's dtype) and
checks that the values equal those of scripts/read_safetensors.py's decoder.
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from read_safetensors import read  # noqa: E402

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8,
          "BF16": torch.bfloat16, "F16": torch.float16}
TAGS = {v: k for k, v in DTYPES.items()}

U = 2.0 ** -24  # float16's smallest subnormal
VALUES = [1 / 3, -2.5, 1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504.0, 65519.0,
          65520.0, -65520.0, 1e10, U, 0.5 * U, 0.75 * U, 1.5 * U, 2.5 * U, 1023 * U, 1023.5 * U, 2.0 ** -14,
          2.0 ** -130, 3.4028234663852886e38, math.inf, -math.inf, math.nan, -0.0, 0.1, 1e-3, 123.456]


def write(path, tensors):
    header, blobs, offset = {"__metadata__": {"source": "scripts/make_half_safetensors.py"}}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.element_size() > 1 else t.numpy().tobytes()
        header[name] = {"dtype": TAGS[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def check(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    _, decoded = read(path)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        t = torch.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"]) if end > begin else \
            torch.empty(info["shape"], dtype=DTYPES[info["dtype"]])
        mine = torch.tensor(decoded[name][2], dtype=torch.float64).reshape(info["shape"])
        same = torch.equal(t.double().nan_to_num(7.0), mine.nan_to_num(7.0))
        print(f"{path}: {name}: {info['dtype']} {info['shape']} opens in torch as {t.dtype}; "
              f"{'matches' if same else 'DIFFERS FROM'} read_safetensors.py")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        for p in sys.argv[1:]:
            check(p)
    else:
        x = torch.tensor(VALUES, dtype=torch.float32)
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "half_torch.safetensors")
        write(os.path.normpath(out), {"input": x, "bf16": x.to(torch.bfloat16), "f16": x.to(torch.float16),
                                      "bf16_matrix": torch.arange(6, dtype=torch.float32).reshape(2, 3).to(torch.bfloat16) / 3})
        print("wrote", os.path.normpath(out))
