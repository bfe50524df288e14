// PyTorch reference values for the backward ops of the neural-network ops (core/ops/nn_ops.h):
// tests/data/reference_nn_backward.json, written by scripts/make_reference_nn_backward.py with
// torch 1.13. Each case's output is a first gradient of a forward op (PyTorch's own backward op
// or autograd.grad with create_graph) and its input gradients are second derivatives, so this
// checks ember's double backward of conv2d, the poolings, the norms and cross entropy against
// PyTorch's. The case runner is test_nn_reference.cpp's; constants of a backward op (pooling
// indices, saved statistics) are detached on both sides and have zero gradients.
//
// The cases are tied to the op table (tests/op_table.h), the one list of differentiable ops: a case
// belongs to the table op whose name prefixes it, and tests/test_op_table_goldens.cpp fails for a
// table op without a case and for a case of no table op. Rule — add an op: one table entry + its
// golden case in scripts/make_reference_nn_backward.py.
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/ember.h"
#include "tests/data_dir.h"
#include "tests/reference_util.h"
#include "tests/test_util.h"

using namespace ember;
using json = nlohmann::json;
using test::compare;
using test::from_json;
using test::Tolerance;

namespace {

using Inputs = std::vector<Tensor>;
using CaseFn = std::function<Tensor(const Inputs&)>;

constexpr const char* kFile = "reference_nn_backward.json";
constexpr const char* kScript = "scripts/make_reference_nn_backward.py";

Tensor flat3(const std::tuple<Tensor, Tensor, Tensor>& t) {
  return cat({std::get<0>(t).reshape({-1}), std::get<1>(t).reshape({-1}), std::get<2>(t).reshape({-1})});
}

// The ember side of every case; each line mirrors the case's "torch" expression in the file.
const std::map<std::string, CaseFn>& ember_cases() {
  static const std::map<std::string, CaseFn> kCases = {
      {"conv2d_backward_input",
       [](const Inputs& x) { return conv2d_backward_input(x[0], x[1], {2, 4, 7, 6}, {2, 1}, 1, {1, 2}, 2); }},
      {"conv2d_backward_weight",
       [](const Inputs& x) { return conv2d_backward_weight(x[0], x[1], {6, 2, 3, 2}, {2, 1}, 1, {1, 2}, 2); }},
      {"max_pool2d_backward",
       [](const Inputs& x) {
         const Tensor in = x[1].detach();
         return max_pool2d_backward(x[0], max_pool2d_with_indices(in, 3, 2, 1, {1, 2}, true).second, in.shape());
       }},
      {"avg_pool2d_backward", [](const Inputs& x) { return avg_pool2d_backward(x[0], {2, 3, 7, 6}, 3, 2, 1, true, false); }},
      {"adaptive_avg_pool2d_backward", [](const Inputs& x) { return adaptive_avg_pool2d_backward(x[0], {2, 3, 7, 5}); }},
      {"batch_norm_backward_train",
       [](const Inputs& x) {
         const Tensor in = x[1].detach();
         return flat3(batch_norm_backward(x[0], x[1], x[2], mean(in, {0, 2}), (var(in, {0, 2}, false) + 1e-3).pow(-0.5),
                                          true, 1e-3));
       }},
      {"batch_norm_backward_eval",
       [](const Inputs& x) {
         return flat3(batch_norm_backward(x[0], x[1], x[2], x[3].detach(), (x[4].detach() + 1e-5).pow(-0.5), false,
                                          1e-5));
       }},
      {"layer_norm_backward",
       [](const Inputs& x) {
         const Tensor in = x[1].detach();
         return flat3(layer_norm_backward(x[0], x[1], {4}, mean(in, {1}), (var(in, {1}, false) + 1e-3).pow(-0.5), x[2],
                                          1e-3));
       }},
      {"cross_entropy_backward", [](const Inputs& x) { return cross_entropy_backward(x[0], x[1], x[2], -100, 0.1); }},
  };
  return kCases;
}

bool have_file() { return std::filesystem::exists(ember::test::data_dir() + "/" + kFile); }
const json& reference() { return test::load_reference(kFile, kScript); }

constexpr Tolerance kFloat64Tol{1e-10, 1e-12};

std::vector<std::string> run_case(const json& c, Device device) {
  auto it = ember_cases().find(c.at("name").get<std::string>());
  if (it == ember_cases().end()) return {"no ember lambda for this case (add it to ember_cases())"};
  std::vector<std::string> problems;
  try {
    Inputs inputs;
    for (const json& in : c.at("inputs")) {
      Tensor t = from_json(in, kFloat64).to(device);
      if (in.value("requires_grad", false)) t.requires_grad_();
      inputs.push_back(t);
    }
    Tensor out = it->second(inputs);
    if (auto e = compare(out, c.at("output"), kFloat64Tol); !e.empty()) problems.push_back("output: " + e);
    if (!out.requires_grad()) return {"output does not require grad: no backward was recorded"};
    out.backward(from_json(c.at("upstream"), kFloat64).to(device));
    const json& grads = c.at("grads");
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (grads[i].is_null()) continue;
      // A constant of the backward op (detached on both sides) gets no gradient: PyTorch wrote zeros.
      const Tensor g = inputs[i].grad().defined() ? inputs[i].grad() : zeros_like(inputs[i]);
      if (auto e = compare(g, grads[i], kFloat64Tol); !e.empty())
        problems.push_back("gradient of x" + std::to_string(i) + ": " + e);
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("threw: ") + e.what());
  }
  return problems;
}

}  // namespace

EMBER_DEVICE_SUITE(NnBackwardReference);

TEST_P(NnBackwardReference, EveryCaseMatchesPyTorchInFloat64) {
  if (!have_file())
    GTEST_SKIP() << "tests/data/" << kFile << " is not generated yet: run /usr/bin/python3 " << kScript;
  std::map<std::string, int> in_file;
  for (const json& c : reference().at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    ++in_file[name];
    const auto problems = run_case(c, device());
    std::ostringstream msg;
    for (const auto& p : problems) msg << "\n    " << p;
    EXPECT_TRUE(problems.empty()) << "case '" << name << "' (PyTorch: " << c.at("torch").get<std::string>() << ")"
                                  << msg.str();
  }
  for (const auto& [name, fn] : ember_cases())
    EXPECT_EQ(in_file[name], 1) << "lambda '" << name << "' has no case (add it to " << kScript << ")";
}
