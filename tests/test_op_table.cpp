// The op table (tests/op_table.h) run through the first-order gradcheck and the second-order
// gradgradcheck, on every device: e.g. OpTable/OpTableTest.Gradgradcheck/cpu_softmax.
#include <algorithm>
#include <cctype>
#include <set>
#include <tuple>

#include "tests/op_table.h"

using namespace ember;
using test::OpCase;

namespace {

const std::vector<OpCase>& table() {
  static const std::vector<OpCase> t = test::all_ops();
  return t;
}

class OpTableTest : public ::testing::TestWithParam<std::tuple<Device, size_t>> {
 protected:
  void SetUp() override {
    if (device().is_cuda() && !cuda_is_available())
      GTEST_SKIP() << "no CUDA device available (" << cuda_device_count() << " visible); CPU results are tested";
  }
  Device device() const { return std::get<0>(GetParam()); }
  const OpCase& op() const { return table().at(std::get<1>(GetParam())); }
};

std::vector<size_t> all_indices() {
  std::vector<size_t> v(table().size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = i;
  return v;
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<Device, size_t>>& info) {
  return std::string(std::get<0>(info.param).is_cpu() ? "cpu_" : "cuda_") + table().at(std::get<1>(info.param)).name;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(OpTable, OpTableTest,
                         ::testing::Combine(::testing::ValuesIn(test::all_devices()), ::testing::ValuesIn(all_indices())),
                         case_name);

TEST_P(OpTableTest, Gradcheck) {
  const OpCase& c = op();
  test::expect_gradcheck(c.fn, c.inputs(), device(), c.eps, c.atol, c.rtol);
}

TEST_P(OpTableTest, Gradgradcheck) {
  const OpCase& c = op();
  if (!c.gradgrad) GTEST_SKIP() << c.name << " is not twice differentiable";
  test::expect_gradgradcheck(c.fn, c.inputs(), device(), c.eps, std::max(c.atol, 1e-5), std::max(c.rtol, 1e-4));
}

TEST(OpTableMeta, NamesAreUniqueAndUsableInTestNames) {
  std::set<std::string> seen;
  for (const OpCase& c : table()) {
    EXPECT_TRUE(seen.insert(c.name).second) << "duplicate op table entry " << c.name;
    for (char ch : c.name) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') << c.name;
    EXPECT_FALSE(c.shapes.empty()) << c.name;
  }
}

// The ops listed as not differentiable really record nothing, even on inputs that require grad.
TEST(OpTableMeta, NonDifferentiableOpsRecordNoGraph) {
  Tensor x = test::rand_f64({3, 4}).requires_grad_();
  Tensor y = test::rand_f64({3, 4}, -1, 1, 5).requires_grad_();
  for (const Tensor& out : {floor_divide(x, y), sign(x), eq(x, y), ne(x, y), lt(x, y), le(x, y), gt(x, y), ge(x, y),
                            argmax(x, 1), argmin(x, 0), zeros_like(x), ones_like(x), full_like(x, 2.0)})
    EXPECT_FALSE(out.requires_grad());
}
