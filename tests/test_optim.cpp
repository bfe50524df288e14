// Optimizers, LR schedulers and gradient clipping against PyTorch's answers
// (tests/data/reference_optim.json, written by scripts/make_reference_optim.py), plus resuming from a
// state dict, parameter groups, and the error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/ember.h"
#include "nn/checkpoint.h"
#include "optim/optim.h"
#include "tests/data_dir.h"
#include "tests/test_util.h"

using namespace ember;
using json = nlohmann::json;

namespace {

const json& reference() {
  static const json ref = [] {
    std::ifstream f(ember::test::data_dir() + "/reference_optim.json");
    EXPECT_TRUE(f.good())
        << "missing tests/data/reference_optim.json: run /usr/bin/python3 scripts/make_reference_optim.py";
    return json::parse(f);
  }();
  return ref;
}

Shape shape_of(const json& j) { return Shape(j.get<std::vector<int64_t>>()); }

Tensor tensor_of(const json& values, const Shape& shape, DType dtype = kFloat64) {
  return from_vector<double>(values.get<std::vector<double>>(), shape).to(dtype);
}

// The same values in a non-contiguous layout: every other element of a buffer twice as long in the
// last dim, on t's device.
Tensor noncontiguous_copy(const Tensor& t) {
  Shape big = t.shape();
  big[big.size() - 1] *= 2;
  Tensor buf = zeros(big, TensorOptions(t.dtype()).device(t.device()));
  Tensor view = buf.slice(-1, 0, big.back(), 2);
  view.copy_(t);
  return view;
}

enum class Layout { Contiguous, StridedParams, StridedGrads };

// Where parameters and gradients live: contiguous (the fused CPU loop) or strided (the tensor-op path).
struct Variant {
  Layout layout;
  DType dtype;
  const char* name;
};
const Variant kVariants[] = {{Layout::Contiguous, kFloat64, "contiguous float64"},
                             {Layout::StridedParams, kFloat64, "strided params float64"},
                             {Layout::StridedGrads, kFloat64, "strided grads float64"},
                             {Layout::Contiguous, kFloat32, "contiguous float32"},
                             {Layout::StridedParams, kFloat32, "strided params float32"}};

std::vector<Tensor> initial_params(Layout layout, DType dtype, Device device = kCPU) {
  const json& ref = reference();
  std::vector<Tensor> ps;
  for (size_t k = 0; k < ref["shapes"].size(); ++k) {
    Tensor p = tensor_of(ref["params"][k], shape_of(ref["shapes"][k]), dtype).to(device);
    if (layout == Layout::StridedParams) p = noncontiguous_copy(p);
    ps.push_back(p.requires_grad_());
  }
  return ps;
}

// Sets the gradients of step s on each parameter's device (a null entry leaves that parameter
// without a gradient).
void set_step_grads(const std::vector<Tensor>& ps, size_t s, Layout layout = Layout::Contiguous) {
  const json& ref = reference();
  for (size_t k = 0; k < ps.size(); ++k) {
    const json& g = ref["grads"][s][k];
    if (g.is_null()) {
      ps[k].zero_grad();
      continue;
    }
    Tensor t = tensor_of(g, ps[k].shape(), ps[k].dtype()).to(ps[k].device());
    ps[k].set_grad(layout == Layout::StridedGrads ? noncontiguous_copy(t) : t);
  }
}

// Options from the reference's JSON: names are ember's hyper-parameter names (lr, momentum, beta1, ...).
void apply(optim::OptimizerOptions& o, const json& opts) {
  for (const auto& [k, v] : opts.items())
    ASSERT_TRUE(o.set_hyper_parameter(k, v.is_boolean() ? double(v.get<bool>()) : v.get<double>())) << k;
}

std::unique_ptr<optim::OptimizerOptions> options_for(const std::string& type) {
  if (type == "SGD") return std::make_unique<optim::SGDOptions>(0.0);
  if (type == "Adam") return std::make_unique<optim::AdamOptions>();
  if (type == "AdamW") return std::make_unique<optim::AdamWOptions>();
  ADD_FAILURE() << "unknown optimizer " << type;
  return nullptr;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const json& cfg, const std::vector<Tensor>& ps) {
  auto defaults = options_for(cfg["type"]);
  apply(*defaults, cfg["options"]);
  std::vector<optim::ParamGroup> groups;
  for (const json& g : cfg["groups"]) {
    std::vector<Tensor> gp;
    for (int64_t i : g["params"].get<std::vector<int64_t>>()) gp.push_back(ps[i]);
    if (g["options"].empty()) {
      groups.emplace_back(gp);
    } else {
      auto o = defaults->clone();
      apply(*o, g["options"]);
      groups.emplace_back(gp, *o);
    }
  }
  const std::string type = cfg["type"];
  if (type == "SGD") return std::make_unique<optim::SGD>(groups, static_cast<optim::SGDOptions&>(*defaults));
  if (type == "Adam") return std::make_unique<optim::Adam>(groups, static_cast<optim::AdamOptions&>(*defaults));
  return std::make_unique<optim::AdamW>(groups, static_cast<optim::AdamWOptions&>(*defaults));
}

std::vector<double> values(const Tensor& t) { return t.detach().to(kFloat64).contiguous().to_vector<double>(); }

// A deep copy, so a state dict taken mid-run is a snapshot (state_dict() tensors alias the live state).
optim::StateDict snapshot(const optim::StateDict& sd) {
  optim::StateDict out = sd;
  for (auto& [k, t] : out.tensors) t = t.clone();
  return out;
}

std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("ember_test_optim_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

}  // namespace

// Tests that step, clip or move optimizer state run on every device (OptimDevice, ClipGradNorm);
// those about options, metadata and errors only (Optim, LRScheduler) on the CPU.
EMBER_DEVICE_SUITE(OptimDevice);

// ---------------- optimizers vs PyTorch ----------------

TEST_P(OptimDevice, MatchesPyTorchEveryStep) {
  const json& ref = reference();
  for (const json& cfg : ref["optimizers"]) {
    for (const Variant& v : kVariants) {
      SCOPED_TRACE(cfg["name"].get<std::string>() + " / " + v.name);
      std::vector<Tensor> ps = initial_params(v.layout, v.dtype, device());
      auto opt = make_optimizer(cfg, ps);
      // float64 follows PyTorch to rounding; float32 is compared with the float64 answer.
      const double tol = v.dtype == kFloat64 ? 1e-12 : 2e-5;
      for (size_t s = 0; s < cfg["after_step"].size(); ++s) {
        opt->zero_grad();
        set_step_grads(ps, s, v.layout);
        opt->step();
        for (size_t k = 0; k < ps.size(); ++k) {
          SCOPED_TRACE("step " + std::to_string(s + 1) + ", parameter " + std::to_string(k));
          EXPECT_TRUE(ps[k].is_leaf() && ps[k].requires_grad());
          EXPECT_EQ(ps[k].dtype(), v.dtype);
          EXPECT_EQ(ps[k].device(), device());
          test::expect_close(ps[k], tensor_of(cfg["after_step"][s][k], ps[k].shape()), tol, tol);
        }
      }
    }
  }
}

TEST_P(OptimDevice, AddParamGroupLater) {
  // sgd_groups again, but the second group is added after construction.
  const json* cfg = nullptr;
  for (const json& c : reference()["optimizers"])
    if (c["name"] == "sgd_groups") cfg = &c;
  ASSERT_NE(cfg, nullptr);
  std::vector<Tensor> ps = initial_params(Layout::Contiguous, kFloat64, device());
  optim::SGD opt({ps[0]}, optim::SGDOptions(0.1).momentum(0.9));
  opt.add_param_group({ps[1]}, optim::SGDOptions(0.01).momentum(0.5));
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_EQ(opt.param_groups()[1].options().get_lr(), 0.01);
  for (size_t s = 0; s < 5; ++s) {
    opt.zero_grad();
    set_step_grads(ps, s);
    opt.step();
  }
  for (size_t k = 0; k < 2; ++k)
    test::expect_close(ps[k], tensor_of((*cfg)["after_step"][4][k], ps[k].shape()), 1e-12, 1e-12);
}

TEST(Optim, OptionsFluentSettersAndDefaults) {
  optim::SGDOptions sgd = optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(1e-4);
  EXPECT_EQ(sgd.lr(), 0.1);
  EXPECT_EQ(sgd.momentum(), 0.9);
  EXPECT_TRUE(sgd.nesterov());
  EXPECT_EQ(sgd.dampening(), 0.0);
  optim::AdamOptions adam;
  EXPECT_EQ(adam.lr(), 1e-3);
  EXPECT_EQ(std::get<0>(adam.betas()), 0.9);
  EXPECT_EQ(std::get<1>(adam.betas()), 0.999);
  EXPECT_EQ(adam.eps(), 1e-8);
  EXPECT_EQ(adam.weight_decay(), 0.0);
  // AdamW: PyTorch's default weight decay, and chains keep the AdamWOptions type.
  optim::AdamWOptions adamw = optim::AdamWOptions(3e-4).betas({0.9, 0.95}).amsgrad(true);
  EXPECT_EQ(adamw.weight_decay(), 1e-2);
  EXPECT_EQ(adamw.lr(), 3e-4);
  EXPECT_TRUE(adamw.amsgrad());
  EXPECT_STREQ(adamw.optimizer_name(), "AdamW");
}

TEST_P(OptimDevice, ZeroGradAndSkippedParameters) {
  const TensorOptions f64 = TensorOptions(kFloat64).device(device());
  Tensor a = ones({3}, f64).requires_grad_();
  Tensor b = ones({2}, f64).requires_grad_();
  optim::Adam opt({a, b}, optim::AdamOptions(0.1));
  a.set_grad(full({3}, 0.5, f64));
  opt.step();
  // b had no gradient: unchanged, and no state was created for it.
  EXPECT_EQ(values(b), (std::vector<double>{1, 1}));
  EXPECT_NE(values(a)[0], 1.0);
  auto sd = opt.state_dict();
  EXPECT_TRUE(sd.tensors.count("state.0.exp_avg"));
  EXPECT_FALSE(sd.tensors.count("state.1.exp_avg"));
  EXPECT_EQ(sd.tensors.at("state.0.step").item<int64_t>(), 1);

  opt.zero_grad(/*set_to_none=*/false);
  ASSERT_TRUE(a.grad().defined());
  EXPECT_EQ(values(a.grad()), (std::vector<double>{0, 0, 0}));
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

TEST_P(OptimDevice, StepIsSeenByAutogradVersionCheck) {
  // A forward that saved the parameter, then a step, then backward: the fused loop wrote the
  // parameter directly, and must still bump its version so autograd refuses the stale value.
  const TensorOptions f64 = TensorOptions(kFloat64).device(device());
  for (bool adam : {false, true}) {
    Tensor w = ones({4}, f64).requires_grad_();
    Tensor x = full({4}, 2.0, f64).requires_grad_();
    std::unique_ptr<optim::Optimizer> opt;
    if (adam) opt = std::make_unique<optim::Adam>(std::vector<Tensor>{w});
    else opt = std::make_unique<optim::SGD>(std::vector<Tensor>{w}, 0.1);
    Tensor y = w * x;
    w.set_grad(ones({4}, f64));
    opt->step();
    test::expect_error([&] { y.backward(ones({4}, f64)); }, {"modified by an in-place operation"});
  }
}

// ---------------- state dicts ----------------

TEST_P(OptimDevice, StateDictRoundTripContinuesIdentically) {
  const json& ref = reference();
  for (const json& cfg : ref["optimizers"]) {
    for (bool via_file : {false, true}) {
      SCOPED_TRACE(cfg["name"].get<std::string>() + (via_file ? " via safetensors" : " in memory"));
      // Run A straight through; run B for 2 steps, move its state into a fresh optimizer C over
      // copies of B's parameters, and continue C: it must end bit-for-bit where A does.
      std::vector<Tensor> pa = initial_params(Layout::Contiguous, kFloat64, device());
      std::vector<Tensor> pb = initial_params(Layout::Contiguous, kFloat64, device());
      auto a = make_optimizer(cfg, pa);
      auto b = make_optimizer(cfg, pb);
      for (size_t s = 0; s < 2; ++s) {
        for (auto& [opt, ps] : {std::pair{a.get(), &pa}, std::pair{b.get(), &pb}}) {
          opt->zero_grad();
          set_step_grads(*ps, s);
          opt->step();
        }
      }
      optim::StateDict saved;
      if (via_file) {
        const std::string path = temp_path("optim_state.safetensors");
        const optim::StateDict sd = b->state_dict();
        nn::save_safetensors(path, sd.tensors, sd.metadata);
        nn::SafetensorsFile f = nn::load_safetensors(path);
        saved.tensors = f.tensors;
        saved.metadata = f.metadata;
      } else {
        saved = snapshot(b->state_dict());
      }
      std::vector<Tensor> pc;
      for (const Tensor& p : pb) pc.push_back(p.detach().clone().requires_grad_());
      // A different learning rate at construction: load_state_dict must restore the saved one.
      json cfg2 = cfg;
      cfg2["options"]["lr"] = 123.0;
      auto c = make_optimizer(cfg2, pc);
      c->load_state_dict(saved);
      b.reset();  // C must not depend on B's memory
      for (size_t s = 2; s < 5; ++s) {
        for (auto& [opt, ps] : {std::pair{a.get(), &pa}, std::pair{c.get(), &pc}}) {
          opt->zero_grad();
          set_step_grads(*ps, s);
          opt->step();
        }
      }
      for (size_t k = 0; k < pa.size(); ++k) EXPECT_EQ(values(pa[k]), values(pc[k])) << "parameter " << k;
    }
  }
}

TEST(Optim, StateDictLayout) {
  Tensor a = ones({2, 2}, kFloat64).requires_grad_();
  Tensor b = ones({3}, kFloat64).requires_grad_();
  optim::SGD opt({optim::ParamGroup({a}), optim::ParamGroup({b}, optim::SGDOptions(0.5).momentum(0.8))},
                 optim::SGDOptions(0.1).momentum(0.9));
  a.set_grad(ones({2, 2}, kFloat64));
  b.set_grad(ones({3}, kFloat64));
  opt.step();
  auto sd = opt.state_dict();
  EXPECT_EQ(sd.metadata.at("optimizer"), "SGD");
  EXPECT_EQ(sd.metadata.at("param_groups"), "2");
  EXPECT_EQ(sd.metadata.at("param_groups.0.params"), "1");
  EXPECT_EQ(sd.metadata.at("param_groups.0.lr"), "0.1");
  EXPECT_EQ(sd.metadata.at("param_groups.1.lr"), "0.5");
  EXPECT_EQ(sd.metadata.at("param_groups.1.momentum"), "0.8");
  EXPECT_EQ(sd.metadata.at("param_groups.1.nesterov"), "0");
  ASSERT_TRUE(sd.tensors.count("state.1.momentum_buffer"));
  EXPECT_EQ(sd.tensors.at("state.1.momentum_buffer").shape(), Shape({3}));
  EXPECT_EQ(sd.tensors.size(), 2u);

  // merge / sub put several state dicts in one file and take them apart again.
  optim::StateDict all;
  all.merge("optimizer", sd);
  all.tensors["model.w"] = a;
  EXPECT_TRUE(all.tensors.count("optimizer.state.0.momentum_buffer"));
  optim::StateDict back = all.sub("optimizer");
  EXPECT_EQ(back.metadata, sd.metadata);
  EXPECT_EQ(back.tensors.size(), sd.tensors.size());
}

TEST_P(OptimDevice, LoadStateDictConvertsDtype) {
  // A float64 state loads into a float32 optimizer (state follows the parameter's dtype).
  const TensorOptions f64 = TensorOptions(kFloat64).device(device());
  Tensor a = ones({3}, f64).requires_grad_();
  optim::Adam opt64({a});
  a.set_grad(ones({3}, f64));
  opt64.step();
  Tensor b = ones({3}, TensorOptions().device(device())).requires_grad_();
  optim::Adam opt32({b});
  opt32.load_state_dict(opt64.state_dict());
  auto sd = opt32.state_dict();
  EXPECT_EQ(sd.tensors.at("state.0.exp_avg").dtype(), kFloat32);
  EXPECT_EQ(sd.tensors.at("state.0.exp_avg").device(), device());
  EXPECT_EQ(sd.tensors.at("state.0.step").item<int64_t>(), 1);
}

TEST(Optim, LoadStateDictErrors) {
  Tensor a = ones({3}, kFloat64).requires_grad_();
  optim::Adam adam({a});
  a.set_grad(ones({3}, kFloat64));
  adam.step();
  const optim::StateDict good = snapshot(adam.state_dict());

  Tensor s = ones({3}, kFloat64).requires_grad_();
  optim::SGD sgd({s}, 0.1);
  test::expect_error([&] { sgd.load_state_dict(good); }, {"SGD: load_state_dict", "from a Adam optimizer"});

  Tensor b = ones({4}, kFloat64).requires_grad_();
  optim::Adam other({b});
  test::expect_error([&] { other.load_state_dict(good); },
                     {"state.0.exp_avg has shape [3]", "parameter has shape [4]"});

  optim::Adam two({optim::ParamGroup({ones({3}, kFloat64).requires_grad_()}),
                   optim::ParamGroup({ones({3}, kFloat64).requires_grad_()})});
  test::expect_error([&] { two.load_state_dict(good); }, {"has 1 parameter groups, this optimizer has 2"});

  Tensor c = ones({3}, kFloat64).requires_grad_();
  optim::Adam fresh({c}, optim::AdamOptions(0.5));
  auto bad = good;
  bad.tensors["state.0.bogus"] = ones({3}, kFloat64);
  test::expect_error([&] { fresh.load_state_dict(bad); }, {"unknown state tensor 'state.0.bogus'"});
  bad = good;
  bad.tensors["state.7.exp_avg"] = ones({3}, kFloat64);
  test::expect_error([&] { fresh.load_state_dict(bad); }, {"'state.7.exp_avg' is for parameter 7", "only 1"});
  bad = good;
  bad.tensors["weights"] = ones({3}, kFloat64);
  test::expect_error([&] { fresh.load_state_dict(bad); }, {"unexpected tensor 'weights'"});
  bad = good;
  bad.metadata["param_groups.0.lr"] = "fast";
  test::expect_error([&] { fresh.load_state_dict(bad); }, {"'param_groups.0.lr' = 'fast' is not a number"});
  bad = good;
  bad.metadata["param_groups.0.lr"] = "-1";
  test::expect_error([&] { fresh.load_state_dict(bad); }, {"Adam: invalid learning rate -1"});
  bad = good;
  bad.metadata.erase("param_groups.0.eps");
  test::expect_error([&] { fresh.load_state_dict(bad); }, {"no 'param_groups.0.eps' entry"});
  bad = good;
  bad.metadata["param_groups.0.momentum"] = "0.9";
  test::expect_error([&] { fresh.load_state_dict(bad); }, {"unknown metadata entry 'param_groups.0.momentum'"});
  bad = good;
  bad.tensors.erase("state.0.exp_avg_sq");
  test::expect_error([&] { fresh.load_state_dict(bad); }, {"state.0 has no 'exp_avg_sq' tensor"});
  // None of the failed loads changed anything.
  EXPECT_EQ(fresh.param_groups()[0].options().get_lr(), 0.5);
  EXPECT_TRUE(fresh.state_dict().tensors.empty());
}

// ---------------- construction errors ----------------

TEST(Optim, Errors) {
  Tensor p = ones({3}).requires_grad_();
  test::expect_error([&] { optim::SGD({p}, -0.1); }, {"SGD: invalid learning rate -0.1"});
  test::expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).momentum(-1)); }, {"SGD: invalid momentum -1"});
  test::expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).weight_decay(-1)); }, {"invalid weight_decay -1"});
  test::expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).nesterov(true)); },
                     {"Nesterov momentum requires a momentum > 0 and zero dampening"});
  test::expect_error([&] { optim::Adam({p}, optim::AdamOptions(-1e-3)); }, {"Adam: invalid learning rate -0.001"});
  test::expect_error([&] { optim::Adam({p}, optim::AdamOptions().betas({1.0, 0.999})); },
                     {"Adam: invalid beta1 (betas[0]) 1", "[0, 1)"});
  test::expect_error([&] { optim::AdamW({p}, optim::AdamWOptions().betas({0.9, -0.5})); },
                     {"AdamW: invalid beta2 (betas[1]) -0.5"});
  test::expect_error([&] { optim::Adam({p}, optim::AdamOptions().eps(-1)); }, {"Adam: invalid eps -1"});

  Tensor frozen = ones({2, 2});
  test::expect_error([&] { optim::SGD({p, frozen}, 0.1); },
                     {"SGD: parameter 1 of group 0", "shape [2, 2]", "does not require grad"});
  Tensor nonleaf = p * 2.0;
  test::expect_error([&] { optim::Adam({nonleaf}); }, {"Adam: parameter 0 of group 0", "is not a leaf tensor"});
  test::expect_error([&] { optim::SGD({p, p}, 0.1); }, {"parameter 1 of group 0", "appears more than once"});
  test::expect_error([&] { optim::SGD(std::vector<Tensor>{}, 0.1); }, {"SGD: parameter group 0 is empty"});
  test::expect_error([&] { optim::SGD({Tensor()}, 0.1); }, {"parameter 0 of group 0 is an undefined tensor"});
  test::expect_error([&] { optim::SGD({ones({2}, kInt64)}, 0.1); }, {"dtype int64", "floating-point"});

  optim::SGD sgd({p}, 0.1);
  Tensor q = ones({2}).requires_grad_();
  test::expect_error([&] { sgd.add_param_group({q}, optim::AdamOptions()); },
                     {"SGD: parameter group 1 has options for Adam; this optimizer is SGD"});
  test::expect_error([&] { sgd.add_param_group({p}); }, {"parameter 0 of group 1", "appears more than once"});
  test::expect_error([&] { sgd.add_param_group({q}, optim::SGDOptions(-2)); }, {"SGD: invalid learning rate -2"});
  EXPECT_EQ(sgd.param_groups().size(), 1u);  // failed additions add nothing
  EXPECT_EQ(sgd.num_params(), 1u);
}

// ---------------- schedulers ----------------

namespace {

std::unique_ptr<optim::LRScheduler> make_scheduler(const json& cfg, optim::Optimizer& opt) {
  const json& a = cfg["args"];
  const std::string type = cfg["type"];
  auto i64 = [&](const char* k) { return a[k].get<int64_t>(); };
  auto f64 = [&](const char* k) { return a[k].get<double>(); };
  if (type == "StepLR") return std::make_unique<optim::StepLR>(opt, i64("step_size"), f64("gamma"));
  if (type == "CosineAnnealingLR") return std::make_unique<optim::CosineAnnealingLR>(opt, i64("T_max"), f64("eta_min"));
  if (type == "LinearLR")
    return std::make_unique<optim::LinearWarmup>(opt, f64("start_factor"), f64("end_factor"), i64("total_iters"));
  EXPECT_EQ(type, "OneCycleLR");
  optim::OneCycleLROptions o(a["max_lr"].get<std::vector<double>>(), i64("total_steps"));
  if (a.contains("pct_start")) o.pct_start(f64("pct_start"));
  if (a.contains("anneal_strategy"))
    o.anneal_strategy(a["anneal_strategy"] == "linear" ? optim::AnnealStrategy::Linear : optim::AnnealStrategy::Cos);
  if (a.contains("three_phase")) o.three_phase(a["three_phase"].get<bool>());
  if (a.contains("div_factor")) o.div_factor(f64("div_factor"));
  if (a.contains("final_div_factor")) o.final_div_factor(f64("final_div_factor"));
  if (a.contains("cycle_momentum")) o.cycle_momentum(a["cycle_momentum"].get<bool>());
  return std::make_unique<optim::OneCycleLR>(opt, o);
}

// The optimizer the reference used: two groups, lr 0.1 and 0.05 (SGD with momentum 0.9, or Adam).
struct SchedulerRig {
  Tensor a = zeros({2}, kFloat64).requires_grad_();
  Tensor b = zeros({3}, kFloat64).requires_grad_();
  std::unique_ptr<optim::Optimizer> opt;
  std::string momentum_name;
  explicit SchedulerRig(const std::string& type) {
    if (type == "Adam") {
      opt = std::make_unique<optim::Adam>(
          std::vector<optim::ParamGroup>{optim::ParamGroup({a}), optim::ParamGroup({b}, optim::AdamOptions(0.05))},
          optim::AdamOptions(0.1));
      momentum_name = "beta1";
    } else {
      opt = std::make_unique<optim::SGD>(
          std::vector<optim::ParamGroup>{optim::ParamGroup({a}),
                                         optim::ParamGroup({b}, optim::SGDOptions(0.05).momentum(0.9))},
          optim::SGDOptions(0.1).momentum(0.9));
      momentum_name = "momentum";
    }
  }
  void expect(const optim::LRScheduler& s, const json& lrs, const json& momenta, const std::string& when) {
    SCOPED_TRACE(when);
    ASSERT_EQ(s.get_last_lr().size(), 2u);
    for (size_t g = 0; g < 2; ++g) {
      const double want = lrs[g];
      EXPECT_NEAR(s.get_last_lr()[g], want, 1e-14 * std::abs(want)) << "group " << g;
      EXPECT_EQ(opt->param_groups()[g].options().get_lr(), s.get_last_lr()[g]);
      const double mom = *opt->param_groups()[g].options().hyper_parameter(momentum_name);
      EXPECT_NEAR(mom, momenta[g].get<double>(), 1e-14) << "momentum of group " << g;
    }
  }
};

}  // namespace

TEST(LRScheduler, MatchesPyTorch) {
  for (const json& cfg : reference()["schedulers"]) {
    SCOPED_TRACE(cfg["name"].get<std::string>());
    SchedulerRig rig(cfg["optimizer"]);
    auto sched = make_scheduler(cfg, *rig.opt);
    rig.expect(*sched, cfg["lrs"][0], cfg["momenta"][0], "after construction");
    for (size_t s = 1; s < cfg["lrs"].size(); ++s) {
      rig.opt->step();
      sched->step();
      EXPECT_EQ(sched->last_epoch(), static_cast<int64_t>(s));
      rig.expect(*sched, cfg["lrs"][s], cfg["momenta"][s], "after step " + std::to_string(s));
    }
  }
}

TEST(LRScheduler, ResumeFromCheckpointContinuesExactly) {
  for (const json& cfg : reference()["schedulers"]) {
    SCOPED_TRACE(cfg["name"].get<std::string>());
    const size_t steps = cfg["lrs"].size() - 1, cut = steps / 2;
    SchedulerRig ra(cfg["optimizer"]);
    auto a = make_scheduler(cfg, *ra.opt);
    for (size_t s = 0; s < cut; ++s) a->step();

    // One file for both: the optimizer holds the current lr, the scheduler its position.
    optim::StateDict all;
    all.merge("optimizer", ra.opt->state_dict());
    all.merge("scheduler", a->state_dict());
    const std::string path = temp_path("sched_" + cfg["name"].get<std::string>() + ".safetensors");
    nn::save_safetensors(path, all.tensors, all.metadata);
    nn::SafetensorsFile f = nn::load_safetensors(path);
    optim::StateDict loaded{f.tensors, f.metadata};

    SchedulerRig rb(cfg["optimizer"]);
    auto b = make_scheduler(cfg, *rb.opt);
    b->load_state_dict(loaded.sub("scheduler"));
    rb.opt->load_state_dict(loaded.sub("optimizer"));
    EXPECT_EQ(b->last_epoch(), a->last_epoch());
    EXPECT_EQ(b->get_last_lr(), a->get_last_lr());
    for (size_t s = cut; s < steps; ++s) {
      a->step();
      b->step();
      EXPECT_EQ(a->get_last_lr(), b->get_last_lr()) << "step " << s + 1;
      for (size_t g = 0; g < 2; ++g)
        EXPECT_EQ(ra.opt->param_groups()[g].options().hyper_parameters(),
                  rb.opt->param_groups()[g].options().hyper_parameters());
    }
  }
}

TEST(LRScheduler, Errors) {
  Tensor p = zeros({2}).requires_grad_();
  optim::SGD opt({p}, optim::SGDOptions(0.1).momentum(0.9));
  test::expect_error([&] { optim::StepLR(opt, 0); }, {"StepLR: step_size must be positive, got 0"});
  test::expect_error([&] { optim::CosineAnnealingLR(opt, -3); }, {"CosineAnnealingLR: T_max must be positive, got -3"});
  test::expect_error([&] { optim::LinearWarmup(opt, 0.0, 1.0, 5); },
                     {"LinearLR: start_factor must be in (0, 1], got 0"});
  test::expect_error([&] { optim::LinearWarmup(opt, 0.5, 1.0, 0); }, {"LinearLR: total_iters must be positive"});
  test::expect_error([&] { optim::OneCycleLR(opt, optim::OneCycleLROptions({1.0, 2.0}, 10)); },
                     {"OneCycleLR: got 2 max_lr values for 1 parameter groups"});
  test::expect_error([&] { optim::OneCycleLR(opt, optim::OneCycleLROptions(1.0, 10).pct_start(1.5)); },
                     {"pct_start must be in [0, 1], got 1.5"});
  {
    // pct_start 1: the warm-up takes every step, and the annealing phase has none left.
    optim::OneCycleLR all_warmup(opt, optim::OneCycleLROptions(1.0, 4).pct_start(1.0));
    for (int i = 0; i < 3; ++i) all_warmup.step();
    EXPECT_EQ(all_warmup.get_last_lr()[0], 1.0);
    test::expect_error([&] { all_warmup.step(); }, {"OneCycleLR: step 4 falls in phase 2, which is empty"});
  }

  optim::OneCycleLR one(opt, optim::OneCycleLROptions(1.0, 3));
  one.step();
  one.step();
  one.step();
  test::expect_error([&] { one.step(); }, {"OneCycleLR: tried to step 5 times", "total steps is 3"});

  optim::StepLR step(opt, 2);
  test::expect_error([&] { step.load_state_dict(one.state_dict()); },
                     {"StepLR: load_state_dict", "is from a OneCycleLR scheduler"});
  optim::OneCycleLR longer(opt, optim::OneCycleLROptions(1.0, 30));
  test::expect_error([&] { longer.load_state_dict(one.state_dict()); }, {"for total_steps 3, this scheduler has 30"});
}

// ---------------- gradient clipping ----------------

EMBER_DEVICE_SUITE(ClipGradNorm);

TEST_P(ClipGradNorm, MatchesPyTorch) {
  const json& clip = reference()["clip"];
  for (const json& c : clip["cases"]) {
    const double norm_type = c["norm_type"] == "inf" ? optim::kInfNorm : c["norm_type"].get<double>();
    SCOPED_TRACE("max_norm " + c["max_norm"].dump() + ", norm_type " + c["norm_type"].dump());
    for (DType dtype : {kFloat64, kFloat32}) {
      std::vector<Tensor> ps;
      for (size_t k = 0; k < clip["grads"].size(); ++k) {
        const Shape shape = shape_of(clip["shapes"][k]);
        Tensor p = zeros(shape, TensorOptions(dtype).device(device())).requires_grad_();
        Tensor g = tensor_of(clip["grads"][k], shape, dtype).to(device());
        p.set_grad(k == 0 ? noncontiguous_copy(g) : g);  // a strided gradient too
        ps.push_back(p);
      }
      ps.push_back(zeros({5}, TensorOptions(dtype).device(device())).requires_grad_());  // no gradient: skipped
      const double total = optim::clip_grad_norm_(ps, c["max_norm"], norm_type);
      const double tol = dtype == kFloat64 ? 1e-12 : 1e-6;
      EXPECT_NEAR(total, c["total_norm"].get<double>(), tol * c["total_norm"].get<double>());
      for (size_t k = 0; k < clip["grads"].size(); ++k)
        test::expect_close(ps[k].grad(), tensor_of(c["grads_after"][k], ps[k].shape()), tol, tol);
      EXPECT_FALSE(ps.back().grad().defined());
    }
  }
}

TEST_P(ClipGradNorm, EdgeCasesAndErrors) {
  const TensorOptions f64 = TensorOptions(kFloat64).device(device());
  Tensor p = zeros({3}, f64).requires_grad_();
  EXPECT_EQ(optim::clip_grad_norm_({p}, 1.0), 0.0);  // no gradients at all
  test::expect_error([&] { optim::clip_grad_norm_({p}, -1.0); }, {"clip_grad_norm_: max_norm must be >= 0, got -1"});
  test::expect_error([&] { optim::clip_grad_norm_({p}, 1.0, 0.0); }, {"norm_type must be positive", "got 0"});
  test::expect_error([&] { optim::clip_grad_norm_({Tensor()}, 1.0); }, {"parameter 0 is an undefined tensor"});

  p.set_grad(from_vector<double>({3, 4, INFINITY}).to(device()));
  test::expect_error([&] { optim::clip_grad_norm_({p}, 1.0, 2.0, /*error_if_nonfinite=*/true); },
                     {"total norm of order 2", "is inf", "cannot be clipped"});
  // Without the check the inf norm is returned and the gradients scaled by 1 / inf (PyTorch does the same).
  EXPECT_TRUE(std::isinf(optim::clip_grad_norm_({p}, 1.0)));
  EXPECT_EQ(values(p.grad())[0], 0.0);

  // A norm just under max_norm leaves the gradients untouched.
  p.set_grad(from_vector<double>({3, 4, 0}).to(device()));
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm_({p}, 5.1), 5.0);
  EXPECT_EQ(values(p.grad()), (std::vector<double>{3, 4, 0}));

  // Large gradients go through the chunked, multi-threaded reduction.
  Tensor big = zeros({100003}, f64).requires_grad_();
  big.set_grad(full({100003}, 0.5, f64));
  EXPECT_NEAR(optim::clip_grad_norm_({big}, 1.0), 0.5 * std::sqrt(100003.0), 1e-9);
  EXPECT_NEAR(std::sqrt(std::pow(values(big.grad())[7], 2) * 100003), 1.0, 1e-6);
}

// ---------------- on every device ----------------
// Parameters, gradients and state on the device: the tensor-op path of each optimizer (the fused
// loops are CPU-only), the device reduction in clip_grad_norm_, and saving device tensors.

TEST_P(OptimDevice, OptimizersMatchPyTorch) {
  const json& ref = reference();
  for (const json& cfg : ref["optimizers"]) {
    SCOPED_TRACE(cfg["name"].get<std::string>());
    std::vector<Tensor> ps;
    for (const Tensor& p : initial_params(Layout::Contiguous, kFloat64))
      ps.push_back(p.detach().to(device()).requires_grad_());
    auto opt = make_optimizer(cfg, ps);
    for (size_t s = 0; s < cfg["after_step"].size(); ++s) {
      opt->zero_grad();
      for (size_t k = 0; k < ps.size(); ++k) {
        const json& g = ref["grads"][s][k];
        if (!g.is_null()) ps[k].set_grad(tensor_of(g, ps[k].shape()).to(device()));
      }
      opt->step();
    }
    for (size_t k = 0; k < ps.size(); ++k) {
      EXPECT_EQ(ps[k].device(), device());
      test::expect_close(ps[k], tensor_of(cfg["after_step"].back()[k], ps[k].shape()), 1e-12, 1e-12);
    }
    // The state lives on the device too, and a checkpoint of it loads back on the CPU.
    const optim::StateDict sd = opt->state_dict();
    for (const auto& [name, t] : sd.tensors) {
      if (!name.ends_with(".step")) {
        EXPECT_EQ(t.device(), device()) << name;
      }
    }
  }
}

TEST_P(OptimDevice, ClipGradNormMatchesPyTorch) {
  const json& clip = reference()["clip"];
  for (const json& c : clip["cases"]) {
    const double norm_type = c["norm_type"] == "inf" ? optim::kInfNorm : c["norm_type"].get<double>();
    std::vector<Tensor> ps;
    for (size_t k = 0; k < clip["grads"].size(); ++k) {
      const Shape shape = shape_of(clip["shapes"][k]);
      Tensor p = zeros(shape, TensorOptions(kFloat64).device(device())).requires_grad_();
      p.set_grad(tensor_of(clip["grads"][k], shape).to(device()));
      ps.push_back(p);
    }
    const double total = optim::clip_grad_norm_(ps, c["max_norm"], norm_type);
    EXPECT_NEAR(total, c["total_norm"].get<double>(), 1e-12 * c["total_norm"].get<double>());
    for (size_t k = 0; k < ps.size(); ++k)
      test::expect_close(ps[k].grad(), tensor_of(c["grads_after"][k], ps[k].shape()), 1e-12, 1e-12);
  }
}

TEST_P(OptimDevice, SaveDeviceTensors) {
  Tensor w = arange(0.0, 6.0, 1.0, TensorOptions(kFloat32).device(device())).view({2, 3});
  const std::string path = temp_path("device.safetensors");
  nn::save_safetensors(path, {{"w", w}, {"wt", w.t()}});
  nn::SafetensorsFile f = nn::load_safetensors(path);
  EXPECT_EQ(f.tensors.at("w").to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(f.tensors.at("wt").to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}
