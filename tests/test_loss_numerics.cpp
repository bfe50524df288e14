// Issue 12 item 10: float32 cross entropy with logits around +-1e4. The backward now takes the
// softmax from the stable log-softmax (x - max) - log(sum(exp(x - max))) (core/cross_entropy_row.h,
// shared by the CPU and CUDA kernels) instead of exp(x - lse), whose lse carries float32's rounding
// at 1e4 into every gradient.
#include <cmath>

#include "nn/functional.h"
#include "tests/test_util.h"

using namespace ember;

EMBER_DEVICE_SUITE(LossNumerics);

TEST_P(LossNumerics, Float32CrossEntropyGradientIsExactForLogitsNear1e4) {
  // Logits 1e4 + k/4 (exact in float32) over 4 rows, so each softmax is far from one-hot. The float64
  // gradient of the same logits is the truth; float32 must be within a few ulps of it. Before, the
  // backward took exp(x - lse) with lse rounded to float32's ulp of 1e-3 near 1e4: 2e-4 relative off.
  std::vector<double> logits;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 5; ++c) logits.push_back((r % 2 ? -1e4 : 1e4) + 0.25 * ((3 * r + 2 * c) % 7));
  Tensor target = from_vector<int64_t>({0, 1, 2, 3}).to(device());
  auto grad_of = [&](DType dtype) {
    Tensor x = from_vector(logits, {4, 5}, dtype).to(device()).requires_grad_();
    nn::functional::cross_entropy(x, target).backward();
    return x.grad().to(kFloat64).to_vector<double>();
  };
  const auto want = grad_of(kFloat64), got = grad_of(kFloat32);
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 2e-7 * std::max(1.0, std::abs(want[i]) * 4)) << "logit " << i;
}

TEST_P(LossNumerics, Float32CrossEntropyLossIsExactForLogitsNear1e4) {
  // The forward goes through the same log-softmax: (max - x[t]) + log_sum rather than lse - x[t],
  // so the loss does not inherit lse's rounding of 1e-3 either.
  std::vector<double> logits;
  for (int c = 0; c < 6; ++c) logits.push_back(1e4 + 0.25 * c);
  Tensor target = from_vector<int64_t>({2}).to(device());
  auto loss_of = [&](DType dtype) {
    return nn::functional::cross_entropy(from_vector(logits, {1, 6}, dtype).to(device()), target).item();
  };
  EXPECT_NEAR(loss_of(kFloat32), loss_of(kFloat64), 1e-6);
}

TEST_P(LossNumerics, Float32CrossEntropyAt1000ClassesMatchesFloat64) {
  // 1000 classes: the per-class loops are the vectorised ones (simd::exp, core/cpu/simd_math.h), with
  // a remainder (1000 is not a multiple of the SIMD width times the unroll), label smoothing, an
  // ignored row, one logit of -1e4 (its exp underflows to 0) and a spread of 60 (exps down to
  // e^-60). Tolerance: a log-softmax of magnitude up to ~60 carries float32 rounding of
  // 60 * 2^-24 ~ 4e-6 into exp's argument, so gradients agree to 1e-5 relative, not closer.
  const int64_t R = 5, C = 1000;
  std::vector<double> logits(R * C);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) logits[r * C + c] = 30.0 * std::sin(0.37 * c + r) + 0.01 * c;
  logits[3 * C + 17] = -1e4;
  const Tensor target = from_vector<int64_t>({3, 999, -100, 0, 512}).to(device());
  auto run = [&](DType dtype) {
    Tensor x = from_vector(logits, {R, C}, dtype).to(device()).requires_grad_();
    Tensor loss = nn::functional::cross_entropy(x, target, {.label_smoothing = 0.1});
    loss.backward();
    std::vector<double> out = x.grad().to(kFloat64).to_vector<double>();
    out.push_back(loss.to(kFloat64).item());
    return out;
  };
  const auto want = run(kFloat64), got = run(kFloat32);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_NEAR(got.back(), want.back(), 1e-5 * std::abs(want.back())) << "loss";
  for (size_t i = 0; i + 1 < want.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5 * std::abs(want[i]) + 1e-9) << "logit " << i;
  }
}

// Not a device suite: the check is the CPU kernel's (the CUDA kernel never indexes by the target).
TEST(LossNumericsCpu, CrossEntropyBackwardRejectsAnOutOfRangeTargetWithTheCallersRowStats) {
  // With row_stats given, the op skips the forward (and its target check); the backward kernel must
  // not index the row at the target.
  const Tensor x = zeros({2, 3}), g = ones({2}), stats = zeros({2, 2});
  const Tensor bad = from_vector<int64_t>({1, 7});
  try {
    cross_entropy_backward(g, x, bad, -100, 0.0, stats);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("cross_entropy_backward: target 7 at position 1 is out of bounds for 3 classes"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(cross_entropy_backward(g, x, from_vector<int64_t>({1, -100}), -100, 0.0, stats));
}

TEST_P(LossNumerics, ANaNLogitMakesItsRowNaNAndLeavesTheOthersExact) {
  // 1000 classes, so the row loops run their vector bodies: the row max skips the NaN (it reaches
  // the loss through the sum of exps instead), and a NaN-free row beside it is untouched.
  const int64_t C = 1000;
  std::vector<double> logits(2 * C, 0.0);
  logits[500] = std::numeric_limits<double>::quiet_NaN();
  for (DType dtype : {kFloat32, kFloat64}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor x = from_vector(logits, {2, C}, dtype).to(device()).requires_grad_();
    Tensor loss = nn::functional::cross_entropy(x, from_vector<int64_t>({3, 7}).to(device()),
                                                {.reduction = Reduction::None});
    loss.backward(ones({2}, TensorOptions(dtype).device(device())));
    const auto l = loss.to(kFloat64).to_vector<double>();
    EXPECT_TRUE(std::isnan(l[0]));
    EXPECT_NEAR(l[1], std::log(1000.0), 1e-5);  // uniform logits: -log(1/C)
    const auto g = x.grad().to(kFloat64).to_vector<double>();
    EXPECT_TRUE(std::isnan(g[0]));
    for (int64_t c = 0; c < C; ++c) ASSERT_NEAR(g[C + c], (c == 7 ? -1.0 : 0.0) + 1e-3, 1e-7) << "class " << c;
  }
}
