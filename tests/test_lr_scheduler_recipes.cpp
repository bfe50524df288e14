// MultiStepLR, SequentialLR (warm-up then cosine) and ReduceLROnPlateau against PyTorch's answers
// (tests/data/reference_optim.json: "recipe_schedulers" and "plateau", written by
// scripts/make_reference_optim.py), resuming each from a checkpoint, the initial_lr rule that makes
// schedulers built one after another agree, and the error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/ember.h"
#include "nn/checkpoint.h"
#include "optim/optim.h"
#include "tests/reference_util.h"
#include "tests/test_util.h"

using namespace ember;
using json = nlohmann::json;

namespace {

// tests/data/reference_optim.json through the shared loader (tests/reference_util.h), which also
// finds it beside carried binaries (EMBER_TEST_DATA_DIR at run time, tests/data_dir.h).
const json& reference() {
  return test::load_reference("reference_optim.json", "/usr/bin/python3 scripts/make_reference_optim.py");
}

std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("ember_test_recipes_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

// Through a real safetensors file, as a training program's checkpoint would go.
optim::StateDict save_and_load(const optim::StateDict& sd, const std::string& name) {
  const std::string path = temp_path(name + ".safetensors");
  nn::save_safetensors(path, sd.tensors, sd.metadata);
  nn::SafetensorsFile f = nn::load_safetensors(path);
  return optim::StateDict{f.tensors, f.metadata};
}

// The scheduler a reference "spec" describes ({"type", "args"}; SequentialLR nests specs).
std::shared_ptr<optim::LRScheduler> build(const json& spec, optim::Optimizer& opt) {
  const std::string type = spec["type"];
  const json& a = spec["args"];
  auto i64 = [&](const char* k) { return a[k].get<int64_t>(); };
  auto f64 = [&](const char* k) { return a[k].get<double>(); };
  if (type == "MultiStepLR")
    return std::make_shared<optim::MultiStepLR>(opt, a["milestones"].get<std::vector<int64_t>>(), f64("gamma"));
  if (type == "StepLR") return std::make_shared<optim::StepLR>(opt, i64("step_size"), f64("gamma"));
  if (type == "LinearLR")
    return std::make_shared<optim::LinearLR>(opt, f64("start_factor"), f64("end_factor"), i64("total_iters"));
  if (type == "CosineAnnealingLR") return std::make_shared<optim::CosineAnnealingLR>(opt, i64("T_max"), f64("eta_min"));
  EXPECT_EQ(type, "SequentialLR");
  std::vector<std::shared_ptr<optim::LRScheduler>> subs;
  for (const json& sub : a["schedulers"]) subs.push_back(build(sub, opt));
  return std::make_shared<optim::SequentialLR>(opt, subs, a["milestones"].get<std::vector<int64_t>>());
}

// The reference's optimizer: SGD with two groups, lr 0.1 and 0.05, momentum 0.9.
struct Rig {
  Tensor a = zeros({2}, kFloat64).requires_grad_();
  Tensor b = zeros({3}, kFloat64).requires_grad_();
  optim::SGD opt{{optim::ParamGroup({a}), optim::ParamGroup({b}, optim::SGDOptions(0.05).momentum(0.9))},
                 optim::SGDOptions(0.1).momentum(0.9)};
  std::vector<double> lrs() const {
    return {opt.param_groups()[0].options().get_lr(), opt.param_groups()[1].options().get_lr()};
  }
};

void expect_lrs(const std::vector<double>& got, const json& want, const std::string& when) {
  ASSERT_EQ(got.size(), want.size()) << when;
  for (size_t g = 0; g < got.size(); ++g) {
    const double w = want[g];
    EXPECT_NEAR(got[g], w, 1e-14 * std::abs(w)) << when << ", group " << g;
  }
}

optim::ReduceLROnPlateauOptions plateau_options(const json& a) {
  optim::ReduceLROnPlateauOptions o;
  if (a.contains("mode")) o.mode(a["mode"] == "max" ? optim::PlateauMode::Max : optim::PlateauMode::Min);
  if (a.contains("factor")) o.factor(a["factor"].get<double>());
  if (a.contains("patience")) o.patience(a["patience"].get<int64_t>());
  if (a.contains("threshold")) o.threshold(a["threshold"].get<double>());
  if (a.contains("threshold_mode"))
    o.threshold_mode(a["threshold_mode"] == "abs" ? optim::ThresholdMode::Abs : optim::ThresholdMode::Rel);
  if (a.contains("cooldown")) o.cooldown(a["cooldown"].get<int64_t>());
  if (a.contains("min_lr")) o.min_lrs(a["min_lr"].get<std::vector<double>>());
  return o;
}

}  // namespace

// ---------------- against PyTorch ----------------

TEST(LRSchedulerRecipesReference, MultiStepAndSequentialMatchPyTorch) {
  ASSERT_GE(reference()["recipe_schedulers"].size(), 4u);
  for (const json& cfg : reference()["recipe_schedulers"]) {
    SCOPED_TRACE(cfg["name"].get<std::string>());
    Rig rig;
    auto sched = build(cfg["spec"], rig.opt);
    expect_lrs(sched->get_last_lr(), cfg["lrs"][0], "after construction");
    expect_lrs(rig.lrs(), cfg["lrs"][0], "optimizer after construction");
    for (size_t s = 1; s < cfg["lrs"].size(); ++s) {
      rig.opt.step();
      sched->step();
      EXPECT_EQ(sched->last_epoch(), static_cast<int64_t>(s));
      expect_lrs(sched->get_last_lr(), cfg["lrs"][s], "after step " + std::to_string(s));
      expect_lrs(rig.lrs(), cfg["lrs"][s], "optimizer after step " + std::to_string(s));
      // Only the lr moves: these schedulers never touch the momentum.
      EXPECT_EQ(*rig.opt.param_groups()[0].options().hyper_parameter("momentum"), 0.9);
    }
  }
}

// The composition the CIFAR recipe uses, spelled out: warm up linearly from 0.1x over 5 epochs,
// then a cosine that starts from the full lr at the milestone.
TEST(LRSchedulerRecipesReference, WarmupThenCosine) {
  const json* cfg = nullptr;
  for (const json& c : reference()["recipe_schedulers"])
    if (c["name"] == "warmup_cosine") cfg = &c;
  ASSERT_NE(cfg, nullptr);
  Rig rig;
  auto warmup = std::make_shared<optim::LinearLR>(rig.opt, 0.1, 1.0, 5);
  auto cosine = std::make_shared<optim::CosineAnnealingLR>(rig.opt, 10, 1e-4);
  optim::SequentialLR sched(rig.opt, {warmup, cosine}, {5});
  // Both sub-schedulers start from the groups' initial lr, although the warm-up's constructor had
  // already lowered it when the cosine was built.
  EXPECT_EQ(rig.opt.param_groups()[0].initial_lr(), 0.1);
  EXPECT_EQ(rig.opt.param_groups()[1].initial_lr(), 0.05);
  expect_lrs(sched.get_last_lr(), (*cfg)["lrs"][0], "after construction");
  EXPECT_NEAR(sched.get_last_lr()[0], 0.01, 1e-15);
  for (size_t s = 1; s < (*cfg)["lrs"].size(); ++s) {
    sched.step();
    expect_lrs(sched.get_last_lr(), (*cfg)["lrs"][s], "after step " + std::to_string(s));
  }
  EXPECT_EQ(warmup->last_epoch(), 4);  // the warm-up ran epochs 0..4
  EXPECT_EQ(cosine->last_epoch(), static_cast<int64_t>((*cfg)["lrs"].size()) - 1 - 5);
}

TEST(LRSchedulerRecipesReference, ResumeFromCheckpointContinuesExactly) {
  for (const json& cfg : reference()["recipe_schedulers"]) {
    const size_t steps = cfg["lrs"].size() - 1;
    // Cut before, at and after the first milestone, so the restarted scheduler's state is covered.
    for (size_t cut : {size_t{1}, steps / 2, steps - 2}) {
      SCOPED_TRACE(cfg["name"].get<std::string>() + " cut at " + std::to_string(cut));
      Rig ra;
      auto a = build(cfg["spec"], ra.opt);
      for (size_t s = 0; s < cut; ++s) a->step();
      optim::StateDict all;
      all.merge("optimizer", ra.opt.state_dict());
      all.merge("scheduler", a->state_dict());
      optim::StateDict loaded = save_and_load(all, cfg["name"].get<std::string>());

      Rig rb;
      auto b = build(cfg["spec"], rb.opt);
      b->load_state_dict(loaded.sub("scheduler"));
      rb.opt.load_state_dict(loaded.sub("optimizer"));
      EXPECT_EQ(b->last_epoch(), a->last_epoch());
      EXPECT_EQ(b->get_last_lr(), a->get_last_lr());
      for (size_t s = cut; s < steps; ++s) {
        a->step();
        b->step();
        EXPECT_EQ(a->get_last_lr(), b->get_last_lr()) << "step " << s + 1;
        EXPECT_EQ(ra.lrs(), rb.lrs()) << "step " << s + 1;
        expect_lrs(b->get_last_lr(), cfg["lrs"][s + 1], "resumed, step " + std::to_string(s + 1));
      }
    }
  }
}

TEST(LRSchedulerRecipesReference, ReduceLROnPlateauMatchesPyTorch) {
  ASSERT_GE(reference()["plateau"].size(), 4u);
  for (const json& cfg : reference()["plateau"]) {
    SCOPED_TRACE(cfg["name"].get<std::string>());
    Rig rig;
    optim::ReduceLROnPlateau sched(rig.opt, plateau_options(cfg["args"]));
    EXPECT_EQ(sched.get_last_lr(), rig.lrs());
    const json& metrics = cfg["metrics"];
    for (size_t s = 0; s < metrics.size(); ++s) {
      const std::string when = "after step " + std::to_string(s + 1);
      const json& want = cfg["steps"][s];
      sched.step(metrics[s].get<double>());
      EXPECT_EQ(sched.last_epoch(), static_cast<int64_t>(s + 1));
      expect_lrs(rig.lrs(), want["lrs"], when);
      expect_lrs(sched.get_last_lr(), want["lrs"], when);
      EXPECT_EQ(sched.best(), want["best"].get<double>()) << when;
      EXPECT_EQ(sched.num_bad_epochs(), want["num_bad_epochs"].get<int64_t>()) << when;
      EXPECT_EQ(sched.cooldown_counter(), want["cooldown_counter"].get<int64_t>()) << when;
    }
  }
}

TEST(LRSchedulerRecipesReference, ReduceLROnPlateauResumesExactly) {
  for (const json& cfg : reference()["plateau"]) {
    const json& metrics = cfg["metrics"];
    for (size_t cut : {size_t{0}, metrics.size() / 2}) {  // 0: "best" is still infinite
      SCOPED_TRACE(cfg["name"].get<std::string>() + " cut at " + std::to_string(cut));
      Rig ra;
      optim::ReduceLROnPlateau a(ra.opt, plateau_options(cfg["args"]));
      for (size_t s = 0; s < cut; ++s) a.step(metrics[s].get<double>());
      optim::StateDict all;
      all.merge("optimizer", ra.opt.state_dict());
      all.merge("scheduler", a.state_dict());
      optim::StateDict loaded = save_and_load(all, "plateau_" + cfg["name"].get<std::string>());

      Rig rb;
      optim::ReduceLROnPlateau b(rb.opt, plateau_options(cfg["args"]));
      rb.opt.step();
      b.step(-5.0);  // disturb it first: loading must overwrite everything
      b.load_state_dict(loaded.sub("scheduler"));
      rb.opt.load_state_dict(loaded.sub("optimizer"));
      EXPECT_EQ(b.best(), a.best());
      for (size_t s = cut; s < metrics.size(); ++s) {
        a.step(metrics[s].get<double>());
        b.step(metrics[s].get<double>());
        EXPECT_EQ(ra.lrs(), rb.lrs()) << "step " << s + 1;
        EXPECT_EQ(a.num_bad_epochs(), b.num_bad_epochs());
        EXPECT_EQ(a.cooldown_counter(), b.cooldown_counter());
        EXPECT_EQ(a.last_epoch(), b.last_epoch());
        expect_lrs(rb.lrs(), cfg["steps"][s]["lrs"], "resumed, step " + std::to_string(s + 1));
      }
    }
  }
}

// ---------------- semantics and errors ----------------

TEST(LRSchedulerRecipes, MultiStepRepeatedAndUnsortedMilestones) {
  Rig rig;
  optim::MultiStepLR s(rig.opt, {4, 2, 4}, 0.5);
  std::vector<double> got;
  for (int e = 1; e <= 5; ++e) {
    s.step();
    got.push_back(s.get_last_lr()[0]);
  }
  // Epoch 2 halves once, epoch 4 twice (listed twice).
  EXPECT_EQ(got, (std::vector<double>{0.1, 0.05, 0.05, 0.0125, 0.0125}));
}

TEST(LRSchedulerRecipes, LaterSchedulersShareTheInitialLr) {
  Rig rig;
  optim::LinearLR warm(rig.opt, 0.5, 1.0, 4);
  EXPECT_EQ(rig.lrs()[0], 0.05);  // the warm-up's constructor already lowered the lr
  optim::StepLR second(rig.opt, 3);
  // PyTorch's setdefault("initial_lr"): the second scheduler's base lr is the lr before any
  // scheduler, not the 0.05 the first one left.
  const optim::StateDict sd = second.state_dict();
  EXPECT_EQ(sd.metadata.at("base_lrs.0"), "0.1");
  EXPECT_EQ(sd.metadata.at("base_lrs.1"), "0.05");
}

TEST(LRSchedulerRecipes, ReduceLROnPlateauNanIsNotBetter) {
  Rig rig;
  optim::ReduceLROnPlateau s(rig.opt, optim::ReduceLROnPlateauOptions().patience(1).factor(0.5));
  EXPECT_TRUE(std::isinf(s.best()) && s.best() > 0);
  s.step(1.0);
  s.step(std::nan(""));
  EXPECT_EQ(s.num_bad_epochs(), 1);
  EXPECT_EQ(s.best(), 1.0);
  s.step(std::nan(""));
  EXPECT_EQ(rig.lrs(), (std::vector<double>{0.05, 0.025}));
  EXPECT_EQ(s.num_bad_epochs(), 0);
}

TEST(LRSchedulerRecipes, ReduceLROnPlateauInfiniteBestRoundTrips) {
  Rig rig;
  optim::ReduceLROnPlateau max(rig.opt, optim::ReduceLROnPlateauOptions().mode(optim::PlateauMode::Max));
  const optim::StateDict sd = max.state_dict();
  EXPECT_EQ(sd.metadata.at("best"), "-inf");
  optim::ReduceLROnPlateau other(rig.opt, optim::ReduceLROnPlateauOptions().mode(optim::PlateauMode::Max));
  other.step(3.0);
  other.load_state_dict(sd);
  EXPECT_EQ(other.best(), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(other.last_epoch(), 0);
}

TEST(LRSchedulerRecipes, Errors) {
  Rig rig;
  test::expect_error([&] { optim::MultiStepLR(rig.opt, {3, -1}); },
                     {"MultiStepLR: milestones must be non-negative epochs, got -1"});

  auto lin = std::make_shared<optim::LinearLR>(rig.opt, 0.5, 1.0, 3);
  auto cos = std::make_shared<optim::CosineAnnealingLR>(rig.opt, 10);
  test::expect_error([&] { optim::SequentialLR(rig.opt, {}, {}); }, {"SequentialLR: got no schedulers"});
  test::expect_error([&] { optim::SequentialLR(rig.opt, {lin, cos}, {}); },
                     {"SequentialLR: expects one milestone fewer than schedulers, got 2 schedulers and 0 milestones"});
  test::expect_error([&] { optim::SequentialLR(rig.opt, {lin, cos}, {0}); },
                     {"SequentialLR: milestones must be positive and strictly increasing, got [0]"});
  auto step = std::make_shared<optim::StepLR>(rig.opt, 2);
  test::expect_error([&] { optim::SequentialLR(rig.opt, {lin, cos, step}, {5, 5}); },
                     {"strictly increasing, got [5,5]"});
  test::expect_error([&] { optim::SequentialLR(rig.opt, {lin, lin}, {3}); },
                     {"SequentialLR: scheduler 1 (LinearLR) is listed twice"});
  test::expect_error([&] { optim::SequentialLR(rig.opt, {lin, nullptr}, {3}); }, {"SequentialLR: scheduler 1 is null"});
  Rig other;
  auto foreign = std::make_shared<optim::StepLR>(other.opt, 2);
  test::expect_error([&] { optim::SequentialLR(rig.opt, {lin, foreign}, {3}); },
                     {"SequentialLR: scheduler 1 (StepLR) belongs to a different optimizer"});
  auto seq = std::make_shared<optim::SequentialLR>(rig.opt, std::vector<std::shared_ptr<optim::LRScheduler>>{lin, cos},
                                                   std::vector<int64_t>{3});
  test::expect_error([&] { optim::SequentialLR(rig.opt, {step, seq}, {3}); },
                     {"SequentialLR: scheduler 1 is itself a SequentialLR"});

  // State dicts of a different shape of schedule are refused, and nothing changes.
  Rig r2;
  auto lin2 = std::make_shared<optim::LinearLR>(r2.opt, 0.5, 1.0, 3);
  auto cos2 = std::make_shared<optim::CosineAnnealingLR>(r2.opt, 10);
  optim::SequentialLR seq2(r2.opt, {lin2, cos2}, {4});
  test::expect_error([&] { seq2.load_state_dict(seq->state_dict()); },
                     {"SequentialLR: load_state_dict: the state dict is for milestones [3], this scheduler has [4]"});
  Rig r3;
  auto lin3 = std::make_shared<optim::LinearLR>(r3.opt, 0.5, 1.0, 3);
  auto step3 = std::make_shared<optim::StepLR>(r3.opt, 10);
  optim::SequentialLR seq3(r3.opt, {lin3, step3}, {3});
  for (int i = 0; i < 2; ++i) seq3.step();
  const optim::StateDict before = seq3.state_dict();
  test::expect_error([&] { seq3.load_state_dict(seq->state_dict()); },
                     {"StepLR: load_state_dict", "is from a CosineAnnealingLR scheduler"});
  EXPECT_EQ(seq3.state_dict().metadata, before.metadata) << "a refused load must leave every scheduler as it was";
  optim::MultiStepLR ms(r3.opt, {2, 4});
  optim::MultiStepLR ms2(r3.opt, {2, 5});
  test::expect_error([&] { ms.load_state_dict(ms2.state_dict()); },
                     {"MultiStepLR: load_state_dict: the state dict is for milestones [2,5], this scheduler has [2,4]"});

  using Opts = optim::ReduceLROnPlateauOptions;
  test::expect_error([&] { optim::ReduceLROnPlateau(rig.opt, Opts().factor(1.0)); },
                     {"ReduceLROnPlateau: factor must be in [0, 1), got 1"});
  test::expect_error([&] { optim::ReduceLROnPlateau(rig.opt, Opts().patience(-1)); },
                     {"ReduceLROnPlateau: patience must be non-negative, got -1"});
  test::expect_error([&] { optim::ReduceLROnPlateau(rig.opt, Opts().cooldown(-2)); }, {"cooldown must be non-negative"});
  test::expect_error([&] { optim::ReduceLROnPlateau(rig.opt, Opts().threshold(-0.1)); },
                     {"threshold must be finite and non-negative"});
  test::expect_error([&] { optim::ReduceLROnPlateau(rig.opt, Opts().min_lrs({0.1, 0.2, 0.3})); },
                     {"ReduceLROnPlateau: expected 1 or 2 min_lrs (one per parameter group), got 3"});
  test::expect_error([&] { optim::ReduceLROnPlateau(rig.opt, Opts().min_lr(-1)); },
                     {"min_lr must be finite and non-negative, got -1"});
  optim::ReduceLROnPlateau pmin(rig.opt), pmax(rig.opt, Opts().mode(optim::PlateauMode::Max));
  test::expect_error([&] { pmin.load_state_dict(pmax.state_dict()); },
                     {"ReduceLROnPlateau: load_state_dict: the state dict is for mode 'max', this scheduler's is 'min'"});
  test::expect_error([&] { pmin.load_state_dict(step->state_dict()); },
                     {"the state dict is from a StepLR scheduler, this one is ReduceLROnPlateau"});
  optim::StateDict bad = pmin.state_dict();
  bad.metadata["best"] = "nan";
  test::expect_error([&] { pmin.load_state_dict(bad); }, {"entry 'best' = 'nan' is not a number"});
}
