#!/usr/bin/python3
"""Writes tests/data/reference_nn_backward.json: PyTorch's answers for the backward ops of ember's
neural-network ops (core/ops/nn_ops.h): conv2d_backward_input / _weight, the pooling backwards,
batch_norm_backward, layer_norm_backward and cross_entropy_backward.

Run from anywhere, with Debian's python3 (it has torch 1.13 CPU):

    /usr/bin/python3 scripts/make_reference_nn_backward.py

Same case format as reference_core.json (scripts/make_reference.py, whose input makers, case runner
and writer this script reuses): each case is a PyTorch expression over inputs x0, x1, ..., with its
output and the gradients of sum(out * v) for a fixed v. For a backward op the output is a first
gradient of the forward op and those gradients are its second derivatives, so
tests/test_nn_backward_reference.cpp checks ember's double backward against PyTorch's.
Tensors that are constants of a backward op (pooling indices, saved statistics) are detached in
the expression; their gradients are written as zeros.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F  # noqa: F401  (used by the case expressions)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as ref  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "reference_nn_backward.json")

torch.set_default_dtype(torch.float64)
uni, distinct, fixed = ref.uni, ref.distinct, ref.fixed

CASES = []


def case(name, expr, inputs):
    assert all(c[0] != name for c in CASES), "duplicate case " + name
    CASES.append((name, expr, inputs, True))


# ---- convolution: input [2, 4, 7, 6], weight [6, 2, 3, 2], stride (2, 1), padding 1, dilation (1, 2), groups 2
case("conv2d_backward_input",
     "torch.nn.grad.conv2d_input([2, 4, 7, 6], x1, x0, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)",
     [uni([2, 6, 4, 6]), uni([6, 2, 3, 2])])
case("conv2d_backward_weight",
     "torch.nn.grad.conv2d_weight(x1, [6, 2, 3, 2], x0, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)",
     [uni([2, 6, 4, 6]), uni([2, 4, 7, 6])])

# ---- pooling: x1 is the forward's input (no ties), a constant of the backward op
case("max_pool2d_backward",
     "torch.ops.aten.max_pool2d_with_indices_backward(x0, x1.detach(), [3, 3], [2, 2], [1, 1], [1, 2], True, "
     "F.max_pool2d(x1.detach(), 3, 2, 1, (1, 2), True, return_indices=True)[1])",
     [uni([2, 3, 4, 3]), distinct([2, 3, 7, 6], lo=-8, hi=8)[0]])
case("avg_pool2d_backward",
     "torch.ops.aten.avg_pool2d_backward(x0, torch.zeros(2, 3, 7, 6), [3, 3], [2, 2], [1, 1], True, False, None)",
     [uni([2, 3, 4, 4])])
case("adaptive_avg_pool2d_backward", "torch.ops.aten._adaptive_avg_pool2d_backward(x0, torch.zeros(2, 3, 7, 5))",
     [uni([2, 3, 3, 2])])

# ---- normalisation: the three gradients, flattened and concatenated
case("batch_norm_backward_train",
     "torch.cat([t.reshape(-1) for t in torch.ops.aten.native_batch_norm_backward(x0, x1, x2, None, None, "
     "x1.detach().mean((0, 2)), (x1.detach().var((0, 2), unbiased=False) + 1e-3).rsqrt(), True, 1e-3, "
     "[True, True, True])])",
     [uni([3, 3, 2]), uni([3, 3, 2]), uni([3], 0.5, 1.5)])
case("batch_norm_backward_eval",
     "torch.cat([t.reshape(-1) for t in torch.ops.aten.native_batch_norm_backward(x0, x1, x2, x3.detach(), "
     "x4.detach(), None, None, False, 1e-5, [True, True, True])])",
     [uni([3, 3, 2]), uni([3, 3, 2]), uni([3], 0.5, 1.5), uni([3], -0.5, 0.5), uni([3], 0.5, 2.0)])
case("layer_norm_backward",
     "torch.cat([t.reshape(-1) for t in torch.ops.aten.native_layer_norm_backward(x0, x1, [4], "
     "x1.detach().mean(1, keepdim=True), (x1.detach().var(1, unbiased=False, keepdim=True) + 1e-3).rsqrt(), "
     "x2, torch.zeros(4), [True, True, True])])",
     [uni([3, 4]), uni([3, 4]), uni([4], 0.5, 1.5)])

# ---- cross entropy: the gradient of the per-row losses, with an ignored row and label smoothing
case("cross_entropy_backward",
     "torch.autograd.grad(F.cross_entropy(x1, x2, reduction='none', label_smoothing=0.1), x1, x0, "
     "create_graph=True)[0]",
     [uni([5]), uni([5, 4], -3, 3), fixed([1, -100, 3, 0, 2], dtype=torch.int64)])


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    cases = [ref.run_case(*c) for c in CASES]
    path = os.path.normpath(OUT)
    ref.write(cases, path)
    json.load(open(path))  # the file must parse
    print("wrote %d cases to %s (%d bytes)" % (len(cases), path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
