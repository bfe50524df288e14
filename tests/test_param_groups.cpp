// optim::decay_param_groups (weights decay, biases and norm parameters do not) and ParamGroup
// overrides (a group that changes only some of the optimizer's defaults, like a PyTorch group dict).
#include <gtest/gtest.h>

#include <set>

#include "core/ember.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "tests/test_util.h"

using namespace ember;

namespace {

// A small CIFAR-like model: conv (no bias) + BN, conv with bias, linear.
std::shared_ptr<nn::Sequential> small_cnn() {
  auto m = std::make_shared<nn::Sequential>();
  m->emplace_back<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions{.padding = 1, .bias = false});
  m->emplace_back<nn::BatchNorm2d>(4);
  m->emplace_back<nn::ReLU>();
  m->emplace_back<nn::Conv2d>(4, 4, 3, nn::Conv2dOptions{.padding = 1});
  m->emplace_back<nn::AdaptiveAvgPool2d>(1);
  m->emplace_back<nn::Flatten>();
  m->emplace_back<nn::Linear>(4, 10);
  m->to(kFloat64);
  return m;
}

std::set<const TensorImpl*> impls(const std::vector<Tensor>& ts) {
  std::set<const TensorImpl*> out;
  for (const Tensor& t : ts) out.insert(t.impl());
  return out;
}

}  // namespace

TEST(DecayParamGroups, SplitsWeightsFromBiasesAndNorms) {
  auto model = small_cnn();
  const nn::NamedTensors params = model->named_parameters();
  std::vector<Tensor> want_decay, want_no_decay;
  for (const auto& [name, p] : params) {
    const bool decays = name == "0.weight" || name == "3.weight" || name == "6.weight";
    (decays ? want_decay : want_no_decay).push_back(p);
  }
  ASSERT_EQ(want_decay.size(), 3u);
  ASSERT_EQ(want_no_decay.size(), 4u);  // BN weight and bias, conv bias, linear bias

  optim::SGD opt(optim::decay_param_groups(*model, 5e-4), optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_EQ(impls(opt.param_groups()[0].params()), impls(want_decay));
  EXPECT_EQ(impls(opt.param_groups()[1].params()), impls(want_no_decay));
  // Each group overrides weight_decay only; the rest comes from the defaults.
  for (size_t g = 0; g < 2; ++g) {
    const optim::OptimizerOptions& o = opt.param_groups()[g].options();
    EXPECT_EQ(*o.hyper_parameter("weight_decay"), g == 0 ? 5e-4 : 0.0);
    EXPECT_EQ(o.get_lr(), 0.1);
    EXPECT_EQ(*o.hyper_parameter("momentum"), 0.9);
    EXPECT_EQ(*o.hyper_parameter("nesterov"), 1.0);
  }
}

// What the split does: with zero gradients, a step shrinks the decayed weights by lr * wd * p and
// leaves the rest alone.
TEST(DecayParamGroups, OnlyTheWeightsDecay) {
  auto model = small_cnn();
  {
    NoGradGuard no_grad;
    for (Tensor p : model->parameters()) p.fill_(2.0);  // BN's weight starts at 1 and bias at 0: make all non-zero
  }
  optim::SGD opt(optim::decay_param_groups(*model, 0.01), optim::SGDOptions(0.5));
  for (Tensor p : model->parameters()) p.set_grad(zeros_like(p));
  opt.step();
  for (const auto& [name, p] : model->named_parameters()) {
    const double want = p.dim() >= 2 ? 2.0 - 0.5 * 0.01 * 2.0 : 2.0;
    for (double v : p.to_vector<double>()) EXPECT_DOUBLE_EQ(v, want) << name;
  }
}

TEST(DecayParamGroups, EmptyGroupLeftOutAndFrozenSkipped) {
  nn::Linear no_bias(3, 2, /*bias=*/false);
  auto groups = optim::decay_param_groups(no_bias, 1e-4);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].overrides().at("weight_decay"), 1e-4);

  nn::Linear frozen_weight(3, 2);
  frozen_weight.weight.set_requires_grad(false);
  groups = optim::decay_param_groups(frozen_weight, 1e-4);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].overrides().at("weight_decay"), 0.0);
  EXPECT_EQ(groups[0].params()[0].impl(), frozen_weight.bias.impl());

  // Adam has a weight_decay too.
  auto model = small_cnn();
  optim::AdamW adamw(optim::decay_param_groups(*model, 0.05), optim::AdamWOptions(1e-3));
  EXPECT_EQ(*adamw.param_groups()[0].options().hyper_parameter("weight_decay"), 0.05);
  EXPECT_EQ(*adamw.param_groups()[1].options().hyper_parameter("weight_decay"), 0.0);
}

TEST(DecayParamGroups, Errors) {
  auto model = small_cnn();
  test::expect_error([&] { optim::decay_param_groups(*model, -1e-4); },
                     {"decay_param_groups: weight_decay must be finite and >= 0, got -0.0001"});
  nn::ReLU relu;
  test::expect_error([&] { optim::decay_param_groups(relu, 1e-4); },
                     {"decay_param_groups: ReLU has no parameters that require grad"});
}

TEST(ParamGroupOverrides, TakeTheDefaultsAndChangeTheNamedKeys) {
  Tensor a = zeros({2}, kFloat64).requires_grad_(), b = zeros({3}, kFloat64).requires_grad_();
  optim::SGD opt({optim::ParamGroup({a}), optim::ParamGroup({b}, {{"lr", 0.01}, {"dampening", 0.5}})},
                 optim::SGDOptions(0.1).momentum(0.9));
  const optim::OptimizerOptions& o = opt.param_groups()[1].options();
  EXPECT_EQ(o.get_lr(), 0.01);
  EXPECT_EQ(*o.hyper_parameter("dampening"), 0.5);
  EXPECT_EQ(*o.hyper_parameter("momentum"), 0.9);
  EXPECT_EQ(opt.param_groups()[0].options().get_lr(), 0.1);
  // The state dict stores the resolved options, so a resumed run needs no overrides.
  EXPECT_EQ(opt.state_dict().metadata.at("param_groups.1.lr"), "0.01");

  test::expect_error([&] { optim::SGD({optim::ParamGroup({a}, {{"betas", 0.9}})}, optim::SGDOptions(0.1)); },
                     {"SGD: parameter group 0 overrides 'betas', which is not a SGD hyper-parameter"});
  test::expect_error([&] { optim::SGD({optim::ParamGroup({a}, {{"lr", -1.0}})}, optim::SGDOptions(0.1)); },
                     {"SGD: invalid learning rate -1"});
}
