// nn::functional: float64 gradient checks of every op (including broadcast / non-contiguous
// inputs and the code paths a kernel has: direct 1x1 convolution, groups, a batch split across
// threads, a batch smaller than the thread count), checks against naive implementations written
// here, and the error message of every bad input. PyTorch's values are checked in test_nn_reference.cpp.
#include <array>
#include <cmath>
#include <tuple>
#include <vector>

#include "nn/nn.h"
#include "tests/test_util.h"

using namespace ember;
namespace F = ember::nn::functional;
using nn::Reduction;
using test::expect_error;
using test::expect_gradcheck;
using test::rand_f64;

EMBER_DEVICE_SUITE(NnFunctional);

namespace {

// Int64 class targets in [0, classes) (seeded).
Tensor targets(const Shape& shape, int64_t classes, uint64_t seed = 7) {
  Generator g(seed);
  return randint(0, classes, shape, TensorOptions(kInt64), &g);
}

// Naive direct convolution in double (the definition, loop by loop).
Tensor naive_conv2d(const Tensor& x_, const Tensor& w_, const Tensor& b_, int64_t stride, int64_t pad, int64_t dil,
                    int64_t groups) {
  const Tensor x = x_.to(kFloat64).contiguous(), w = w_.to(kFloat64).contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t M = w.size(0), Cg = w.size(1), KH = w.size(2), KW = w.size(3), Mg = M / groups;
  const int64_t OH = (H + 2 * pad - dil * (KH - 1) - 1) / stride + 1,
                OW = (W + 2 * pad - dil * (KW - 1) - 1) / stride + 1;
  std::vector<double> out(N * M * OH * OW);
  const double *xp = x.data<double>(), *wp = w.data<double>();
  const std::vector<double> b = b_.defined() ? b_.to(kFloat64).to_vector<double>() : std::vector<double>(M, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double s = b[m];
          const int64_t g = m / Mg;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < KH; ++i)
              for (int64_t j = 0; j < KW; ++j) {
                const int64_t ih = oh * stride - pad + i * dil, iw = ow * stride - pad + j * dil;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += xp[((n * C + g * Cg + c) * H + ih) * W + iw] * wp[((m * Cg + c) * KH + i) * KW + j];
              }
          out[((n * M + m) * OH + oh) * OW + ow] = s;
        }
  return from_vector(out, {N, M, OH, OW});
}

}  // namespace

// ---------------------------------------------------------------- linear

TEST_P(NnFunctional, LinearGradcheck) {
  expect_gradcheck([](const auto& x) { return F::linear(x[0], x[1], x[2]); },
                   {rand_f64({4, 5}), rand_f64({3, 5}, -1, 1, 2), rand_f64({3}, -1, 1, 3)}, device());
}

TEST_P(NnFunctional, LinearGradcheckBatchedNoncontiguousAndNoBias) {
  // A 3-D input folded into rows, a transposed (non-contiguous) input and a transposed weight view.
  expect_gradcheck([](const auto& x) { return F::linear(x[0], x[1], x[2]); },
                   {rand_f64({2, 3, 5}), rand_f64({4, 5}, -1, 1, 2), rand_f64({4}, -1, 1, 3)}, device());
  expect_gradcheck([](const auto& x) { return F::linear(x[0].transpose(0, 1), x[1].t()); },
                   {rand_f64({5, 4}), rand_f64({5, 3}, -1, 1, 2)}, device());
  expect_gradcheck([](const auto& x) { return F::linear(x[0], x[1], x[2]); },
                   {rand_f64({5}), rand_f64({3, 5}, -1, 1, 2), rand_f64({3}, -1, 1, 3)}, device());
}

TEST_P(NnFunctional, LinearMatchesMatmulPlusBias) {
  Tensor x = rand_f64({6, 7}).to(device()), w = rand_f64({3, 7}, -1, 1, 2).to(device()), b = rand_f64({3}).to(device());
  test::expect_close(F::linear(x, w, b), matmul(x, w.t()) + b, 1e-12, 1e-12);
}

TEST_P(NnFunctional, LinearErrors) {
  Tensor x = zeros({4, 5}, device()), w = zeros({3, 6}, device());
  expect_error([&] { F::linear(x, w); }, {"linear: input [4, 5] has 5 features", "weight [3, 6] expects 6"});
  expect_error([&] { F::linear(x, zeros({3, 5, 1}, device())); }, {"linear: weight must be 2-D", "[3, 5, 1]"});
  expect_error([&] { F::linear(x, zeros({3, 5}, device()), zeros({4}, device())); }, {"linear: bias [4] must be [3]"});
  expect_error(
      [&] {
        F::linear(x, zeros({3, 5}, TensorOptions(kFloat64).device(device())));
      },
      {"linear: dtype mismatch", "float32", "float64"});
  // linear_relu checks the same things and names itself.
  expect_error([&] { F::linear_relu(x, w); }, {"linear_relu: input [4, 5] has 5 features", "weight [3, 6] expects 6"});
  expect_error([&] { F::linear_relu(x, zeros({3, 5}, device()), zeros({4}, device())); },
               {"linear_relu: bias [4] must be [3]"});
  expect_error([&] { F::linear_relu(Tensor(), w); }, {"linear_relu: undefined input or weight"});
}

TEST_P(NnFunctional, DropoutTrainAndEval) {
  Tensor x = ones({1000}, device());
  EXPECT_TRUE(F::dropout(x, 0.3, /*training=*/false).is_same(x));
  auto v = F::dropout(x, 0.25, true).to_vector<float>();
  int zeros_seen = 0;
  for (float e : v) {
    if (e == 0.0f)
      ++zeros_seen;
    else
      EXPECT_FLOAT_EQ(e, 1.0f / 0.75f);
  }
  EXPECT_GT(zeros_seen, 180);
  EXPECT_LT(zeros_seen, 320);
}

// ---------------------------------------------------------------- conv2d

TEST_P(NnFunctional, Conv2dGradcheck) {
  expect_gradcheck([](const auto& x) { return F::conv2d(x[0], x[1], x[2]); },
                   {rand_f64({2, 3, 5, 4}), rand_f64({4, 3, 3, 2}, -1, 1, 2), rand_f64({4}, -1, 1, 3)}, device());
}

TEST_P(NnFunctional, Conv2dGradcheckStridePaddingDilation) {
  expect_gradcheck(
      [](const auto& x) {
        return F::conv2d(x[0], x[1], x[2], {2, 1}, {1, 2}, {1, 2});
      },
      {rand_f64({2, 2, 6, 5}), rand_f64({3, 2, 3, 2}, -1, 1, 2), rand_f64({3}, -1, 1, 3)}, device());
}

TEST_P(NnFunctional, Conv2dGradcheckGroups) {
  expect_gradcheck([](const auto& x) { return F::conv2d(x[0], x[1], x[2], 1, 1, 1, 2); },
                   {rand_f64({2, 4, 4, 4}), rand_f64({6, 2, 3, 3}, -1, 1, 2), rand_f64({6}, -1, 1, 3)}, device());
  // Depthwise, no bias.
  expect_gradcheck([](const auto& x) { return F::conv2d(x[0], x[1], Tensor(), 2, 1, 1, 3); },
                   {rand_f64({2, 3, 5, 5}), rand_f64({3, 1, 3, 3}, -1, 1, 2)}, device());
}

TEST_P(NnFunctional, Conv2dGradcheckOneByOneAndNoncontiguous) {
  // 1x1, stride 1, no padding: the kernel's no-im2col path.
  expect_gradcheck([](const auto& x) { return F::conv2d(x[0], x[1], x[2]); },
                   {rand_f64({2, 3, 3, 4}), rand_f64({5, 3, 1, 1}, -1, 1, 2), rand_f64({5}, -1, 1, 3)}, device());
  // A transposed (non-contiguous) input and a weight view.
  expect_gradcheck([](const auto& x) { return F::conv2d(x[0].transpose(2, 3), x[1].transpose(2, 3), x[2]); },
                   {rand_f64({2, 2, 5, 4}), rand_f64({3, 2, 2, 3}, -1, 1, 2), rand_f64({3}, -1, 1, 3)}, device());
}

TEST_P(NnFunctional, Conv2dGradcheckBatchSplitAndSingleImage) {
  // Five images: threads split the batch and their weight-gradient partial sums are combined.
  expect_gradcheck([](const auto& x) { return F::conv2d(x[0], x[1], x[2], 1, 1); },
                   {rand_f64({5, 2, 3, 3}), rand_f64({2, 2, 3, 3}, -1, 1, 2), rand_f64({2}, -1, 1, 3)}, device());
  // One image (fewer than the threads), unbatched [C, H, W].
  expect_gradcheck([](const auto& x) { return F::conv2d(x[0], x[1], x[2], 1, 1); },
                   {rand_f64({2, 4, 3}), rand_f64({3, 2, 3, 3}, -1, 1, 2), rand_f64({3}, -1, 1, 3)}, device());
}

TEST_P(NnFunctional, Conv2dOnlyInputNeedsGrad) {
  // A frozen layer: only the input's gradient (and not the weight's) is asked of the kernel.
  Tensor w = rand_f64({3, 2, 3, 3}, -1, 1, 2).to(device());
  expect_gradcheck([w](const auto& x) { return F::conv2d(x[0], w, Tensor(), 1, 1); }, {rand_f64({2, 2, 4, 4})},
                   device());
}

TEST_P(NnFunctional, Conv2dMatchesNaiveLoopsInFloat32) {
  // Larger than the gradchecks, in float32 (the GEMM path training uses), several images per thread.
  for (auto [groups, stride, pad, dil] :
       std::vector<std::array<int64_t, 4>>{{1, 1, 0, 1}, {1, 2, 1, 1}, {2, 1, 2, 2}}) {
    Tensor x = rand_f64({7, 6, 13, 11}).to(kFloat32), w = rand_f64({8, 6 / groups, 3, 3}, -1, 1, 5).to(kFloat32);
    Tensor b = rand_f64({8}, -1, 1, 6).to(kFloat32);
    Tensor got = F::conv2d(x.to(device()), w.to(device()), b.to(device()), stride, pad, dil, groups);
    test::expect_close(got, naive_conv2d(x, w, b, stride, pad, dil, groups), 1e-5, 1e-5);
  }
}

TEST_P(NnFunctional, Conv2dErrors) {
  const TensorOptions o = TensorOptions().device(device());
  Tensor x = zeros({8, 3, 32, 32}, o);
  expect_error(
      [&] {
        F::conv2d(x, zeros({16, 1, 3, 3}, o));
      },
      {"conv2d: input [8, 3, 32, 32] has 3 channels but weight [16, 1, 3, 3] expects 1 (groups=1)"});
  expect_error(
      [&] {
        F::conv2d(x, zeros({16, 1, 3, 3}, o), Tensor(), 1, 0, 1, 2);
      },
      {"has 3 channels but weight [16, 1, 3, 3] expects 2 (groups=2)"});
  expect_error(
      [&] {
        F::conv2d(zeros({8, 4, 5, 5}, o), zeros({15, 2, 3, 3}, o), Tensor(), 1, 0, 1, 2);
      },
      {"weight [15, 2, 3, 3] has 15 output channels", "not divisible by groups=2"});
  expect_error(
      [&] {
        F::conv2d(zeros({3, 32, 32}, o).flatten(), zeros({16, 3, 3, 3}, o));
      },
      {"conv2d: expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got [3072]"});
  expect_error([&] { F::conv2d(x, zeros({16, 3, 3}, o)); }, {"conv2d: weight must be 4-D", "[16, 3, 3]"});
  // conv2d_relu checks the same things and names itself (on every device, fused or composed).
  expect_error([&] { F::conv2d_relu(x, zeros({16, 1, 3, 3}, o)); },
               {"conv2d_relu: input [8, 3, 32, 32] has 3 channels but weight [16, 1, 3, 3] expects 1 (groups=1)"});
  expect_error([&] { F::conv2d_relu(x, zeros({16, 3, 3, 3}, o), zeros({8}, o)); },
               {"conv2d_relu: bias [8] must be [16]"});
  expect_error([&] { F::conv2d_relu(zeros({1, 3, 2, 2}, o), zeros({4, 3, 3, 3}, o)); },
               {"conv2d_relu: input [1, 3, 2, 2] padded to 2x2 is smaller than the (dilated) kernel 3x3"});
  expect_error(
      [&] {
        F::conv2d(x, zeros({16, 3, 3, 3}, o), zeros({8}, o));
      },
      {"conv2d: bias [8] must be [16]", "weight [16, 3, 3, 3]"});
  expect_error(
      [&] {
        F::conv2d(zeros({1, 3, 2, 2}, o), zeros({4, 3, 3, 3}, o));
      },
      {"conv2d: input [1, 3, 2, 2] padded to 2x2 is smaller than the (dilated) kernel 3x3"});
  expect_error(
      [&] {
        F::conv2d(x, zeros({16, 3, 3, 3}, o), Tensor(), {0, 1});
      },
      {"conv2d: stride must be >= 1, got (0, 1)"});
  expect_error(
      [&] {
        F::conv2d(x, zeros({16, 3, 3, 3}, o), Tensor(), 1, -1);
      },
      {"conv2d: padding must be >= 0, got (-1, -1)"});
  expect_error(
      [&] {
        F::conv2d(x, zeros({16, 3, 3, 3}, TensorOptions(kFloat64).device(device())));
      },
      {"conv2d: weight [16, 3, 3, 3] has dtype float64 but the input has float32"});
  expect_error(
      [&] {
        F::conv2d(x, zeros({16, 3, 3, 3}, o), Tensor(), 1, 0, 1, 0);
      },
      {"conv2d: groups must be positive, got 0"});
}

// ---------------------------------------------------------------- pooling

TEST_P(NnFunctional, MaxPool2dGradcheck) {
  expect_gradcheck([](const auto& x) { return F::max_pool2d(x[0], 2); }, {rand_f64({2, 3, 4, 6})}, device());
  expect_gradcheck([](const auto& x) { return F::max_pool2d(x[0], 3, 2, 1, 1, true); }, {rand_f64({2, 2, 6, 5})},
                   device());
  expect_gradcheck(
      [](const auto& x) {
        return F::max_pool2d(x[0].transpose(2, 3), nn::Size2{2, 3}, 1, 0, 2);
      },
      {rand_f64({1, 2, 7, 6})}, device());
}

TEST_P(NnFunctional, MaxPool2dIndicesAndOverlappingWindows) {
  // Overlapping windows (stride 1) share maxima: their gradients add up at that input.
  Tensor x = from_vector<float>({1, 5, 2, 3, 9, 4, 0, 6, 7}, {1, 1, 3, 3}).to(device()).requires_grad_();
  auto [y, idx] = F::max_pool2d_with_indices(x, 2, 1);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{9, 9, 9, 9}));
  EXPECT_EQ(idx.to_vector<int64_t>(), (std::vector<int64_t>{4, 4, 4, 4}));
  y.sum().backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{0, 0, 0, 0, 4, 0, 0, 0, 0}));
  // A NaN wins its window, as in PyTorch.
  Tensor n = from_vector<float>({1, NAN, 2, 3}, {1, 1, 2, 2}).to(device());
  EXPECT_TRUE(std::isnan(F::max_pool2d(n, 2).item()));
}

TEST_P(NnFunctional, AvgPool2dGradcheck) {
  expect_gradcheck([](const auto& x) { return F::avg_pool2d(x[0], 2); }, {rand_f64({2, 3, 4, 6})}, device());
  expect_gradcheck([](const auto& x) { return F::avg_pool2d(x[0], 3, 2, 1, /*ceil_mode=*/true); },
                   {rand_f64({2, 2, 6, 5})}, device());
  expect_gradcheck([](const auto& x) { return F::avg_pool2d(x[0].transpose(2, 3), 3, 2, 1, false, false); },
                   {rand_f64({1, 2, 7, 6})}, device());
}

TEST_P(NnFunctional, AdaptiveAvgPool2dGradcheck) {
  expect_gradcheck(
      [](const auto& x) {
        return F::adaptive_avg_pool2d(x[0], {3, 2});
      },
      {rand_f64({2, 2, 7, 5})}, device());
  expect_gradcheck([](const auto& x) { return F::adaptive_avg_pool2d(x[0].transpose(2, 3), 1); },
                   {rand_f64({2, 3, 4, 5})}, device());
}

TEST_P(NnFunctional, AdaptiveAvgPool2dGlobalIsTheMean) {
  Tensor x = rand_f64({3, 4, 5, 6}).to(device());
  test::expect_close(F::adaptive_avg_pool2d(x, 1), x.mean({2, 3}, true), 1e-12, 1e-12);
}

TEST_P(NnFunctional, PoolErrors) {
  const TensorOptions o = TensorOptions().device(device());
  expect_error(
      [&] {
        F::max_pool2d(zeros({1, 1, 4, 4}, o), 2, 2, 2);
      },
      {"max_pool2d: padding (2, 2) must be at most half the kernel size (2, 2)"});
  expect_error(
      [&] {
        F::max_pool2d(zeros({1, 1, 1, 4}, o), 2);
      },
      {"max_pool2d: input [1, 1, 1, 4] is too small for kernel (2, 2)", "output would be 0x2"});
  expect_error([&] { F::max_pool2d(zeros({4, 4}, o), 2); }, {"max_pool2d: expected a 3-D [C, H, W] or 4-D", "[4, 4]"});
  expect_error([&] { F::avg_pool2d(zeros({1, 1, 4, 4}, o), 0); }, {"avg_pool2d: kernel_size must be >= 1, got (0, 0)"});
  expect_error(
      [&] {
        F::adaptive_avg_pool2d(zeros({1, 1, 4, 4}, o), {0, 2});
      },
      {"adaptive_avg_pool2d: output_size must be >= 1, got (0, 2)"});
  expect_error(
      [&] {
        F::max_pool2d(zeros({1, 1, 4, 4}, TensorOptions(kInt64).device(device())), 2);
      },
      {"max_pool2d: expected a floating-point input, got int64"});
}

// ---------------------------------------------------------------- normalisation

TEST_P(NnFunctional, BatchNormTrainGradcheck) {
  expect_gradcheck([](const auto& x) { return F::batch_norm(x[0], {}, {}, x[1], x[2], true); },
                   {rand_f64({3, 2, 3, 2}), rand_f64({2}, 0.5, 1.5, 2), rand_f64({2}, -1, 1, 3)}, device());
  // [N, C] input, a transposed (non-contiguous) view, no affine parameters.
  expect_gradcheck([](const auto& x) { return F::batch_norm(x[0].t(), {}, {}, {}, {}, true, 0.1, 1e-3); },
                   {rand_f64({3, 5})}, device());
}

TEST_P(NnFunctional, BatchNormEvalGradcheck) {
  Tensor rm = rand_f64({3}, -0.5, 0.5, 4).to(device()), rv = rand_f64({3}, 0.5, 2.0, 5).to(device());
  expect_gradcheck([rm, rv](const auto& x) { return F::batch_norm(x[0], rm, rv, x[1], x[2], false); },
                   {rand_f64({2, 3, 2, 2}), rand_f64({3}, 0.5, 1.5, 2), rand_f64({3}, -1, 1, 3)}, device());
}

TEST_P(NnFunctional, BatchNormUpdatesRunningStatsOnlyWhenTraining) {
  Tensor x = rand_f64({4, 2, 3, 3}).to(device());
  Tensor rm = zeros({2}, TensorOptions(kFloat64).device(device())),
         rv = ones({2}, TensorOptions(kFloat64).device(device()));
  F::batch_norm(x, rm, rv, Tensor(), Tensor(), /*training=*/true, 0.25);
  test::expect_close(rm, x.mean({0, 2, 3}) * 0.25, 1e-12, 1e-12);
  test::expect_close(rv, x.var({0, 2, 3}, /*unbiased=*/true) * 0.25 + 0.75, 1e-12, 1e-12);
  Tensor rm_before = rm.clone();
  Tensor y = F::batch_norm(x, rm, rv, Tensor(), Tensor(), /*training=*/false);
  test::expect_close(rm, rm_before, 0, 0);
  test::expect_close(y, (x - rm.view({1, 2, 1, 1})) / (rv.view({1, 2, 1, 1}) + 1e-5).sqrt(), 1e-12, 1e-12);
}

// One-pass statistics must not cancel: a channel whose mean is huge beside its spread (float64:
// mean 1e8, spread 1e-2, where E[x^2] - E[x]^2 in double loses every digit of the variance;
// float32: mean 1e4, spread 1e-2) still gets the variance of a float64 two-pass reference.
TEST_P(NnFunctional, BatchNormStatisticsSurviveALargeMeanAndASmallSpread) {
  for (const auto& [dtype, offset, rtol] : {std::tuple{kFloat64, 1e8, 1e-9}, std::tuple{kFloat32, 1e4, 1e-5}}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Tensor x = (rand_f64({8, 3, 5, 7}, -1, 1, 11) * 1e-2 + offset).to(dtype).to(device());
    const Tensor exact = x.to(kFloat64).to(kCPU);  // the input's values, exactly, in float64
    const TensorOptions opts = TensorOptions(dtype).device(device());
    Tensor rm = zeros({3}, opts), rv = zeros({3}, opts);
    const Tensor y = F::batch_norm(x, rm, rv, Tensor(), Tensor(), /*training=*/true, /*momentum=*/1.0, /*eps=*/0.0);
    const Tensor mean = exact.mean({0, 2, 3});
    const Tensor centred = exact - mean.view({1, 3, 1, 1});
    const Tensor var = (centred * centred).mean({0, 2, 3});  // two passes
    test::expect_close(rm.to(kFloat64).to(kCPU), mean, rtol, 0);
    test::expect_close(rv.to(kFloat64).to(kCPU), var * (280.0 / 279.0), rtol, 0);  // stored unbiased
    // y = x * scale + shift, PyTorch's form, rounds at the size of x * scale (1e10 in float64 and
    // 1e6 in float32, where it is useless): checked in float64 only.
    if (dtype == kFloat64) test::expect_close(y.to(kCPU), centred / var.sqrt().view({1, 3, 1, 1}), 0, 1e-4);
  }
}

TEST_P(NnFunctional, LayerNormGradcheck) {
  expect_gradcheck(
      [](const auto& x) {
        return F::layer_norm(x[0], {3, 4}, x[1], x[2]);
      },
      {rand_f64({2, 3, 4}), rand_f64({3, 4}, 0.5, 1.5, 2), rand_f64({3, 4}, -1, 1, 3)}, device());
  expect_gradcheck([](const auto& x) { return F::layer_norm(x[0].t(), {3}, Tensor(), x[1], 1e-3); },
                   {rand_f64({3, 5}), rand_f64({3}, -1, 1, 3)}, device());
  expect_gradcheck([](const auto& x) { return F::layer_norm(x[0], {4}, x[1]); },
                   {rand_f64({5, 4}), rand_f64({4}, 0.5, 1.5, 2)}, device());
}

TEST_P(NnFunctional, NormErrors) {
  const TensorOptions o = TensorOptions().device(device());
  expect_error(
      [&] {
        F::batch_norm(zeros({1, 4}, o), {}, {}, {}, {}, true);
      },
      {"batch_norm: expected more than 1 value per channel when training, got input [1, 4]"});
  expect_error(
      [&] {
        F::batch_norm(zeros({2, 4}, o), {}, {}, zeros({3}, o), {}, true);
      },
      {"batch_norm: weight has shape [3] but the input [2, 4] needs [4]"});
  expect_error([&] { F::batch_norm(zeros({4}, o), {}, {}, {}, {}, true); },
               {"batch_norm: expected an input [N, C, *] with at least 2 dims, got [4]"});
  // batch_norm_relu checks the same things and names itself.
  expect_error([&] { F::batch_norm_relu(zeros({1, 4}, o), {}, {}, {}, {}, true); },
               {"batch_norm_relu: expected more than 1 value per channel when training, got input [1, 4]"});
  expect_error([&] { F::batch_norm_relu(zeros({2, 4}, o), {}, {}, {}, zeros({5}, o), true); },
               {"batch_norm_relu: bias has shape [5] but the input [2, 4] needs [4]"});
  expect_error([&] { F::batch_norm_relu(zeros({2, 4}, o), zeros({4}, o), {}, {}, {}, true); },
               {"batch_norm_relu: running_mean and running_var must be given together"});
  expect_error([&] { F::batch_norm_relu(zeros({2, 4}, o), {}, {}, {}, {}, true, 0.1, -1.0); },
               {"batch_norm_relu: eps must be non-negative, got -1"});
  expect_error(
      [&] {
        F::layer_norm(zeros({2, 3, 4}, o), {3});
      },
      {"layer_norm: input [2, 3, 4] does not end with normalized_shape [3]"});
  expect_error(
      [&] {
        F::layer_norm(zeros({2, 3}, o), {3}, zeros({4}, o));
      },
      {"layer_norm: weight has shape [4] but the input [2, 3] needs [3]"});
}

// ---------------------------------------------------------------- losses

TEST_P(NnFunctional, CrossEntropyGradcheck) {
  Tensor t = targets({5}, 4);
  expect_gradcheck([t](const auto& x) { return F::cross_entropy(x[0], t.to(x[0].device())); },
                   {rand_f64({5, 4}, -3, 3)}, device());
  expect_gradcheck(
      [t](const auto& x) {
        return F::cross_entropy(x[0], t.to(x[0].device()), {.reduction = Reduction::Sum, .label_smoothing = 0.15});
      },
      {rand_f64({5, 4}, -3, 3)}, device());
}

TEST_P(NnFunctional, CrossEntropyGradcheckIgnoreIndexSmoothingAndLayouts) {
  Tensor t = from_vector<int64_t>({1, -100, 3, 0, -100, 2});
  expect_gradcheck([t](const auto& x) { return F::cross_entropy(x[0], t.to(x[0].device()), {.label_smoothing = 0.1}); },
                   {rand_f64({6, 4}, -3, 3)}, device());
  Tensor t3 = from_vector<int64_t>({1, 3, 3, 0, 2, 2});
  expect_gradcheck(
      [t3](const auto& x) {
        return F::cross_entropy(x[0].t(), t3.to(x[0].device()), {.reduction = Reduction::None, .ignore_index = 3});
      },
      {rand_f64({4, 6}, -3, 3)}, device());
  Tensor tk = targets({2, 3}, 4);  // [N, C, d] logits, class dim moved last inside the op
  expect_gradcheck([tk](const auto& x) { return F::cross_entropy(x[0], tk.to(x[0].device())); },
                   {rand_f64({2, 4, 3}, -3, 3)}, device());
}

TEST_P(NnFunctional, CrossEntropyEqualsNllOfLogSoftmax) {
  Tensor x = rand_f64({64, 10}, -5, 5).to(kFloat32).to(device()), t = targets({64}, 10).to(device());
  test::expect_close(F::cross_entropy(x, t), F::nll_loss(log_softmax(x, 1), t), 1e-5, 1e-6);
  // Every target ignored: the mean over no elements is NaN, as in PyTorch.
  EXPECT_TRUE(
      std::isnan(F::cross_entropy(x.narrow(0, 0, 2), full({2}, -100, TensorOptions(kInt64).device(device()))).item()));
}

TEST_P(NnFunctional, NllAndMseGradcheck) {
  Tensor t = from_vector<int64_t>({1, 2, 0, 2, 3});
  expect_gradcheck([t](const auto& x) { return F::nll_loss(x[0], t.to(x[0].device()), {.ignore_index = 2}); },
                   {rand_f64({5, 4})}, device());
  expect_gradcheck(
      [t](const auto& x) { return F::nll_loss(x[0].t(), t.to(x[0].device()), {.reduction = Reduction::None}); },
      {rand_f64({4, 5})}, device());
  expect_gradcheck([](const auto& x) { return F::mse_loss(x[0], x[1].t()); }, {rand_f64({3, 4}), rand_f64({4, 3})},
                   device());
  expect_gradcheck([](const auto& x) { return F::mse_loss(x[0], x[1], Reduction::Sum); },
                   {rand_f64({3, 4}), rand_f64({3, 4}, -1, 1, 5)}, device());
}

TEST_P(NnFunctional, LossErrors) {
  const TensorOptions o = TensorOptions().device(device());
  const TensorOptions i64 = TensorOptions(kInt64).device(device());
  expect_error(
      [&] {
        F::cross_entropy(zeros({4, 3}, o), zeros({4}, o));
      },
      {"cross_entropy: target must hold int64 class indices, got float32 of shape [4]"});
  expect_error(
      [&] {
        F::cross_entropy(zeros({4, 3}, o), zeros({5}, i64));
      },
      {"cross_entropy: input [4, 3] needs target shape [4], got [5]"});
  if (device().is_cpu())  // device kernels report a bad target their own way
    expect_error(
        [&] {
          F::cross_entropy(zeros({4, 3}, o), from_vector<int64_t>({0, 1, 3, 2}));
        },
        {"cross_entropy: target 3 at position 2 is out of bounds for 3 classes"});
  expect_error(
      [&] {
        F::cross_entropy(zeros({4, 3}, o), zeros({4}, i64), {.label_smoothing = 1.5});
      },
      {"cross_entropy: label_smoothing must be in [0, 1], got 1.5"});
  if (device().is_cpu())
    expect_error(
        [&] {
          F::nll_loss(zeros({2, 3}), from_vector<int64_t>({-1, 0}));
        },
        {"nll_loss: target -1 at position 0 is out of bounds for 3 classes"});
  expect_error(
      [&] {
        F::mse_loss(zeros({2, 3}, o), zeros({3, 2}, o));
      },
      {"mse_loss: input [2, 3] and target [3, 2] must have the same shape"});
}
