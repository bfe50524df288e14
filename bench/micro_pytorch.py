#!/usr/bin/env python3
"""PyTorch's side of bench/micro_cpu.cpp's cross-entropy case: forward and backward of a mean
cross entropy over [256, 1000] float32 logits, ms per call (median, min, max of --reps timings of
--iters calls each), on --threads threads.

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp python3 bench/micro_pytorch.py --threads 2
"""
import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--iters", type=int, default=200)
    a = ap.parse_args()
    if a.threads < 1 or a.reps < 3 or a.iters < 1:
        ap.error("--threads and --iters must be >= 1, --reps >= 3")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    logits = (torch.randn(256, 1000) * 4).requires_grad_()
    target = torch.randint(0, 1000, (256,))
    loss_fn = torch.nn.functional.cross_entropy
    for _ in range(20):  # warm-up
        logits.grad = None
        loss_fn(logits, target).backward()
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        for _ in range(a.iters):
            logits.grad = None
            loss_fn(logits, target).backward()
        times.append((time.perf_counter() - t0) / a.iters * 1e3)
    print(f"xent_256x1000/pytorch {torch.__version__} threads={a.threads}: "
          f"{statistics.median(times):.4f} ms (min {min(times):.4f}, max {max(times):.4f}) per forward+backward")


if __name__ == "__main__":
    main()
