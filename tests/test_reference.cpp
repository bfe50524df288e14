// PyTorch reference values: every op in core/ops.h against the numbers PyTorch gives.
//
// tests/data/reference_core.json (written by scripts/make_reference.py) holds, per case, a PyTorch
// expression over inputs x0, x1, ..., the inputs, PyTorch's output and — for differentiable cases —
// a fixed upstream gradient v and the gradient of sum(out * v) for every input that requires grad.
// ember_cases() below maps each case name to the same expression written with ember. Every case runs
// as its own test on every device (Cases/ReferenceCore.Float64/<case>_<device>), in float64 (tight
// tolerances: only rounding differences are allowed) and in float32 (against the same float64
// reference, with float32 tolerances).
//
// A case without a lambda fails its own test, and ReferenceCoreCases fails for a lambda without a
// case, so the file and the table cannot drift apart: add a case to scripts/make_reference.py,
// regenerate the file, then add its lambda here.
//
// The cases are tied to the op table (tests/op_table.h), the one list of differentiable ops: a case
// belongs to the table op whose name prefixes it ("softmax_large" -> softmax), and
// tests/test_op_table_goldens.cpp fails for a table op without a case and for a differentiable case
// of no table op. Rule — add an op: one table entry + its golden case here.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/reference_util.h"
#include "tests/test_util.h"

using namespace ember;
using json = nlohmann::json;
using test::Tolerance;
using test::compare;
using test::from_json;

namespace {

using Inputs = std::vector<Tensor>;
using CaseFn = std::function<Tensor(const Inputs&)>;

// The ember side of every case; each line mirrors the "torch" expression of the case in the file.
const std::map<std::string, CaseFn>& ember_cases() {
  static const std::map<std::string, CaseFn> kCases = {
      // ---- elementwise binary, tensor forms ----
      {"add", [](const Inputs& x) { return add(x[0], x[1]); }},
      {"add_broadcast", [](const Inputs& x) { return add(x[0], x[1]); }},
      {"add_noncontig", [](const Inputs& x) { return add(x[0].t(), x[1]); }},
      {"add_relu", [](const Inputs& x) { return add_relu(x[0], x[1]); }},
      {"add_relu_broadcast", [](const Inputs& x) { return add_relu(x[0], x[1]); }},
      {"sub", [](const Inputs& x) { return sub(x[0], x[1]); }},
      {"sub_broadcast", [](const Inputs& x) { return sub(x[0], x[1]); }},
      {"mul", [](const Inputs& x) { return mul(x[0], x[1]); }},
      {"mul_broadcast", [](const Inputs& x) { return mul(x[0], x[1]); }},
      {"div", [](const Inputs& x) { return div(x[0], x[1]); }},
      {"div_broadcast", [](const Inputs& x) { return div(x[0], x[1]); }},
      {"pow", [](const Inputs& x) { return pow(x[0], x[1]); }},
      {"pow_broadcast", [](const Inputs& x) { return pow(x[0], x[1]); }},
      {"maximum", [](const Inputs& x) { return maximum(x[0], x[1]); }},
      {"maximum_broadcast", [](const Inputs& x) { return maximum(x[0], x[1]); }},
      {"minimum", [](const Inputs& x) { return minimum(x[0], x[1]); }},
      {"minimum_broadcast", [](const Inputs& x) { return minimum(x[0], x[1]); }},
      // ---- scalar forms ----
      {"add_scalar", [](const Inputs& x) { return add(x[0], 1.5); }},
      {"sub_scalar", [](const Inputs& x) { return sub(x[0], 0.75); }},
      {"rsub_scalar", [](const Inputs& x) { return rsub(x[0], 2.0); }},
      {"mul_scalar", [](const Inputs& x) { return mul(x[0], -1.25); }},
      {"div_scalar", [](const Inputs& x) { return div(x[0], 0.8); }},
      {"rdiv_scalar", [](const Inputs& x) { return rdiv(x[0], 3.0); }},
      {"pow_scalar", [](const Inputs& x) { return pow(x[0], 2.5); }},
      {"pow_scalar_int", [](const Inputs& x) { return pow(x[0], 3.0); }},
      {"pow_scalar_negative", [](const Inputs& x) { return pow(x[0], -1.5); }},
      {"pow_scalar_zero", [](const Inputs& x) { return pow(x[0], 0.0); }},
      // ---- unary ----
      {"neg", [](const Inputs& x) { return neg(x[0]); }},
      {"exp", [](const Inputs& x) { return exp(x[0]); }},
      {"exp_noncontig", [](const Inputs& x) { return exp(x[0].slice(1, 0, 5, 2)); }},
      {"log", [](const Inputs& x) { return log(x[0]); }},
      {"sqrt", [](const Inputs& x) { return sqrt(x[0]); }},
      {"abs", [](const Inputs& x) { return abs(x[0]); }},
      {"tanh", [](const Inputs& x) { return tanh(x[0]); }},
      {"sigmoid", [](const Inputs& x) { return sigmoid(x[0]); }},
      {"relu", [](const Inputs& x) { return relu(x[0]); }},
      {"gelu", [](const Inputs& x) { return gelu(x[0]); }},
      {"clamp", [](const Inputs& x) { return clamp(x[0], -0.5, 0.5); }},
      {"sin", [](const Inputs& x) { return sin(x[0]); }},
      {"cos", [](const Inputs& x) { return cos(x[0]); }},
      {"sin_noncontig", [](const Inputs& x) { return sin(x[0].t()); }},
      // ---- NaN propagation, pow at 0^0, floor division ----
      {"relu_nan", [](const Inputs& x) { return relu(x[0]); }},
      {"maximum_nan", [](const Inputs& x) { return maximum(x[0], x[1]); }},
      {"minimum_nan", [](const Inputs& x) { return minimum(x[0], x[1]); }},
      {"pow_zero_base", [](const Inputs& x) { return pow(x[0], x[1]); }},
      {"floor_divide", [](const Inputs& x) { return floor_divide(x[0], x[1]); }},
      {"floor_divide_int", [](const Inputs& x) { return floor_divide(x[0], x[1]); }},
      // ---- selection ----
      {"where", [](const Inputs& x) { return where(x[0], x[1], x[2]); }},
      {"where_broadcast", [](const Inputs& x) { return where(x[0], x[1], x[2]); }},
      {"masked_fill", [](const Inputs& x) { return masked_fill(x[0], x[1], -2.5); }},
      {"masked_fill_broadcast", [](const Inputs& x) { return masked_fill(x[0], x[1], 0.25); }},
      // ---- not differentiable ----
      {"sign", [](const Inputs& x) { return sign(x[0]); }},
      {"eq", [](const Inputs& x) { return eq(x[0], x[1]); }},
      {"ne", [](const Inputs& x) { return ne(x[0], x[1]); }},
      {"lt", [](const Inputs& x) { return lt(x[0], x[1]); }},
      {"le", [](const Inputs& x) { return le(x[0], x[1]); }},
      {"gt", [](const Inputs& x) { return gt(x[0], x[1]); }},
      {"ge", [](const Inputs& x) { return ge(x[0], x[1]); }},
      {"eq_scalar", [](const Inputs& x) { return eq(x[0], 0.5); }},
      {"ne_scalar", [](const Inputs& x) { return ne(x[0], 0.5); }},
      {"lt_scalar", [](const Inputs& x) { return lt(x[0], 0.5); }},
      {"le_scalar", [](const Inputs& x) { return le(x[0], 0.5); }},
      {"gt_scalar", [](const Inputs& x) { return gt(x[0], 0.5); }},
      {"ge_scalar", [](const Inputs& x) { return ge(x[0], 0.5); }},
      // ---- matmul ----
      {"matmul_2d", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul_2d_transposed", [](const Inputs& x) { return matmul(x[0].t(), x[1].t()); }},
      {"matmul_batched", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul_batched_broadcast", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul_batched_matrix", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul_vec_mat", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul_mat_vec", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul_batched_mat_vec", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul_vec_batched", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul_dot", [](const Inputs& x) { return matmul(x[0], x[1]); }},
      // ---- reductions ----
      {"sum_all", [](const Inputs& x) { return sum(x[0]); }},
      {"sum_dim", [](const Inputs& x) { return sum(x[0], {1}); }},
      {"sum_dims_keepdim", [](const Inputs& x) { return sum(x[0], {0, 2}, true); }},
      {"sum_negative_dim", [](const Inputs& x) { return sum(x[0], {-1}); }},
      {"sum_noncontig", [](const Inputs& x) { return sum(x[0].permute({2, 0, 1}), {1}); }},
      {"mean_all", [](const Inputs& x) { return mean(x[0]); }},
      {"mean_dim", [](const Inputs& x) { return mean(x[0], {0}); }},
      {"mean_dims_keepdim", [](const Inputs& x) { return mean(x[0], {1, 2}, true); }},
      {"max_all", [](const Inputs& x) { return max(x[0]); }},
      {"max_dim", [](const Inputs& x) { return max(x[0], {1}); }},
      {"max_dims_keepdim", [](const Inputs& x) { return max(x[0], {0, 2}, true); }},
      {"min_all", [](const Inputs& x) { return min(x[0]); }},
      {"min_dim", [](const Inputs& x) { return min(x[0], {0}); }},
      {"min_dims_keepdim", [](const Inputs& x) { return min(x[0], {1, 2}, true); }},
      {"var_all", [](const Inputs& x) { return var(x[0]); }},
      {"var_all_biased", [](const Inputs& x) { return var(x[0], {}, /*unbiased=*/false); }},
      {"var_dim", [](const Inputs& x) { return var(x[0], {1}); }},
      {"var_dim_biased_keepdim", [](const Inputs& x) { return var(x[0], {0}, /*unbiased=*/false, /*keepdim=*/true); }},
      {"var_dims", [](const Inputs& x) { return var(x[0], {0, 2}); }},
      {"std_all", [](const Inputs& x) { return ember::std(x[0]); }},
      {"std_all_biased", [](const Inputs& x) { return ember::std(x[0], {}, /*unbiased=*/false); }},
      {"std_dim", [](const Inputs& x) { return ember::std(x[0], {1}); }},
      {"std_dim_biased_keepdim", [](const Inputs& x) { return ember::std(x[0], {0}, /*unbiased=*/false, /*keepdim=*/true); }},
      {"std_dims", [](const Inputs& x) { return ember::std(x[0], {0, 2}); }},
      {"logsumexp_dim", [](const Inputs& x) { return logsumexp(x[0], {1}); }},
      {"logsumexp_dims_keepdim", [](const Inputs& x) { return logsumexp(x[0], {0, 2}, true); }},
      {"logsumexp_large", [](const Inputs& x) { return logsumexp(x[0], {1}); }},
      {"sum_to", [](const Inputs& x) { return sum_to(x[0], {3, 1}); }},
      {"argmax_dim", [](const Inputs& x) { return argmax(x[0], 1); }},
      {"argmax_dim_keepdim", [](const Inputs& x) { return argmax(x[0], 0, true); }},
      {"argmin_dim", [](const Inputs& x) { return argmin(x[0], 1); }},
      {"argmin_negative_dim_keepdim", [](const Inputs& x) { return argmin(x[0], -1, true); }},
      // ---- softmax family ----
      {"softmax_last", [](const Inputs& x) { return softmax(x[0], 1); }},
      {"softmax_first", [](const Inputs& x) { return softmax(x[0], 0); }},
      {"softmax_middle_3d", [](const Inputs& x) { return softmax(x[0], 1); }},
      {"softmax_negative_dim_3d", [](const Inputs& x) { return softmax(x[0], -1); }},
      {"softmax_noncontig", [](const Inputs& x) { return softmax(x[0].t(), 1); }},
      {"softmax_large", [](const Inputs& x) { return softmax(x[0], 1); }},
      {"log_softmax_last", [](const Inputs& x) { return log_softmax(x[0], 1); }},
      {"log_softmax_first", [](const Inputs& x) { return log_softmax(x[0], 0); }},
      {"log_softmax_middle_3d", [](const Inputs& x) { return log_softmax(x[0], 1); }},
      {"log_softmax_large", [](const Inputs& x) { return log_softmax(x[0], -1); }},
      // ---- shape and views ----
      {"reshape", [](const Inputs& x) { return x[0].reshape({4, 3}); }},
      {"reshape_infer", [](const Inputs& x) { return x[0].reshape({2, -1}); }},
      {"reshape_noncontig", [](const Inputs& x) { return x[0].t().reshape({-1}); }},
      {"view", [](const Inputs& x) { return x[0].view({3, 2, 4}); }},
      {"flatten", [](const Inputs& x) { return x[0].flatten(1); }},
      {"transpose", [](const Inputs& x) { return x[0].transpose(0, 2); }},
      {"t", [](const Inputs& x) { return x[0].t(); }},
      {"permute", [](const Inputs& x) { return x[0].permute({2, 0, 1}); }},
      {"slice", [](const Inputs& x) { return x[0].slice(0, 1, 3); }},
      {"slice_step", [](const Inputs& x) { return x[0].slice(1, 1, 6, 2); }},
      {"slice_negative", [](const Inputs& x) { return x[0].slice(1, -3, -1); }},
      {"slice_of_transpose", [](const Inputs& x) { return x[0].t().slice(0, 0, 5, 2); }},
      {"narrow", [](const Inputs& x) { return x[0].narrow(1, 1, 2); }},
      {"select", [](const Inputs& x) { return x[0].select(1, 2); }},
      {"select_negative", [](const Inputs& x) { return x[0].select(0, -1); }},
      {"expand", [](const Inputs& x) { return x[0].expand({2, 3, 4}); }},
      {"expand_keep", [](const Inputs& x) { return x[0].expand({-1, 4}); }},
      {"squeeze_all", [](const Inputs& x) { return x[0].squeeze(); }},
      {"squeeze_dim", [](const Inputs& x) { return x[0].squeeze(1); }},
      {"unsqueeze", [](const Inputs& x) { return x[0].unsqueeze(1); }},
      {"unsqueeze_negative", [](const Inputs& x) { return x[0].unsqueeze(-1); }},
      {"contiguous", [](const Inputs& x) { return x[0].t().contiguous(); }},
      {"clone", [](const Inputs& x) { return x[0].t().clone(); }},
      {"cat_dim0", [](const Inputs& x) { return cat({x[0], x[1]}, 0); }},
      {"cat_dim1_three", [](const Inputs& x) { return cat({x[0], x[1], x[2]}, 1); }},
      {"cat_noncontig", [](const Inputs& x) { return cat({x[0].t(), x[1]}, 0); }},
      {"stack_dim0", [](const Inputs& x) { return stack({x[0], x[1], x[2]}, 0); }},
      {"stack_last", [](const Inputs& x) { return stack({x[0], x[1]}, -1); }},
      // ---- indexing ----
      {"index_select_dim0", [](const Inputs& x) { return index_select(x[0], 0, x[1]); }},
      {"index_select_dim1", [](const Inputs& x) { return index_select(x[0], 1, x[1]); }},
      {"gather_dim1", [](const Inputs& x) { return gather(x[0], 1, x[1]); }},
      {"gather_dim0", [](const Inputs& x) { return gather(x[0], 0, x[1]); }},
      {"embedding", [](const Inputs& x) { return embedding(x[0], x[1]); }},
      {"one_hot", [](const Inputs& x) { return one_hot(x[0], 4); }},
      {"one_hot_2d", [](const Inputs& x) { return one_hot(x[0], 3); }},
      // ---- the backward ops, called directly (PyTorch: aten's own backward ops) ----
      {"tanh_backward", [](const Inputs& x) { return tanh_backward(x[0], x[1]); }},
      {"sigmoid_backward", [](const Inputs& x) { return sigmoid_backward(x[0], x[1]); }},
      {"relu_backward", [](const Inputs& x) { return relu_backward(x[0], x[1]); }},
      {"gelu_backward", [](const Inputs& x) { return gelu_backward(x[0], x[1]); }},
      {"softmax_backward", [](const Inputs& x) { return softmax_backward(x[0], x[1], 1); }},
      {"log_softmax_backward", [](const Inputs& x) { return log_softmax_backward(x[0], x[1], 0); }},
      {"index_select_backward", [](const Inputs& x) { return index_select_backward(x[0], {4, 2}, 0, x[1]); }},
      {"gather_backward", [](const Inputs& x) { return gather_backward(x[0], {2, 3}, 1, x[1]); }},
      {"slice_backward", [](const Inputs& x) { return slice_backward(x[0], {2, 5}, 1, 1, 5, 2); }},
      {"select_backward", [](const Inputs& x) { return select_backward(x[0], {2, 3}, 0, -1); }},
  };
  return kCases;
}

const json& reference() { return test::load_reference("reference_core.json", "scripts/make_reference.py"); }

// float64: ember and PyTorch may round differently (a different summation order, erf or pow
// implementation) but must agree to a few ulps of the values in play — all of order 1..100 here.
constexpr Tolerance kFloat64Tol{1e-10, 1e-12};
// float32 against the float64 reference: inputs are exact in float32 (the script puts them on a
// 1/256 grid), so this is ember's float32 rounding alone — a few float32 ulps (eps = 1.2e-7).
constexpr Tolerance kFloat32Tol{1e-5, 1e-6};
// Both atols are for inputs of order 1. Intermediates as large as the inputs carry an absolute
// rounding error of about |input| * eps, which survives cancellation (log_softmax of inputs near 100
// subtracts two numbers near 100), so run_case scales atol by the largest input magnitude (>= 1).

// Runs one case with ember on `device`, floats as `float_dtype`; returns the problems found (empty = pass).
std::vector<std::string> run_case(const json& c, Device device, DType float_dtype, Tolerance tol) {
  std::vector<std::string> problems;
  const std::string name = c.at("name");
  double scale = 1;  // the largest input magnitude, at least 1 (see the tolerances above)
  for (const json& in : c.at("inputs"))
    if (in.at("dtype") == "float64")
      for (double x : test::float_values(in.at("data")))
        if (std::isfinite(x)) scale = std::max(scale, std::abs(x));
  tol.atol *= scale;
  auto it = ember_cases().find(name);
  if (it == ember_cases().end()) return {"no ember lambda for this case (add it to ember_cases())"};

  try {
    Inputs inputs;
    for (const json& in : c.at("inputs")) {
      // Each input is a leaf on `device`, so the gradient is computed there and stays there.
      Tensor t = from_json(in, float_dtype).to(device);
      if (in.value("requires_grad", false)) t.requires_grad_();
      inputs.push_back(t);
    }
    Tensor out = it->second(inputs);
    if (auto e = compare(out, c.at("output"), tol, float_dtype); !e.empty()) problems.push_back("output: " + e);
    if (!c.contains("grads")) return problems;

    if (!out.requires_grad()) {
      problems.push_back("output does not require grad: no backward was recorded");
      return problems;
    }
    out.backward(from_json(c.at("upstream"), float_dtype).to(device));
    const json& grads = c.at("grads");
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (grads[i].is_null()) continue;  // this input does not require grad
      const std::string what = "gradient of x" + std::to_string(i);
      Tensor g = inputs[i].grad();
      if (!g.defined()) {
        problems.push_back(what + ": none reached the input");
        continue;
      }
      if (g.device() != device) problems.push_back(what + ": on " + g.device().str() + ", not on " + device.str());
      if (auto e = compare(g, grads[i], tol, float_dtype); !e.empty()) problems.push_back(what + ": " + e);
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("threw: ") + e.what());
  }
  return problems;
}

// Where a case lives in the file, by name (the file's order is kept by the test list below).
const json* find_case(const std::string& name) {
  static const std::map<std::string, const json*> kIndex = [] {
    std::map<std::string, const json*> index;
    for (const json& c : reference().at("cases")) index.emplace(c.at("name").get<std::string>(), &c);
    return index;
  }();
  auto it = kIndex.find(name);
  return it == kIndex.end() ? nullptr : it->second;
}

// One test per (case, device): a failing op shows up by name, and the ops that work pass on their own.
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
    // An unreadable file leaves this list empty; ReferenceCoreCases reports why.
  }
  return params;
}

// Like EMBER_DEVICE_SUITE's fixture (same devices, same skip when CUDA is absent), with the case as
// a second parameter.
class ReferenceCore : public ::testing::TestWithParam<CaseOnDevice> {
 protected:
  void SetUp() override {
    if (GetParam().device.is_cuda() && !cuda_is_available())
      GTEST_SKIP() << "no CUDA device available (" << cuda_device_count() << " visible); CPU results are tested";
  }
  void check(DType float_dtype, Tolerance tol) {
    const json* c = find_case(GetParam().name);
    ASSERT_NE(c, nullptr) << "case " << GetParam().name << " vanished from the reference file";
    const auto problems = run_case(*c, GetParam().device, float_dtype, tol);
    if (problems.empty()) return;
    std::ostringstream msg;
    msg << "case '" << GetParam().name << "' (PyTorch: " << c->at("torch").get<std::string>() << ") on "
        << GetParam().device << " in " << dtype_name(float_dtype) << ":";
    for (const auto& p : problems) msg << "\n    " << p;
    ADD_FAILURE() << msg.str();
  }
};

}  // namespace

// The file and the lambda table must name the same cases, so neither can drift from the other.
TEST(ReferenceCoreCases, EveryCaseHasALambdaAndEveryLambdaACase) {
  std::map<std::string, int> in_file;
  for (const json& c : reference().at("cases")) ++in_file[c.at("name").get<std::string>()];
  for (const auto& [name, count] : in_file) {
    EXPECT_EQ(count, 1) << "case '" << name << "' appears " << count << " times in the reference file";
    EXPECT_TRUE(ember_cases().count(name)) << "case '" << name << "' in the reference file has no ember lambda";
  }
  for (const auto& [name, fn] : ember_cases())
    EXPECT_TRUE(in_file.count(name)) << "ember lambda '" << name
                                     << "' has no case in the reference file (add it to scripts/make_reference.py)";
}

TEST_P(ReferenceCore, Float64) { check(kFloat64, kFloat64Tol); }

TEST_P(ReferenceCore, Float32) { check(kFloat32, kFloat32Tol); }

// Test names read "Cases/ReferenceCore.Float64/softmax_last_cpu".
INSTANTIATE_TEST_SUITE_P(Cases, ReferenceCore, ::testing::ValuesIn(all_cases_on_all_devices()),
                         [](const ::testing::TestParamInfo<CaseOnDevice>& info) {
                           return info.param.name + (info.param.device.is_cpu() ? "_cpu" : "_cuda");
                         });
