#!/usr/bin/env python3
"""FLOPs per training step of each benchmark network, and the roofline table built from them.

  python3 bench/roofline.py                                      FLOPs per step and per sample
  python3 bench/roofline.py --csv bench.csv --peak peak.txt      the roofline table

--csv is the file `bench/run_cpu_bench.sh --csv FILE` writes (median training-loop seconds of
each framework, model and thread count); --peak is the output of build/bench/ember_peak (its
`peak threads=N gflops=G` lines). The table gives, for ember and libtorch, each model's FLOPs per
step, the achieved GFLOP/s (FLOPs of the work done / median seconds of the training loop) and the
fraction of the measured peak at the same thread count.

Only GEMM-shaped work is counted (linear layers and convolutions, forward and backward); bias,
activations, pooling, batch norm, the loss and the optimizer are left out, as rooflines of
training usually do, so the achieved rate is a lower bound on what the GEMMs themselves ran at.
bench/model_shapes.h lists the same layers for bench/gemm_sweep.cpp, which prints the same totals
(`step_flops model=... gflop=...`): the two must agree.
"""
import argparse
import csv
import re
import sys


# Per layer, for one training step at batch B (each product of an [M,K] and a [K,N] matrix costs
# 2*M*N*K FLOPs):
#   Linear(in, out):  forward y = x W^T          2*B*in*out
#                     grad input dx = dy W        2*B*in*out  (not for the first layer: the data needs no gradient)
#                     grad weight dW = dy^T x     2*B*in*out
#   Conv2d(cin, cout, k, stride, pad) on HxW -> Ho x Wo, Ho = (H + 2 pad - k) / stride + 1:
#                     forward                     2*B*cout*Ho*Wo*cin*k*k
#                     grad input (then col2im)    2*B*cout*Ho*Wo*cin*k*k  (not for the first layer)
#                     grad weight                 2*B*cout*Ho*Wo*cin*k*k
def linear_flops(batch, n_in, n_out, first=False):
    one_gemm = 2 * batch * n_in * n_out
    return one_gemm * (2 if first else 3)


def conv_flops(batch, cin, cout, k, size, stride=1, pad=0, first=False):
    out = (size + 2 * pad - k) // stride + 1
    one_gemm = 2 * batch * cout * out * out * cin * k * k
    return one_gemm * (2 if first else 3)


def mlp(b):  # 784-512-ReLU-512-ReLU-10
    return linear_flops(b, 784, 512, first=True) + linear_flops(b, 512, 512) + linear_flops(b, 512, 10)


def lenet(b):  # conv(1,10,5) 28->24, pool 12, conv(10,20,5) 12->8, pool 4, fc 320-50-10
    return (conv_flops(b, 1, 10, 5, 28, first=True) + conv_flops(b, 10, 20, 5, 12)
            + linear_flops(b, 320, 50) + linear_flops(b, 50, 10))


def cnn(b):  # conv(1,32,3) 28->26, conv(32,64,3) 26->24, pool 12, fc 9216-128-10
    return (conv_flops(b, 1, 32, 3, 28, first=True) + conv_flops(b, 32, 64, 3, 26)
            + linear_flops(b, 9216, 128) + linear_flops(b, 128, 10))


def resnet20(b):
    """Stem conv 3->16 on 32x32; stage 1: 6 convs 16->16 on 32x32; stage 2: conv 16->32 stride 2
    (32->16), 1x1 stride-2 shortcut 16->32, 5 convs 32->32 on 16x16; stage 3 likewise with 64
    channels on 8x8; fc 64->10."""
    f = conv_flops(b, 3, 16, 3, 32, pad=1, first=True)
    f += 6 * conv_flops(b, 16, 16, 3, 32, pad=1)
    for cin, cout, size in ((16, 32, 32), (32, 64, 16)):
        f += conv_flops(b, cin, cout, 3, size, stride=2, pad=1)   # first block's conv1
        f += conv_flops(b, cin, cout, 1, size, stride=2)          # projection shortcut
        f += 5 * conv_flops(b, cout, cout, 3, size // 2, pad=1)   # the other five 3x3 convs
    return f + linear_flops(b, 64, 10)


# model -> (FLOPs at batch b, training batch sizes). MNIST epochs have 60000 samples.
MODELS = {"mlp": (mlp, [128]), "lenet": (lenet, [64]), "cnn": (cnn, [64]), "resnet20": (resnet20, [128, 32])}
MNIST_TRAIN_SAMPLES = 60000


def read_peaks(path):
    peaks = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"peak threads=(\d+) gflops=([\d.]+)", line)
            if m:
                peaks[int(m.group(1))] = float(m.group(2))
    if not peaks:
        sys.exit(f"roofline.py: no 'peak threads=N gflops=G' line in {path} (it should be ember_peak's output)")
    return peaks


def achieved_gflops(row):
    """GFLOP/s of one CSV row: MNIST rows time an epoch, resnet20 rows one step."""
    fn, _ = MODELS[row["model"]]
    seconds = float(row["loop_median_s"])
    if row["model"] == "resnet20":
        return fn(int(row["batch"])) / seconds / 1e9
    samples = int(row.get("samples") or MNIST_TRAIN_SAMPLES)
    return fn(1) * samples / seconds / 1e9  # FLOPs are linear in the batch size


def print_flops():
    print("| model | batch | GFLOP/step | MFLOP/sample |\n|---|---|---|---|")
    for name, (fn, batches) in MODELS.items():
        for b in batches:
            print(f"| {name} | {b} | {fn(b) / 1e9:.4f} | {fn(1) / 1e6:.3f} |")


def print_roofline(csv_path, peaks):
    with open(csv_path) as f:
        rows = [r for r in csv.DictReader(f) if r["framework"] in ("ember", "libtorch") and r["model"] in MODELS]
    if not rows:
        sys.exit(f"roofline.py: {csv_path} has no ember or libtorch rows")
    print("| model | batch | threads | GFLOP/step | ember GFLOP/s | ember % of peak | libtorch GFLOP/s | libtorch % of peak | peak GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["model"], int(r["batch"]), int(r["threads"])) for r in rows}, key=lambda k: (list(MODELS).index(k[0]), -k[1], k[2]))
    for model, batch, threads in keys:
        cells = []
        peak = peaks.get(threads)
        for fw in ("ember", "libtorch"):
            match = [r for r in rows if (r["framework"], r["model"], int(r["batch"]), int(r["threads"])) == (fw, model, batch, threads)]
            if not match:
                cells += ["-", "-"]
                continue
            g = achieved_gflops(match[0])
            cells += [f"{g:.1f}", f"{100 * g / peak:.1f}" if peak else "-"]
        print(f"| {model} | {batch} | {threads} | {MODELS[model][0](batch) / 1e9:.4f} | " + " | ".join(cells)
              + f" | {peak if peak else '-'} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", help="CSV written by bench/run_cpu_bench.sh --csv")
    ap.add_argument("--peak", help="output of build/bench/ember_peak")
    args = ap.parse_args()
    if bool(args.csv) != bool(args.peak):
        ap.error("--csv and --peak go together")
    print_flops()
    if args.csv:
        print()
        print_roofline(args.csv, read_peaks(args.peak))


if __name__ == "__main__":
    main()
