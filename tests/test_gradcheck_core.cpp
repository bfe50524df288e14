// Gradient checks that do not fit the op table: conversions through float32 (looser tolerances),
// and the errors core ops raise. The first- and second-order checks of every differentiable core
// op, with broadcast and non-contiguous inputs, are driven by the op table (tests/op_table.cpp,
// tests/test_op_table.cpp).
#include "tests/test_util.h"

using namespace ember;
using test::expect_gradcheck;
using test::rand_f64;
using V = std::vector<Tensor>;

EMBER_DEVICE_SUITE(GradcheckCore);

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
