#include <gtest/gtest.h>

#include "core/ember.h"
#include "tests/test_util.h"

using namespace ember;

EMBER_DEVICE_SUITE(SmokeDevice);

TEST_P(SmokeDevice, AddAndBackward) {
  Tensor a = from_vector<float>({1, 2, 3}).to(device()).requires_grad_();
  Tensor b = from_vector<float>({4, 5, 6}).to(device()).requires_grad_();
  Tensor c = a * b + a;
  EXPECT_EQ(c.device(), device());
  c.backward(ones({3}, TensorOptions().device(device())));
  EXPECT_EQ(a.grad().device(), device());
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{5, 12, 21}));
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{5, 6, 7}));
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{1, 2, 3}));
}

TEST_P(SmokeDevice, MulGradcheckBroadcast) {
  test::expect_gradcheck([](const std::vector<Tensor>& x) { return x[0] * x[1].transpose(0, 1); },
                         {test::rand_f64({3, 4}), test::rand_f64({4, 1})}, device());
}
