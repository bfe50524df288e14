// The op table (see op_table.h): one entry per differentiable op in core/ops.h and the
// differentiable Tensor methods (views, conversions), with the variants that exercise broadcasting,
// strided inputs and the backward ops themselves. An entry whose name is a variant says which ops
// it covers (.covers), so that its PyTorch golden cases are found (tests/test_op_table_goldens.cpp).
// Rule — add an op: one table entry + its golden case (see op_table.h).
#include "tests/op_table.h"

namespace ember::test {

using X = const std::vector<Tensor>&;

std::vector<Tensor> OpCase::inputs(uint64_t seed) const {
  std::vector<Tensor> xs;
  for (size_t i = 0; i < shapes.size(); ++i) xs.push_back(rand_f64(shapes[i], lo, hi, seed * 1000 + i));
  return xs;
}

namespace {

// An int64 index tensor on the device of `like`.
Tensor index_on(const Tensor& like, const std::vector<int64_t>& v, const Shape& s) {
  return from_vector<int64_t>(v, s).to(like.device());
}
Tensor mask_on(const Tensor& like, const std::vector<uint8_t>& v, const Shape& s) {
  return from_vector<uint8_t>(v, s).to(like.device());
}

// Short name inside this file.
OpCase op(std::string name, std::vector<Shape> shapes, GradFn fn, double lo = -1, double hi = 1) {
  return op_case(std::move(name), std::move(shapes), std::move(fn), lo, hi);
}

}  // namespace

OpCase op_case(std::string name, std::vector<Shape> shapes, GradFn fn, double lo, double hi) {
  OpCase c;
  c.name = std::move(name);
  c.shapes = std::move(shapes);
  c.fn = std::move(fn);
  c.lo = lo;
  c.hi = hi;
  return c;
}

std::vector<OpCase> core_ops() {
  std::vector<OpCase> t;
  // ---- binary arithmetic: same shape, a broadcast row, a transposed operand ----
  auto binary = [&](const std::string& name, Tensor (*f)(const Tensor&, const Tensor&), double lo, double hi) {
    t.push_back(op(name, {{3, 4}, {3, 4}}, [f](X x) { return f(x[0], x[1]); }, lo, hi));
    t.push_back(op(name + "_broadcast", {{3, 4}, {4}}, [f](X x) { return f(x[0], x[1]); }, lo, hi).covers({name}));
    t.push_back(
        op(name + "_transposed", {{4, 3}, {3, 1}}, [f](X x) { return f(x[0].t(), x[1]); }, lo, hi).covers({name, "t"}));
  };
  binary("add", add, -1, 1);
  binary("add_relu", add_relu, -1, 1);
  binary("sub", sub, -1, 1);
  binary("mul", mul, -1, 1);
  binary("div", div, 0.5, 2);  // divisor away from 0
  binary("pow", pow, 0.5, 2);  // positive base
  t.push_back(op("maximum", {{3, 4}, {3, 4}}, [](X x) { return maximum(x[0], x[1]); }));
  t.push_back(op("minimum", {{3, 4}, {4}}, [](X x) { return minimum(x[0], x[1]); }));

  // ---- scalar forms ----
  t.push_back(op("add_scalar", {{2, 5}}, [](X x) { return add(x[0], 3.0); }));
  t.push_back(op("sub_scalar", {{2, 5}}, [](X x) { return sub(x[0], 3.0); }));
  t.push_back(op("rsub_scalar", {{2, 5}}, [](X x) { return rsub(x[0], 3.0); }));
  t.push_back(op("mul_scalar", {{2, 5}}, [](X x) { return mul(x[0], -2.5); }));
  t.push_back(op("div_scalar", {{2, 5}}, [](X x) { return div(x[0], 4.0); }));
  t.push_back(op("rdiv_scalar", {{2, 5}}, [](X x) { return rdiv(x[0], 2.0); }, 0.5, 2));
  t.push_back(op("pow_scalar", {{2, 5}}, [](X x) { return pow(x[0], 2.5); }, 0.5, 2));
  t.push_back(op("pow_scalar_0", {{2, 5}}, [](X x) { return pow(x[0], 0.0); }, 0.5, 2).covers({"pow_scalar"}));
  t.push_back(op("pow_scalar_3", {{2, 5}}, [](X x) { return pow(x[0], 3.0); }).covers({"pow_scalar"}));

  // ---- unary math, contiguous and transposed; ranges avoid kinks and domain edges ----
  auto unary = [&](const std::string& name, Tensor (*f)(const Tensor&), double lo, double hi) {
    t.push_back(op(name, {{3, 4}}, [f](X x) { return f(x[0]); }, lo, hi));
    t.push_back(op(name + "_transposed", {{4, 3}}, [f](X x) { return f(x[0].t()); }, lo, hi).covers({name, "t"}));
  };
  unary("neg", neg, -1, 1);
  unary("exp", exp, -1, 1);
  unary("log", log, 0.2, 2);
  unary("sqrt", sqrt, 0.2, 2);
  unary("sin", sin, -2, 2);
  unary("cos", cos, -2, 2);
  unary("abs", abs, -1, 1);
  unary("tanh", tanh, -2, 2);
  unary("sigmoid", sigmoid, -3, 3);
  unary("relu", relu, -1, 1);
  unary("gelu", gelu, -2, 2);
  t.push_back(op("clamp", {{3, 4}}, [](X x) { return clamp(x[0], -1.0, 1.0); }, -2, 2));

  // ---- selection ----
  t.push_back(op("where", {{3, 4}, {4}}, [](X x) { return where(mask_on(x[0], {1, 0, 1, 0}, {4}), x[0], x[1]); }));
  t.push_back(op("masked_fill", {{2, 3}},
                 [](X x) { return masked_fill(x[0].t(), mask_on(x[0], {0, 1, 1}, {3, 1}), 5.0); }));

  // ---- views, copies and joins ----
  t.push_back(op("reshape", {{2, 3, 4}}, [](X x) { return x[0].reshape({4, 6}); }));
  t.push_back(op("reshape_copy", {{2, 3, 4}}, [](X x) { return x[0].transpose(0, 2).reshape({-1}); }).covers({"reshape", "transpose"}));
  t.push_back(op("view", {{2, 3, 4}}, [](X x) { return x[0].view({3, 8}).t(); }).covers({"view", "t"}));
  t.push_back(op("permute", {{2, 3, 4}}, [](X x) { return x[0].permute({2, 0, 1}); }));
  t.push_back(op("slice", {{2, 3, 4}}, [](X x) { return x[0].slice(2, 1, 4, 2); }));
  t.push_back(op("narrow_select", {{2, 3, 4}}, [](X x) { return x[0].narrow(1, 1, 2).select(0, 1); }).covers({"narrow", "select"}));
  t.push_back(op("expand", {{4, 3}}, [](X x) { return x[0].unsqueeze(1).expand({4, 5, 3}); }).covers({"expand", "unsqueeze"}));
  t.push_back(op("squeeze_flatten", {{2, 3, 4}}, [](X x) { return x[0].unsqueeze(0).squeeze(0).flatten(); }).covers({"unsqueeze", "squeeze", "flatten"}));
  t.push_back(op("contiguous_clone", {{3, 2}}, [](X x) { return x[0].t().contiguous().clone(); }).covers({"t", "contiguous", "clone"}));
  t.push_back(op("cat", {{3, 2}, {4, 3}, {3, 1}}, [](X x) { return cat({x[0], x[1].t(), x[2]}, 1); }));
  t.push_back(op("stack", {{2, 3}, {3, 2}}, [](X x) { return stack({x[0], x[1].t()}, -1); }));

  // ---- reductions ----
  t.push_back(op("sum", {{3, 4}}, [](X x) { return sum(x[0]); }));
  t.push_back(op("sum_dims", {{2, 3, 4}}, [](X x) { return sum(x[0], {0, 2}, true); }).covers({"sum"}));
  t.push_back(op("mean", {{2, 3, 4}}, [](X x) { return mean(x[0], {1}); }));
  t.push_back(op("max", {{3, 4}}, [](X x) { return max(x[0], {1}); }));
  t.push_back(op("min", {{3, 4}}, [](X x) { return min(x[0], {0}, true); }));
  t.push_back(op("var", {{3, 4}}, [](X x) { return var(x[0], {1}); }));
  t.push_back(op("var_biased_all", {{3, 4}}, [](X x) { return var(x[0], {}, false); }).covers({"var"}));
  t.push_back(op("std", {{3, 4}}, [](X x) { return std(x[0], {0}, true, true); }));
  t.push_back(op("logsumexp", {{3, 4}}, [](X x) { return logsumexp(x[0], {1}); }));
  t.push_back(op("logsumexp_keepdim", {{2, 3, 4}}, [](X x) { return logsumexp(x[0], {0, 2}, true); }).covers({"logsumexp"}));
  t.push_back(op("sum_to", {{2, 3, 4}}, [](X x) { return sum_to(x[0], {3, 1}); }));

  // ---- softmax family ----
  t.push_back(op("softmax", {{3, 4}}, [](X x) { return softmax(x[0], 1); }, -2, 2));
  t.push_back(op("softmax_dim0", {{3, 4}}, [](X x) { return softmax(x[0].t(), 0); }, -2, 2).covers({"softmax"}));
  t.push_back(op("log_softmax", {{3, 4}}, [](X x) { return log_softmax(x[0], -1); }, -2, 2));

  // ---- matmul: 2-D, batched with broadcast, vector forms ----
  t.push_back(op("matmul", {{3, 4}, {4, 2}}, [](X x) { return matmul(x[0], x[1]); }));
  t.push_back(op("matmul_batched", {{2, 3, 4}, {4, 2}}, [](X x) { return matmul(x[0], x[1]); }).covers({"matmul"}));
  t.push_back(op("matmul_transposed", {{4, 3}, {2, 4}}, [](X x) { return matmul(x[0].t(), x[1].t()); }).covers({"matmul"}));
  t.push_back(op("matmul_vector", {{4}, {4, 3}}, [](X x) { return matmul(x[0], x[1]); }).covers({"matmul"}));
  t.push_back(op("matmul_dot", {{5}, {5}}, [](X x) { return matmul(x[0], x[1]); }).covers({"matmul"}));

  // ---- indexing ----
  t.push_back(op("index_select", {{4, 3}},
                 [](X x) { return index_select(x[0], 0, index_on(x[0], {2, 0, 2}, {3})); }));
  t.push_back(op("gather", {{3, 4}},
                 [](X x) { return gather(x[0], 1, index_on(x[0], {0, 3, 3, 1, 2, 0}, {3, 2})); }));
  t.push_back(op("embedding", {{5, 3}}, [](X x) { return embedding(x[0], index_on(x[0], {4, 0, 4, 1}, {2, 2})); }));
  t.push_back(op("dropout", {{4, 5}}, [](X x) {
    Generator g(7);  // the same mask on every call
    return dropout(x[0], 0.3, true, &g);
  }));

  // ---- the backward ops (their own first and second derivatives) ----
  t.push_back(op("tanh_backward", {{3, 4}, {3, 4}}, [](X x) { return tanh_backward(x[0], x[1]); }));
  t.push_back(op("sigmoid_backward", {{3, 4}, {3, 4}}, [](X x) { return sigmoid_backward(x[0], x[1]); }));
  t.push_back(op("relu_backward", {{3, 4}, {3, 4}}, [](X x) { return relu_backward(x[0], x[1]); }));
  t.push_back(op("gelu_backward", {{3, 4}, {3, 4}}, [](X x) { return gelu_backward(x[0], x[1]); }, -2, 2));
  t.push_back(op("softmax_backward", {{3, 4}, {3, 4}}, [](X x) { return softmax_backward(x[0], x[1], 1); }));
  t.push_back(op("log_softmax_backward", {{3, 4}, {3, 4}}, [](X x) { return log_softmax_backward(x[0], x[1], 0); }));
  t.push_back(op("index_select_backward", {{3, 2}},
                 [](X x) { return index_select_backward(x[0], {4, 2}, 0, index_on(x[0], {3, 0, 3}, {3})); }));
  t.push_back(op("gather_backward", {{2, 2}},
                 [](X x) { return gather_backward(x[0], {2, 3}, 1, index_on(x[0], {2, 2, 0, 1}, {2, 2})); }));
  t.push_back(op("slice_backward", {{2, 2}}, [](X x) { return slice_backward(x[0], {2, 5}, 1, 1, 5, 2); }));
  t.push_back(op("select_backward", {{3}}, [](X x) { return select_backward(x[0], {2, 3}, 0, -1); }));
  return t;
}

std::vector<OpCase> all_ops() {
  std::vector<OpCase> t = core_ops();
  for (OpCase& c : nn_ops()) t.push_back(std::move(c));
  return t;
}

std::vector<std::string> non_differentiable_core_ops() {
  return {"floor_divide", "sign", "eq", "ne", "lt", "le", "gt", "ge", "argmax", "argmin", "one_hot",
          "empty", "zeros", "ones", "full", "scalar_tensor", "arange", "rand", "randn", "randint", "uniform", "normal",
          "from_vector", "from_blob", "empty_like", "zeros_like", "ones_like", "full_like", "allclose"};
}

}  // namespace ember::test
