// Every op of the op table (tests/op_table.h) in bfloat16 and float16 against the same op in float32,
// forward and backward, on the CPU: e.g. HalfOpTable/HalfOpTableTest.MatchesFloat32/bf16_softmax.
//
// Both runs start from the same values: the inputs (and the upstream gradient) are rounded to the
// narrow type first, so the float32 run sees exactly what the narrow run holds, and what is left is
// the rounding of results and of the intermediates inside composite ops and backward formulas. The
// comparison is norm-wise, |narrow - float32| <= tol * max|float32| (element-wise relative error is
// meaningless where a value cancels to near zero): tol 2^-6 for bfloat16 (8 significant bits, a few
// roundings) and 2^-9 for float16 (11 bits).
#include <cmath>
#include <tuple>

#include "tests/op_table.h"

using namespace ember;
using test::OpCase;

namespace {

const std::vector<OpCase>& table() {
  static const std::vector<OpCase> t = test::all_ops();
  return t;
}

double tolerance(DType t) { return t == kBFloat16 ? 1.0 / 64 : 1.0 / 512; }

// max |a - e| <= tol * max |e| (both as float64 on the host), with a message naming what differs.
void expect_norm_close(const Tensor& actual, const Tensor& expected, double tol, const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<double> a = actual.detach().to(kFloat64).contiguous().to_vector<double>();
  const std::vector<double> e = expected.detach().to(kFloat64).contiguous().to_vector<double>();
  double scale = 0, worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < e.size(); ++i) scale = std::max(scale, std::abs(e[i]));
  for (size_t i = 0; i < e.size(); ++i) {
    const double d = std::abs(a[i] - e[i]);
    if (!(d <= worst)) worst = d, at = i;  // NaN counts as worst
  }
  EXPECT_LE(worst, tol * scale + 1e-30) << what << ": element " << at << " is " << a[at] << ", float32 gives " << e[at]
                                        << " (largest |float32| " << scale << ")";
}

class HalfOpTableTest : public ::testing::TestWithParam<std::tuple<DType, size_t>> {
 protected:
  DType dtype() const { return std::get<0>(GetParam()); }
  const OpCase& op() const { return table().at(std::get<1>(GetParam())); }
};

std::vector<size_t> all_indices() {
  std::vector<size_t> v(table().size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = i;
  return v;
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<DType, size_t>>& info) {
  return std::string(std::get<0>(info.param) == kBFloat16 ? "bf16_" : "fp16_") + table().at(std::get<1>(info.param)).name;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(HalfOpTable, HalfOpTableTest,
                         ::testing::Combine(::testing::Values(kBFloat16, kFloat16), ::testing::ValuesIn(all_indices())),
                         case_name);

TEST_P(HalfOpTableTest, MatchesFloat32) {
  const OpCase& c = op();
  const DType t = dtype();
  std::vector<Tensor> narrow, wide;
  for (const Tensor& x : c.inputs()) {
    narrow.push_back(x.to(t).requires_grad_());
    wide.push_back(x.to(t).to(kFloat32).requires_grad_());
  }
  const Tensor out_narrow = c.fn(narrow), out_wide = c.fn(wide);
  ASSERT_EQ(out_wide.dtype(), kFloat32) << c.name;
  EXPECT_EQ(out_narrow.dtype(), t) << c.name << " does not stay in " << dtype_name(t);
  expect_norm_close(out_narrow, out_wide, tolerance(t), c.name + " forward");

  // Backward with one fixed upstream gradient that the narrow type holds exactly.
  Tensor v = test::rand_f64(out_wide.shape(), -1, 1, 99).to(t);
  (out_narrow * v).sum().backward();
  (out_wide * v.to(kFloat32)).sum().backward();
  for (size_t i = 0; i < narrow.size(); ++i) {
    const std::string what = c.name + " gradient of input " + std::to_string(i);
    ASSERT_EQ(narrow[i].grad().defined(), wide[i].grad().defined()) << what;
    if (!wide[i].grad().defined()) continue;
    EXPECT_EQ(narrow[i].grad().dtype(), t) << what;
    expect_norm_close(narrow[i].grad(), wide[i].grad(), tolerance(t), what);
  }
}
