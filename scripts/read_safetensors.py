#!/usr/bin/env python3
"""Reads a safetensors file (such as an ember checkpoint) with nothing but the standard library.

    python3 scripts/read_safetensors.py model.safetensors     # prints metadata, names, dtypes, shapes

As a module: `metadata, tensors = read("model.safetensors")` gives {name: (dtype, shape, flat list)}.
The format: 8-byte little-endian header length N, N bytes of JSON, then the raw little-endian data.
"""
import array, json, struct, sys

TYPECODES = {"F32": "f", "F64": "d", "I64": "q", "U8": "B"}  # safetensors dtype -> array typecode


def half_values(dtype, raw):
    """BF16 / F16 data as Python floats: F16 through struct's IEEE half ('e'); BF16 is the top half
    of a float32, so its 16 bits shifted up are that float's bits."""
    n = len(raw) // 2
    if dtype == "F16":
        return list(struct.unpack(f"<{n}e", raw))
    bits = struct.unpack(f"<{n}H", raw)
    return list(struct.unpack(f"<{n}f", struct.pack(f"<{n}I", *(b << 16 for b in bits))))


def read(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if info["dtype"] in ("BF16", "F16"):
            tensors[name] = (info["dtype"], info["shape"], half_values(info["dtype"], data[begin:end]))
            continue
        values = array.array(TYPECODES[info["dtype"]], data[begin:end])
        if sys.byteorder == "big":
            values.byteswap()
        tensors[name] = (info["dtype"], info["shape"], values.tolist())
    return metadata, tensors


if __name__ == "__main__":
    metadata, tensors = read(sys.argv[1])
    print("metadata:", metadata)
    for name, (dtype, shape, values) in tensors.items():
        print(f"{name}: {dtype} {shape} {values[:6]}{' ...' if len(values) > 6 else ''}")
