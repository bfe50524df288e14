#!/usr/bin/env python3
"""Writes the seed corpus of the libFuzzer targets (tests/fuzz/corpus/<target>/): a few valid files
of each format, so the fuzzers start from real structure, and crafted ones that once crashed,
hung or were accepted (issue 12). tests/test_fuzz_corpus.cpp replays every file through the same
target bodies in the ordinary test suite. Files found by a fuzzer later are added next to these
under their own name (crash-*, kept as found).

Usage: make_fuzz_corpus.py [OUT_DIR]   (default: tests/fuzz/corpus next to this script's repo)
"""
import json
import math
import os
import struct
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- IDX ----
def idx_images(n, rows, cols, count=None):
    return struct.pack(">IIII", 0x803, n if count is None else count, rows, cols) + bytes(
        (i * 37) % 256 for i in range(n * rows * cols))


def idx_labels(labels, count=None):
    return struct.pack(">II", 0x801, len(labels) if count is None else count) + bytes(labels)


put("idx", "valid-images", idx_images(2, 4, 3))
put("idx", "valid-labels", idx_labels([0, 9, 3]))
put("idx", "huge-rows-cols-count-0", struct.pack(">IIII", 0x803, 0, 0xFFFFFFFF, 0xFFFFFFFF))
put("idx", "count-past-end", idx_images(2, 4, 3, count=1000))
put("idx", "label-out-of-range", idx_labels([1, 200]))
put("idx", "gzip-magic", b"\x1f\x8b\x08\x08" + bytes(12))

# ---- CIFAR-10 (records of 1 label byte + 3072 pixel bytes) ----
def record(label):
    return bytes([label]) + bytes((i * 7) % 256 for i in range(3072))


put("cifar", "valid-two-records", record(3) + record(9))
put("cifar", "bad-label", record(10))
put("cifar", "truncated", record(1)[:100])
put("cifar", "empty", b"")


# ---- safetensors ----
def safetensors(header, data=b"", raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


valid = safetensors({"__metadata__": {"format": "pt"},
                     "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                     "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
                     "c": {"dtype": "U8", "shape": [3], "data_offsets": [24, 27]}},
                    f32(1, 2, 3, 4) + struct.pack("<q", 7) + b"\x01\x02\x03")
put("safetensors", "valid", valid)
huge = 1 << 62
put("safetensors", "zero-dim-beside-huge",
    safetensors({"w": {"dtype": "F32", "shape": [0, huge, huge], "data_offsets": [0, 0]}}))
put("safetensors", "number-1e400", safetensors(None, f32(0), raw_header='{"w":{"dtype":"F32","shape":[1e400],'
                                                                       '"data_offsets":[0,4]}}'))
put("safetensors", "overlapping", safetensors({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                               "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}},
                                              bytes(8)))
put("safetensors", "header-length-past-end", struct.pack("<Q", 1 << 40) + b"{}")
put("safetensors", "not-json", safetensors(None, raw_header="{nope"))


# ---- checkpoints: nn.Linear(2, 1) + Adam, as tests/fuzz/fuzz_targets.h loads them ----
def checkpoint(tweak=None):
    t = {
        "model.weight": ("F32", [1, 2], f32(0.5, -0.25)),
        "model.bias": ("F32", [1], f32(0.1)),
        "optimizer.state.0.step": ("I64", [], struct.pack("<q", 3)),
        "optimizer.state.0.exp_avg": ("F32", [1, 2], f32(0.01, 0.02)),
        "optimizer.state.0.exp_avg_sq": ("F32", [1, 2], f32(1e-4, 2e-4)),
        "optimizer.state.1.step": ("I64", [], struct.pack("<q", 3)),
        "optimizer.state.1.exp_avg": ("F32", [1], f32(0.03)),
        "optimizer.state.1.exp_avg_sq": ("F32", [1], f32(3e-4)),
    }
    meta = {"epoch": "1", "model": "linear", "optimizer.optimizer": "Adam", "optimizer.param_groups": "1",
            "optimizer.param_groups.0.params": "2", "optimizer.param_groups.0.lr": "0.001",
            "optimizer.param_groups.0.beta1": "0.9", "optimizer.param_groups.0.beta2": "0.999",
            "optimizer.param_groups.0.eps": "1e-08", "optimizer.param_groups.0.weight_decay": "0",
            "optimizer.param_groups.0.amsgrad": "0"}
    if tweak:
        tweak(t, meta)
    header, data = {"__metadata__": meta}, b""
    for name, (dtype, shape, raw) in t.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return safetensors(header, data)


put("checkpoint", "valid", checkpoint())
put("checkpoint", "int64-weight",
    checkpoint(lambda t, m: t.update({"model.weight": ("I64", [1, 2], struct.pack("<2q", 1, 2))})))
put("checkpoint", "step-int64-max",
    checkpoint(lambda t, m: t.update({"optimizer.state.0.step": ("I64", [], struct.pack("<q", 2**63 - 1))})))
put("checkpoint", "step-1e300",
    checkpoint(lambda t, m: t.update({"optimizer.state.0.step": ("F64", [], struct.pack("<d", 1e300))})))
put("checkpoint", "lr-inf", checkpoint(lambda t, m: m.update({"optimizer.param_groups.0.lr": "inf"})))
put("checkpoint", "epoch-1e3", checkpoint(lambda t, m: m.update({"epoch": "1e3"})))
put("checkpoint", "nan-weight", checkpoint(lambda t, m: t.update({"model.weight": ("F32", [1, 2], f32(math.nan, 1))})))
print("wrote the fuzz seed corpus to", os.path.normpath(root))
