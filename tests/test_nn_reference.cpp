// PyTorch reference values for the nn library: tests/data/reference_nn.json, written by
// scripts/make_reference_nn.py with torch 1.13 (the tests never need PyTorch themselves).
//
// "cases": every nn::functional op against PyTorch's output and input gradients, each case written
// here again with ember (ember_cases() mirrors the "torch" expression stored with the case), run on
// every device in float64 (only rounding differences allowed) and float32 (float32 rounding).
// "modules": names and parameter counts of nested containers and the benchmark networks, BatchNorm
// running statistics after a few training steps, and one training step of a small CNN loaded from
// PyTorch's weights (loss, every gradient, the updated running statistics).
//
// The cases are tied to the op table (tests/op_table.h), the one list of differentiable ops: a case
// belongs to the table op whose name prefixes it, and tests/test_op_table_goldens.cpp fails for a
// table op without a case and for a case of no table op. Rule — add an op: one table entry + its
// golden case in scripts/make_reference_nn.py.
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "nn/models/models.h"  // the zoo's networks, which examples/mnist trains
#include "nn/nn.h"
#include "tests/reference_util.h"
#include "tests/test_util.h"

using namespace ember;
namespace F = ember::nn::functional;
using json = nlohmann::json;
using test::Tolerance;
using test::compare;
using test::from_json;

namespace {

using Inputs = std::vector<Tensor>;
using CaseFn = std::function<Tensor(const Inputs&)>;
using nn::Reduction;

Tensor vec(std::vector<double> v) { return from_vector(v); }

// The ember side of every case; each line mirrors the case's "torch" expression in the file.
const std::map<std::string, CaseFn>& ember_cases() {
  static const std::map<std::string, CaseFn> kCases = {
      // ---- linear ----
      {"linear", [](const Inputs& x) { return F::linear(x[0], x[1], x[2]); }},
      {"linear_relu", [](const Inputs& x) { return F::linear_relu(x[0], x[1], x[2]); }},
      {"linear_relu_3d_nobias", [](const Inputs& x) { return F::linear_relu(x[0], x[1]); }},
      {"linear_nobias", [](const Inputs& x) { return F::linear(x[0], x[1]); }},
      {"linear_3d", [](const Inputs& x) { return F::linear(x[0], x[1], x[2]); }},
      {"linear_1d", [](const Inputs& x) { return F::linear(x[0], x[1], x[2]); }},
      {"linear_noncontig", [](const Inputs& x) { return F::linear(x[0].transpose(0, 1), x[1], x[2]); }},
      // ---- conv2d ----
      {"conv2d", [](const Inputs& x) { return F::conv2d(x[0], x[1], x[2]); }},
      {"conv2d_relu", [](const Inputs& x) { return F::conv2d_relu(x[0], x[1], x[2], 1, 1); }},
      {"conv2d_relu_stride_groups_nobias",
       [](const Inputs& x) { return F::conv2d_relu(x[0], x[1], Tensor(), 2, 0, 1, 2); }},
      {"conv2d_nobias", [](const Inputs& x) { return F::conv2d(x[0], x[1]); }},
      {"conv2d_stride_padding",
       [](const Inputs& x) {
         return F::conv2d(x[0], x[1], x[2], {2, 1}, {1, 2});
       }},
      {"conv2d_dilation", [](const Inputs& x) { return F::conv2d(x[0], x[1], x[2], 1, 2, 2); }},
      {"conv2d_groups", [](const Inputs& x) { return F::conv2d(x[0], x[1], x[2], 2, 1, 1, 2); }},
      {"conv2d_depthwise", [](const Inputs& x) { return F::conv2d(x[0], x[1], x[2], 1, 1, 1, 3); }},
      {"conv2d_1x1", [](const Inputs& x) { return F::conv2d(x[0], x[1], x[2]); }},
      {"conv2d_1x1_stride", [](const Inputs& x) { return F::conv2d(x[0], x[1], Tensor(), 2); }},
      {"conv2d_unbatched", [](const Inputs& x) { return F::conv2d(x[0], x[1], x[2], 1, 1); }},
      {"conv2d_noncontig", [](const Inputs& x) { return F::conv2d(x[0].transpose(2, 3), x[1], x[2]); }},
      {"conv2d_batch1", [](const Inputs& x) { return F::conv2d(x[0], x[1], x[2], 1, 1); }},
      // ---- pooling ----
      {"max_pool2d", [](const Inputs& x) { return F::max_pool2d(x[0], 2); }},
      {"max_pool2d_stride_padding", [](const Inputs& x) { return F::max_pool2d(x[0], 3, 2, 1); }},
      {"max_pool2d_ceil_mode", [](const Inputs& x) { return F::max_pool2d(x[0], 2, std::nullopt, 0, 1, true); }},
      {"max_pool2d_dilation",
       [](const Inputs& x) {
         return F::max_pool2d(x[0], nn::Size2{2, 3}, 1, 0, 2);
       }},
      {"max_pool2d_unbatched", [](const Inputs& x) { return F::max_pool2d(x[0], 2, 1); }},
      {"avg_pool2d", [](const Inputs& x) { return F::avg_pool2d(x[0], 2); }},
      {"avg_pool2d_padding", [](const Inputs& x) { return F::avg_pool2d(x[0], 3, 2, 1); }},
      {"avg_pool2d_no_pad_count", [](const Inputs& x) { return F::avg_pool2d(x[0], 3, 2, 1, false, false); }},
      {"avg_pool2d_ceil_mode", [](const Inputs& x) { return F::avg_pool2d(x[0], 3, 2, 1, true); }},
      {"adaptive_avg_pool2d",
       [](const Inputs& x) {
         return F::adaptive_avg_pool2d(x[0], {3, 2});
       }},
      {"adaptive_avg_pool2d_global", [](const Inputs& x) { return F::adaptive_avg_pool2d(x[0], 1); }},
      {"adaptive_avg_pool2d_upsample",
       [](const Inputs& x) {
         return F::adaptive_avg_pool2d(x[0], {5, 4});
       }},
      // ---- normalisation ----
      {"batch_norm_train", [](const Inputs& x) { return F::batch_norm(x[0], {}, {}, x[1], x[2], true); }},
      {"batch_norm_train_1d", [](const Inputs& x) { return F::batch_norm(x[0], {}, {}, x[1], x[2], true, 0.1, 1e-3); }},
      {"batch_norm_train_noaffine", [](const Inputs& x) { return F::batch_norm(x[0], {}, {}, {}, {}, true); }},
      {"batch_norm_eval",
       [](const Inputs& x) {
         auto like_x = [&](const Tensor& t) { return t.to(x[0].dtype()).to(x[0].device()); };
         return F::batch_norm(x[0], like_x(vec({0.25, -0.5, 0.0})), like_x(vec({0.5, 2.0, 1.25})), x[1], x[2]);
       }},
      {"batch_norm_relu_train", [](const Inputs& x) { return F::batch_norm_relu(x[0], {}, {}, x[1], x[2], true); }},
      {"batch_norm_relu_eval",
       [](const Inputs& x) {
         auto like_x = [&](const Tensor& t) { return t.to(x[0].dtype()).to(x[0].device()); };
         return F::batch_norm_relu(x[0], like_x(vec({0.25, -0.5, 0.0})), like_x(vec({0.5, 2.0, 1.25})), x[1], x[2]);
       }},
      {"layer_norm",
       [](const Inputs& x) {
         return F::layer_norm(x[0], {4, 5}, x[1], x[2]);
       }},
      {"layer_norm_noaffine", [](const Inputs& x) { return F::layer_norm(x[0], {6}); }},
      {"layer_norm_noncontig",
       [](const Inputs& x) { return F::layer_norm(x[0].transpose(0, 1), {3}, x[1], x[2], 1e-3); }},
      // ---- losses ----
      {"cross_entropy", [](const Inputs& x) { return F::cross_entropy(x[0], x[1]); }},
      {"cross_entropy_sum",
       [](const Inputs& x) { return F::cross_entropy(x[0], x[1], {.reduction = Reduction::Sum}); }},
      {"cross_entropy_none",
       [](const Inputs& x) { return F::cross_entropy(x[0], x[1], {.reduction = Reduction::None}); }},
      {"cross_entropy_label_smoothing",
       [](const Inputs& x) { return F::cross_entropy(x[0], x[1], {.label_smoothing = 0.1}); }},
      {"cross_entropy_ignore_index", [](const Inputs& x) { return F::cross_entropy(x[0], x[1]); }},
      {"cross_entropy_ignore_smoothing",
       [](const Inputs& x) { return F::cross_entropy(x[0], x[1], {.ignore_index = 1, .label_smoothing = 0.2}); }},
      {"cross_entropy_ignore_none",
       [](const Inputs& x) {
         return F::cross_entropy(x[0], x[1], {.reduction = Reduction::None, .ignore_index = 1, .label_smoothing = 0.2});
       }},
      {"cross_entropy_kdim", [](const Inputs& x) { return F::cross_entropy(x[0], x[1]); }},
      {"cross_entropy_unbatched", [](const Inputs& x) { return F::cross_entropy(x[0], x[1]); }},
      {"cross_entropy_large_logits", [](const Inputs& x) { return F::cross_entropy(x[0], x[1]); }},
      {"cross_entropy_noncontig", [](const Inputs& x) { return F::cross_entropy(x[0].t(), x[1]); }},
      {"nll_loss", [](const Inputs& x) { return F::nll_loss(x[0], x[1]); }},
      {"nll_loss_sum", [](const Inputs& x) { return F::nll_loss(x[0], x[1], {.reduction = Reduction::Sum}); }},
      {"nll_loss_ignore_index", [](const Inputs& x) { return F::nll_loss(x[0], x[1], {.ignore_index = 2}); }},
      {"nll_loss_none", [](const Inputs& x) { return F::nll_loss(x[0], x[1], {.reduction = Reduction::None}); }},
      {"mse_loss", [](const Inputs& x) { return F::mse_loss(x[0], x[1]); }},
      {"mse_loss_sum", [](const Inputs& x) { return F::mse_loss(x[0], x[1], Reduction::Sum); }},
      {"mse_loss_none", [](const Inputs& x) { return F::mse_loss(x[0], x[1], Reduction::None); }},
  };
  return kCases;
}

const json& reference() { return test::load_reference("reference_nn.json", "scripts/make_reference_nn.py"); }

// Allowed |actual - expected| <= atol + rtol * |expected|, atol scaled by the largest input (>= 1).
// float64: rounding differences only (a different summation order).
constexpr Tolerance kFloat64Tol{1e-10, 1e-12};
// float32 against the float64 reference (inputs exact in float32): the ops here sum up to a few
// hundred products (conv windows, batch statistics), so allow float32 rounding of such sums.
constexpr Tolerance kFloat32Tol{2e-5, 1e-5};

std::vector<std::string> run_case(const json& c, Device device, DType float_dtype, Tolerance tol) {
  std::vector<std::string> problems;
  double scale = 1;
  for (const json& in : c.at("inputs"))
    if (in.at("dtype") == "float64")
      for (double v : in.at("data").get<std::vector<double>>()) scale = std::max(scale, std::abs(v));
  tol.atol *= scale;
  auto it = ember_cases().find(c.at("name").get<std::string>());
  if (it == ember_cases().end()) return {"no ember lambda for this case (add it to ember_cases())"};
  try {
    Inputs inputs;
    for (const json& in : c.at("inputs")) {
      Tensor t = from_json(in, float_dtype).to(device);
      if (in.value("requires_grad", false)) t.requires_grad_();
      inputs.push_back(t);
    }
    Tensor out = it->second(inputs);
    if (auto e = compare(out, c.at("output"), tol); !e.empty()) problems.push_back("output: " + e);
    if (!c.contains("grads")) return problems;
    if (!out.requires_grad()) return {"output does not require grad: no backward was recorded"};
    out.backward(from_json(c.at("upstream"), float_dtype).to(device));
    const json& grads = c.at("grads");
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (grads[i].is_null()) continue;
      const std::string what = "gradient of x" + std::to_string(i);
      if (!inputs[i].grad().defined()) {
        problems.push_back(what + ": none reached the input");
        continue;
      }
      if (auto e = compare(inputs[i].grad(), grads[i], tol); !e.empty()) problems.push_back(what + ": " + e);
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("threw: ") + e.what());
  }
  return problems;
}

struct CaseOnDevice {
  std::string name;
  Device device;
};
void PrintTo(const CaseOnDevice& p, std::ostream* os) { *os << p.name << " on " << p.device; }

std::vector<CaseOnDevice> all_cases_on_all_devices() {
  std::vector<CaseOnDevice> params;
  try {
    for (const json& c : reference().at("cases"))
      for (Device d : test::all_devices()) params.push_back({c.at("name").get<std::string>(), d});
  } catch (const std::exception&) {
    // An unreadable file leaves this list empty; NnReferenceCases reports why.
  }
  return params;
}

class NnReference : public ::testing::TestWithParam<CaseOnDevice> {
 protected:
  void SetUp() override {
    if (GetParam().device.is_cuda() && !cuda_is_available())
      GTEST_SKIP() << "no CUDA device available; CPU results are tested";
  }
  void check(DType float_dtype, Tolerance tol) {
    const json* found = nullptr;
    for (const json& c : reference().at("cases"))
      if (c.at("name") == GetParam().name) found = &c;
    ASSERT_NE(found, nullptr);
    const auto problems = run_case(*found, GetParam().device, float_dtype, tol);
    if (problems.empty()) return;
    std::ostringstream msg;
    msg << "case '" << GetParam().name << "' (PyTorch: " << found->at("torch").get<std::string>() << ") on "
        << GetParam().device << " in " << dtype_name(float_dtype) << ":";
    for (const auto& p : problems) msg << "\n    " << p;
    ADD_FAILURE() << msg.str();
  }
};

}  // namespace

TEST(NnReferenceCases, EveryCaseHasALambdaAndEveryLambdaACase) {
  std::map<std::string, int> in_file;
  for (const json& c : reference().at("cases")) ++in_file[c.at("name").get<std::string>()];
  for (const auto& [name, count] : in_file) {
    EXPECT_EQ(count, 1) << name;
    EXPECT_TRUE(ember_cases().count(name)) << "case '" << name << "' has no ember lambda";
  }
  for (const auto& [name, fn] : ember_cases())
    EXPECT_TRUE(in_file.count(name)) << "lambda '" << name << "' has no case (add it to scripts/make_reference_nn.py)";
}

TEST_P(NnReference, Float64) { check(kFloat64, kFloat64Tol); }
TEST_P(NnReference, Float32) { check(kFloat32, kFloat32Tol); }

INSTANTIATE_TEST_SUITE_P(Cases, NnReference, ::testing::ValuesIn(all_cases_on_all_devices()),
                         [](const ::testing::TestParamInfo<CaseOnDevice>& info) {
                           return info.param.name + (info.param.device.is_cpu() ? "_cpu" : "_cuda");
                         });

// ---------------------------------------------------------------- modules

namespace {

const json& module_ref(const std::string& name) { return reference().at("modules").at(name); }

std::shared_ptr<nn::Sequential> nested() {
  auto inner = std::make_shared<nn::Sequential>(std::make_shared<nn::Conv2d>(3, 8, 3),
                                                std::make_shared<nn::BatchNorm2d>(8), std::make_shared<nn::ReLU>());
  auto head =
      std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(8 * 6 * 6, 16), std::make_shared<nn::Dropout>(0.5),
                                       std::make_shared<nn::Linear>(16, 10));
  return std::make_shared<nn::Sequential>(inner, std::make_shared<nn::Flatten>(), head);
}

std::shared_ptr<nn::Sequential> small_resnet() {
  auto net = std::make_shared<nn::Sequential>();
  net->emplace_back<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.padding = 1, .bias = false});
  net->emplace_back<nn::BatchNorm2d>(8);
  net->emplace_back<nn::ReLU>();
  net->emplace_back<nn::ResidualBlock>(8, 8);
  net->emplace_back<nn::ResidualBlock>(8, 16, 2);
  net->emplace_back<nn::AdaptiveAvgPool2d>(1);
  net->emplace_back<nn::Flatten>();
  net->emplace_back<nn::Linear>(16, 10);
  return net;
}

void expect_names_match(const nn::Module& m, const json& want) {
  EXPECT_EQ(m.named_parameters().keys(), want.at("parameters").get<std::vector<std::string>>());
  std::vector<std::pair<std::string, std::vector<int64_t>>> sd;
  for (const auto& [name, t] : m.state_dict()) sd.emplace_back(name, t.shape().vec());
  EXPECT_EQ(sd, (want.at("state_dict").get<std::vector<std::pair<std::string, std::vector<int64_t>>>>()));
  EXPECT_EQ(m.num_parameters(), want.at("num_parameters").get<int64_t>());
}

}  // namespace

TEST(NnReferenceModules, NestedSequentialNamesMatchPyTorch) {
  expect_names_match(*nested(), module_ref("nested_sequential"));
}
TEST(NnReferenceModules, SmallResNetNamesMatchPyTorch) {
  expect_names_match(*small_resnet(), module_ref("small_resnet"));
}
TEST(NnReferenceModules, LeNetParameterCount) { expect_names_match(*nn::models::lenet(), module_ref("lenet")); }
TEST(NnReferenceModules, CnnParameterCount) { expect_names_match(*nn::models::mnist_cnn(), module_ref("cnn")); }

namespace {

// Trains `bn` on the reference batches on `device`, then evaluates it: running statistics and
// outputs must match.
void check_running_stats(nn::BatchNorm& bn, const json& r, Device device) {
  bn.to(device);
  {
    NoGradGuard ng;
    bn.weight.copy_(from_json(r.at("weight")));
    bn.bias.copy_(from_json(r.at("bias")));
  }
  bn.train();
  Tensor last;
  for (const json& b : r.at("batches")) last = bn.forward(from_json(b).to(device));
  EXPECT_EQ(last.device(), device);
  const Tolerance tol{1e-10, 1e-12};
  EXPECT_EQ(compare(last, r.at("last_train_output"), tol), "");
  EXPECT_EQ(compare(bn.running_mean, r.at("running_mean"), tol), "");
  EXPECT_EQ(compare(bn.running_var, r.at("running_var"), tol), "");
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), r.at("num_batches_tracked").get<int64_t>());
  bn.eval();
  EXPECT_EQ(compare(bn.forward(from_json(r.at("eval_input")).to(device)), r.at("eval_output"), tol), "");
  // Evaluation does not touch the statistics.
  EXPECT_EQ(compare(bn.running_mean, r.at("running_mean"), tol), "");
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), r.at("num_batches_tracked").get<int64_t>());
}

}  // namespace

// Modules that compute: on every device.
EMBER_DEVICE_SUITE(NnReferenceModulesDevice);

TEST_P(NnReferenceModulesDevice, BatchNorm2dRunningStatsMatchPyTorch) {
  nn::BatchNorm2d bn(3);
  bn.to(kFloat64);
  check_running_stats(bn, module_ref("batchnorm2d_running_stats"), device());
}

TEST_P(NnReferenceModulesDevice, BatchNorm2dCumulativeAverageMatchesPyTorch) {
  nn::BatchNorm2d bn(3, {.momentum = std::nullopt});
  bn.to(kFloat64);
  check_running_stats(bn, module_ref("batchnorm2d_cumulative"), device());
}

TEST_P(NnReferenceModulesDevice, BatchNorm1dRunningStatsMatchPyTorch) {
  nn::BatchNorm1d bn(4, {.momentum = 0.3});
  bn.to(kFloat64);
  check_running_stats(bn, module_ref("batchnorm1d_running_stats"), device());
}

// A whole training step of a small CNN from PyTorch's weights: load_state_dict, forward through
// every kind of layer, a label-smoothed cross entropy, backward to every parameter.
TEST_P(NnReferenceModulesDevice, TrainStepOfSmallCnnMatchesPyTorch) {
  const json& r = module_ref("train_step");
  auto model = std::make_shared<nn::Sequential>();
  model->emplace_back<nn::Conv2d>(2, 4, 3, nn::Conv2dOptions{.padding = 1});
  model->emplace_back<nn::BatchNorm2d>(4);
  model->emplace_back<nn::ReLU>();
  model->emplace_back<nn::MaxPool2d>(2);
  model->emplace_back<nn::Conv2d>(4, 6, 3, nn::Conv2dOptions{.stride = 2, .padding = 1, .bias = false});
  model->emplace_back<nn::GELU>();
  model->emplace_back<nn::AvgPool2d>(2);
  model->emplace_back<nn::Flatten>();
  model->emplace_back<nn::Linear>(6, 5);
  model->emplace_back<nn::Tanh>();
  model->emplace_back<nn::Linear>(5, 3);
  model->to(kFloat64);
  model->to(device());

  nn::NamedTensors sd;
  for (const auto& [name, t] : r.at("state_dict").items()) sd.insert(name, from_json(t));
  model->load_state_dict(sd);  // CPU values into the device's tensors
  model->train();
  Tensor loss = F::cross_entropy(model->forward(from_json(r.at("input")).to(device())),
                                 from_json(r.at("target")).to(device()), {.label_smoothing = 0.05});
  EXPECT_EQ(loss.device(), device());
  EXPECT_NEAR(loss.item(), r.at("loss").get<double>(), 1e-12);
  loss.backward();
  const Tolerance tol{1e-9, 1e-12};
  for (const auto& [name, g] : r.at("grads").items()) {
    const Tensor p = model->named_parameters().at(name);
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().device(), device()) << name;
    EXPECT_EQ(compare(p.grad(), g, tol), "") << "gradient of " << name;
  }
  for (const auto& [name, t] : r.at("state_after").items())
    EXPECT_EQ(compare(model->state_dict().at(name), t, tol), "") << name;
}
