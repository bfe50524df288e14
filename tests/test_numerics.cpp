// Issue 12 items 10 and 11: numerics that now match PyTorch (NaN propagation, true and floor
// division, scalar and tensor type promotion, pow's gradient at 0^0) and the everyday ops that were
// missing (std, sin, cos). The cross-entropy item is in test_loss_numerics.cpp. The values asserted here are what
// PyTorch 1.13 gives; the differentiable ones are also PyTorch reference cases
// (scripts/make_reference.py -> tests/data/reference_core.json).
#include <cmath>
#include <limits>

#include "tests/test_util.h"

using namespace ember;
using test::expect_error;
using test::expect_gradcheck;
using test::rand_f64;
using V = std::vector<Tensor>;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

EMBER_DEVICE_SUITE(Numerics);

// ---------------- NaN propagation ----------------

TEST_P(Numerics, ReluPropagatesNaNAndPassesItsGradient) {
  Tensor x = from_vector<double>({kNaN, -1, 2}).to(device()).requires_grad_();
  Tensor y = relu(x);
  auto yv = y.to_vector<double>();
  EXPECT_TRUE(std::isnan(yv[0])) << "relu(NaN) was 0 before";
  EXPECT_EQ(yv[1], 0);
  EXPECT_EQ(yv[2], 2);
  y.sum().backward();
  // PyTorch 1.13: torch.relu(tensor([nan, -1., 2.])).sum().backward() gives grad [1, 0, 1].
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 0, 1}));
}

TEST_P(Numerics, MaximumMinimumPropagateNaNWithPyTorchsGradients) {
  auto run = [&](Tensor (*op)(const Tensor&, const Tensor&), std::vector<double> want_value, std::vector<double> ga,
                 std::vector<double> gb) {
    Tensor a = from_vector<double>({kNaN, -1, 2}).to(device()).requires_grad_();
    Tensor b = from_vector<double>({0, kNaN, 1}).to(device()).requires_grad_();
    Tensor out = op(a, b);
    auto v = out.to_vector<double>();
    EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1])) << "NaN was dropped: " << out;
    EXPECT_EQ(v[2], want_value[2]);
    out.sum().backward();
    EXPECT_EQ(a.grad().to_vector<double>(), ga);
    EXPECT_EQ(b.grad().to_vector<double>(), gb);
  };
  // PyTorch 1.13 gives the full gradient to both operands where either is NaN.
  run(maximum, {kNaN, kNaN, 2}, {1, 1, 1}, {1, 1, 0});
  run(minimum, {kNaN, kNaN, 1}, {1, 1, 0}, {1, 1, 1});
}

TEST_P(Numerics, MaximumTiesStillSplitTheGradient) {
  Tensor a = from_vector<double>({1, 2}).to(device()).requires_grad_();
  Tensor b = from_vector<double>({1, 3}).to(device()).requires_grad_();
  maximum(a, b).sum().backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{0.5, 0}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{0.5, 1}));
}

// ---------------- division ----------------

TEST_P(Numerics, IntegerDivisionIsTrueDivisionToFloat32) {
  Tensor i = from_vector<int64_t>({-7, 7, -7, 7}).to(device());
  Tensor j = from_vector<int64_t>({2, 2, -2, -2}).to(device());
  Tensor q = i / j;  // truncated to [-3, 3, 3, -3] in int64 before
  EXPECT_EQ(q.dtype(), kFloat32);
  EXPECT_EQ(q.to_vector<float>(), (std::vector<float>{-3.5, 3.5, 3.5, -3.5}));
  EXPECT_EQ((i / 2.0).to_vector<float>(), (std::vector<float>{-3.5, 3.5, -3.5, 3.5}));
  EXPECT_EQ((14.0 / j).to_vector<float>(), (std::vector<float>{7, 7, -7, -7}));
  expect_error([&] { Tensor(i).div_(j); }, {"div_", "float32", "int64", "can't be cast"});
  expect_error([&] { Tensor(i).div_(2.0); }, {"div_", "can't be cast"});
}

TEST_P(Numerics, FloorDivideRoundsTowardMinusInfinity) {
  Tensor i = from_vector<int64_t>({-7, 7, -7, 7, 6}).to(device());
  Tensor j = from_vector<int64_t>({2, 2, -2, -2, 3}).to(device());
  Tensor q = floor_divide(i, j);
  EXPECT_EQ(q.dtype(), kInt64);
  EXPECT_EQ(q.to_vector<int64_t>(), (std::vector<int64_t>{-4, 3, 3, -4, 2}));  // PyTorch 1.13
  Tensor f = floor_divide(from_vector<double>({-7, 7, -0.5, 0.5, 5, -5}).to(device()),
                          from_vector<double>({2, -2, 2, -2, 0, 0}).to(device()));
  auto fv = f.to_vector<double>();
  EXPECT_EQ(std::vector<double>(fv.begin(), fv.begin() + 4), (std::vector<double>{-4, -4, -1, -1}));
  EXPECT_EQ(fv[4], std::numeric_limits<double>::infinity());
  EXPECT_EQ(fv[5], -std::numeric_limits<double>::infinity());
  expect_error([&] { floor_divide(i, zeros({5}, TensorOptions(kInt64).device(device()))); },
               {"floor_divide", "integer division by zero"});
}

// ---------------- type promotion ----------------

TEST_P(Numerics, ScalarPromotionFollowsPyTorch) {
  Tensor i = from_vector<int64_t>({1, 2}).to(device());
  Tensor s = i + 2.5;  // stayed int64 (giving [3, 4]) before
  EXPECT_EQ(s.dtype(), kFloat32);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{3.5, 4.5}));
  EXPECT_EQ((i * 0.5).to_vector<float>(), (std::vector<float>{0.5, 1}));
  EXPECT_EQ((1.5 - i).to_vector<float>(), (std::vector<float>{0.5, -0.5}));
  // An integral double counts as an integer scalar: the tensor keeps its dtype.
  EXPECT_EQ((i + 2.0).dtype(), kInt64);
  EXPECT_EQ((i * 3.0).to_vector<int64_t>(), (std::vector<int64_t>{3, 6}));
  // Comparisons with a fractional scalar compare the values, not a truncated scalar.
  EXPECT_EQ(eq(i, 1.5).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 0}));
  EXPECT_EQ(gt(i, 1.5).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1}));
  expect_error([&] { Tensor(i).add_(2.5); }, {"add_", "float32", "int64", "can't be cast"});
}

TEST_P(Numerics, BinaryOpsPromoteAcrossDtypes) {
  auto t = [&](DType d) { return ones({2}, TensorOptions(d).device(device())); };
  EXPECT_EQ((t(kUInt8) + t(kInt64)).dtype(), kInt64);
  EXPECT_EQ((t(kInt64) + t(kUInt8)).dtype(), kInt64);
  EXPECT_EQ((t(kInt64) * t(kFloat32)).dtype(), kFloat32);
  EXPECT_EQ((t(kUInt8) - t(kFloat64)).dtype(), kFloat64);
  EXPECT_EQ((t(kFloat32) + t(kFloat64)).dtype(), kFloat64);
  EXPECT_EQ(maximum(t(kFloat64), t(kFloat32)).dtype(), kFloat64);
  EXPECT_EQ(pow(t(kFloat32), t(kInt64)).dtype(), kFloat32);
  EXPECT_EQ(eq(t(kInt64), t(kFloat32)).dtype(), kUInt8);
  // A 0-d tensor promotes a tensor with dims only across categories (PyTorch's result_type).
  auto z = [&](DType d) { return full({}, 2, TensorOptions(d).device(device())); };
  EXPECT_EQ((t(kFloat32) * z(kFloat64)).dtype(), kFloat32);
  EXPECT_EQ((t(kUInt8) + z(kInt64)).dtype(), kUInt8);
  EXPECT_EQ((t(kInt64) + z(kFloat64)).dtype(), kFloat64);
  EXPECT_EQ((z(kFloat32) + z(kFloat64)).dtype(), kFloat64);
  // uint8 arithmetic stays uint8 and wraps, like PyTorch: 200 + 100 = 44.
  Tensor u = full({1}, 200, TensorOptions(kUInt8).device(device()));
  EXPECT_EQ((u + full({1}, 100, TensorOptions(kUInt8).device(device()))).to_vector<uint8_t>()[0], 44);
}

TEST_P(Numerics, PromotedGradientsComeBackInEachInputsDtype) {
  Tensor a = full({3}, 2, TensorOptions(kFloat32).device(device())).requires_grad_();
  Tensor b = full({3}, 5, TensorOptions(kFloat64).device(device())).requires_grad_();
  Tensor out = a * b;
  EXPECT_EQ(out.dtype(), kFloat64);
  out.sum().backward();
  EXPECT_EQ(a.grad().dtype(), kFloat32);
  EXPECT_EQ(b.grad().dtype(), kFloat64);
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{5, 5, 5}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{2, 2, 2}));
}

TEST_P(Numerics, FloatMathOnIntegersComputesInFloat32) {
  Tensor i = from_vector<int64_t>({0, 1, 4}).to(device());
  for (Tensor r : {exp(i), log(i), sqrt(i), sin(i), cos(i), tanh(i), sigmoid(i), gelu(i)})
    EXPECT_EQ(r.dtype(), kFloat32);
  EXPECT_EQ(sqrt(i).to_vector<float>(), (std::vector<float>{0, 1, 2}));
  EXPECT_FLOAT_EQ(exp(i).to_vector<float>()[1], std::exp(1.0f));
  EXPECT_EQ(relu(i).dtype(), kInt64);  // not float math: stays integer, as in PyTorch
}

TEST_P(Numerics, IntegerMatmulIsAClearError) {
  Tensor a = ones({2, 3}, TensorOptions(kInt64).device(device()));
  expect_error([&] { matmul(a, ones({3, 2}, TensorOptions(kInt64).device(device()))); },
               {"matmul", "[2, 3] x [3, 2]", "int64", "integer matmul is not supported"});
}

// ---------------- pow at 0^0 ----------------

TEST_P(Numerics, PowGradientAtZeroToTheZeroIsZero) {
  Tensor a = from_vector<double>({0, 0, 2}).to(device()).requires_grad_();
  Tensor b = from_vector<double>({0, 1, 0}).to(device()).requires_grad_();
  pow(a, b).sum().backward();
  // PyTorch 1.13: d/da = [0, 1, 0] (NaN at 0^0 before); d/db = [0, 0, log 2].
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{0, 1, 0}));
  auto gb = b.grad().to_vector<double>();
  EXPECT_EQ(gb[0], 0);
  EXPECT_EQ(gb[1], 0);
  EXPECT_NEAR(gb[2], std::log(2.0), 1e-15);
}

// ---------------- new ops: sin, cos, std ----------------

TEST_P(Numerics, SinCosValuesAndGradients) {
  Tensor x = from_vector<double>({0, 0.5, -2}).to(device());
  auto s = sin(x).to_vector<double>(), c = cos(x).to_vector<double>();
  for (int i = 0; i < 3; ++i) {
    const double v = std::vector<double>{0, 0.5, -2}[i];
    EXPECT_DOUBLE_EQ(s[i], std::sin(v));
    EXPECT_DOUBLE_EQ(c[i], std::cos(v));
  }
  expect_gradcheck([](const V& v) { return sin(v[0]); }, {rand_f64({3, 4}, -3, 3, 21)}, device());
  expect_gradcheck([](const V& v) { return cos(v[0].t()); }, {rand_f64({4, 3}, -3, 3, 22)}, device());
}

TEST_P(Numerics, StdMatchesSqrtOfVarAndHasGradients) {
  Tensor x = from_vector<double>({1, 2, 3, 4, 6, 8}, {2, 3}).to(device());
  EXPECT_DOUBLE_EQ(ember::std(x).item(), std::sqrt(var(x).item()));
  EXPECT_EQ(ember::std(x, {1}).shape(), Shape({2}));
  EXPECT_EQ(ember::std(x, {1}, false, true).shape(), Shape({2, 1}));
  EXPECT_DOUBLE_EQ(ember::std(x, {1}, /*unbiased=*/false).to_vector<double>()[0], std::sqrt(2.0 / 3.0));
  expect_gradcheck([](const V& v) { return ember::std(v[0]); }, {rand_f64({3, 4}, -1, 1, 23)}, device());
  expect_gradcheck([](const V& v) { return ember::std(v[0], {1}, false, true); }, {rand_f64({3, 4}, -1, 1, 24)}, device());
  expect_gradcheck([](const V& v) { return ember::std(v[0].t(), {0}); }, {rand_f64({3, 4}, -1, 1, 25)}, device());
  // A constant input has std 0; PyTorch's gradient there is 0 (sqrt's 1 / 0 would make it NaN).
  Tensor c = full({3}, 2.0, TensorOptions(kFloat64).device(device())).requires_grad_();
  ember::std(c).backward();
  EXPECT_EQ(c.grad().to_vector<double>(), (std::vector<double>{0, 0, 0}));
  expect_error([&] { ember::std(ones({2}, TensorOptions(kInt64).device(device()))); }, {"std", "int64"});
}

TEST_P(Numerics, GradcheckThroughPromotionAndNewForms) {
  expect_gradcheck([](const V& v) { return maximum(v[0], v[1]); },
                   {rand_f64({3, 4}, -1, 1, 26), rand_f64({4}, -1, 1, 27) + 0.01}, device());
  expect_gradcheck([](const V& v) { return pow(v[0], v[1]); }, {rand_f64({3}, 0.5, 2, 28), rand_f64({3}, -1, 1, 29)},
                   device());
}
