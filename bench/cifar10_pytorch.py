#!/usr/bin/env python3
"""PyTorch eager side of ember_cifar10 (examples/cifar10): the same recipe on the same CIFAR-10-format
files, for scripts/gpu_check.sh (on the GPU) and as an accuracy anchor.

    python3 bench/cifar10_pytorch.py --data data/cifar10-synthetic --limit 5000 [--model resnet20]
                                     [--epochs 1] [--batch-size 128] [--lr 0.1] [--device cuda]

Recipe (ember_cifar10's defaults): the zoo's ResNet (bench/resnet20_pytorch.py), random crop 32 with
padding 4 and a horizontal flip (per sample, on the host, from a seeded generator), per-channel
normalisation, SGD with Nesterov momentum 0.9 and weight decay 5e-4 on weights with 2+ dimensions only,
cross-entropy with label smoothing 0.1, linear warm-up (1 epoch, at most half the run, from lr/10)
then cosine to 0, stepped every batch. The first --limit training images; the test set at the
training batch size. Batches are gathered on the host, pinned and uploaded with non_blocking=True, as
ember's loader does for CUDA. The clock covers the training loop of the last epoch and stops after a
device synchronize. Prints one JSON line: epoch_seconds, test_accuracy (%), train_loss, peak_device_mb
(CUDA), "data": "synthetic" when the folder holds make_synthetic_cifar10's marker file.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet20_pytorch import MODELS  # noqa: E402

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def load(root, names):
    raw = np.concatenate([np.fromfile(os.path.join(root, n), dtype=np.uint8).reshape(-1, 3073) for n in names])
    return torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))


def augment(images, gen):
    """Random crop 32 with padding 4 (black) and a horizontal flip, per image, on uint8 [B, 3, 32, 32]."""
    padded = F.pad(images, (4, 4, 4, 4))
    out = torch.empty_like(images)
    offsets = torch.randint(0, 9, (len(images), 2), generator=gen)
    flips = torch.rand(len(images), generator=gen) < 0.5
    for i, (dy, dx) in enumerate(offsets.tolist()):
        crop = padded[i, :, dy:dy + 32, dx:dx + 32]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/cifar10/cifar-10-batches-bin")
    p.add_argument("--model", choices=sorted(MODELS), default="resnet20")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    x_train, y_train = load(a.data, [f"data_batch_{i}.bin" for i in range(1, 6)])
    x_test, y_test = load(a.data, ["test_batch.bin"])
    if 0 < a.limit < len(x_train):
        x_train, y_train = x_train[:a.limit], y_train[:a.limit]
    x_test = ((x_test.float() / 255 - MEAN) / STD).to(device)
    y_test = y_test.to(device)

    model = MODELS[a.model]().to(device)
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(x_train) // a.batch_size + (len(x_train) % a.batch_size > 0)
    total = a.epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total // 2)
    ramp = torch.optim.lr_scheduler.LinearLR(opt, 0.1, 1.0, warmup) if warmup else None
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(total - warmup, 1))
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [ramp, cosine], [warmup]) if warmup else cosine
    gen = torch.Generator().manual_seed(a.seed)
    mean, std = MEAN.to(device), STD.to(device)
    epoch_seconds, loss_sum = 0.0, 0.0
    for _ in range(a.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        start, loss_sum = time.perf_counter(), torch.zeros((), device=device)
        for b in range(steps_per_epoch):
            idx = order[b * a.batch_size:(b + 1) * a.batch_size]
            xb = augment(x_train[idx], gen)
            if device.type == "cuda":
                xb = xb.pin_memory()
            xb = (xb.to(device, non_blocking=True).float() / 255 - mean) / std
            yb = y_train[idx].to(device, non_blocking=True)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb, label_smoothing=0.1)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for b in range(0, len(x_test), a.batch_size):
            correct += (model(x_test[b:b + a.batch_size]).argmax(1) == y_test[b:b + a.batch_size]).sum().item()
    synthetic = os.path.exists(os.path.join(a.data, "SYNTHETIC.txt"))
    result = {"framework": "pytorch", "model": a.model, "epochs": a.epochs, "batch_size": a.batch_size,
              "epoch_seconds": epoch_seconds, "steps_per_epoch": steps_per_epoch,
              "test_accuracy": 100 * correct / len(x_test), "train_loss": loss_sum.item() / len(x_train),
              "data": "synthetic" if synthetic else "cifar10", "device": str(device)}
    if device.type == "cuda":
        result["peak_device_mb"] = torch.cuda.max_memory_allocated() / 1048576
    print(json.dumps(result))


if __name__ == "__main__":
    main()
