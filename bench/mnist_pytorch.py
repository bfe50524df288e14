#!/usr/bin/env python3
"""PyTorch side of the MNIST training benchmark (bench/run_mnist_bench.sh runs it next to ember).

Trains exactly the bench networks for one epoch on the real MNIST IDX files, with the same
settings ember's examples/mnist uses, and prints one JSON line per network:
  {"framework": "pytorch", "model": ..., "epoch_seconds": ..., "test_accuracy": ..., "peak_rss_mb": ...}

Run with Debian's torch (CPU): /usr/bin/python3 bench/mnist_pytorch.py --data data/mnist --model mlp
Threads: --threads (default 2, the machine's cores). Data is held in memory as one normalized
float tensor and batches are index slices of a seeded permutation, like ember's in-memory loader.
The test set is evaluated at the training batch size (--eval-batch to change it): PyTorch 1.13's CPU
convolution is about 10x slower per image at batch 1000, and the comparison should see PyTorch at
its best. --limit N trains on the first N samples only (smoke tests). The JSON line also lists the
BLAS/oneDNN/MKL libraries the process loaded ("libs", from /proc/self/maps).

--device cuda (scripts/gpu_check.sh): the model trains on the GPU in eager mode with PyTorch's
defaults (cudnn.benchmark off, TF32 for convolutions only); each batch is gathered on the host,
pinned and uploaded with non_blocking=True, as DataLoader(pin_memory=True) does and as ember's
loader does for CUDA. The clock stops after torch.cuda.synchronize(), and the line adds
"peak_device_mb": torch.cuda.max_memory_allocated() over the whole run (training and test).
"""
import argparse
import json
import resource
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.1307, 0.3081


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(root, train):
    prefix = "train" if train else "t10k"
    x = read_idx(f"{root}/{prefix}-images-idx3-ubyte").astype(np.float32) / 255.0
    y = read_idx(f"{root}/{prefix}-labels-idx1-ubyte").astype(np.int64)
    x = (torch.from_numpy(x).unsqueeze(1) - MEAN) / STD
    return x.contiguous(), torch.from_numpy(y)


def loaded_math_libraries():
    """Paths of the BLAS / oneDNN / MKL shared objects mapped into this process (bench/bench_report.h's rule)."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line[line.find("/"):].strip() if "/" in line else ""
            if path.rsplit("/", 1)[-1].startswith(("libopenblas", "libblas", "libdnnl", "libmkl")):
                found.add(path)
    return sorted(found)


def make_model(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(10, 20, 5), nn.MaxPool2d(2),
                             nn.ReLU(), nn.Flatten(), nn.Linear(320, 50), nn.ReLU(), nn.Linear(50, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
    raise ValueError(name)


SETTINGS = {  # batch size, optimizer factory — the bench settings
    "mlp": (128, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "lenet": (64, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)),
    "cnn": (64, lambda p: torch.optim.Adam(p, lr=1e-3)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--model", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--limit", type=int, default=0, help="train on the first N samples only")
    ap.add_argument("--eval-batch", type=int, default=0, help="test batch size (default: the training batch)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def upload(t):  # host batch -> device, asynchronously from pinned memory on CUDA
        return t.pin_memory().to(dev, non_blocking=True) if cuda else t

    x_train, y_train = load(args.data, True)
    x_test, y_test = load(args.data, False)
    batch, make_opt = SETTINGS[args.model]
    if args.limit > 0:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    eval_batch = args.eval_batch or batch
    model = make_model(args.model).to(dev)  # on CUDA this also creates the context, before the clock
    opt = make_opt(model.parameters())
    sync()

    model.train()
    start = time.perf_counter()
    perm = torch.randperm(len(x_train))
    for i in range(0, len(x_train), batch):
        idx = perm[i:i + batch]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(upload(x_train[idx])), upload(y_train[idx]))
        loss.backward()
        opt.step()
    sync()
    epoch_seconds = time.perf_counter() - start

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x_test), eval_batch):
            logits = model(x_test[i:i + eval_batch].to(dev))
            correct += (logits.argmax(1) == y_test[i:i + eval_batch].to(dev)).sum().item()
    result = {
        "framework": "pytorch", "torch": torch.__version__, "model": args.model, "threads": args.threads,
        "device": str(dev), "epoch_seconds": round(epoch_seconds, 3),
        "test_accuracy": round(100.0 * correct / len(x_test), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "eval_batch": eval_batch, "libs": loaded_math_libraries(),
    }
    if cuda:
        result["peak_device_mb"] = round(torch.cuda.max_memory_allocated(dev) / 1048576.0, 1)
        result["gpu"] = torch.cuda.get_device_name(dev)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
