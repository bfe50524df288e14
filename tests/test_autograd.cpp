// The autograd engine: accumulation, retain_graph, detach, no-grad mode, hooks, deep graphs,
// in-place safety and memory release.
#include <thread>

#include "tests/test_util.h"

using namespace ember;
using test::expect_error;

TEST(Autograd, LeafGradAccumulatesAcrossBackwardCalls) {
  Tensor x = from_vector<double>({1, 2, 3}).requires_grad_();
  (x * x).backward(ones({3}, kFloat64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
  (x * 3.0).backward(ones({3}, kFloat64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 7, 9}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, DiamondSumsBothPaths) {
  Tensor x = from_vector<double>({2.0}).requires_grad_();
  Tensor a = x * 3.0, b = x.exp();
  Tensor y = a * b;  // d/dx (3x e^x) = 3 e^x + 3x e^x
  y.backward(ones({1}, kFloat64));
  EXPECT_NEAR(x.grad().item(), 3 * std::exp(2.0) * 3.0, 1e-12);
}

TEST(Autograd, ScalarBackwardNeedsNoGradient) {
  Tensor x = from_vector<float>({1, 2}).requires_grad_();
  Tensor y = (x * x).select(0, 1);  // 0-d
  y.backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{0, 4}));
}

TEST(Autograd, NonScalarBackwardWithoutGradientIsAnError) {
  Tensor x = ones({2, 3}).requires_grad_();
  Tensor y = x * 2.0;
  expect_error([&] { y.backward(); }, {"backward", "scalar outputs", "[2, 3]"});
  expect_error([&] { y.backward(ones({3, 2})); }, {"backward", "gradient shape [3, 2]", "[2, 3]"});
  expect_error([&] { y.backward(ones({2, 3}, kFloat64)); }, {"backward", "float64", "float32"});
}

TEST(Autograd, BackwardOnTensorWithoutGradIsAnError) {
  Tensor x = ones({2});
  expect_error([&] { (x * 2.0).backward(ones({2})); }, {"backward", "does not require grad"});
}

TEST(Autograd, SecondBackwardThroughFreedGraphIsAnError) {
  Tensor x = from_vector<double>({1, 2}).requires_grad_();
  Tensor y = (x * x).exp();
  y.backward(ones({2}, kFloat64));
  expect_error([&] { y.backward(ones({2}, kFloat64)); }, {"second time", "retain_graph"});
}

TEST(Autograd, RetainGraphAllowsASecondBackward) {
  Tensor x = from_vector<double>({1, 2}).requires_grad_();
  Tensor y = (x * x).exp();
  y.backward(ones({2}, kFloat64), /*retain_graph=*/true);
  Tensor first = x.grad().clone();
  y.backward(ones({2}, kFloat64));
  test::expect_close(x.grad(), first * 2.0, 1e-12, 0);
}

TEST(Autograd, DetachCutsTheGraphButSharesStorage) {
  Tensor x = from_vector<float>({1, 2}).requires_grad_();
  Tensor d = (x * 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  Tensor y = x * d;  // d is a constant here
  y.backward(ones({2}));
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

TEST(Autograd, LeafHookSeesAccumulatedGradient) {
  Tensor x = from_vector<double>({1, 2}).requires_grad_();
  std::vector<double> seen;
  int calls = 0;
  x.register_hook([&](const Tensor& g) {
    ++calls;
    seen = g.to_vector<double>();
  });
  Tensor y = x * 3.0 + x;  // two paths into the same leaf
  y.backward(ones({2}, kFloat64));
  EXPECT_EQ(calls, 1);  // once per backward, with the full gradient (DDP relies on this)
  EXPECT_EQ(seen, (std::vector<double>{4, 4}));
  EXPECT_EQ(x.grad().to_vector<double>(), seen);
}

TEST(Autograd, NonLeafHookSeesTotalIncomingGradient) {
  Tensor x = from_vector<double>({1, 2}).requires_grad_();
  Tensor h = x * 2.0;
  std::vector<double> seen;
  int calls = 0;
  h.register_hook([&](const Tensor& g) {
    ++calls;
    seen = g.to_vector<double>();
  });
  Tensor y = h * 5.0 + h;
  y.backward(ones({2}, kFloat64));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, (std::vector<double>{6, 6}));
  expect_error([&] { ones({2}).register_hook([](const Tensor&) {}); }, {"register_hook", "does not require grad"});
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

TEST(Autograd, InPlaceWriteToSavedTensorIsDetected) {
  Tensor x = from_vector<double>({1, 2}).requires_grad_();
  Tensor w = from_vector<double>({3, 4});  // no grad: in-place is allowed on it
  Tensor y = x * w;                        // saves w for x's gradient
  w.mul_(2.0);
  expect_error([&] { y.backward(ones({2}, kFloat64)); }, {"in backward of mul", "modified by an in-place operation"});
  // Writing through a view of w is caught too: views share the version counter.
  Tensor w2 = from_vector<double>({3, 4});
  Tensor y2 = x * w2;
  w2.slice(0, 0, 1).fill_(0);
  expect_error([&] { y2.backward(ones({2}, kFloat64)); }, {"modified by an in-place operation"});
}

TEST(Autograd, InPlaceOnTensorsThatRequireGradIsRefused) {
  Tensor x = ones({2}).requires_grad_();
  expect_error([&] { x.add_(1.0); }, {"add_", "leaf", "requires grad", "NoGradGuard"});
  Tensor y = x * 2.0;
  expect_error([&] { y.mul_(2.0); }, {"mul_", "not supported"});
  {
    NoGradGuard g;  // what an optimizer does
    x.add_(1.0);
  }
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{2, 2}));
}

TEST(Autograd, ThousandsOfGraphsLeaveNoLiveAllocations) {
  Tensor w = randn({8, 8}, kFloat64).requires_grad_();
  Tensor x = randn({8, 8}, kFloat64);
  auto run = [&] {
    Tensor y = ((x * w).exp() + x).tanh() / (w * w + 1.0);
    y.backward(ones({8, 8}, kFloat64));
  };
  run();  // .grad now exists; from here on every graph should be freed completely
  w.zero_grad();
  run();
  const int64_t before = cpu_allocator().stats().live_allocations;
  for (int i = 0; i < 10000; ++i) {
    w.zero_grad();
    run();
  }
  EXPECT_EQ(cpu_allocator().stats().live_allocations, before);
  // A graph that is built but never run is freed when its output goes away.
  for (int i = 0; i < 1000; ++i) {
    Tensor y = (x * w).exp();
  }
  EXPECT_EQ(cpu_allocator().stats().live_allocations, before);
}

TEST(Autograd, GradientsOfBroadcastInputsAreReducedToTheirShape) {
  Tensor a = rand({3, 4}, kFloat64).requires_grad_();
  Tensor b = rand({4}, kFloat64).requires_grad_();
  Tensor c = rand({3, 1}, kFloat64).requires_grad_();
  Tensor y = a * b + c;
  y.backward(ones({3, 4}, kFloat64));
  EXPECT_EQ(b.grad().shape(), Shape({4}));
  EXPECT_EQ(c.grad().shape(), Shape({3, 1}));
  test::expect_close(b.grad(), a.detach().sum({0}), 1e-12, 1e-12);
  test::expect_close(c.grad(), full({3, 1}, 4.0, kFloat64), 1e-12, 0);
}

TEST(Autograd, RequiresGradOnlyForFloatingPoint) {
  expect_error([] { zeros({2}, kInt64).requires_grad_(); }, {"requires_grad_", "int64"});
}
