// The neural-network ops of core/ops/nn_ops.h in the op table (see op_table.h): the forward ops
// and their backward ops, each with the variants that reach the kernels' code paths (strides,
// padding, dilation, groups, ceil_mode, unbatched inputs, ignored targets, label smoothing).
// Rule — add an op: one table entry + its golden case in scripts/make_reference_nn*.py (see
// op_table.h; tests/test_op_table_goldens.cpp fails for a table op without a golden).
#include <array>
#include <tuple>

#include "tests/op_table.h"

namespace ember::test {

namespace {

using X = const std::vector<Tensor>&;

// op_case (tests/op_table.h) under a short name, to keep the table below one entry per line.
OpCase op(std::string name, std::vector<Shape> shapes, GradFn fn, double lo = -1, double hi = 1) {
  return op_case(std::move(name), std::move(shapes), std::move(fn), lo, hi);
}

// A constant of a case on the input's device, floating-point ones in its dtype too (the parity
// test runs the table in float32 as well).
Tensor on(const Tensor& like, const Tensor& t) {
  return (is_floating(t.dtype()) ? t.to(like.dtype()) : t).to(like.device());
}

// The three gradients of a norm's backward op as one flat tensor (the table takes one output).
Tensor flat3(const std::tuple<Tensor, Tensor, Tensor>& t) {
  return cat({std::get<0>(t).reshape({-1}), std::get<1>(t).reshape({-1}), std::get<2>(t).reshape({-1})});
}

}  // namespace

std::vector<OpCase> nn_ops() {
  std::vector<OpCase> t;
  // ---- linear ----
  t.push_back(op("linear", {{4, 3}, {5, 3}, {5}}, [](X x) { return linear(x[0], x[1], x[2]); }));
  t.push_back(op("linear_batched_transposed_nobias", {{3, 2, 4}, {4, 5}},
                 [](X x) { return linear(x[0].transpose(0, 1), x[1].t()); }).covers({"linear"}));
  t.push_back(op("linear_relu", {{4, 3}, {5, 3}, {5}}, [](X x) { return linear_relu(x[0], x[1], x[2]); }));
  t.push_back(op("linear_relu_3d_nobias", {{2, 3, 4}, {5, 4}}, [](X x) { return linear_relu(x[0], x[1]); })
                  .covers({"linear_relu"}));

  // ---- convolution and its backward ops ----
  t.push_back(op("conv2d", {{2, 4, 6, 5}, {6, 2, 3, 2}, {6}},
                 [](X x) { return conv2d(x[0], x[1], x[2], {2, 1}, 1, {1, 2}, 2); }));
  t.push_back(op("conv2d_1x1_unbatched_nobias", {{3, 4, 4}, {2, 3, 1, 1}}, [](X x) { return conv2d(x[0], x[1]); }).covers({"conv2d"}));
  t.push_back(op("conv2d_relu", {{2, 4, 6, 5}, {6, 2, 3, 2}, {6}},
                 [](X x) { return conv2d_relu(x[0], x[1], x[2], {2, 1}, 1, {1, 2}, 2); }));
  t.push_back(op("conv2d_relu_unbatched_nobias", {{3, 5, 4}, {4, 3, 3, 3}},
                 [](X x) { return conv2d_relu(x[0], x[1], Tensor(), 1, 1); }).covers({"conv2d_relu"}));
  t.push_back(op("conv2d_backward_input", {{2, 6, 3, 5}, {6, 2, 3, 2}},
                 [](X x) { return conv2d_backward_input(x[0], x[1], {2, 4, 6, 5}, {2, 1}, 1, {1, 2}, 2); }));
  t.push_back(op("conv2d_backward_weight", {{2, 6, 3, 5}, {2, 4, 6, 5}},
                 [](X x) { return conv2d_backward_weight(x[0], x[1], {6, 2, 3, 2}, {2, 1}, 1, {1, 2}, 2); }));

  // ---- pooling and the pooling backward ops ----
  t.push_back(op("max_pool2d", {{2, 3, 7, 6}}, [](X x) { return max_pool2d(x[0], 3, 2, 1, {1, 2}, true); }));
  t.push_back(op("max_pool2d_unbatched", {{3, 5, 5}}, [](X x) { return max_pool2d(x[0], 2); }).covers({"max_pool2d"}));
  t.push_back(op("max_pool2d_backward", {{2, 3, 4, 3}}, [](X x) {
    // The indices of one fixed input's maxima (they are constants of the backward op).
    const Tensor in = on(x[0], rand_f64({2, 3, 7, 6}, -1, 1, 99));
    return max_pool2d_backward(x[0], max_pool2d_with_indices(in, 3, 2, 1, {1, 2}, true).second, in.shape());
  }));
  t.push_back(op("avg_pool2d", {{2, 3, 7, 6}}, [](X x) { return avg_pool2d(x[0], 3, 2, 1, true, false); }));
  t.push_back(op("avg_pool2d_backward", {{2, 3, 4, 4}},
                 [](X x) { return avg_pool2d_backward(x[0], {2, 3, 7, 6}, 3, 2, 1, true, false); }));
  t.push_back(op("adaptive_avg_pool2d", {{2, 3, 7, 5}}, [](X x) { return adaptive_avg_pool2d(x[0], {3, 2}); }));
  t.push_back(op("adaptive_avg_pool2d_backward", {{2, 3, 3, 2}},
                 [](X x) { return adaptive_avg_pool2d_backward(x[0], {2, 3, 7, 5}); }));

  // ---- normalisation and the norm backward ops ----
  t.push_back(op("batch_norm_train", {{3, 3, 2, 2}, {3}, {3}},
                 [](X x) { return batch_norm(x[0], {}, {}, x[1], x[2], true, 0.1, 1e-3); }).covers({"batch_norm"}));
  t.push_back(op("batch_norm_eval", {{3, 3, 2}, {3}, {3}}, [](X x) {
    const Tensor rm = on(x[0], rand_f64({3}, -0.5, 0.5, 4)), rv = on(x[0], rand_f64({3}, 0.5, 2.0, 5));
    return batch_norm(x[0], rm, rv, x[1], x[2], false);
  }).covers({"batch_norm"}));
  t.push_back(op("batch_norm_train_nonaffine_transposed", {{3, 4}},
                 [](X x) { return batch_norm(x[0].t(), {}, {}, {}, {}, true, 0.1, 1e-3); }).covers({"batch_norm"}));
  t.push_back(op("batch_norm_relu_train", {{3, 3, 2, 2}, {3}, {3}},
                 [](X x) { return batch_norm_relu(x[0], {}, {}, x[1], x[2], true, 0.1, 1e-3); }).covers({"batch_norm_relu"}));
  t.push_back(op("batch_norm_relu_eval", {{3, 3, 2}, {3}, {3}}, [](X x) {
    const Tensor rm = on(x[0], rand_f64({3}, -0.5, 0.5, 4)), rv = on(x[0], rand_f64({3}, 0.5, 2.0, 5));
    return batch_norm_relu(x[0], rm, rv, x[1], x[2], false);
  }).covers({"batch_norm_relu"}));
  t.push_back(op("layer_norm", {{3, 2, 4}, {2, 4}, {2, 4}},
                 [](X x) { return layer_norm(x[0], {2, 4}, x[1], x[2], 1e-3); }));
  t.push_back(op("layer_norm_transposed_nonaffine", {{4, 3}}, [](X x) { return layer_norm(x[0].t(), {4}, {}, {}, 1e-3); }).covers({"layer_norm"}));
  t.push_back(op("batch_norm_backward_train", {{3, 3, 2}, {3, 3, 2}, {3}}, [](X x) {
    const Tensor mu = mean(x[1], {0, 2}).detach(), v = var(x[1], {0, 2}, false).detach();
    return flat3(batch_norm_backward(x[0], x[1], x[2], mu, (v + 1e-3).pow(-0.5), true, 1e-3));
  }).covers({"batch_norm_backward"}));
  t.push_back(op("batch_norm_backward_eval", {{3, 3, 2}, {3, 3, 2}, {3}}, [](X x) {
    const Tensor rm = on(x[0], rand_f64({3}, -0.5, 0.5, 4)), rv = on(x[0], rand_f64({3}, 0.5, 2.0, 5));
    return flat3(batch_norm_backward(x[0], x[1], x[2], rm, (rv + 1e-5).pow(-0.5), false, 1e-5));
  }).covers({"batch_norm_backward"}));
  t.push_back(op("layer_norm_backward", {{3, 4}, {3, 4}, {4}}, [](X x) {
    const Tensor mu = mean(x[1], {1}).detach(), rstd = (var(x[1], {1}, false) + 1e-3).pow(-0.5).detach();
    return flat3(layer_norm_backward(x[0], x[1], {4}, mu, rstd, x[2], 1e-3));
  }));

  // ---- losses ----
  t.push_back(op(
      "cross_entropy_smoothing_ignore", {{6, 4}},
      [](X x) {
        const Tensor tg = on(x[0], from_vector<int64_t>({1, -100, 3, 0, -100, 2}));
        return cross_entropy(x[0], tg, {.label_smoothing = 0.1});
      },
      -3, 3).covers({"cross_entropy"}));
  t.push_back(op(
      "cross_entropy_spatial_sum", {{2, 4, 3}},
      [](X x) {
        const Tensor tg = on(x[0], from_vector<int64_t>({0, 3, 1, 2, 2, 1}, {2, 3}));
        return cross_entropy(x[0], tg, {.reduction = Reduction::Sum});
      },
      -3, 3).covers({"cross_entropy"}));
  t.push_back(op(
      "cross_entropy_backward", {{5}, {5, 4}},
      [](X x) {
        const Tensor tg = on(x[0], from_vector<int64_t>({1, -100, 3, 0, 2}));
        return cross_entropy_backward(x[0], x[1], tg, -100, 0.1);
      },
      -2, 2));
  t.push_back(op("nll_loss", {{5, 4}}, [](X x) {
    const Tensor tg = on(x[0], from_vector<int64_t>({1, 3, -100, 0, 2}));
    return nll_loss(x[0], tg);
  }));
  t.push_back(op("mse_loss", {{3, 4}, {3, 4}}, [](X x) { return mse_loss(x[0], x[1], Reduction::Sum); }));
  return t;
}

}  // namespace ember::test
