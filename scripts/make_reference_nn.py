#!/usr/bin/python3
"""Writes tests/data/reference_nn.json: PyTorch's answers for ember's nn library (nn/).

Run from anywhere, with Debian's python3 (it has torch 1.13 CPU; the pyenv `python3` on PATH does not):

    /usr/bin/python3 scripts/make_reference_nn.py

Two sections:

  "cases"    nn.functional ops in the format of reference_core.json (see scripts/make_reference.py,
             whose input makers and case runner this script reuses): a PyTorch expression over inputs
             x0, x1, ..., the inputs, the output, a fixed upstream gradient v and the gradient of
             sum(out * v) for every input that requires grad. tests/test_nn_reference.cpp replays
             each with ember in float64 and float32.
  "modules"  whole modules: parameter and state-dict names of nested containers, parameter counts
             of the benchmark networks, BatchNorm running statistics after a few training steps,
             and one training step of a small CNN from fixed weights (loss and every gradient).

Inputs lie on a 1/256 grid (exact in float32), max-pooling inputs have no ties, and everything is
seeded per case, so re-running the script writes an identical file.
"""

import json
import os
import sys
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import make_reference as ref  # noqa: E402  (input makers, run_case, tensor_json)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "reference_nn.json")

torch.set_default_dtype(torch.float64)
uni, distinct, ints, fixed = ref.uni, ref.distinct, ref.ints, ref.fixed

# ---------------------------------------------------------------- functional cases

CASES = []


def case(name, expr, inputs, grad=True):
    assert all(c[0] != name for c in CASES), "duplicate case " + name
    CASES.append((name, expr, inputs, grad))


# ---- linear ----
case("linear", "F.linear(x0, x1, x2)", [uni([4, 5]), uni([3, 5]), uni([3])])
case("linear_nobias", "F.linear(x0, x1)", [uni([4, 5]), uni([3, 5])])
case("linear_3d", "F.linear(x0, x1, x2)", [uni([2, 3, 5]), uni([4, 5]), uni([4])])
case("linear_1d", "F.linear(x0, x1, x2)", [uni([5]), uni([4, 5]), uni([4])])
# linear_relu and conv2d_relu (ember's fused layer + ReLU, nn::Sequential's) are relu(layer) in PyTorch.
case("linear_relu", "F.relu(F.linear(x0, x1, x2))", [uni([4, 5]), uni([3, 5]), uni([3])])
case("linear_relu_3d_nobias", "F.relu(F.linear(x0, x1))", [uni([2, 3, 5]), uni([4, 5])])
case("conv2d_relu", "F.relu(F.conv2d(x0, x1, x2, padding=1))", [uni([2, 3, 6, 5]), uni([4, 3, 3, 3]), uni([4])])
case("conv2d_relu_stride_groups_nobias", "F.relu(F.conv2d(x0, x1, stride=2, groups=2))",
     [uni([2, 4, 7, 7]), uni([6, 2, 3, 3])])
case("linear_noncontig", "F.linear(x0.transpose(0, 1), x1, x2)", [uni([5, 4]), uni([3, 5]), uni([3])])

# ---- conv2d ----
case("conv2d", "F.conv2d(x0, x1, x2)", [uni([2, 3, 7, 6]), uni([4, 3, 3, 3]), uni([4])])
case("conv2d_nobias", "F.conv2d(x0, x1)", [uni([2, 3, 5, 5]), uni([4, 3, 3, 3])])
case("conv2d_stride_padding", "F.conv2d(x0, x1, x2, stride=(2, 1), padding=(1, 2))",
     [uni([2, 3, 7, 6]), uni([4, 3, 3, 2]), uni([4])])
case("conv2d_dilation", "F.conv2d(x0, x1, x2, padding=2, dilation=2)",
     [uni([2, 2, 7, 8]), uni([3, 2, 3, 3]), uni([3])])
case("conv2d_groups", "F.conv2d(x0, x1, x2, stride=2, padding=1, groups=2)",
     [uni([2, 4, 7, 7]), uni([6, 2, 3, 3]), uni([6])])
case("conv2d_depthwise", "F.conv2d(x0, x1, x2, padding=1, groups=3)",
     [uni([2, 3, 5, 5]), uni([3, 1, 3, 3]), uni([3])])
case("conv2d_1x1", "F.conv2d(x0, x1, x2)", [uni([2, 3, 4, 5]), uni([5, 3, 1, 1]), uni([5])])
case("conv2d_1x1_stride", "F.conv2d(x0, x1, stride=2)", [uni([2, 3, 5, 5]), uni([4, 3, 1, 1])])
case("conv2d_unbatched", "F.conv2d(x0, x1, x2, padding=1)", [uni([2, 4, 4]), uni([3, 2, 3, 3]), uni([3])])
case("conv2d_noncontig", "F.conv2d(x0.transpose(2, 3), x1, x2)", [uni([2, 3, 6, 5]), uni([4, 3, 2, 2]), uni([4])])
case("conv2d_batch1", "F.conv2d(x0, x1, x2, padding=1)", [uni([1, 3, 6, 6]), uni([4, 3, 3, 3]), uni([4])])

# ---- pooling (no ties: distinct values) ----
case("max_pool2d", "F.max_pool2d(x0, 2)", distinct([2, 3, 6, 7], lo=-8, hi=8)[:1])
case("max_pool2d_stride_padding", "F.max_pool2d(x0, 3, stride=2, padding=1)", distinct([2, 2, 7, 6], lo=-8, hi=8)[:1])
case("max_pool2d_ceil_mode", "F.max_pool2d(x0, 2, ceil_mode=True)", distinct([2, 2, 5, 7], lo=-8, hi=8)[:1])
case("max_pool2d_dilation", "F.max_pool2d(x0, (2, 3), stride=1, dilation=2)", distinct([1, 2, 6, 7], lo=-8, hi=8)[:1])
case("max_pool2d_unbatched", "F.max_pool2d(x0, 2, stride=1)", distinct([2, 4, 4], lo=-8, hi=8)[:1])
case("avg_pool2d", "F.avg_pool2d(x0, 2)", [uni([2, 3, 6, 7])])
case("avg_pool2d_padding", "F.avg_pool2d(x0, 3, stride=2, padding=1)", [uni([2, 2, 7, 6])])
case("avg_pool2d_no_pad_count", "F.avg_pool2d(x0, 3, stride=2, padding=1, count_include_pad=False)",
     [uni([2, 2, 7, 6])])
case("avg_pool2d_ceil_mode", "F.avg_pool2d(x0, 3, stride=2, padding=1, ceil_mode=True)", [uni([1, 2, 6, 6])])
case("adaptive_avg_pool2d", "F.adaptive_avg_pool2d(x0, (3, 2))", [uni([2, 3, 7, 5])])
case("adaptive_avg_pool2d_global", "F.adaptive_avg_pool2d(x0, 1)", [uni([2, 3, 4, 5])])
case("adaptive_avg_pool2d_upsample", "F.adaptive_avg_pool2d(x0, (5, 4))", [uni([1, 2, 3, 3])])

# ---- normalisation ----
case("batch_norm_train", "F.batch_norm(x0, None, None, x1, x2, training=True)",
     [uni([4, 3, 3, 2]), uni([3]), uni([3])])
case("batch_norm_train_1d", "F.batch_norm(x0, None, None, x1, x2, training=True, eps=1e-3)",
     [uni([6, 4]), uni([4]), uni([4])])
case("batch_norm_train_noaffine", "F.batch_norm(x0, None, None, training=True)", [uni([3, 2, 4])])
# Running statistics are constants (buffers), written into the expression so they need no gradient.
case("batch_norm_eval", "F.batch_norm(x0, torch.tensor([0.25, -0.5, 0.0]), torch.tensor([0.5, 2.0, 1.25]), x1, x2)",
     [uni([4, 3, 2, 2]), uni([3]), uni([3])])
# batch_norm_relu (ember's fused conv-BN-ReLU piece) is relu(batch_norm) in PyTorch.
case("batch_norm_relu_train", "F.relu(F.batch_norm(x0, None, None, x1, x2, training=True))",
     [uni([4, 3, 3, 2]), uni([3]), uni([3])])
case("batch_norm_relu_eval",
     "F.relu(F.batch_norm(x0, torch.tensor([0.25, -0.5, 0.0]), torch.tensor([0.5, 2.0, 1.25]), x1, x2))",
     [uni([4, 3, 2, 2]), uni([3]), uni([3])])
case("layer_norm", "F.layer_norm(x0, [4, 5], x1, x2)", [uni([3, 4, 5]), uni([4, 5]), uni([4, 5])])
case("layer_norm_noaffine", "F.layer_norm(x0, [6])", [uni([2, 3, 6])])
case("layer_norm_noncontig", "F.layer_norm(x0.transpose(0, 1), [3], x1, x2, eps=1e-3)",
     [uni([3, 4]), uni([3]), uni([3])])

# ---- losses ----
# Targets: ints in range; -100 (the default ignore_index) or 1 where a case ignores positions.
case("cross_entropy", "F.cross_entropy(x0, x1)", [uni([5, 4], -3, 3), ints([5], 4)])
case("cross_entropy_sum", "F.cross_entropy(x0, x1, reduction='sum')", [uni([5, 4], -3, 3), ints([5], 4)])
case("cross_entropy_none", "F.cross_entropy(x0, x1, reduction='none')", [uni([5, 4], -3, 3), ints([5], 4)])
case("cross_entropy_label_smoothing", "F.cross_entropy(x0, x1, label_smoothing=0.1)",
     [uni([5, 4], -3, 3), ints([5], 4)])
case("cross_entropy_ignore_index", "F.cross_entropy(x0, x1)",
     [uni([5, 4], -3, 3), fixed([2, -100, 0, 3, -100], dtype=torch.int64)])
case("cross_entropy_ignore_smoothing", "F.cross_entropy(x0, x1, ignore_index=1, label_smoothing=0.2)",
     [uni([6, 3], -3, 3), fixed([1, 0, 2, 1, 2, 0], dtype=torch.int64)])
case("cross_entropy_ignore_none", "F.cross_entropy(x0, x1, reduction='none', ignore_index=1, label_smoothing=0.2)",
     [uni([6, 3], -3, 3), fixed([1, 0, 2, 1, 2, 0], dtype=torch.int64)])
case("cross_entropy_kdim", "F.cross_entropy(x0, x1)", [uni([2, 4, 3], -3, 3), ints([2, 3], 4)])
case("cross_entropy_unbatched", "F.cross_entropy(x0, x1)", [uni([4], -3, 3), fixed(2, dtype=torch.int64)])
case("cross_entropy_large_logits", "F.cross_entropy(x0, x1)", [uni([3, 4], 90, 110), ints([3], 4)])
case("cross_entropy_noncontig", "F.cross_entropy(x0.t(), x1)", [uni([4, 5], -3, 3), ints([5], 4)])
case("nll_loss", "F.nll_loss(x0, x1)", [uni([5, 4], -3, 0), ints([5], 4)])
case("nll_loss_sum", "F.nll_loss(x0, x1, reduction='sum')", [uni([5, 4], -3, 0), ints([5], 4)])
case("nll_loss_ignore_index", "F.nll_loss(x0, x1, ignore_index=2)",
     [uni([5, 4], -3, 0), fixed([2, 1, 0, 2, 3], dtype=torch.int64)])
case("nll_loss_none", "F.nll_loss(x0, x1, reduction='none')", [uni([5, 4], -3, 0), ints([5], 4)])
case("mse_loss", "F.mse_loss(x0, x1)", [uni([3, 4]), uni([3, 4])])
case("mse_loss_sum", "F.mse_loss(x0, x1, reduction='sum')", [uni([3, 4]), uni([3, 4])])
case("mse_loss_none", "F.mse_loss(x0, x1, reduction='none')", [uni([3, 4]), uni([3, 4])])


# ---------------------------------------------------------------- module checks


# torchvision's BasicBlock, as the benchmark anchor writes it out (torchvision is not installed here).
from resnet20_pytorch import BasicBlock  # noqa: E402


def small_resnet():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), BasicBlock(8, 8),
                         BasicBlock(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def nested():
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()), nn.Flatten(),
                         nn.Sequential(nn.Linear(8 * 6 * 6, 16), nn.Dropout(0.5), nn.Linear(16, 10)))


def lenet():  # bench/mnist_pytorch.py's
    return nn.Sequential(nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(10, 20, 5), nn.MaxPool2d(2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(320, 50), nn.ReLU(), nn.Linear(50, 10))


def cnn():  # bench/mnist_pytorch.py's
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))


def names(model):
    return {
        "parameters": [n for n, _ in model.named_parameters()],
        "state_dict": [[n, list(t.shape)] for n, t in model.state_dict().items()],
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def gen(name):
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


def running_stats(name, make_bn, shape, steps=3):
    """A BatchNorm trained on `steps` batches, then evaluated on one more."""
    g = gen(name)
    bn = make_bn()
    with torch.no_grad():  # affine parameters away from the trivial 1 / 0
        bn.weight.copy_(ref._quantise(torch.rand(bn.weight.shape, generator=g) + 0.5))
        bn.bias.copy_(ref._quantise(torch.rand(bn.bias.shape, generator=g) - 0.5))
    batches = [ref._quantise(torch.rand(shape, generator=g) * 4 - 1) for _ in range(steps)]
    bn.train()
    train_out = [bn(b) for b in batches]
    bn.eval()
    x_eval = ref._quantise(torch.rand(shape, generator=g) * 2 - 1)
    return {
        "weight": ref.tensor_json(bn.weight), "bias": ref.tensor_json(bn.bias),
        "batches": [ref.tensor_json(b) for b in batches],
        "last_train_output": ref.tensor_json(train_out[-1]),
        "running_mean": ref.tensor_json(bn.running_mean), "running_var": ref.tensor_json(bn.running_var),
        "num_batches_tracked": int(bn.num_batches_tracked),
        "eval_input": ref.tensor_json(x_eval), "eval_output": ref.tensor_json(bn(x_eval)),
    }


def train_step():
    """One forward/backward of a small CNN (conv, batch norm, pools, linear, label-smoothed loss) from
    fixed weights: the loss, every parameter's gradient and the updated running statistics."""
    g = gen("train_step")
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.GELU(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(ref._quantise(torch.rand(p.shape, generator=g) - 0.5))
    initial = {n: ref.tensor_json(t) for n, t in model.state_dict().items()}
    x = ref._quantise(torch.rand([4, 2, 8, 8], generator=g) * 2 - 1)
    y = torch.randint(0, 3, [4], generator=g)
    model.train()
    loss = F.cross_entropy(model(x), y, label_smoothing=0.05)
    loss.backward()
    return {
        "state_dict": initial, "input": ref.tensor_json(x), "target": ref.tensor_json(y),
        "loss": loss.item(),
        "grads": {n: ref.tensor_json(p.grad) for n, p in model.named_parameters()},
        "state_after": {n: ref.tensor_json(t) for n, t in model.state_dict().items() if "running" in n},
    }


def modules():
    return {
        "nested_sequential": names(nested()),
        "small_resnet": names(small_resnet()),
        "lenet": names(lenet()),
        "cnn": names(cnn()),
        "batchnorm2d_running_stats": running_stats("bn2d", lambda: nn.BatchNorm2d(3), [4, 3, 2, 3]),
        "batchnorm2d_cumulative": running_stats("bn2d_cma", lambda: nn.BatchNorm2d(3, momentum=None), [4, 3, 2, 3]),
        "batchnorm1d_running_stats": running_stats("bn1d", lambda: nn.BatchNorm1d(4, momentum=0.3), [5, 4]),
        "train_step": train_step(),
    }


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    cases = [ref.run_case(*c) for c in CASES]
    path = os.path.normpath(OUT)
    # One case or module entry per line: compact, and a diff shows which one changed.
    lines = ["{", ' "generator": "scripts/make_reference_nn.py",',
             ' "torch_version": %s,' % ref.dump(torch.__version__), ' "cases": [']
    lines += ["  %s%s" % (ref.dump(c), "," if i + 1 < len(cases) else "") for i, c in enumerate(cases)]
    lines.append(" ],")
    lines.append(' "modules": {')
    mods = modules()
    lines += ["  %s: %s%s" % (ref.dump(k), ref.dump(v), "," if i + 1 < len(mods) else "")
              for i, (k, v) in enumerate(mods.items())]
    lines.append(" }")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(path))  # the file must parse
    print("wrote %d cases and %d module checks to %s (%d bytes)" % (len(cases), len(mods), path,
                                                                    os.path.getsize(path)))


if __name__ == "__main__":
    main()
