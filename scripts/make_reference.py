#!/usr/bin/python3
"""Writes tests/data/reference_core.json: PyTorch's answers for every op in core/ops.h.

Run from anywhere, with Debian's python3 (it has torch 1.13 CPU; the pyenv `python3` on PATH does not):

    /usr/bin/python3 scripts/make_reference.py

tests/test_reference.cpp replays every case with ember (on every device, in float64 and float32) and
compares the forward output and the gradient of each input with the values stored here.

Each case is a PyTorch expression over inputs x0, x1, ... (kept verbatim in the file as "torch", so
a failing case shows exactly what it computes) and the input tensors. For a differentiable case the
file also holds a fixed upstream gradient v and, for every input that requires grad, the gradient of
sum(out * v) with respect to it.

Inputs are chosen so the reference is unambiguous and survives a cast to float32:
  * values lie on a grid of 1/256 (or coarser), so they are exact in float32 and float64 alike,
    and the float32 pass measures only ember's float32 arithmetic, not rounding of the inputs;
  * each op gets values inside its domain (positive for log/sqrt/pow bases, away from 0 for
    division), and away from kinks and ties (relu/abs at 0, clamp bounds, equal maxima) where the
    derivative would be a convention rather than a fact.

The script is deterministic: every case draws from its own generator seeded with a hash of its name
(so adding a case does not change the others), and floats are written with repr (shortest
round-trip form). Re-running it writes an identical file.
"""

import json
import math
import os
import zlib

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "reference_core.json")
GRID = 256  # input values are multiples of 1/GRID

torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------- input makers
# Each maker returns a function gen -> tensor; tensors get requires_grad from the case (floats
# require grad in differentiable cases; integer and mask inputs never do).


def _quantise(t, grid=GRID):
    return torch.round(t * grid) / grid


def uni(shape, lo=-1.0, hi=1.0, avoid=(), margin=0.05):
    """Uniform in [lo, hi] on the 1/GRID grid, at least `margin` away from every point in `avoid`."""

    def make(g):
        t = _quantise(lo + (hi - lo) * torch.rand(shape, generator=g))
        for _ in range(1000):
            bad = torch.zeros(shape, dtype=torch.bool)
            for p in avoid:
                bad |= (t - p).abs() < margin
            if not bad.any():
                return t
            redraw = _quantise(lo + (hi - lo) * torch.rand(shape, generator=g))
            t = torch.where(bad, redraw, t)
        raise RuntimeError("could not draw values away from %r" % (avoid,))

    return make


def pos(shape, lo=0.5, hi=2.0):
    return uni(shape, lo, hi)


def coarse(shape, values=(-1.0, -0.5, 0.0, 0.5, 1.0)):
    """Values from a small set, so comparisons see plenty of ties."""

    def make(g):
        idx = torch.randint(0, len(values), shape, generator=g)
        return torch.tensor(values)[idx]

    return make


def fixed(values, shape=None, dtype=torch.float64):
    def make(g):
        t = torch.tensor(values, dtype=dtype)
        return t.reshape(shape) if shape is not None else t

    return make


def ints(shape, high):
    """int64 indices in [0, high)."""
    return lambda g: torch.randint(0, high, shape, generator=g, dtype=torch.int64)


def mask(shape):
    """uint8 0/1 mask (ember's where/masked_fill take uint8; the torch expression calls .bool())."""
    return lambda g: torch.randint(0, 2, shape, generator=g, dtype=torch.uint8)


class Distinct:
    """Inputs whose values are all different from each other, jointly across several tensors, on a
    grid of 1/32: no ties for max/min/argmax or maximum/minimum, and each gap is exact in float32."""

    def __init__(self, *shapes, lo=-2.0, hi=2.0):
        self.shapes = shapes
        self.lo, self.hi = lo, hi
        self.cache = None

    def part(self, i):
        def make(g):
            if i == 0:  # draw all parts together, once per case
                grid = torch.arange(self.lo * 32, self.hi * 32 + 1) / 32
                n = sum(math.prod(s) for s in self.shapes)
                assert n <= grid.numel(), "not enough distinct grid values"
                vals = grid[torch.randperm(grid.numel(), generator=g)[:n]]
                self.cache, at = [], 0
                for s in self.shapes:
                    k = math.prod(s)
                    self.cache.append(vals[at : at + k].reshape(s))
                    at += k
            return self.cache[i]

        return make


def distinct(*shapes, lo=-2.0, hi=2.0):
    d = Distinct(*shapes, lo=lo, hi=hi)
    return [d.part(i) for i in range(len(shapes))]


# ---------------------------------------------------------------- the cases
# (name, torch expression over x0, x1, ..., input makers, differentiable)

CASES = []


def case(name, expr, inputs, grad=True):
    assert all(c[0] != name for c in CASES), "duplicate case " + name
    CASES.append((name, expr, inputs, grad))


# ---- elementwise binary, tensor forms (same shape, broadcast, non-contiguous) ----
case("add", "x0 + x1", [uni([2, 3]), uni([2, 3])])
case("add_broadcast", "x0 + x1", [uni([2, 3, 4]), uni([3, 1])])
case("add_noncontig", "x0.t() + x1", [uni([4, 3]), uni([3, 4])])
# add_relu (ember's fused end of a residual block) is relu(a + b) in PyTorch.
case("add_relu", "torch.relu(x0 + x1)", [uni([3, 4]), uni([3, 4])])
case("add_relu_broadcast", "torch.relu(x0 + x1)", [uni([2, 3, 4]), uni([3, 1])])
case("sub", "x0 - x1", [uni([2, 3]), uni([2, 3])])
case("sub_broadcast", "x0 - x1", [uni([3, 4]), uni([4])])
case("mul", "x0 * x1", [uni([2, 3]), uni([2, 3])])
case("mul_broadcast", "x0 * x1", [uni([3, 1]), uni([1, 4])])
case("div", "x0 / x1", [uni([2, 3]), uni([2, 3], -2, 2, avoid=[0], margin=0.25)])
case("div_broadcast", "x0 / x1", [uni([3, 4]), uni([3, 1], -2, 2, avoid=[0], margin=0.25)])
case("pow", "torch.pow(x0, x1)", [pos([2, 3]), uni([2, 3], -2, 2)])
case("pow_broadcast", "torch.pow(x0, x1)", [pos([2, 3]), uni([3], -2, 2)])
case("maximum", "torch.maximum(x0, x1)", distinct([3, 4], [3, 4]))
case("maximum_broadcast", "torch.maximum(x0, x1)", distinct([3, 4], [4]))
case("minimum", "torch.minimum(x0, x1)", distinct([3, 4], [3, 4]))
case("minimum_broadcast", "torch.minimum(x0, x1)", distinct([3, 4], [4]))

# ---- scalar forms ----
case("add_scalar", "x0 + 1.5", [uni([2, 3])])
case("sub_scalar", "x0 - 0.75", [uni([2, 3])])
case("rsub_scalar", "2.0 - x0", [uni([2, 3])])
case("mul_scalar", "x0 * -1.25", [uni([2, 3])])
case("div_scalar", "x0 / 0.8", [uni([2, 3])])
case("rdiv_scalar", "3.0 / x0", [uni([2, 3], -2, 2, avoid=[0], margin=0.25)])
case("pow_scalar", "x0 ** 2.5", [pos([2, 3])])
case("pow_scalar_int", "x0 ** 3.0", [uni([2, 3], -2, 2)])
case("pow_scalar_negative", "x0 ** -1.5", [pos([2, 3])])
case("pow_scalar_zero", "x0 ** 0.0", [uni([2, 3])])

# ---- unary ----
case("neg", "-x0", [uni([2, 3])])
case("exp", "torch.exp(x0)", [uni([2, 3], -2, 2)])
case("exp_noncontig", "torch.exp(x0[:, 0:5:2])", [uni([3, 5], -2, 2)])
case("log", "torch.log(x0)", [pos([2, 3], 0.1, 3.0)])
case("sqrt", "torch.sqrt(x0)", [pos([2, 3], 0.1, 3.0)])
case("abs", "torch.abs(x0)", [uni([2, 3], -2, 2, avoid=[0])])
case("tanh", "torch.tanh(x0)", [uni([2, 3], -3, 3)])
case("sigmoid", "torch.sigmoid(x0)", [uni([2, 3], -4, 4)])
case("relu", "torch.relu(x0)", [uni([3, 4], -2, 2, avoid=[0])])
case("gelu", "F.gelu(x0)", [uni([3, 4], -3, 3)])
case("clamp", "torch.clamp(x0, -0.5, 0.5)", [uni([3, 4], -1, 1, avoid=[-0.5, 0.5], margin=0.02)])

case("sin", "torch.sin(x0)", [uni([2, 3], -3, 3)])
case("cos", "torch.cos(x0)", [uni([2, 3], -3, 3)])
case("sin_noncontig", "torch.sin(x0.t())", [uni([3, 2], -3, 3)])

# ---- NaN propagation (issue 12 item 10): PyTorch keeps NaN through relu/maximum/minimum, and
# relu's gradient at NaN is 1 (threshold_backward passes the gradient unless x <= 0); maximum and
# minimum give the full gradient to both operands where either is NaN. Non-finite values are
# written as the strings "nan", "inf", "-inf" (JSON has no NaN). ----
NAN = float("nan")
case("relu_nan", "torch.relu(x0)", [fixed([NAN, -1.5, 0.5, NAN, 2.0, -0.25], [2, 3])])
case("maximum_nan", "torch.maximum(x0, x1)", [fixed([NAN, -1.0, 2.0, 0.5]), fixed([0.0, NAN, 1.0, NAN])])
case("minimum_nan", "torch.minimum(x0, x1)", [fixed([NAN, -1.0, 2.0, 0.5]), fixed([0.0, NAN, 1.0, NAN])])

# ---- pow at 0^0: the gradient in the base is 0 where the exponent is 0 (NaN before, issue 12) ----
case("pow_zero_base", "torch.pow(x0, x1)", [fixed([0.0, 0.0, 2.0, 0.5]), fixed([0.0, 1.0, 0.0, 2.0])])

# ---- floor division (not differentiable): rounds toward -inf, for floats and integers ----
case("floor_divide", "torch.floor_divide(x0, x1)",
     [fixed([-7.0, 7.0, -0.5, 0.5, 7.5, -7.5]), fixed([2.0, -2.0, 2.0, -2.0, 2.0, 2.0])], grad=False)
case("floor_divide_int", "torch.floor_divide(x0, x1)",
     [fixed([-7, 7, -7, 7, 6, -1], dtype=torch.int64), fixed([2, 2, -2, -2, 3, 5], dtype=torch.int64)], grad=False)

# ---- selection ----
case("where", "torch.where(x0.bool(), x1, x2)", [mask([3, 4]), uni([3, 4]), uni([3, 4])])
case("where_broadcast", "torch.where(x0.bool(), x1, x2)", [mask([3, 1]), uni([3, 4]), uni([4])])
case("masked_fill", "x0.masked_fill(x1.bool(), -2.5)", [uni([3, 4]), mask([3, 4])])
case("masked_fill_broadcast", "x0.masked_fill(x1.bool(), 0.25)", [uni([3, 4]), mask([4])])

# ---- not differentiable: sign, comparisons (with ties on purpose) ----
case("sign", "torch.sign(x0)", [fixed([-1.5, 0.0, 0.25, -0.0078125, 2.0, 0.0], [2, 3])], grad=False)
for op in ["eq", "ne", "lt", "le", "gt", "ge"]:
    case(op, "torch.%s(x0, x1)" % op, [coarse([3, 4]), coarse([4])], grad=False)
    case(op + "_scalar", "torch.%s(x0, 0.5)" % op, [coarse([3, 4])], grad=False)

# ---- matmul ----
case("matmul_2d", "torch.matmul(x0, x1)", [uni([3, 4]), uni([4, 5])])
case("matmul_2d_transposed", "torch.matmul(x0.t(), x1.t())", [uni([4, 3]), uni([5, 4])])
case("matmul_batched", "torch.matmul(x0, x1)", [uni([2, 3, 4]), uni([2, 4, 5])])
case("matmul_batched_broadcast", "torch.matmul(x0, x1)", [uni([2, 1, 3, 4]), uni([3, 4, 2])])
case("matmul_batched_matrix", "torch.matmul(x0, x1)", [uni([2, 3, 4]), uni([4, 5])])
case("matmul_vec_mat", "torch.matmul(x0, x1)", [uni([4]), uni([4, 5])])
case("matmul_mat_vec", "torch.matmul(x0, x1)", [uni([3, 4]), uni([4])])
case("matmul_batched_mat_vec", "torch.matmul(x0, x1)", [uni([2, 3, 4]), uni([4])])
case("matmul_vec_batched", "torch.matmul(x0, x1)", [uni([4]), uni([2, 4, 3])])
case("matmul_dot", "torch.matmul(x0, x1)", [uni([5]), uni([5])])

# ---- reductions ----
case("sum_all", "x0.sum()", [uni([3, 4])])
case("sum_dim", "x0.sum(1)", [uni([3, 4])])
case("sum_dims_keepdim", "x0.sum((0, 2), keepdim=True)", [uni([2, 3, 4])])
case("sum_negative_dim", "x0.sum(-1)", [uni([2, 3, 4])])
case("sum_noncontig", "x0.permute(2, 0, 1).sum(1)", [uni([2, 3, 4])])
case("mean_all", "x0.mean()", [uni([3, 4])])
case("mean_dim", "x0.mean(0)", [uni([3, 4])])
case("mean_dims_keepdim", "x0.mean((1, 2), keepdim=True)", [uni([2, 3, 4])])
case("max_all", "x0.max()", distinct([3, 4]))
case("max_dim", "torch.amax(x0, 1)", distinct([3, 4]))
case("max_dims_keepdim", "torch.amax(x0, (0, 2), keepdim=True)", distinct([2, 3, 4]))
case("min_all", "x0.min()", distinct([3, 4]))
case("min_dim", "torch.amin(x0, 0)", distinct([3, 4]))
case("min_dims_keepdim", "torch.amin(x0, (1, 2), keepdim=True)", distinct([2, 3, 4]))
case("var_all", "x0.var()", [uni([3, 4])])
case("var_all_biased", "x0.var(unbiased=False)", [uni([3, 4])])
case("var_dim", "x0.var(1)", [uni([3, 4])])
case("var_dim_biased_keepdim", "x0.var(0, unbiased=False, keepdim=True)", [uni([3, 4])])
case("var_dims", "x0.var((0, 2))", [uni([2, 3, 4])])
case("std_all", "x0.std()", [uni([3, 4])])
case("std_all_biased", "x0.std(unbiased=False)", [uni([3, 4])])
case("std_dim", "x0.std(1)", [uni([3, 4])])
case("std_dim_biased_keepdim", "x0.std(0, unbiased=False, keepdim=True)", [uni([3, 4])])
case("std_dims", "x0.std((0, 2))", [uni([2, 3, 4])])
case("logsumexp_dim", "torch.logsumexp(x0, 1)", [uni([3, 4], -3, 3)])
case("logsumexp_dims_keepdim", "torch.logsumexp(x0, (0, 2), keepdim=True)", [uni([2, 3, 4], -3, 3)])
# Large values: exp overflows float32 (and would in float64 past ~710) unless the max is subtracted first.
case("logsumexp_large", "torch.logsumexp(x0, 1)", [uni([2, 5], 90, 100)])
case("sum_to", "x0.sum_to_size(3, 1)", [uni([2, 3, 4])])
case("argmax_dim", "torch.argmax(x0, 1)", distinct([3, 4]), grad=False)
case("argmax_dim_keepdim", "torch.argmax(x0, 0, keepdim=True)", distinct([3, 4]), grad=False)
case("argmin_dim", "torch.argmin(x0, 1)", distinct([3, 4]), grad=False)
case("argmin_negative_dim_keepdim", "torch.argmin(x0, -1, keepdim=True)", distinct([2, 3, 4]), grad=False)

# ---- softmax family ----
case("softmax_last", "torch.softmax(x0, 1)", [uni([3, 4], -3, 3)])
case("softmax_first", "torch.softmax(x0, 0)", [uni([3, 4], -3, 3)])
case("softmax_middle_3d", "torch.softmax(x0, 1)", [uni([2, 3, 4], -3, 3)])
case("softmax_negative_dim_3d", "torch.softmax(x0, -1)", [uni([2, 3, 4], -3, 3)])
case("softmax_noncontig", "torch.softmax(x0.t(), 1)", [uni([4, 3], -3, 3)])
case("softmax_large", "torch.softmax(x0, 1)", [uni([2, 5], 90, 100)])
case("log_softmax_last", "torch.log_softmax(x0, 1)", [uni([3, 4], -3, 3)])
case("log_softmax_first", "torch.log_softmax(x0, 0)", [uni([3, 4], -3, 3)])
case("log_softmax_middle_3d", "torch.log_softmax(x0, 1)", [uni([2, 3, 4], -3, 3)])
case("log_softmax_large", "torch.log_softmax(x0, -1)", [uni([2, 5], 90, 100)])

# ---- shape and views ----
case("reshape", "x0.reshape(4, 3)", [uni([3, 4])])
case("reshape_infer", "x0.reshape(2, -1)", [uni([2, 3, 4])])
case("reshape_noncontig", "x0.t().reshape(-1)", [uni([3, 4])])  # needs a copy
case("view", "x0.view(3, 2, 4)", [uni([6, 4])])
case("flatten", "x0.flatten(1)", [uni([2, 3, 4])])
case("transpose", "x0.transpose(0, 2)", [uni([2, 3, 4])])
case("t", "x0.t()", [uni([3, 4])])
case("permute", "x0.permute(2, 0, 1)", [uni([2, 3, 4])])
case("slice", "x0[1:3]", [uni([4, 3])])
case("slice_step", "x0[:, 1:6:2]", [uni([3, 7])])
case("slice_negative", "x0[:, -3:-1]", [uni([3, 5])])
case("slice_of_transpose", "x0.t()[0:5:2]", [uni([3, 5])])
case("narrow", "x0.narrow(1, 1, 2)", [uni([3, 4])])
case("select", "x0.select(1, 2)", [uni([2, 3, 4])])
case("select_negative", "x0.select(0, -1)", [uni([3, 4])])
case("expand", "x0.expand(2, 3, 4)", [uni([3, 1])])
case("expand_keep", "x0.expand(-1, 4)", [uni([3, 1])])
case("squeeze_all", "x0.squeeze()", [uni([3, 1, 4, 1])])
case("squeeze_dim", "x0.squeeze(1)", [uni([3, 1, 4])])
case("unsqueeze", "x0.unsqueeze(1)", [uni([3, 4])])
case("unsqueeze_negative", "x0.unsqueeze(-1)", [uni([3, 4])])
case("contiguous", "x0.t().contiguous()", [uni([3, 4])])  # a copy into row-major order
case("clone", "x0.t().clone()", [uni([3, 4])])  # a copy of a strided view
case("cat_dim0", "torch.cat([x0, x1], 0)", [uni([2, 3]), uni([1, 3])])
case("cat_dim1_three", "torch.cat([x0, x1, x2], 1)", [uni([2, 1]), uni([2, 3]), uni([2, 2])])
case("cat_noncontig", "torch.cat([x0.t(), x1], 0)", [uni([3, 2]), uni([2, 3])])
case("stack_dim0", "torch.stack([x0, x1, x2], 0)", [uni([2, 3]), uni([2, 3]), uni([2, 3])])
case("stack_last", "torch.stack([x0, x1], -1)", [uni([2, 3]), uni([2, 3])])

# ---- indexing (repeated indices, so gradients must accumulate) ----
case("index_select_dim0", "torch.index_select(x0, 0, x1)", [uni([5, 3]), fixed([4, 0, 4, 2], dtype=torch.int64)])
case("index_select_dim1", "torch.index_select(x0, 1, x1)", [uni([3, 5]), fixed([1, 3, 3], dtype=torch.int64)])
case("gather_dim1", "torch.gather(x0, 1, x1)", [uni([3, 4]), fixed([[0, 3], [2, 2], [1, 0]], dtype=torch.int64)])
case("gather_dim0", "torch.gather(x0, 0, x1)", [uni([3, 4]), fixed([[2, 0, 1, 2], [2, 1, 1, 0]], dtype=torch.int64)])
case("embedding", "F.embedding(x1, x0)", [uni([6, 3]), fixed([[5, 0, 2], [2, 2, 1]], dtype=torch.int64)])
case("one_hot", "F.one_hot(x0, 4)", [fixed([3, 0, 1, 3, 2], dtype=torch.int64)], grad=False)
case("one_hot_2d", "F.one_hot(x0, 3)", [ints([2, 3], 3)], grad=False)

# ---- the backward ops of core/ops.h, called directly (aten's own ops): their outputs are first
# derivatives and their input gradients second derivatives, which PyTorch's double-backward
# formulas give. Index, shape and dim arguments are constants of the op. ----
case("tanh_backward", "torch.ops.aten.tanh_backward(x0, x1)", [uni([3, 4]), uni([3, 4])])
case("sigmoid_backward", "torch.ops.aten.sigmoid_backward(x0, x1)", [uni([3, 4]), uni([3, 4], 0, 1)])
case("relu_backward", "torch.ops.aten.threshold_backward(x0, x1, 0)", [uni([3, 4]), uni([3, 4], avoid=[0])])
case("gelu_backward", "torch.ops.aten.gelu_backward(x0, x1)", [uni([3, 4]), uni([3, 4], -2, 2)])
case("softmax_backward", "torch._softmax_backward_data(x0, x1, 1, torch.float64)", [uni([3, 4]), uni([3, 4], 0, 1)])
case("log_softmax_backward", "torch._log_softmax_backward_data(x0, x1, 0, torch.float64)",
     [uni([3, 4]), uni([3, 4], -2, 0)])
case("index_select_backward", "torch.ops.aten.index_select_backward(x0, [4, 2], 0, x1)",
     [uni([3, 2]), fixed([3, 0, 3], dtype=torch.int64)])
case("gather_backward", "torch.ops.aten.gather_backward(x0, torch.zeros(2, 3), 1, x1, False)",
     [uni([2, 2]), fixed([[2, 2], [0, 1]], dtype=torch.int64)])
case("slice_backward", "torch.ops.aten.slice_backward(x0, [2, 5], 1, 1, 5, 2)", [uni([2, 2])])
case("select_backward", "torch.ops.aten.select_backward(x0, [2, 3], 0, -1)", [uni([3])])

# ---------------------------------------------------------------- evaluation and output

DTYPE_NAMES = {torch.float64: "float64", torch.int64: "int64", torch.uint8: "uint8", torch.bool: "uint8"}


# JSON has no NaN or infinity: such values are written as strings (tests/reference_util.cpp reads them).
NONFINITE = {"nan": "nan", "inf": "inf", "-inf": "-inf"}


def tensor_json(t, requires_grad=None):
    t = t.detach()
    d = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape)}
    if requires_grad is not None:
        d["requires_grad"] = requires_grad
    flat = t.reshape(-1)
    if t.is_floating_point():
        d["data"] = [v if math.isfinite(v) else NONFINITE[str(v)] for v in flat.tolist()]
    else:
        d["data"] = [int(v) for v in flat.tolist()]
    return d


def run_case(name, expr, makers, grad):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    xs = [m(g) for m in makers]
    for x in xs:
        x.requires_grad_(grad and x.is_floating_point())
    env = {"torch": torch, "F": F}
    env.update({"x%d" % i: x for i, x in enumerate(xs)})
    out = eval(expr, env)
    assert out.requires_grad == grad, name + ": differentiability does not match the case"
    result = {
        "name": name,
        "torch": expr,
        "inputs": [tensor_json(x, x.requires_grad) for x in xs],
        "output": tensor_json(out),
    }
    if grad:
        gv = torch.Generator().manual_seed(zlib.crc32(name.encode()) + 1)
        v = _quantise(2 * torch.rand(out.shape, generator=gv) - 1)
        grads = torch.autograd.grad([(out * v).sum()], [x for x in xs if x.requires_grad], allow_unused=True)
        it = iter(grads)
        result["upstream"] = tensor_json(v)
        result["grads"] = []
        for x in xs:
            if not x.requires_grad:
                result["grads"].append(None)
                continue
            gx = next(it)
            result["grads"].append(tensor_json(gx if gx is not None else torch.zeros_like(x)))
    return result


def dump(obj):
    return json.dumps(obj, separators=(",", ":"))


def write(cases, path):
    """One tensor per line: compact, yet a case can be read (and diffed) by eye."""
    lines = ["{", ' "generator": "scripts/make_reference.py",', ' "torch_version": %s,' % dump(torch.__version__)]
    lines.append(' "cases": [')
    for ci, c in enumerate(cases):
        lines.append("  {")
        lines.append('   "name": %s, "torch": %s,' % (dump(c["name"]), dump(c["torch"])))
        lines.append('   "inputs": [')
        lines += ["    %s%s" % (dump(x), "," if i + 1 < len(c["inputs"]) else "") for i, x in enumerate(c["inputs"])]
        tail = "," if "grads" in c else ""
        lines.append("   ],")
        lines.append('   "output": %s%s' % (dump(c["output"]), tail))
        if "grads" in c:
            lines.append('   "upstream": %s,' % dump(c["upstream"]))
            lines.append('   "grads": [')
            lines += ["    %s%s" % (dump(x), "," if i + 1 < len(c["grads"]) else "") for i, x in enumerate(c["grads"])]
            lines.append("   ]")
        lines.append("  }%s" % ("," if ci + 1 < len(cases) else ""))
    lines.append(" ]")
    lines.append("}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # reductions in a fixed order: bit-identical output on every run
    cases = [run_case(*c) for c in CASES]
    path = os.path.normpath(OUT)
    write(cases, path)
    json.load(open(path))  # the file must parse
    print("wrote %d cases to %s (%d bytes)" % (len(cases), path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
