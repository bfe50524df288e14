// The autograd engine: accumulation, retain_graph, detach, no-grad mode, hooks, deep graphs,
// in-place safety and memory release. AutogradDevice runs on every device (gradients accumulate,
// hooks fire and graphs are freed the same way on CUDA); Autograd holds the engine-only tests.
#include <algorithm>
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

// ---------------- autograd::grad and higher-order gradients ----------------

TEST_P(AutogradDevice, GradReturnsGradientsWithoutTouchingDotGrad) {
  Tensor x = on(device(), {1, 2, 3}).requires_grad_();
  Tensor w = on(device(), {4, 5, 6}).requires_grad_();
  Tensor y = (x * x * w).sum();
  std::vector<Tensor> g = autograd::grad({y}, {x, w});
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].to_vector<double>(), (std::vector<double>{8, 20, 36}));  // 2 x w
  EXPECT_EQ(g[1].to_vector<double>(), (std::vector<double>{1, 4, 9}));    // x^2
  EXPECT_FALSE(g[0].requires_grad());  // no create_graph: plain values
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

TEST_P(AutogradDevice, GradWithRespectToAnIntermediateResult) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  Tensor h = x * 3.0;
  Tensor y = (h * h).sum() + h.sum();
  Tensor gh = autograd::grad({y}, {h})[0];
  EXPECT_EQ(gh.to_vector<double>(), (std::vector<double>{7, 13}));  // 2 h + 1
  EXPECT_FALSE(x.grad().defined());
}

TEST_P(AutogradDevice, CreateGraphGivesDifferentiableGradients) {
  Tensor x = on(device(), {0.5, -1.0, 2.0}).requires_grad_();
  Tensor g = autograd::grad({x.pow(3.0).sum()}, {x}, {}, std::nullopt, /*create_graph=*/true)[0];
  ASSERT_TRUE(g.requires_grad());
  test::expect_close(g, on(device(), {0.75, 3.0, 12.0}), 1e-12, 0);       // 3 x^2
  Tensor h = autograd::grad({g.sum()}, {x})[0];
  test::expect_close(h, on(device(), {3.0, -6.0, 12.0}), 1e-12, 0);       // 6 x
  // tanh twice (its backward is the tanh_backward op): d2/dx2 tanh = -2 tanh (1 - tanh^2).
  Tensor t = x.tanh().detach();
  Tensor g1 = autograd::grad({x.tanh().sum()}, {x}, {}, std::nullopt, true)[0];
  Tensor g2 = autograd::grad({g1.sum()}, {x})[0];
  test::expect_close(g2, t * (1.0 - t * t) * -2.0, 1e-12, 1e-14);
}

TEST_P(AutogradDevice, BackwardWithCreateGraphAccumulatesADifferentiableGrad) {
  Tensor x = on(device(), {1.0, 2.0}).requires_grad_();
  (x * x * x).sum().backward(Tensor(), std::nullopt, /*create_graph=*/true);
  ASSERT_TRUE(x.grad().defined());
  ASSERT_TRUE(x.grad().requires_grad());
  Tensor gx = x.grad();
  x.zero_grad();  // the .grad refers to x through its graph (a cycle) until reset
  gx.sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6, 12}));  // 6 x
}

TEST_P(AutogradDevice, GradRetainsTheGraphOnlyWhenAsked) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  Tensor y = (x * x).exp().sum();
  autograd::grad({y}, {x}, {}, /*retain_graph=*/true);
  autograd::grad({y}, {x});  // the retained graph runs again, then is freed
  expect_error([&] { autograd::grad({y}, {x}); }, {"grad", "second time", "retain_graph"});
  Tensor z = (x * x).exp().sum();
  autograd::grad({z}, {x}, {}, std::nullopt, /*create_graph=*/true);  // retain_graph defaults to create_graph
  autograd::grad({z}, {x});
}

TEST_P(AutogradDevice, GradOfSeveralOutputsSumsTheirContributions) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  Tensor a = x * 2.0, b = x * x;
  Tensor g = autograd::grad({a, b}, {x}, {on(device(), {1, 1}), on(device(), {10, 100})}, /*retain_graph=*/true)[0];
  EXPECT_EQ(g.to_vector<double>(), (std::vector<double>{22, 402}));  // 2 + 2 x * gb
  // One output depending on the other: b's node waits for c's gradient.
  Tensor c = b * 3.0;
  Tensor g2 = autograd::grad({b.sum(), c.sum()}, {x})[0];
  EXPECT_EQ(g2.to_vector<double>(), (std::vector<double>{8, 16}));  // (1 + 3) 2 x
}

TEST_P(AutogradDevice, GradErrorsNameTheProblem) {
  const TensorOptions f64 = f64_on(device());
  Tensor x = on(device(), {1, 2}).requires_grad_();
  Tensor unused = on(device(), {3}).requires_grad_();
  Tensor constant = on(device(), {3, 4});
  Tensor y = (x * 2.0).sum();
  expect_error([&] { autograd::grad({y}, {x, unused}, {}, true); }, {"grad", "input 1", "[1]", "allow_unused"});
  std::vector<Tensor> g = autograd::grad({y}, {x, unused}, {}, true, false, /*allow_unused=*/true);
  EXPECT_TRUE(g[0].defined());
  EXPECT_FALSE(g[1].defined());
  expect_error([&] { autograd::grad({y}, {constant}, {}, true); }, {"grad", "input 0", "does not require grad"});
  expect_error([&] { autograd::grad({y, constant}, {x}); }, {"grad", "output 1", "does not require grad"});
  Tensor v = x * 3.0;
  expect_error([&] { autograd::grad({y, v}, {x}, {Tensor(), ones({3}, f64)}, true); },
               {"grad", "gradient shape [3]", "output 1", "[2]"});
  expect_error([&] { autograd::grad({y, v}, {x}, {Tensor(), ones({2}, TensorOptions().device(device()))}, true); },
               {"grad", "gradient dtype float32", "output 1", "float64"});
  expect_error([&] { autograd::grad({v}, {x}); }, {"grad", "scalar outputs", "output 0"});
  expect_error([&] { autograd::grad({y}, {x}, {Tensor(), Tensor()}); }, {"grad", "2 gradients for 1 outputs"});
}

TEST(Autograd, CollectLeavesFindsEveryReachableLeafOnce) {
  Tensor a = ones({2}).requires_grad_(), b = ones({2}).requires_grad_(), c = ones({2}).requires_grad_();
  Tensor unused = ones({2}).requires_grad_();
  Tensor y = (a * b + a).sum();
  std::vector<TensorImpl*> leaves = autograd::collect_leaves({y, c, ones({2})});
  ASSERT_EQ(leaves.size(), 3u);
  auto has = [&](const Tensor& t) { return std::find(leaves.begin(), leaves.end(), t.impl()) != leaves.end(); };
  EXPECT_TRUE(has(a));
  EXPECT_TRUE(has(b));
  EXPECT_TRUE(has(c));
  EXPECT_FALSE(has(unused));
}

TEST_P(AutogradDevice, SecondOrderGraphsAreFreed) {
  Tensor w = randn({8, 8}, f64_on(device())).requires_grad_();
  Tensor x = randn({8, 8}, f64_on(device()));
  auto run = [&] {
    Tensor y = ((x * w).tanh() * w).sigmoid().softmax(1).sum({1}).pow(2.0).sum();
    Tensor g = autograd::grad({y}, {w}, {}, std::nullopt, /*create_graph=*/true)[0];
    autograd::grad({g.pow(2.0).sum()}, {w});
  };
  run();
  Allocator& allocator = backend(device()).allocator();
  const int64_t before = allocator.stats().live_allocations;
  for (int i = 0; i < 200; ++i) run();
  EXPECT_EQ(allocator.stats().live_allocations, before);
}

// grad() leaves .grad alone, so the hooks that watch .grad (DDP's reduction) must not fire either;
// hooks on intermediate tensors see the gradient flowing through them, as in backward().
TEST_P(AutogradDevice, GradFiresTensorHooksButNotLeafHooks) {
  Tensor x = on(device(), {1, 2}).requires_grad_();
  int leaf_calls = 0, node_calls = 0;
  x.register_hook([&](const Tensor&) { ++leaf_calls; });
  Tensor h = x * 2.0;
  h.register_hook([&](const Tensor&) { ++node_calls; });
  autograd::grad({(h * h).sum()}, {x});
  EXPECT_EQ(leaf_calls, 0);
  EXPECT_EQ(node_calls, 1);
  EXPECT_FALSE(x.grad().defined());
}
