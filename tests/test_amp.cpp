// Mixed precision: AutocastGuard (which ops run in the 16-bit dtype, which in float32, where the
// gradients land) and optim::GradScaler (skip and back off on an inf, grow back, state dict).
#include <cmath>
#include <limits>

#include "nn/nn.h"
#include "optim/optim.h"
#include "tests/test_util.h"

using namespace ember;
using test::expect_error;

TEST(Autocast, LowerPrecisionAndFloat32Lists) {
  Tensor x = test::rand_f64({4, 3}).to(kFloat32), w = test::rand_f64({5, 3}, -1, 1, 2).to(kFloat32);
  Tensor img = test::rand_f64({2, 3, 6, 6}).to(kFloat32), k = test::rand_f64({4, 3, 3, 3}, -1, 1, 3).to(kFloat32);
  EXPECT_FALSE(autocast::is_enabled());
  {
    AutocastGuard autocast(kBFloat16);
    EXPECT_TRUE(autocast::is_enabled());
    EXPECT_EQ(matmul(x, w.t()).dtype(), kBFloat16);
    EXPECT_EQ(linear(x, w).dtype(), kBFloat16);
    EXPECT_EQ(conv2d(img, k).dtype(), kBFloat16);
    Tensor logits = linear(x, w);
    EXPECT_EQ(softmax(logits, 1).dtype(), kFloat32);
    EXPECT_EQ(log_softmax(logits, 1).dtype(), kFloat32);
    EXPECT_EQ(logits.sum().dtype(), kFloat32);
    EXPECT_EQ(logits.mean({1}).dtype(), kFloat32);
    EXPECT_EQ(cross_entropy(logits, from_vector<int64_t>({0, 1, 2, 3}, {4})).dtype(), kFloat32);
    EXPECT_EQ(mse_loss(logits, zeros({4, 5})).dtype(), kFloat32);
    EXPECT_EQ(layer_norm(logits, {5}).dtype(), kFloat32);
    EXPECT_EQ((logits * 2.0).dtype(), kBFloat16);  // other ops keep their inputs' dtype
    EXPECT_EQ(matmul(x.to(kFloat64), w.t().to(kFloat64)).dtype(), kFloat64);  // float64 is never cast
    {
      AutocastGuard inner(kFloat16);
      EXPECT_EQ(linear(x, w).dtype(), kFloat16);
      AutocastGuard off(kFloat16, /*enabled=*/false);
      EXPECT_EQ(linear(x, w).dtype(), kFloat32);
    }
    EXPECT_EQ(linear(x, w).dtype(), kBFloat16);  // the outer region is back
  }
  EXPECT_FALSE(autocast::is_enabled());
  EXPECT_EQ(linear(x, w).dtype(), kFloat32);
  expect_error([] { AutocastGuard g(kFloat32); }, {"AutocastGuard", "float32"});
}

// Parameters stay float32 and get float32 gradients through the casts; the values match a float32
// run to bfloat16 accuracy.
TEST(Autocast, GradientsFlowBackInTheParametersDtype) {
  manual_seed(0);
  nn::Linear fc1(6, 8), fc2(8, 3);
  Tensor x = test::rand_f64({5, 6}).to(kFloat32);
  Tensor target = from_vector<int64_t>({0, 2, 1, 1, 0}, {5});
  auto loss_of = [&] { return cross_entropy(fc2.forward(fc1.forward(x).relu()), target); };

  Tensor reference = loss_of();
  reference.backward();
  std::vector<Tensor> ref_grads;
  for (const Tensor& p : fc1.parameters()) ref_grads.push_back(p.grad().clone());
  for (const Tensor& p : fc2.parameters()) ref_grads.push_back(p.grad().clone());
  fc1.zero_grad();
  fc2.zero_grad();

  Tensor loss;
  {
    AutocastGuard autocast(kBFloat16);
    loss = loss_of();
  }
  EXPECT_EQ(loss.dtype(), kFloat32);
  EXPECT_NEAR(loss.item(), reference.item(), 2e-2 * std::abs(reference.item()));
  loss.backward();
  size_t i = 0;
  for (nn::Linear* m : {&fc1, &fc2})
    for (const Tensor& p : m->parameters()) {
      EXPECT_EQ(p.dtype(), kFloat32);
      ASSERT_TRUE(p.grad().defined());
      EXPECT_EQ(p.grad().dtype(), kFloat32);
      const double scale = ref_grads[i].abs().max().item();
      EXPECT_LE((p.grad() - ref_grads[i]).abs().max().item(), 3e-2 * scale) << "parameter " << i;
      ++i;
    }
}

// A backward called inside the guard still runs in the forward's dtypes (autocast is off there).
TEST(Autocast, BackwardInsideTheRegionMatchesBackwardOutside) {
  Tensor w = test::rand_f64({3, 4}).to(kFloat32).requires_grad_();
  Tensor x = test::rand_f64({2, 4}, -1, 1, 5).to(kFloat32);
  Tensor g_outside, g_inside;
  {
    AutocastGuard autocast(kFloat16);
    Tensor y = linear(x, w).softmax(1).sum();
    y.backward();
    g_inside = w.grad().clone();
  }
  w.zero_grad();
  Tensor y;
  {
    AutocastGuard autocast(kFloat16);
    y = linear(x, w).softmax(1).sum();
  }
  y.backward();
  EXPECT_EQ(w.grad().dtype(), kFloat32);
  EXPECT_EQ(g_inside.to_vector<float>(), w.grad().to_vector<float>());
}

namespace {

void expect_values(const Tensor& t, const std::vector<float>& want) {
  const std::vector<float> v = t.to_vector<float>();
  ASSERT_EQ(v.size(), want.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], want[i], 1e-6) << "element " << i;
}

// One parameter w (float32) with loss sum(w * x); the gradient is x, scaled.
struct Toy {
  Tensor w = ones({3}).requires_grad_();
  optim::SGD opt{std::vector<Tensor>{w}, optim::SGDOptions(0.1)};
};

}  // namespace

TEST(GradScaler, SkipsTheStepOnAnInfBacksOffAndGrowsBack) {
  Toy t;
  optim::GradScaler scaler(optim::GradScalerOptions().init_scale(1024).growth_interval(3));
  auto run = [&](const Tensor& x) {
    t.opt.zero_grad();
    scaler.scale((t.w * x).sum()).backward();
    const bool stepped = scaler.step(t.opt);
    scaler.update();
    return stepped;
  };
  const Tensor clean = from_vector<float>({1, 2, 3}, {3});

  // A clean step: the gradient is unscaled before the update (w -= 0.1 * x).
  EXPECT_TRUE(run(clean));
  expect_values(t.w, {0.9f, 0.8f, 0.7f});
  EXPECT_EQ(scaler.get_scale(), 1024);

  // An inf in the gradient: no update, the scale halves, the growth count restarts.
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(run(from_vector<float>({1, inf, 3}, {3})));
  expect_values(t.w, {0.9f, 0.8f, 0.7f});
  EXPECT_EQ(scaler.get_scale(), 512);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  // A NaN does the same.
  EXPECT_FALSE(run(from_vector<float>({std::nanf(""), 0, 0}, {3})));
  EXPECT_EQ(scaler.get_scale(), 256);

  // growth_interval (3) clean steps grow it back by growth_factor.
  EXPECT_TRUE(run(clean));
  EXPECT_TRUE(run(clean));
  EXPECT_EQ(scaler.get_scale(), 256);
  EXPECT_EQ(scaler.growth_tracker(), 2);
  EXPECT_TRUE(run(clean));
  EXPECT_EQ(scaler.get_scale(), 512);
  EXPECT_EQ(scaler.growth_tracker(), 0);
}

// unscale_ before clipping: the clip sees the true gradient; step() does not unscale twice.
TEST(GradScaler, UnscaleBeforeClipping) {
  Toy t;
  optim::GradScaler scaler(optim::GradScalerOptions().init_scale(4096));
  t.opt.zero_grad();
  scaler.scale((t.w * from_vector<float>({3, 0, 4}, {3})).sum()).backward();
  EXPECT_EQ(t.w.grad().to_vector<float>(), (std::vector<float>{3 * 4096.f, 0, 4 * 4096.f}));
  scaler.unscale_(t.opt);
  EXPECT_EQ(t.w.grad().to_vector<float>(), (std::vector<float>{3, 0, 4}));
  expect_error([&] { scaler.unscale_(t.opt); }, {"unscale_", "already"});
  EXPECT_TRUE(scaler.step(t.opt));
  expect_values(t.w, {0.7f, 1.0f, 0.6f});
  scaler.update();
}

// float16 gradients that underflow without scaling survive with it.
TEST(GradScaler, ScalingKeepsSmallFloat16GradientsAlive) {
  Tensor w = full({4}, 1e-4).requires_grad_();
  Tensor x = full({4}, 1e-4);
  Tensor plain_grad, scaled_grad;
  {
    AutocastGuard autocast(kFloat16);
    (linear(x.unsqueeze(0), w.unsqueeze(0)).sum() * 1e-4).backward();  // d/dw = x * 1e-4 = 1e-8 < 2^-24
  }
  plain_grad = w.grad().clone();
  w.zero_grad();
  optim::GradScaler scaler;
  optim::SGD opt(std::vector<Tensor>{w}, optim::SGDOptions(1.0));
  {
    AutocastGuard autocast(kFloat16);
    scaler.scale(linear(x.unsqueeze(0), w.unsqueeze(0)).sum() * 1e-4).backward();
  }
  scaler.unscale_(opt);
  scaled_grad = w.grad().clone();
  EXPECT_EQ(plain_grad.abs().max().item(), 0.0);  // underflowed in the float16 backward
  EXPECT_NEAR(scaled_grad.select(0, 0).item(), 1e-8, 1e-10);
}

// PyTorch's three refusals: float16 gradients, update() with nothing recorded, a step with no
// gradient to check. Each would otherwise train on silently with a wrong scale or lost updates.
// A disabled region accepts any dtype, as PyTorch's does; an enabled one only the 16-bit types.
TEST(Autocast, ADisabledGuardTakesAnyDtype) {
  Tensor x = ones({2, 3}), w = ones({4, 3});
  {
    AutocastGuard off(kFloat32, /*enabled=*/false);
    EXPECT_EQ(linear(x, w).dtype(), kFloat32);
  }
  expect_error([] { AutocastGuard on(kFloat32); }, {"AutocastGuard", "bfloat16 or float16", "float32"});
}

TEST(GradScaler, RefusesWhatPyTorchRefuses) {
  Toy t;
  optim::GradScaler scaler;
  expect_error([&] { scaler.update(); }, {"GradScaler::update", "no inf checks"});
  ASSERT_FALSE(t.w.grad().defined());  // no backward yet
  expect_error([&] { scaler.step(t.opt); }, {"GradScaler::step", "no parameter of this optimizer has a gradient"});
  Tensor w16 = ones({3}, TensorOptions(kFloat16)).requires_grad_();
  optim::SGD opt16(std::vector<Tensor>{w16}, optim::SGDOptions(0.1));
  optim::GradScaler scaler16;
  scaler16.scale(w16.to(kFloat32).sum()).backward();
  ASSERT_EQ(w16.grad().dtype(), kFloat16);
  expect_error([&] { scaler16.unscale_(opt16); }, {"GradScaler::unscale_", "float16 gradient", "float32"});
}

TEST(GradScaler, StateDictRoundTripsThroughACheckpoint) {
  Toy t;
  optim::GradScaler a(optim::GradScalerOptions().init_scale(8).growth_interval(5));
  for (int i = 0; i < 2; ++i) {
    t.opt.zero_grad();
    a.scale(t.w.sum()).backward();
    a.step(t.opt);
    a.update();
  }
  optim::StateDict all;
  all.merge("scaler", a.state_dict());
  optim::GradScaler b;
  b.load_state_dict(all.sub("scaler"));
  EXPECT_EQ(b.get_scale(), 8);
  EXPECT_EQ(b.growth_tracker(), 2);
  optim::StateDict bad = a.state_dict();
  bad.metadata["growth_tracker"] = "7";
  expect_error([&] { b.load_state_dict(bad); }, {"GradScaler", "growth_tracker 7"});
}
