#!/usr/bin/env python3
"""PyTorch side of bench/gpu_ops.cpp: the same ops, shapes and timing, on the same GPU.

  matmul_4096_tf32  float32 [4096,4096] @ [4096,4096], torch.backends.cuda.matmul.allow_tf32 = True
  conv_fwd          conv2d 64->64 3x3, padding 1, on [256,64,56,56], no bias
  conv_fwd_bwd      the same forward plus backward to input and weight

Settings: allow_tf32 on for matmul and cuDNN, cudnn.benchmark = True (the fastest algorithm PyTorch
can pick), eager mode. Each op is timed with a CUDA event pair per repetition on the current stream
after a warm-up; the median is reported. As in gpu_ops.cpp, each TF32 result is first compared with
the full-float32 result (||tf32 - fp32|| / ||fp32|| < 1e-2).

Prints one JSON line per op: {"kind": "op", "framework": "pytorch", "op": ..., "ms": ..., "tflops": ...}
Run: python3 bench/gpu_ops_pytorch.py   (scripts/gpu_check.sh runs it right after ember_gpu_ops)
"""
import json
import statistics
import sys

import torch
import torch.nn.functional as F


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    start = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    stop = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        start[i].record()
        fn()
        stop[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(start, stop))


def rel_err(got, ref):
    got, ref = got.double(), ref.double()
    return ((got - ref).norm() / ref.norm()).item()


def report(op, ms, flop, err, shape):
    ok = err < 1e-2  # NaN fails too
    print(json.dumps({"kind": "op", "framework": "pytorch", "op": op, "shape": shape, "ms": round(ms, 4),
                      "tflops": round(flop / (ms * 1e-3) / 1e12, 2), "rel_err_tf32_vs_fp32": float(f"{err:.2e}"),
                      "check": "ok" if ok else "FAIL", "torch": torch.__version__}), flush=True)
    return ok


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def main():
    if not torch.cuda.is_available():
        print("gpu_ops_pytorch.py: no CUDA device visible; nothing to time", file=sys.stderr)
        return 1
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda:0")
    torch.manual_seed(0)
    ok = True

    n = 4096
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    set_tf32(False)
    ref = a @ b
    set_tf32(True)
    err = rel_err(a @ b, ref)
    ok &= report("matmul_4096_tf32", median_ms(lambda: a @ b, 10, 50), 2.0 * n ** 3, err, "[4096,4096]x[4096,4096]")

    N, C, H, W, K = 256, 64, 56, 56, 64
    flop = 2.0 * N * K * H * W * C * 9
    shape = "x[256,64,56,56] w[64,64,3,3] pad 1"
    x = torch.randn(N, C, H, W, device=dev, requires_grad=True)
    w = (torch.randn(K, C, 3, 3, device=dev) * 0.05).requires_grad_()
    g = torch.randn(N, K, H, W, device=dev)
    with torch.no_grad():
        set_tf32(False)
        ref = F.conv2d(x, w, padding=1)
        set_tf32(True)
        err = rel_err(F.conv2d(x, w, padding=1), ref)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, w, padding=1)

    ok &= report("conv_fwd", median_ms(fwd, 5, 30), flop, err, shape)

    def fwd_bwd():
        x.grad = None
        w.grad = None
        F.conv2d(x, w, padding=1).backward(g)

    fwd_bwd()
    dw_tf32 = w.grad.clone()
    set_tf32(False)
    fwd_bwd()
    dw_fp32 = w.grad.clone()
    set_tf32(True)
    err = max(err, rel_err(dw_tf32, dw_fp32))
    ok &= report("conv_fwd_bwd", median_ms(fwd_bwd, 5, 20), 3 * flop, err, shape)
    print(f"# gpu_ops_pytorch.py: peak device memory {torch.cuda.max_memory_allocated(dev) / 1048576:.0f} MiB, "
          f"{'all checks ok' if ok else 'A CHECK FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
