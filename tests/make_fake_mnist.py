#!/usr/bin/env python3
"""Writes small random MNIST-format IDX files for the example tests (no download needed).

Usage: make_fake_mnist.py DIR N_TRAIN N_TEST
"""
import os
import random
import struct
import sys

d, n_train, n_test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(0)


def write(name, n, images):
    with open(os.path.join(d, name), "wb") as f:
        if images:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28))
            f.write(bytes(rng.randrange(256) for _ in range(n * 784)))
        else:
            f.write(struct.pack(">II", 0x801, n))
            f.write(bytes(rng.randrange(10) for _ in range(n)))


write("train-images-idx3-ubyte", n_train, True)
write("train-labels-idx1-ubyte", n_train, False)
write("t10k-images-idx3-ubyte", n_test, True)
write("t10k-labels-idx1-ubyte", n_test, False)
