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
