// The backward ops of the neural-network ops (core/ops/nn_ops.h): conv2d_backward_input /
// _weight, the pooling backwards, batch_norm_backward, layer_norm_backward and
// cross_entropy_backward. Each is an op of its own whose backward is written with ops, so:
//   - a float64 gradcheck of the backward op checks its own backward (the second derivative of
//     the forward op) without needing create_graph;
//   - each equals the gradient the forward op's backward computes (the fused path);
//   - for the norms and the loss, the fused kernel equals the composite of ops to float64 precision.
#include <functional>
#include <tuple>
#include <vector>

#include "core/ember.h"
#include "core/kernels/conv_kernels.h"
#include "core/kernels/norm_kernels.h"
#include "tests/test_util.h"

using namespace ember;
using test::expect_close;
using test::expect_gradcheck;
using test::rand_f64;

EMBER_DEVICE_SUITE(NnBackwardOps);

namespace {

// The gradients of sum(out * v) with respect to `inputs` by an ordinary backward (fused kernels).
std::vector<Tensor> fused_grads(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                const std::vector<Tensor>& inputs, const Tensor& v) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) leaves.push_back(t.detach().requires_grad_());
  sum(fn(leaves) * v).backward();
  std::vector<Tensor> grads;
  for (const Tensor& t : leaves) grads.push_back(t.grad());
  return grads;
}

// The three gradients of a norm's backward op as one flat tensor (gradcheck takes one output).
Tensor flat3(const std::tuple<Tensor, Tensor, Tensor>& t) {
  return cat({std::get<0>(t).reshape({-1}), std::get<1>(t).reshape({-1}), std::get<2>(t).reshape({-1})});
}

Tensor class_targets(const Shape& shape, int64_t classes, Device device, uint64_t seed = 7) {
  Generator g(seed);
  return randint(0, classes, shape, TensorOptions(kInt64), &g).to(device);
}

}  // namespace

// ---------------------------------------------------------------- convolution

TEST_P(NnBackwardOps, Conv2dBackwardInputGradcheck) {
  // input [2, 4, 7, 6], weight [6, 2, 3, 2], stride (2, 1), padding 1, dilation (1, 2), groups 2
  // -> grad_output [2, 6, 4, 6]. Checks d/dg (a convolution) and d/dW (conv2d_backward_weight).
  expect_gradcheck(
      [](const auto& x) { return conv2d_backward_input(x[0], x[1], {2, 4, 7, 6}, {2, 1}, 1, {1, 2}, 2); },
      {rand_f64({2, 6, 4, 6}), rand_f64({6, 2, 3, 2})}, device());
}

TEST_P(NnBackwardOps, Conv2dBackwardWeightGradcheck) {
  expect_gradcheck(
      [](const auto& x) { return conv2d_backward_weight(x[0], x[1], {6, 2, 3, 2}, {2, 1}, 1, {1, 2}, 2); },
      {rand_f64({2, 6, 4, 6}), rand_f64({2, 4, 7, 6})}, device());
  // 1x1, stride 1: the direct (no im2col) path of the CPU kernel.
  expect_gradcheck([](const auto& x) { return conv2d_backward_weight(x[0], x[1], {3, 2, 1, 1}); },
                   {rand_f64({2, 3, 3, 3}), rand_f64({2, 2, 3, 3})}, device());
}

TEST_P(NnBackwardOps, Conv2dBackwardOpsEqualTheFusedBackward) {
  const Tensor x = rand_f64({3, 4, 6, 5}).to(device()), w = rand_f64({6, 2, 3, 3}, -1, 1, 5).to(device());
  const Tensor b = rand_f64({6}, -1, 1, 6).to(device());
  auto conv = [](const std::vector<Tensor>& t) { return conv2d(t[0], t[1], t[2], 2, 1, 1, 2); };
  const Tensor v = rand_f64(conv({x, w, b}).shape(), -1, 1, 9).to(device());
  const std::vector<Tensor> g = fused_grads(conv, {x, w, b}, v);
  expect_close(conv2d_backward_input(v, w, x.shape(), 2, 1, 1, 2), g[0], 1e-12, 1e-12);
  expect_close(conv2d_backward_weight(v, x, w.shape(), 2, 1, 1, 2), g[1], 1e-12, 1e-12);
  expect_close(sum(v, {0, 2, 3}), g[2], 1e-12, 1e-12);
}

TEST_P(NnBackwardOps, Conv2dBackwardOpsCheckShapes) {
  const Tensor g = zeros({2, 3, 4, 4}, TensorOptions(kFloat64).device(device()));
  test::expect_error([&] { conv2d_backward_input(g, zeros({3, 2, 3, 3}, TensorOptions(kFloat64).device(device())),
                                                 {2, 2, 5, 5}); },
                     {"conv2d_backward_input", "grad_output [2, 3, 4, 4]", "[2, 3, 3, 3]"});
  test::expect_error([&] { conv2d_backward_weight(g, zeros({2, 4, 6, 6}, TensorOptions(kFloat64).device(device())),
                                                  {3, 2, 3, 3}); },
                     {"conv2d_backward_weight", "channels"});
}

// ---------------------------------------------------------------- pooling

TEST_P(NnBackwardOps, MaxPool2dBackwardGradcheck) {
  // Overlapping, padded, dilated windows, ceil_mode: several outputs may share one input position.
  const Tensor x = rand_f64({2, 3, 7, 6}).to(device());
  const auto [y, idx] = max_pool2d_with_indices(x, 3, 2, 1, {1, 2}, true);
  expect_gradcheck([idx, s = x.shape()](const auto& t) { return max_pool2d_backward(t[0], idx, s); },
                   {rand_f64(y.shape())}, device());
  const Tensor x3 = rand_f64({3, 5, 5}).to(device());  // unbatched
  const auto [y3, idx3] = max_pool2d_with_indices(x3, 2);
  expect_gradcheck([idx3, s = x3.shape()](const auto& t) { return max_pool2d_backward(t[0], idx3, s); },
                   {rand_f64(y3.shape())}, device());
}

TEST_P(NnBackwardOps, AvgPool2dBackwardGradcheck) {
  expect_gradcheck([](const auto& t) { return avg_pool2d_backward(t[0], {2, 3, 7, 6}, 3, 2, 1, true, false); },
                   {rand_f64({2, 3, 4, 4})}, device());
  expect_gradcheck([](const auto& t) { return avg_pool2d_backward(t[0], {3, 4, 6}, 2); }, {rand_f64({3, 2, 3})},
                   device());
}

TEST_P(NnBackwardOps, AdaptiveAvgPool2dBackwardGradcheck) {
  expect_gradcheck([](const auto& t) { return adaptive_avg_pool2d_backward(t[0], {2, 3, 7, 5}); },
                   {rand_f64({2, 3, 3, 2})}, device());
}

TEST_P(NnBackwardOps, PoolBackwardOpsEqualTheFusedBackward) {
  const Tensor x = rand_f64({2, 3, 7, 6}).to(device());
  auto check = [&](const std::function<Tensor(const std::vector<Tensor>&)>& fwd, const Tensor& op_grad_of_v,
                   const Tensor& v) { expect_close(op_grad_of_v, fused_grads(fwd, {x}, v)[0], 1e-12, 1e-12); };
  const auto [y, idx] = max_pool2d_with_indices(x, 3, 2, 1);
  const Tensor v = rand_f64(y.shape(), -1, 1, 3).to(device());
  check([](const auto& t) { return max_pool2d(t[0], 3, 2, 1); }, max_pool2d_backward(v, idx, x.shape()), v);
  check([](const auto& t) { return avg_pool2d(t[0], 3, 2, 1, false, false); },
        avg_pool2d_backward(v, x.shape(), 3, 2, 1, false, false), v);
  const Tensor va = rand_f64({2, 3, 4, 4}, -1, 1, 4).to(device());
  check([](const auto& t) { return adaptive_avg_pool2d(t[0], 4); }, adaptive_avg_pool2d_backward(va, x.shape()), va);
}

TEST_P(NnBackwardOps, PoolBackwardOpsCheckShapes) {
  const Tensor g = zeros({2, 3, 4, 4}, TensorOptions(kFloat64).device(device()));
  test::expect_error([&] { avg_pool2d_backward(g, {2, 3, 6, 6}, 2); },
                     {"avg_pool2d_backward", "grad_output [2, 3, 4, 4]", "[2, 3, 3, 3]"});
  test::expect_error(
      [&] { max_pool2d_backward(g, zeros({2, 3, 4, 4}, TensorOptions(kFloat64).device(device())), {2, 3, 8, 8}); },
      {"max_pool2d_backward", "int64"});
}

// ---------------------------------------------------------------- normalisation

TEST_P(NnBackwardOps, BatchNormBackwardFusedMatchesComposite) {
  const Tensor x = rand_f64({4, 3, 5}).to(device()), g = rand_f64({4, 3, 5}, -1, 1, 2).to(device());
  const Tensor w = rand_f64({3}, 0.5, 1.5, 3).to(device());
  const Tensor rm = rand_f64({3}, -0.5, 0.5, 4).to(device()), rv = rand_f64({3}, 0.5, 2.0, 5).to(device());
  for (bool training : {true, false}) {
    for (const Tensor& weight : {w, Tensor()}) {
      // The forward's saved statistics: the batch's (biased variance) or the running ones.
      const Tensor mu = training ? mean(x, {0, 2}) : rm;
      const Tensor invstd = ((training ? var(x, {0, 2}, /*unbiased=*/false) : rv) + 1e-5).pow(-0.5);
      const std::array<bool, 3> mask = {true, weight.defined(), true};
      NoGradGuard no_grad;  // nothing requires grad: the fused kernel runs
      const auto fused = batch_norm_backward(g, x, weight, mu, invstd, training, 1e-5, mask);
      const auto composite = batch_norm_backward_composite(g, x, weight, mu, invstd, training, 1e-5, mask);
      SCOPED_TRACE(testing::Message() << "training=" << training << " weight=" << weight.defined());
      expect_close(std::get<0>(fused), std::get<0>(composite), 1e-10, 1e-12);
      if (weight.defined()) expect_close(std::get<1>(fused), std::get<1>(composite), 1e-10, 1e-12);
      expect_close(std::get<2>(fused), std::get<2>(composite), 1e-10, 1e-12);
    }
  }
}

// The fused layer + ReLU ops against the two ops they replace, in float32 at the MNIST cnn's and
// ResNet-20's shapes (the CPU runs conv2d_relu on oneDNN with a post-op where oneDNN takes the
// forward, Winograd included, and on the im2col path otherwise; other devices compose): outputs
// and every gradient. Each case says which fused op it runs, and the ReLU must have zeroed something.
TEST_P(NnBackwardOps, FusedReluOpsMatchTheOpThenRelu) {
  if (device().is_cpu()) {
    EXPECT_TRUE(conv_kernels(kCPU).fuses_conv2d_relu());
  }
  struct Case {
    const char* name;
    std::vector<Shape> shapes;  // inputs; each gets a gradient
    std::function<Tensor(const std::vector<Tensor>&, bool fused)> fn;
  };
  const std::vector<Case> cases = {
      {"conv2d_relu cnn conv1 (1 input channel, bias)", {{4, 1, 28, 28}, {32, 1, 3, 3}, {32}},
       [](const std::vector<Tensor>& x, bool fused) {
         return fused ? conv2d_relu(x[0], x[1], x[2]) : relu(conv2d(x[0], x[1], x[2]));
       }},
      {"conv2d_relu cnn conv2 (Winograd on AVX-512)", {{4, 32, 26, 26}, {64, 32, 3, 3}, {64}},
       [](const std::vector<Tensor>& x, bool fused) {
         return fused ? conv2d_relu(x[0], x[1], x[2]) : relu(conv2d(x[0], x[1], x[2]));
       }},
      {"conv2d_relu ResNet stage 1, padded, no bias", {{4, 16, 16, 16}, {16, 16, 3, 3}},
       [](const std::vector<Tensor>& x, bool fused) {
         return fused ? conv2d_relu(x[0], x[1], Tensor(), 1, 1) : relu(conv2d(x[0], x[1], Tensor(), 1, 1));
       }},
      {"linear_relu mlp fc1", {{16, 784}, {512, 784}, {512}},
       [](const std::vector<Tensor>& x, bool fused) {
         return fused ? linear_relu(x[0], x[1], x[2]) : relu(linear(x[0], x[1], x[2]));
       }},
      {"linear_relu 3-D input, no bias", {{2, 5, 64}, {50, 64}},
       [](const std::vector<Tensor>& x, bool fused) { return fused ? linear_relu(x[0], x[1]) : relu(linear(x[0], x[1])); }},
      {"add_relu residual block end", {{4, 16, 8, 8}, {4, 16, 8, 8}},
       [](const std::vector<Tensor>& x, bool fused) { return fused ? add_relu(x[0], x[1]) : relu(x[0] + x[1]); }},
      {"add_relu broadcast", {{4, 16, 8, 8}, {16, 1, 1}},
       [](const std::vector<Tensor>& x, bool fused) { return fused ? add_relu(x[0], x[1]) : relu(x[0] + x[1]); }},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> base;
    for (const Shape& s : c.shapes) base.push_back(rand_f64(s, -1, 1, ++seed).to(kFloat32).to(device()));
    std::vector<Tensor> outs, grads;
    Tensor upstream;
    for (bool fused : {true, false}) {
      std::vector<Tensor> x;
      for (const Tensor& b : base) x.push_back(b.clone().requires_grad_(true));
      const Tensor y = c.fn(x, fused);
      if (!upstream.defined()) upstream = rand_f64(y.shape(), -1, 1, ++seed).to(kFloat32).to(device());
      (y * upstream).sum().backward();
      outs.push_back(y.detach());
      for (const Tensor& t : x) grads.push_back(t.grad());
    }
    expect_close(outs[0], outs[1], 1e-5, 1e-5);
    const size_t n = base.size();
    for (size_t i = 0; i < n; ++i) expect_close(grads[i], grads[n + i], 1e-4, 1e-4);
    const double zeros = eq(outs[0], 0.0).to(kFloat32).sum().item();
    EXPECT_GT(zeros, 0);
    EXPECT_LT(zeros, static_cast<double>(outs[0].numel()));
  }
}

// batch_norm_relu against batch_norm then relu, in float32 at a ResNet-like shape (the CPU runs the
// fused kernels; other devices compose the two ops): the output, both running statistics, and the
// gradients of input, weight and bias, training and eval, with and without the affine parameters.
TEST_P(NnBackwardOps, BatchNormReluMatchesBatchNormThenRelu) {
  if (device().is_cpu()) {
    EXPECT_TRUE(norm_kernels(kCPU).fuses_batch_norm_relu());
  }
  const Tensor x0 = rand_f64({8, 16, 5, 7}, -2, 2, 11).to(kFloat32).to(device());
  const Tensor g = rand_f64({8, 16, 5, 7}, -1, 1, 12).to(kFloat32).to(device());
  const Tensor w0 = rand_f64({16}, 0.5, 1.5, 13).to(kFloat32).to(device());
  const Tensor b0 = rand_f64({16}, -0.5, 0.5, 14).to(kFloat32).to(device());
  for (bool training : {true, false}) {
    for (bool affine : {true, false}) {
      SCOPED_TRACE(testing::Message() << "training=" << training << " affine=" << affine);
      std::vector<Tensor> outs, grads, stats;
      for (bool fused : {true, false}) {
        const Tensor x = x0.clone().requires_grad_(true);
        const Tensor w = affine ? w0.clone().requires_grad_(true) : Tensor();
        const Tensor b = affine ? b0.clone().requires_grad_(true) : Tensor();
        const Tensor rm = rand_f64({16}, -0.5, 0.5, 15).to(kFloat32).to(device());
        const Tensor rv = rand_f64({16}, 0.5, 2.0, 16).to(kFloat32).to(device());
        const Tensor y = fused ? batch_norm_relu(x, rm, rv, w, b, training, 0.1, 1e-5)
                               : relu(batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5));
        (y * g).sum().backward();
        outs.push_back(y.detach());
        grads.push_back(x.grad());
        if (affine) {
          grads.push_back(w.grad());
          grads.push_back(b.grad());
        }
        stats.push_back(rm);
        stats.push_back(rv);
      }
      const size_t half = grads.size() / 2;
      expect_close(outs[0], outs[1], 1e-5, 1e-6);
      for (size_t i = 0; i < half; ++i) expect_close(grads[i], grads[half + i], 1e-4, 1e-5);
      expect_close(stats[0], stats[2], 1e-6, 1e-7);
      expect_close(stats[1], stats[3], 1e-6, 1e-7);
      // The ReLU did something: some outputs are 0 and some inputs get no gradient from them.
      EXPECT_GT(eq(outs[0], 0.0).to(kFloat32).sum().item(), 0);
    }
  }
}

TEST_P(NnBackwardOps, BatchNormBackwardGradcheck) {
  // With inputs that require grad, batch_norm_backward takes its composite body; the gradcheck is
  // of all three outputs with respect to grad_output, input and weight (the second derivative of
  // batch_norm through the batch statistics).
  const Tensor rm = rand_f64({3}, -0.5, 0.5, 4), rv = rand_f64({3}, 0.5, 2.0, 5);
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    expect_gradcheck(
        [training, rm, rv](const auto& t) {
          const Tensor mu = training ? mean(t[1], {0, 2, 3}).detach() : rm.to(t[1].device());
          const Tensor v = training ? var(t[1], {0, 2, 3}, false).detach() : rv.to(t[1].device());
          return flat3(batch_norm_backward(t[0], t[1], t[2], mu, (v + 1e-3).pow(-0.5), training, 1e-3));
        },
        {rand_f64({3, 3, 2, 2}, -1, 1, 6), rand_f64({3, 3, 2, 2}, -1, 1, 7), rand_f64({3}, 0.5, 1.5, 8)},
        device());
  }
}

TEST_P(NnBackwardOps, LayerNormBackwardFusedMatchesComposite) {
  const Tensor x = rand_f64({4, 2, 5}).to(device()), g = rand_f64({4, 2, 5}, -1, 1, 2).to(device());
  const Tensor w = rand_f64({2, 5}, 0.5, 1.5, 3).to(device());
  const Tensor mu = mean(x, {1, 2}), rstd = (var(x, {1, 2}, false) + 1e-5).pow(-0.5);
  for (const Tensor& weight : {w, Tensor()}) {
    const std::array<bool, 3> mask = {true, weight.defined(), true};
    NoGradGuard no_grad;
    const auto fused = layer_norm_backward(g, x, {2, 5}, mu, rstd, weight, 1e-5, mask);
    const auto composite = layer_norm_backward_composite(g, x, {2, 5}, weight, 1e-5, mask);
    SCOPED_TRACE(weight.defined() ? "weight" : "no weight");
    expect_close(std::get<0>(fused), std::get<0>(composite), 1e-10, 1e-12);
    if (weight.defined()) expect_close(std::get<1>(fused), std::get<1>(composite), 1e-10, 1e-12);
    expect_close(std::get<2>(fused), std::get<2>(composite), 1e-10, 1e-12);
  }
}

TEST_P(NnBackwardOps, LayerNormBackwardGradcheck) {
  expect_gradcheck(
      [](const auto& t) {
        const Tensor mu = mean(t[1], {1}).detach(), rstd = (var(t[1], {1}, false) + 1e-3).pow(-0.5).detach();
        return flat3(layer_norm_backward(t[0], t[1], {4}, mu, rstd, t[2], 1e-3));
      },
      {rand_f64({3, 4}, -1, 1, 6), rand_f64({3, 4}, -1, 1, 7), rand_f64({4}, 0.5, 1.5, 8)}, device());
}

// ---------------------------------------------------------------- cross entropy

TEST_P(NnBackwardOps, CrossEntropyBackwardFusedMatchesComposite) {
  const Tensor x = rand_f64({6, 5}, -3, 3).to(device()), gl = rand_f64({6}, -1, 1, 2).to(device());
  const Tensor t = from_vector<int64_t>({1, -100, 4, 0, 2, -100}).to(device());
  for (double smoothing : {0.0, 0.2}) {
    NoGradGuard no_grad;
    SCOPED_TRACE(smoothing);
    expect_close(cross_entropy_backward(gl, x, t, -100, smoothing),
                 cross_entropy_backward_composite(gl, x, t, -100, smoothing), 1e-12, 1e-12);
    // The gradient of a mean reaches the kernel broadcast (stride 0).
    const Tensor g0 = full({}, 0.5, TensorOptions(kFloat64).device(device())).expand({6});
    expect_close(cross_entropy_backward(g0, x, t, -100, smoothing),
                 cross_entropy_backward_composite(g0, x, t, -100, smoothing), 1e-12, 1e-12);
  }
}

TEST_P(NnBackwardOps, CrossEntropyBackwardGradcheck) {
  const Tensor t = from_vector<int64_t>({1, -100, 3, 0, 2});
  expect_gradcheck(
      [t](const auto& x) { return cross_entropy_backward(x[0], x[1], t.to(x[1].device()), -100, 0.1); },
      {rand_f64({5}, -1, 1, 3), rand_f64({5, 4}, -3, 3, 4)}, device());
}

TEST_P(NnBackwardOps, CrossEntropyBackwardEqualsTheFusedBackward) {
  const Tensor x = rand_f64({6, 5}, -3, 3).to(device()), t = class_targets({6}, 5, device());
  const Tensor v = rand_f64({6}, -1, 1, 2).to(device());
  const auto g = fused_grads(
      [t](const auto& in) { return cross_entropy(in[0], t, {.reduction = Reduction::None, .label_smoothing = 0.1}); },
      {x}, v);
  expect_close(cross_entropy_backward(v, x, t, -100, 0.1), g[0], 1e-12, 1e-12);
}

// The second-order checks (gradgradcheck) of every op here and of the forward ops are in the op
// table: tests/op_table_nn.cpp, run by tests/test_op_table.cpp.
