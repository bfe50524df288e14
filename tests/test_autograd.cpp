// The autograd engine: accumulation, retain_graph, detach, no-grad mode, hooks, deep graphs,
// in-place safety and memory release. AutogradDevice runs on every device (gradients accumulate,
// hooks fire and graphs are freed the same way on CUDA); Autograd holds the engine-only tests.
#include <thread>

#include "tests/test_util.h"

using namespace ember;
using test::expect_error;

EMBER_DEVICE_SUITE(AutogradDevice);

namespace {
// `values` as a tensor on `d` (a leaf: the copy to the device is not recorded).
Tensor on(Device d, const std::vector<double>& values) { return from_vector<double>(values).to(d); }
TensorOptions f64_on(Device d) { return TensorOptions(kFloat64).device(d); }
}  // namespace

TEST_P(AutogradDevice, LeafGradAccumulatesAcrossBackwardCalls) {
  Tensor x = on(device(), {1, 2, 3}).requires_grad_();
  (x * x).backward(ones({3}, f64_on(device())));
  EXPECT_EQ(x.grad().device(), device());
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
  (x * 3.0).backward(ones({3}, f64_on(device())));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 7, 9}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST_P(AutogradDevice, DiamondSumsBothPaths) {
  Tensor x = on(device(), {2.0}).requires_grad_();
  Tensor a = x * 3.0, b = x.exp();
  Tensor y = a * b;  // d/dx (3x e^x) = 3 e^x + 3x e^x
  y.backward(ones({1}, f64_on(device())));
  EXPECT_NEAR(x.grad().item(), 3 * std::exp(2.0) * 3.0, 1e-12);
}

TEST_P(AutogradDevice, ScalarBackwardNeedsNoGradient) {
  Tensor x = from_vector<float>({1, 2}).to(device()).requires_grad_();
  Tensor y = (x * x).select(0, 1);  // 0-d
  y.backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{0, 4}));
}

TEST_P(AutogradDevice, NonScalarBackwardWithoutGradientIsAnError) {
  const TensorOptions f32 = TensorOptions().device(device());
  Tensor x = ones({2, 3}, f32).requires_grad_();
  Tensor y = x * 2.0;
  expect_error([&] { y.backward(); }, {"backward", "scalar outputs", "[2, 3]"});
  expect_error([&] { y.backward(ones({3, 2}, f32)); }, {"backward", "gradient shape [3, 2]", "[2, 3]"});
  expect_error([&] { y.backward(ones({2, 3}, f64_on(device()))); }, {"backward", "float64", "float32"});
}

TEST_P(AutogradDevice, BackwardOnTensorWithoutGradIsAnError) {
  Tensor x = ones({2}, TensorOptions().device(device()));
  expect_error([&] { (x * 2.0).backward(ones({2}, TensorOptions().device(device()))); },
               {"backward", "does not require grad"});
}

TEST_P(AutogradDevice, SecondBackwardThroughFreedGraphIsAnError) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  Tensor y = (x * x).exp();
  y.backward(ones({2}, f64_on(device())));
  expect_error([&] { y.backward(ones({2}, f64_on(device()))); }, {"second time", "retain_graph"});
}

TEST_P(AutogradDevice, RetainGraphAllowsASecondBackward) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  Tensor y = (x * x).exp();
  y.backward(ones({2}, f64_on(device())), /*retain_graph=*/true);
  Tensor first = x.grad().clone();
  y.backward(ones({2}, f64_on(device())));
  test::expect_close(x.grad(), first * 2.0, 1e-12, 0);
}

TEST_P(AutogradDevice, DetachCutsTheGraphButSharesStorage) {
  Tensor x = from_vector<float>({1, 2}).to(device()).requires_grad_();
  Tensor d = (x * 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  Tensor y = x * d;  // d is a constant here
  y.backward(ones({2}, TensorOptions().device(device())));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 4}));
  Tensor x2 = x.detach();
  EXPECT_EQ(x2.data_ptr(), x.data_ptr());
}

TEST(Autograd, NoGradGuardRecordsNothingAndIsThreadLocal) {
  Tensor x = ones({2}).requires_grad_();
  {
    NoGradGuard guard;
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    bool other_thread_records = false;
    std::thread t([&] { other_thread_records = (x * 2.0).requires_grad(); });
    t.join();
    EXPECT_TRUE(other_thread_records);
  }
  EXPECT_TRUE((x * 2.0).requires_grad());
}

TEST_P(AutogradDevice, LeafHookSeesAccumulatedGradient) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  std::vector<double> seen;
  int calls = 0;
  x.register_hook([&](const Tensor& g) {
    ++calls;
    seen = g.to_vector<double>();
  });
  Tensor y = x * 3.0 + x;  // two paths into the same leaf
  y.backward(ones({2}, f64_on(device())));
  EXPECT_EQ(calls, 1);  // once per backward, with the full gradient (DDP relies on this)
  EXPECT_EQ(seen, (std::vector<double>{4, 4}));
  EXPECT_EQ(x.grad().to_vector<double>(), seen);
}

TEST_P(AutogradDevice, NonLeafHookSeesTotalIncomingGradient) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  Tensor h = x * 2.0;
  std::vector<double> seen;
  int calls = 0;
  h.register_hook([&](const Tensor& g) {
    ++calls;
    seen = g.to_vector<double>();
  });
  Tensor y = h * 5.0 + h;
  y.backward(ones({2}, f64_on(device())));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, (std::vector<double>{6, 6}));
  expect_error([&] { ones({2}, TensorOptions().device(device())).register_hook([](const Tensor&) {}); },
               {"register_hook", "does not require grad"});
}

TEST(Autograd, HundredThousandOpChainDoesNotOverflowTheStack) {
  Tensor x = from_vector<double>({1.0}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = y + 1e-6;
  y.backward(ones({1}, kFloat64));
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
  // And a retained 100k graph is destroyed without recursion either.
  Tensor z = x;
  for (int i = 0; i < 100000; ++i) z = z * 1.0;
  z.backward(ones({1}, kFloat64), /*retain_graph=*/true);
  z = Tensor();
  EXPECT_DOUBLE_EQ(x.grad().item(), 2.0);
}

TEST_P(AutogradDevice, InPlaceWriteToSavedTensorIsDetected) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  Tensor w = on(device(), {3, 4});  // no grad: in-place is allowed on it
  Tensor y = x * w;                 // saves w for x's gradient
  w.mul_(2.0);
  expect_error([&] { y.backward(ones({2}, f64_on(device()))); },
               {"in backward of mul", "modified by an in-place operation"});
  // Writing through a view of w is caught too: views share the version counter.
  Tensor w2 = on(device(), {3, 4});
  Tensor y2 = x * w2;
  w2.slice(0, 0, 1).fill_(0);
  expect_error([&] { y2.backward(ones({2}, f64_on(device()))); }, {"modified by an in-place operation"});
}

TEST_P(AutogradDevice, InPlaceOnTensorsThatRequireGradIsRefused) {
  Tensor x = ones({2}, TensorOptions().device(device())).requires_grad_();
  expect_error([&] { x.add_(1.0); }, {"add_", "leaf", "requires grad", "NoGradGuard"});
  Tensor y = x * 2.0;
  expect_error([&] { y.mul_(2.0); }, {"mul_", "not supported"});
  {
    NoGradGuard g;  // what an optimizer does
    x.add_(1.0);
  }
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{2, 2}));
}

TEST_P(AutogradDevice, ThousandsOfGraphsLeaveNoLiveAllocations) {
  Tensor w = randn({8, 8}, f64_on(device())).requires_grad_();
  Tensor x = randn({8, 8}, f64_on(device()));
  auto run = [&] {
    Tensor y = ((x * w).exp() + x).tanh() / (w * w + 1.0);
    y.backward(ones({8, 8}, f64_on(device())));
  };
  run();  // .grad now exists; from here on every graph should be freed completely
  w.zero_grad();
  run();
  Allocator& allocator = backend(device()).allocator();
  const int64_t before = allocator.stats().live_allocations;
  for (int i = 0; i < 10000; ++i) {
    w.zero_grad();
    run();
  }
  EXPECT_EQ(allocator.stats().live_allocations, before);
  // A graph that is built but never run is freed when its output goes away.
  for (int i = 0; i < 1000; ++i) {
    Tensor y = (x * w).exp();
  }
  EXPECT_EQ(allocator.stats().live_allocations, before);
}

TEST_P(AutogradDevice, GradientsOfBroadcastInputsAreReducedToTheirShape) {
  Tensor a = rand({3, 4}, f64_on(device())).requires_grad_();
  Tensor b = rand({4}, f64_on(device())).requires_grad_();
  Tensor c = rand({3, 1}, f64_on(device())).requires_grad_();
  Tensor y = a * b + c;
  y.backward(ones({3, 4}, f64_on(device())));
  EXPECT_EQ(b.grad().shape(), Shape({4}));
  EXPECT_EQ(c.grad().shape(), Shape({3, 1}));
  EXPECT_EQ(b.grad().device(), device());
  test::expect_close(b.grad(), a.detach().sum({0}), 1e-12, 1e-12);
  test::expect_close(c.grad(), full({3, 1}, 4.0, kFloat64), 1e-12, 0);
}

TEST(Autograd, RequiresGradOnlyForFloatingPoint) {
  expect_error([] { zeros({2}, kInt64).requires_grad_(); }, {"requires_grad_", "int64"});
}
