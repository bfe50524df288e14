// Finite-difference gradient checks (float64) for the elementwise ops, views and joins, each on
// every device, with broadcast and non-contiguous inputs. (Reductions, softmax, matmul and
// indexing have theirs in test_reduce/test_softmax/test_matmul/test_index.)
#include "tests/test_util.h"

using namespace ember;
using test::expect_gradcheck;
using test::rand_f64;
using V = std::vector<Tensor>;

EMBER_DEVICE_SUITE(GradcheckCore);

TEST_P(GradcheckCore, BinaryArithmeticWithBroadcastAndTransposedInputs) {
  auto check = [&](Tensor (*op)(const Tensor&, const Tensor&), double lo = -1, double hi = 1) {
    // same shape; a broadcast [4] row; a transposed (non-contiguous) left operand
    expect_gradcheck([op](const V& x) { return op(x[0], x[1]); }, {rand_f64({3, 4}, lo, hi, 1), rand_f64({3, 4}, lo, hi, 2)},
                     device());
    expect_gradcheck([op](const V& x) { return op(x[0], x[1]); }, {rand_f64({3, 4}, lo, hi, 3), rand_f64({4}, lo, hi, 4)},
                     device());
    expect_gradcheck([op](const V& x) { return op(x[0].t(), x[1]); },
                     {rand_f64({4, 3}, lo, hi, 5), rand_f64({3, 1}, lo, hi, 6)}, device());
  };
  check(add);
  check(sub);
  check(mul);
  check(div, 0.5, 2.0);  // keep the divisor away from 0
  check(pow, 0.5, 2.0);  // positive base
}

TEST_P(GradcheckCore, MaximumMinimumAwayFromTies) {
  Tensor a = rand_f64({3, 4}, -1, 1, 7), b = rand_f64({3, 4}, -1, 1, 8) + 0.01;
  expect_gradcheck([](const V& x) { return maximum(x[0], x[1]); }, {a, b}, device());
  expect_gradcheck([](const V& x) { return minimum(x[0], x[1].t().t()); }, {a, b}, device());
}

TEST_P(GradcheckCore, ScalarForms) {
  Tensor a = rand_f64({2, 5}, 0.5, 2.0, 9);
  expect_gradcheck([](const V& x) { return add(x[0], 3.0); }, {a}, device());
  expect_gradcheck([](const V& x) { return sub(x[0], 3.0); }, {a}, device());
  expect_gradcheck([](const V& x) { return rsub(x[0], 3.0); }, {a}, device());
  expect_gradcheck([](const V& x) { return mul(x[0], -2.5); }, {a}, device());
  expect_gradcheck([](const V& x) { return div(x[0], 4.0); }, {a}, device());
  expect_gradcheck([](const V& x) { return rdiv(x[0], 2.0); }, {a}, device());
  expect_gradcheck([](const V& x) { return pow(x[0], 2.5); }, {a}, device());
  expect_gradcheck([](const V& x) { return pow(x[0], 0.0); }, {a}, device());
}

TEST_P(GradcheckCore, UnaryMathOnContiguousAndStridedInputs) {
  using Fn = Tensor (*)(const Tensor&);
  struct Case {
    const char* name;
    Fn fn;
    double lo, hi;
  };
  // Ranges avoid kinks (abs/relu at 0) and domain edges (log/sqrt at 0).
  const Case cases[] = {{"neg", neg, -1, 1},         {"exp", exp, -1, 1},   {"log", log, 0.2, 2},
                        {"sqrt", sqrt, 0.2, 2},      {"abs", abs, 0.1, 1},  {"tanh", tanh, -2, 2},
                        {"sigmoid", sigmoid, -3, 3}, {"relu", relu, 0.1, 1}, {"gelu", gelu, -2, 2}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Fn fn = c.fn;
    expect_gradcheck([fn](const V& x) { return fn(x[0]); }, {rand_f64({3, 4}, c.lo, c.hi, 10)}, device());
    expect_gradcheck([fn](const V& x) { return fn(x[0].t()); }, {rand_f64({4, 3}, c.lo, c.hi, 11)}, device());
  }
  // abs and relu on negative values too
  expect_gradcheck([](const V& x) { return abs(x[0]) + relu(x[0]); }, {rand_f64({6}, -1, -0.1, 12)}, device());
}

TEST_P(GradcheckCore, ClampWhereAndMaskedFill) {
  Tensor a = from_vector<double>({-2.0, -0.7, -0.2, 0.3, 0.8, 1.9});
  expect_gradcheck([](const V& x) { return clamp(x[0], -1.0, 1.0); }, {a}, device());
  Tensor cond = from_vector<uint8_t>({1, 0, 1, 0}, {4}).to(device());
  expect_gradcheck([cond](const V& x) { return where(cond, x[0], x[1]); }, {rand_f64({3, 4}), rand_f64({4}, -1, 1, 5)},
                   device());
  Tensor mask = from_vector<uint8_t>({0, 1, 1}, {3, 1}).to(device());
  expect_gradcheck([mask](const V& x) { return masked_fill(x[0].t(), mask, 5.0); }, {rand_f64({2, 3})}, device());
}

TEST_P(GradcheckCore, ViewsReshapeTransposePermuteSliceSelectExpand) {
  Tensor a = rand_f64({2, 3, 4});
  expect_gradcheck([](const V& x) { return x[0].reshape({4, 6}) * 2.0; }, {a}, device());
  expect_gradcheck([](const V& x) { return x[0].transpose(0, 2).reshape({-1}); }, {a}, device());  // copy path
  expect_gradcheck([](const V& x) { return x[0].permute({2, 0, 1}) * 1.5; }, {a}, device());
  expect_gradcheck([](const V& x) { return x[0].slice(2, 1, 4, 2); }, {a}, device());
  expect_gradcheck([](const V& x) { return x[0].narrow(1, 1, 2).select(0, 1); }, {a}, device());
  expect_gradcheck([](const V& x) { return x[0].unsqueeze(1).expand({4, 5, 3}); }, {rand_f64({4, 3})}, device());
  expect_gradcheck([](const V& x) { return x[0].unsqueeze(0).squeeze(0).flatten(); }, {a}, device());
  expect_gradcheck([](const V& x) { return x[0].view({3, 8}).t(); }, {a}, device());
}

TEST_P(GradcheckCore, CatAndStack) {
  expect_gradcheck([](const V& x) { return cat({x[0], x[1].t(), x[2]}, 1); },
                   {rand_f64({3, 2}), rand_f64({4, 3}, -1, 1, 2), rand_f64({3, 1}, -1, 1, 3)}, device());
  expect_gradcheck([](const V& x) { return stack({x[0], x[1].t()}, -1); },
                   {rand_f64({2, 3}), rand_f64({3, 2}, -1, 1, 4)}, device());
}

TEST_P(GradcheckCore, ConversionsAreDifferentiable) {
  expect_gradcheck([](const V& x) { return x[0].t().contiguous().clone() * 2.0; }, {rand_f64({3, 2})}, device());
  // float64 -> float32 -> float64 keeps the gradient flowing (float32 rounding only in the value).
  expect_gradcheck([](const V& x) { return x[0].to(kFloat32).to(kFloat64); }, {rand_f64({4})}, device(), 1e-3, 1e-5,
                   1e-4);
}

EMBER_DEVICE_SUITE(CoreErrors);

TEST_P(CoreErrors, ShapeDtypeDeviceAndIndexProblemsAreNamed) {
  using test::expect_error;
  const TensorOptions on = TensorOptions().device(device());
  expect_error([&] { matmul(zeros({64, 784}, on), zeros({512, 10}, on)); }, {"matmul", "[64, 784]", "[512, 10]"});
  expect_error([&] { cat({zeros({2, 3}, on), zeros({2, 4}, on)}, 0); }, {"cat", "[2, 4]", "[2, 3]"});
  expect_error([&] { stack({zeros({2}, on), zeros({3}, on)}); }, {"stack", "[3]", "[2]"});
  expect_error([&] { sum(zeros({2, 3}, on), {2}); }, {"sum", "dim 2"});
  // Index values are checked on the host for CPU tensors (CUDA checks them inside its kernels).
  expect_error([] { index_select(zeros({3}), 0, from_vector<int64_t>({5})); }, {"index_select", "5", "size 3"});
  expect_error([&] { clamp(zeros({2}, on), 1.0, 0.0); }, {"clamp", "min 1", "max 0"});
  expect_error([] { ones({2}).to(Device(DeviceType::CUDA, 3)); }, {"cuda:3"});
}
