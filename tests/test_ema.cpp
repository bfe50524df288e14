// optim::ExponentialMovingAverage: against the closed form of a short sequence, against PyTorch's
// AveragedModel with an EMA avg_fn (tests/data/reference_optim.json "ema", written by
// scripts/make_reference_optim.py), evaluation with the averaged weights (EmaScope, copy_to),
// checkpoints, and the error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/ember.h"
#include "nn/nn.h"
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

// The reference's model: Linear(3, 2) then BatchNorm1d(2), float64.
std::shared_ptr<nn::Sequential> small_model() {
  auto m = std::make_shared<nn::Sequential>();
  m->emplace_back<nn::Linear>(3, 2);
  m->emplace_back<nn::BatchNorm1d>(2);
  m->to(kFloat64);
  return m;
}

// A module with one float64 parameter [3] and one buffer [3], both set directly by the tests.
struct Tiny : nn::Module {
  Tensor w, stat;
  Tiny() : Module("Tiny") {
    w = register_parameter("w", zeros({3}, kFloat64));
    stat = register_buffer("stat", zeros({3}, kFloat64));
  }
  void set(const std::vector<double>& wv, const std::vector<double>& sv) {
    NoGradGuard no_grad;
    w.copy_(from_vector<double>(wv, {3}));
    stat.copy_(from_vector<double>(sv, {3}));
  }
};

std::vector<double> values(const Tensor& t) { return t.to(kFloat64).to_vector<double>(); }

}  // namespace

// The average after n updates with first-update-copies semantics, in closed form:
//   e_1 = p_1,  e_n = d^(n-1) p_1 + sum_{k=2..n} (1 - d) d^(n-k) p_k.
TEST(Ema, MatchesClosedForm) {
  const double d = 0.8;
  Tiny model;
  optim::ExponentialMovingAverage ema(model, optim::EmaOptions().decay(d));
  EXPECT_EQ(ema.num_updates(), 0);
  std::vector<std::vector<double>> seq = {{1, -2, 0.5}, {3, 0, -1}, {-4, 2, 2}, {0.25, 7, -3}, {1, 1, 1}};
  for (size_t n = 1; n <= seq.size(); ++n) {
    model.set(seq[n - 1], {double(n), 0, 0});
    ema.update(model);
    for (int i = 0; i < 3; ++i) {
      double want = std::pow(d, double(n - 1)) * seq[0][i];
      for (size_t k = 2; k <= n; ++k) want += (1 - d) * std::pow(d, double(n - k)) * seq[k - 1][i];
      EXPECT_NEAR(values(ema.averaged().at("w"))[i], want, 1e-14) << "update " << n << ", element " << i;
    }
    // The buffer is copied, not averaged.
    EXPECT_EQ(values(ema.averaged().at("stat")), (std::vector<double>{double(n), 0, 0}));
  }
  EXPECT_EQ(ema.num_updates(), static_cast<int64_t>(seq.size()));
}

// The same sequence on every device (the CUDA case skips without a GPU): the update is ordinary
// tensor ops, so it runs wherever the model lives.
EMBER_DEVICE_SUITE(EmaDevice);

TEST_P(EmaDevice, MatchesClosedFormWhereTheModelLives) {
  const double d = 0.75;
  Tiny model;
  model.to(device());
  optim::ExponentialMovingAverage ema(model, optim::EmaOptions().decay(d));
  EXPECT_EQ(ema.averaged().at("w").device(), device());
  std::vector<std::vector<double>> seq = {{1, -2, 0.5}, {3, 0, -1}, {-4, 2, 2}};
  for (const auto& p : seq) {
    model.set(p, {7, 8, 9});
    ema.update(model);
  }
  for (int i = 0; i < 3; ++i) {
    const double want = d * d * seq[0][i] + (1 - d) * d * seq[1][i] + (1 - d) * seq[2][i];
    EXPECT_NEAR(values(ema.averaged().at("w"))[i], want, 1e-14) << "element " << i;
  }
  EXPECT_EQ(values(ema.averaged().at("stat")), (std::vector<double>{7, 8, 9}));
}

TEST(Ema, WarmupRampsTheDecay) {
  Tiny model;
  optim::ExponentialMovingAverage plain(model, optim::EmaOptions().decay(0.99));
  optim::ExponentialMovingAverage warm(model, optim::EmaOptions().decay(0.99).warmup(true));
  EXPECT_EQ(plain.decay_at(0), 0.99);
  EXPECT_EQ(plain.decay_at(1000), 0.99);
  EXPECT_DOUBLE_EQ(warm.decay_at(0), 0.1);
  EXPECT_DOUBLE_EQ(warm.decay_at(1), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(warm.decay_at(10), 11.0 / 20.0);
  EXPECT_EQ(warm.decay_at(5000), 0.99);  // the ramp passes 0.99 at n = 890
  // And update() uses it: after two updates, e = d(1) * p1 + (1 - d(1)) * p2.
  model.set({1, 1, 1}, {0, 0, 0});
  warm.update(model);
  model.set({12, 12, 12}, {0, 0, 0});
  warm.update(model);
  EXPECT_NEAR(values(warm.averaged().at("w"))[0], 2.0 / 11 * 1 + 9.0 / 11 * 12, 1e-14);
}

TEST(EmaReference, MatchesAveragedModel) {
  ASSERT_GE(reference()["ema"].size(), 2u);
  for (const json& cfg : reference()["ema"]) {
    SCOPED_TRACE(cfg["name"].get<std::string>());
    auto model = small_model();
    optim::ExponentialMovingAverage ema(
        *model, optim::EmaOptions().decay(cfg["decay"].get<double>()).warmup(cfg["warmup"].get<bool>()));
    ASSERT_EQ(ema.averaged().size(), cfg["shapes"].size());
    for (size_t k = 0; k < cfg["states"].size(); ++k) {
      nn::NamedTensors state;
      for (const auto& [name, v] : cfg["states"][k].items()) {
        Tensor t = from_vector<double>(v.get<std::vector<double>>(), Shape(cfg["shapes"][name].get<std::vector<int64_t>>()));
        state.insert(name, name.ends_with("num_batches_tracked") ? t.to(kInt64) : t);
      }
      model->load_state_dict(state);
      ema.update(*model);
      for (const auto& [name, v] : cfg["averaged"][k].items()) {
        const std::vector<double> want = v.get<std::vector<double>>();
        const std::vector<double> got = values(ema.averaged().at(name));
        ASSERT_EQ(got.size(), want.size()) << name;
        for (size_t i = 0; i < want.size(); ++i)
          EXPECT_NEAR(got[i], want[i], 1e-14 * std::max(1.0, std::abs(want[i])))
              << name << "[" << i << "] after update " << k + 1;
      }
    }
  }
}

// Evaluating with the EMA weights: inside the scope the model computes what a second instance
// loaded with copy_to computes; after it, the model has its own weights back, bit for bit.
TEST(Ema, ScopeSwapsInAndRestores) {
  manual_seed(3);
  auto model = small_model();
  optim::ExponentialMovingAverage ema(*model, optim::EmaOptions().decay(0.5));
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.1));
  Tensor x = randn({4, 3}, kFloat64);
  for (int step = 0; step < 3; ++step) {  // train a little so the average and the model differ
    opt.zero_grad();
    (*model)(x).pow(2).sum().backward();
    opt.step();
    ema.update(*model);
  }
  model->eval();
  const std::vector<double> own_out = values((*model)(x));
  const nn::NamedTensors own = model->state_dict();
  std::map<std::string, std::vector<double>> own_values;
  for (const auto& [name, t] : own) own_values[name] = values(t);

  auto copy = small_model();
  copy->eval();
  ema.copy_to(*copy);
  const std::vector<double> ema_out = values((*copy)(x));
  EXPECT_NE(ema_out, own_out) << "the average should differ from the last weights";
  {
    optim::EmaScope use_ema(ema, *model);
    EXPECT_EQ(values((*model)(x)), ema_out);
  }
  EXPECT_EQ(values((*model)(x)), own_out);
  for (const auto& [name, t] : model->state_dict()) EXPECT_EQ(values(t), own_values[name]) << name;
  // copy_to and the scope write into the module's own tensors: the optimizer still drives them.
  EXPECT_EQ(model->parameters()[0].impl(), opt.param_groups()[0].params()[0].impl());
}

TEST(Ema, StateDictRoundTripContinuesIdentically) {
  Tiny model;
  optim::ExponentialMovingAverage a(model, optim::EmaOptions().decay(0.7).warmup(true));
  for (int k = 0; k < 3; ++k) {
    model.set({double(k), 2.0 * k, -1.0 * k}, {double(k), 0, 0});
    a.update(model);
  }
  const optim::StateDict sd = a.state_dict();
  EXPECT_EQ(sd.tensors.count("module.w"), 1u);
  EXPECT_EQ(sd.tensors.count("module.stat"), 1u);
  EXPECT_EQ(sd.tensors.at("n_averaged").item<int64_t>(), 3);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("ember_test_ema_" + std::to_string(::getpid()) + ".safetensors"))
          .string();
  optim::StateDict all;
  all.merge("ema", sd);
  nn::save_safetensors(path, all.tensors, all.metadata);
  nn::SafetensorsFile f = nn::load_safetensors(path);
  std::filesystem::remove(path);

  Tiny model_b;
  optim::ExponentialMovingAverage b(model_b, optim::EmaOptions().decay(0.7).warmup(true));
  b.load_state_dict(optim::StateDict{f.tensors, f.metadata}.sub("ema"));
  EXPECT_EQ(b.num_updates(), 3);
  for (int k = 3; k < 6; ++k) {
    model.set({double(k), 0.5 * k, 1.0}, {0, double(k), 0});
    a.update(model);
    b.update(model);
    EXPECT_EQ(values(a.averaged().at("w")), values(b.averaged().at("w"))) << "update " << k + 1;
    EXPECT_EQ(values(a.averaged().at("stat")), values(b.averaged().at("stat")));
  }
}

TEST(Ema, Errors) {
  Tiny model;
  test::expect_error([&] { optim::ExponentialMovingAverage(model, optim::EmaOptions().decay(1.5)); },
                     {"ExponentialMovingAverage: decay must be in [0, 1], got 1.5"});
  optim::ExponentialMovingAverage ema(model);
  auto other = small_model();
  test::expect_error([&] { ema.update(*other); },
                     {"ExponentialMovingAverage: update: the model has no \"w\""});
  test::expect_error([&] { ema.copy_to(*other); }, {"ExponentialMovingAverage: copy_to: the model has no \"w\""});

  struct Wider : nn::Module {
    Wider() : Module("Wider") {
      register_parameter("w", zeros({4}, kFloat64));
      register_buffer("stat", zeros({3}, kFloat64));
    }
  } wider;
  test::expect_error([&] { ema.update(wider); }, {"\"w\" has shape [4] in the model but [3] in the average"});
  Tiny converted;
  converted.to(kFloat32);
  test::expect_error([&] { ema.update(converted); },
                     {"ExponentialMovingAverage: update: \"w\" is float32 on cpu in the model but float64 on cpu in "
                      "the average (make the average after moving or converting the model)"});

  optim::StateDict sd = ema.state_dict();
  sd.tensors["module.w"] = zeros({5}, kFloat64);
  test::expect_error([&] { ema.load_state_dict(sd); }, {"\"module.w\" has shape [5], the average has [3]"});
  sd = ema.state_dict();
  sd.tensors["module.extra"] = zeros({1});
  test::expect_error([&] { ema.load_state_dict(sd); }, {"unexpected entry \"module.extra\""});
  sd = ema.state_dict();
  sd.metadata.clear();
  test::expect_error([&] { ema.load_state_dict(sd); }, {"is it an EMA's?"});
}
