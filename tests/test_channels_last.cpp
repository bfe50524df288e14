// Channels-last activations (MemoryFormat::ChannelsLast): the layout itself (strides, contiguity,
// the copy into it and its gradient), ops that keep it (elementwise results, convolution, batch
// norm, batch_norm_relu) and ResNet run in it. Every op must give the values and gradients its
// NCHW run gives, in the layout the op promises; float64 finite differences check the gradients
// of the channels-last paths themselves.
#include <gtest/gtest.h>

#include <vector>

#include "core/cpu/cpu_matmul.h"
#include "core/cpu/onednn_conv.h"
#include "core/ops/nn_ops.h"
#include "nn/functional.h"
#include "nn/models/resnet.h"
#include "tests/test_util.h"

namespace ember {
namespace {

namespace F = nn::functional;
using test::expect_close;
using test::expect_gradcheck;
using test::rand_f64;
using V = std::vector<Tensor>;

constexpr MemoryFormat kCL = MemoryFormat::ChannelsLast;

bool is_channels_last(const Tensor& t) { return suggest_memory_format(t) == kCL; }

TEST(ChannelsLast, StridesContiguityAndValues) {
  const Tensor x = rand_f64({2, 3, 4, 5});
  const Tensor y = x.contiguous(kCL);
  EXPECT_EQ(y.strides(), (Shape{60, 1, 15, 3}));
  EXPECT_TRUE(y.is_contiguous(kCL));
  EXPECT_FALSE(y.is_contiguous());
  EXPECT_TRUE(is_channels_last(y));
  EXPECT_FALSE(is_channels_last(x));
  expect_close(y, x, 0, 0);                           // same values at the same indices
  expect_close(y.contiguous(), x, 0, 0);              // and back
  EXPECT_EQ(y.contiguous(kCL).data_ptr(), y.data_ptr());  // already laid out so: no copy
  // Element [n, c, h, w] sits at n*HWC + h*WC + w*C + c.
  const double* p = y.data<double>();
  EXPECT_EQ(p[1 * 60 + 2 * 15 + 3 * 3 + 2], x.to_vector<double>()[1 * 60 + 2 * 20 + 2 * 5 + 3]);
  // One channel or one pixel: both layouts at once, and ops treat it as plainly contiguous.
  EXPECT_TRUE(rand_f64({2, 1, 4, 5}).is_contiguous(kCL));
  EXPECT_FALSE(is_channels_last(rand_f64({2, 1, 4, 5}).contiguous(kCL)));
  EXPECT_TRUE(rand_f64({2, 3, 1, 1}).is_contiguous(kCL));
  // Not 4-D: never channels-last, and asking for it is an error naming the shape.
  EXPECT_FALSE(rand_f64({3, 4}).is_contiguous(kCL));
  test::expect_error([] { rand_f64({3, 4}).contiguous(kCL); }, {"channels_last", "4-D", "[3, 4]"});
  test::expect_error([] { empty({2, 3, 4}, {}, kCL); }, {"channels_last", "[2, 3, 4]"});
  // A transposed or sliced tensor is neither.
  const Tensor t = rand_f64({2, 3, 4, 5}).transpose(2, 3);
  EXPECT_FALSE(t.is_contiguous(kCL));
  EXPECT_FALSE(t.is_contiguous());
}

TEST(ChannelsLast, LeafGradientsTakeTheLeafsLayout) {
  // An NCHW leaf whose gradient arrives channels-last gets an NCHW .grad, also when a second
  // backward adds to it (optimizers walk a parameter and its .grad element for element); a
  // channels-last leaf gets a channels-last one.
  const Tensor x = rand_f64({2, 3, 4, 5}).requires_grad_();
  for (int pass = 1; pass <= 2; ++pass) {
    (relu(x.contiguous(kCL)) * 2.0).sum().backward();
    EXPECT_TRUE(x.grad().is_contiguous()) << x.grad().strides();
    expect_close(x.grad(), where(gt(x.detach(), 0.0), full(x.shape(), 2.0 * pass, TensorOptions(kFloat64)),
                                 zeros(x.shape(), TensorOptions(kFloat64))),
                 0, 0);
  }
  const Tensor y = rand_f64({2, 3, 4, 5}).contiguous(kCL).requires_grad_();
  for (int pass = 1; pass <= 2; ++pass) {
    (y * 3.0).sum().backward();
    EXPECT_TRUE(is_channels_last(y.grad())) << y.grad().strides();
    expect_close(y.grad(), full(y.shape(), 3.0 * pass, TensorOptions(kFloat64)), 0, 0);
  }
}

TEST(ChannelsLast, CopyIsDifferentiable) {
  expect_gradcheck([](const V& x) { return x[0].contiguous(kCL) * 3.0; }, {rand_f64({2, 3, 4, 5})});
  expect_gradcheck([](const V& x) { return x[0].contiguous(kCL).contiguous(); }, {rand_f64({2, 3, 2, 2})});
}

TEST(ChannelsLast, ElementwiseResultsKeepTheLayout) {
  const Tensor a = rand_f64({2, 5, 3, 4}, -1, 1, 1), b = rand_f64({2, 5, 3, 4}, -1, 1, 2);
  const Tensor acl = a.contiguous(kCL), bcl = b.contiguous(kCL);
  const Tensor bias = rand_f64({1, 5, 1, 1}, -1, 1, 3);
  struct Case {
    const char* name;
    Tensor got, want;
  };
  const std::vector<Case> cases = {
      {"add", acl + bcl, a + b},
      {"add mixed layouts", acl + b, a + b},
      {"add mixed, NCHW first", a + bcl, a + b},
      {"broadcast bias", acl * bias, a * bias},
      {"relu", relu(acl), relu(a)},
      {"exp", exp(acl), exp(a)},
      {"add_relu", add_relu(acl, bcl), add_relu(a, b)},
      {"relu_backward", relu_backward(bcl, relu(acl)), relu_backward(b, relu(a))},
      {"scalar", acl * 2.0 + 1.0, a * 2.0 + 1.0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(is_channels_last(c.got)) << c.got.strides();
    expect_close(c.got, c.want, 0, 0);
  }
  // A result of another shape than its channels-last operand (broadcast up) is contiguous.
  const Tensor up = rand_f64({2, 5, 1, 4}).contiguous(kCL) + rand_f64({2, 5, 3, 4});
  EXPECT_TRUE(up.is_contiguous());
  // Reductions and views see the same values.
  expect_close(sum(acl, {0, 2, 3}), sum(a, {0, 2, 3}), 1e-12, 1e-12);
  expect_close(acl.reshape({2, 60}), a.reshape({2, 60}), 0, 0);
}

TEST(ChannelsLast, ElementwiseGradients) {
  expect_gradcheck([](const V& x) { return add_relu(x[0].contiguous(kCL), x[1].contiguous(kCL)); },
                   {rand_f64({2, 4, 3, 3}, -1, 1, 5), rand_f64({2, 4, 3, 3}, -1, 1, 6)});
  expect_gradcheck([](const V& x) { return relu(x[0].contiguous(kCL)) * x[1]; },
                   {rand_f64({2, 4, 3, 3}, -1, 1, 7), rand_f64({2, 4, 3, 3}, -1, 1, 8)});
}

// ---- convolution ----

struct ConvCase {
  const char* name;
  Shape x, w;
  bool bias;
  int64_t stride, pad, groups;
};

const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cs = {
      {"plain", {2, 3, 9, 11}, {4, 3, 3, 3}, true, 1, 0, 1},
      {"stride_pad", {2, 5, 10, 9}, {6, 5, 3, 3}, true, 2, 1, 1},
      {"groups", {2, 4, 7, 7}, {6, 2, 3, 3}, true, 1, 1, 2},
      {"one_by_one_s2", {2, 32, 8, 8}, {64, 32, 1, 1}, false, 2, 0, 1},
      {"resnet_3x3_16", {2, 16, 8, 8}, {16, 16, 3, 3}, false, 1, 1, 1},
      {"resnet_3x3_32_winograd", {2, 32, 8, 8}, {32, 32, 3, 3}, false, 1, 1, 1},
      {"resnet_3x3_64_winograd", {2, 64, 8, 8}, {64, 64, 3, 3}, false, 1, 1, 1},
      // one output channel: the output and its gradient are both layouts at once
      {"one_output_channel", {2, 4, 6, 6}, {1, 4, 3, 3}, true, 1, 1, 1},
  };
  return cs;
}

struct ConvResult {
  Tensor out, gx, gw, gb;
};

// Forward and backward of sum(conv2d_relu or conv2d(x, w, b) * v), x in `format`.
ConvResult run_conv(const ConvCase& c, DType dtype, MemoryFormat format, bool relu_fused) {
  const Tensor x = rand_f64(c.x, -1, 1, 11).to(dtype).contiguous(format).detach().requires_grad_();
  const Tensor w = rand_f64(c.w, -1, 1, 12).to(dtype).requires_grad_();
  const Tensor b = c.bias ? rand_f64({c.w[0]}, -1, 1, 13).to(dtype).requires_grad_() : Tensor();
  const Tensor out = relu_fused ? conv2d_relu(x, w, b, c.stride, c.pad, 1, c.groups)
                                : F::conv2d(x, w, b, c.stride, c.pad, 1, c.groups);
  const Tensor v = rand_f64(out.shape(), -1, 1, 14).to(dtype);
  (out * v).sum().backward();
  if (format == kCL && c.x[1] > 1) {
    if (c.w[0] > 1) EXPECT_TRUE(is_channels_last(out)) << out.strides();
    EXPECT_TRUE(is_channels_last(x.grad())) << x.grad().strides();
  }
  return {out.detach(), x.grad(), w.grad(), c.bias ? b.grad() : Tensor()};
}

// Every CPU engine: oneDNN's NHWC (and, for Winograd layers, blocked) primitives where built in, the
// im2col path on NCHW stand-ins otherwise; float32 against the float64 NCHW result.
class ChannelsLastConv : public ::testing::TestWithParam<ConvEngine> {
 protected:
  void SetUp() override {
    saved_ = cpu_conv_engine();
    saved_gemm_ = cpu_gemm_engine();
    if (GetParam() != ConvEngine::Im2col && !cpu_onednn_available()) GTEST_SKIP() << "built without oneDNN";
    if (cpu_onednn_available()) set_cpu_gemm_engine(GemmEngine::Auto);
    set_cpu_conv_engine(GetParam());
  }
  void TearDown() override {
    set_cpu_conv_engine(saved_);
    set_cpu_gemm_engine(saved_gemm_);
  }
  ConvEngine saved_ = ConvEngine::Auto;
  GemmEngine saved_gemm_ = GemmEngine::Eigen;
};

TEST_P(ChannelsLastConv, MatchesNchwForwardAndGradients) {
  for (const ConvCase& c : conv_cases()) {
    for (bool fused : {false, true}) {
      SCOPED_TRACE(testing::Message() << c.name << (fused ? " conv2d_relu" : " conv2d"));
      const ConvResult want = run_conv(c, kFloat64, MemoryFormat::Contiguous, fused);
      for (DType dtype : {kFloat32, kFloat64}) {
        const ConvResult got = run_conv(c, dtype, kCL, fused);
        const double tol = dtype == kFloat32 ? 1e-4 : 1e-12;
        expect_close(got.out, want.out, tol, tol);
        expect_close(got.gx, want.gx, tol, tol);
        expect_close(got.gw, want.gw, tol, tol);
        if (c.bias) expect_close(got.gb, want.gb, tol, tol);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, ChannelsLastConv,
                         ::testing::Values(ConvEngine::Auto, ConvEngine::OneDnn, ConvEngine::Im2col),
                         [](const auto& info) {
                           return std::string(info.param == ConvEngine::Auto     ? "Auto"
                                              : info.param == ConvEngine::OneDnn ? "OneDnn"
                                                                                 : "Im2col");
                         });

TEST(ChannelsLast, ConvolutionGradcheck) {
  // float64 runs the im2col path on NCHW stand-ins; the layouts of the results are checked above.
  expect_gradcheck(
      [](const V& x) { return F::conv2d(x[0].contiguous(kCL), x[1], x[2], 2, 1); },
      {rand_f64({2, 3, 5, 6}, -1, 1, 1), rand_f64({4, 3, 3, 3}, -1, 1, 2), rand_f64({4}, -1, 1, 3)});
  expect_gradcheck([](const V& x) { return conv2d_relu(x[0].contiguous(kCL), x[1], Tensor(), 1, 1, 1, 1); },
                   {rand_f64({2, 3, 4, 4}, -1, 1, 4), rand_f64({2, 3, 3, 3}, -1, 1, 5)});
  // The standalone backward ops, given channels-last tensors (create_graph's path).
  expect_gradcheck(
      [](const V& x) {
        return conv2d_backward_input(x[0].contiguous(kCL), x[1], {2, 3, 5, 5}, 1, 1, 1, 1);
      },
      {rand_f64({2, 4, 5, 5}, -1, 1, 6), rand_f64({4, 3, 3, 3}, -1, 1, 7)});
  expect_gradcheck(
      [](const V& x) {
        return conv2d_backward_weight(x[0].contiguous(kCL), x[1].contiguous(kCL), {4, 3, 3, 3}, 1, 1, 1, 1);
      },
      {rand_f64({2, 4, 5, 5}, -1, 1, 8), rand_f64({2, 3, 5, 5}, -1, 1, 9)});
}

TEST(ChannelsLast, EmptyBatchesAndOddShapes) {
  // No images: shapes out, no kernel touches memory. One pixel per channel: plainly contiguous.
  for (DType dtype : {kFloat32, kFloat64}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Tensor x = empty({0, 3, 5, 5}, TensorOptions(dtype), kCL);
    const Tensor w = rand_f64({4, 3, 3, 3}).to(dtype);
    EXPECT_EQ(F::conv2d(x, w, Tensor(), 1, 1).shape(), (Shape{0, 4, 5, 5}));
    const Tensor rm = zeros({3}, TensorOptions(dtype)), rv = ones({3}, TensorOptions(dtype));
    EXPECT_EQ(batch_norm(x, rm, rv, Tensor(), Tensor(), false, 0.1, 1e-5).shape(), x.shape());
    const Tensor p = rand_f64({2, 3, 1, 1}, -1, 1, 3).to(dtype).contiguous(kCL);
    expect_close(relu(p), relu(rand_f64({2, 3, 1, 1}, -1, 1, 3).to(dtype)), 0, 0);
  }
}

// ---- batch norm ----

TEST(ChannelsLast, BatchNormMatchesNchw) {
  for (DType dtype : {kFloat32, kFloat64}) {
    for (bool relu_fused : {false, true}) {
      for (bool training : {true, false}) {
        for (bool affine : {true, false}) {
          SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " relu=" << relu_fused << " training=" << training
                                          << " affine=" << affine);
          std::vector<Tensor> outs, grads, stats;
          for (MemoryFormat format : {MemoryFormat::Contiguous, kCL}) {
            // a large mean beside the spread, as the NCHW kernel's own test: the shift must hold
            const Tensor x = (rand_f64({4, 24, 5, 3}, -2, 2, 21) + 3.0).to(dtype).contiguous(format).detach()
                                 .requires_grad_();
            const Tensor w = affine ? rand_f64({24}, 0.5, 1.5, 22).to(dtype).requires_grad_() : Tensor();
            const Tensor b = affine ? rand_f64({24}, -0.5, 0.5, 23).to(dtype).requires_grad_() : Tensor();
            const Tensor rm = rand_f64({24}, -0.5, 0.5, 24).to(dtype), rv = rand_f64({24}, 0.5, 2, 25).to(dtype);
            const Tensor y = relu_fused ? batch_norm_relu(x, rm, rv, w, b, training, 0.1, 1e-5)
                                        : batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5);
            EXPECT_EQ(is_channels_last(y), format == kCL) << y.strides();
            (y * rand_f64({4, 24, 5, 3}, -1, 1, 26).to(dtype)).sum().backward();
            EXPECT_EQ(is_channels_last(x.grad()), format == kCL) << x.grad().strides();
            outs.push_back(y.detach());
            grads.push_back(x.grad());
            if (affine) {
              grads.push_back(w.grad());
              grads.push_back(b.grad());
            }
            stats.push_back(rm);
            stats.push_back(rv);
          }
          const double tol = dtype == kFloat32 ? 1e-4 : 1e-10;
          const size_t half = grads.size() / 2;
          expect_close(outs[1], outs[0], tol, tol);
          for (size_t i = 0; i < half; ++i) expect_close(grads[half + i], grads[i], tol, tol);
          expect_close(stats[2], stats[0], tol, tol);
          expect_close(stats[3], stats[1], tol, tol);
        }
      }
    }
  }
}

TEST(ChannelsLast, BatchNormGradcheck) {
  for (bool training : {true, false}) {
    SCOPED_TRACE(training);
    expect_gradcheck(
        [training](const V& x) {
          return batch_norm(x[0].contiguous(kCL), Tensor(), Tensor(), x[1], x[2], training, 0.1, 1e-5);
        },
        {rand_f64({3, 4, 2, 3}, -1, 1, 31), rand_f64({4}, 0.5, 1.5, 32), rand_f64({4}, -0.5, 0.5, 33)});
  }
  // batch_norm_relu: inputs kept away from the ReLU's kink, where finite differences break.
  expect_gradcheck(
      [](const V& x) { return batch_norm_relu(x[0].contiguous(kCL), Tensor(), Tensor(), x[1], x[2], true, 0.1, 1e-5); },
      {rand_f64({3, 4, 2, 3}, -1, 1, 34), rand_f64({4}, 0.5, 1.5, 35), rand_f64({4}, 0.3, 0.6, 36)}, kCPU, 1e-7);
}

// ---- a whole network ----

TEST(ChannelsLast, ResNetGivesTheNchwRunsNumbers) {
  // A small ResNet (two stages, a projection shortcut), one training step's output and every
  // parameter's gradient, channels-last (the default) against NCHW, from the same weights.
  std::vector<std::vector<Tensor>> grads;
  std::vector<Tensor> outs;
  for (MemoryFormat format : {MemoryFormat::Contiguous, kCL}) {
    manual_seed(7);
    nn::models::ResNet net(
        {.blocks = {1, 1}, .channels = {16, 32}, .in_channels = 3, .num_classes = 5, .memory_format = format});
    const Tensor x = rand_f64({4, 3, 12, 12}, -1, 1, 41).to(kFloat32);
    const Tensor out = net.forward(x);
    F::cross_entropy(out, from_vector<int64_t>({0, 3, 1, 4}, {4})).backward();
    outs.push_back(out.detach());
    std::vector<Tensor> g;
    for (const Tensor& p : net.parameters()) g.push_back(p.grad());
    grads.push_back(g);
  }
  expect_close(outs[1], outs[0], 1e-4, 1e-4);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) {
    SCOPED_TRACE(i);
    expect_close(grads[1][i], grads[0][i], 1e-3, 1e-3);
  }
}

}  // namespace
}  // namespace ember
