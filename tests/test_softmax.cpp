// softmax / log_softmax: hand-computed values, rows summing to 1 over every dim, huge and infinite
// logits without NaN, every kernel path (row order, column order, strided and expanded inputs,
// strided upstream gradients) against a double-precision reference, float64 gradchecks (with
// non-contiguous and broadcast inputs), a 1M-element row, thread-count independence, errors.
#include <cmath>
#include <limits>
#include <vector>

#include "tests/test_util.h"

using namespace ember;
using test::expect_close;
using test::expect_error;
using test::expect_gradcheck;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor f32(const std::vector<float>& v, const Shape& s, Device d) {
  return from_vector<float>(v, s, TensorOptions(kFloat32).device(d));
}
std::vector<double> host(const Tensor& t) { return t.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>(); }

struct ThreadGuard {
  int saved = get_num_threads();
  ~ThreadGuard() { set_num_threads(saved); }
};

// softmax (or log_softmax) of x along `dim`, in double, naively: returns a contiguous CPU float64 tensor.
Tensor naive_softmax(const Tensor& x, int dim, bool log) {
  Tensor c = x.detach().to(kCPU).to(kFloat64).contiguous();
  std::vector<double> v = c.to_vector<double>();
  const Shape s = c.shape();
  int64_t inner = 1;
  for (int d = dim + 1; d < s.size(); ++d) inner *= s[d];
  const int64_t n = s[dim], outer = c.numel() / std::max<int64_t>(1, n * inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t k) -> double& { return v[(o * n + k) * inner + i]; };
      double m = -kInf;
      for (int64_t k = 0; k < n; ++k) m = std::max(m, at(k));
      long double sum = 0;
      for (int64_t k = 0; k < n; ++k) sum += std::exp(at(k) - m);
      for (int64_t k = 0; k < n; ++k)
        at(k) = log ? at(k) - m - std::log(static_cast<double>(sum)) : std::exp(at(k) - m) / static_cast<double>(sum);
    }
  return from_vector<double>(v, s);
}

}  // namespace

EMBER_DEVICE_SUITE(Softmax);

TEST_P(Softmax, HandValues) {
  Tensor x = f32({1, 2, 3}, {3}, device());
  expect_close(softmax(x, 0), f32({0.09003057f, 0.24472847f, 0.66524096f}, {3}, kCPU), 1e-6, 1e-7);
  expect_close(log_softmax(x, -1), f32({-2.40760596f, -1.40760596f, -0.40760596f}, {3}, kCPU), 1e-6, 1e-6);
  expect_close(x.softmax(0), softmax(x, 0), 0, 0);
  expect_close(x.log_softmax(0), log_softmax(x, 0), 0, 0);
  // A constant row is uniform; a 0-d tensor is one row of one element.
  expect_close(softmax(full({2, 4}, 3.0, TensorOptions(kFloat32).device(device())), 1), full({2, 4}, 0.25), 1e-7, 0);
  Tensor s = full({}, 5.0, TensorOptions(kFloat64).device(device()));
  EXPECT_EQ(softmax(s, 0).shape(), Shape{});
  EXPECT_EQ(softmax(s, 0).item(), 1.0);
  EXPECT_EQ(log_softmax(s, -1).item(), 0.0);
}

TEST_P(Softmax, RowsSumToOneOverEveryDim) {
  Tensor x = test::rand_f64({3, 4, 5}, -3, 3).to(kFloat32).to(device());
  for (int dim : {0, 1, 2, -1, -2}) {
    SCOPED_TRACE(dim);
    Tensor y = softmax(x, dim);
    EXPECT_EQ(y.shape(), x.shape());
    expect_close(sum(y, {dim}), ones(sum(x, {dim}).shape()), 1e-6, 1e-6);
    expect_close(sum(exp(log_softmax(x, dim)), {dim}), ones(sum(x, {dim}).shape()), 1e-6, 1e-6);
    const int d = dim < 0 ? dim + 3 : dim;
    expect_close(y, naive_softmax(x, d, false), 1e-6, 1e-7);
    expect_close(log_softmax(x, dim), naive_softmax(x, d, true), 1e-6, 1e-6);
  }
}

TEST_P(Softmax, HugeAndInfiniteLogitsGiveNoNaN) {
  Tensor x = f32({1000, 1000, -1000, 0, 1000, 0, -1e30f, 3.4e38f}, {4, 2}, device());
  const auto y = host(softmax(x, 1));
  EXPECT_EQ(y, (std::vector<double>{0.5, 0.5, 0, 1, 1, 0, 0, 1}));
  const auto l = host(log_softmax(x, 1));
  EXPECT_NEAR(l[0], -std::log(2.0), 1e-6);
  EXPECT_NEAR(l[1], -std::log(2.0), 1e-6);
  EXPECT_EQ(l[2], -1000);
  EXPECT_EQ(l[3], 0);
  EXPECT_EQ(l[4], 0);
  EXPECT_EQ(l[5], -1000);
  // Masked (-inf) entries get probability 0 and log-probability -inf; the rest are unaffected.
  Tensor m = f32({-INFINITY, 0, 0, -INFINITY}, {1, 4}, device());
  EXPECT_EQ(host(softmax(m, 1)), (std::vector<double>{0, 0.5, 0.5, 0}));
  const auto lm = host(log_softmax(m, 1));
  EXPECT_EQ(lm[0], -kInf);
  EXPECT_NEAR(lm[1], -std::log(2.0), 1e-7);
  // Random logits in [-1000, 1000]: every row sums to 1 (both kernel orders), no NaN anywhere.
  Tensor r = test::rand_f64({8, 100}, -1000, 1000, 21).to(kFloat32).to(device());
  for (int dim : {0, 1}) {
    Tensor p = softmax(r, dim);
    for (double v : host(p)) ASSERT_TRUE(v >= 0 && v <= 1) << v;
    for (double v : host(log_softmax(r, dim))) ASSERT_TRUE(v <= 0 && !std::isnan(v)) << v;
    expect_close(sum(p, {dim}), ones({dim == 0 ? 100 : 8}), 1e-6, 0);
  }
  // Huge logits along dim 0 (the column-order kernel) too.
  Tensor c = f32({1000, -1000, 1000, -1000, 999, -1001}, {3, 2}, device());
  for (double v : host(softmax(c, 0))) EXPECT_FALSE(std::isnan(v));
  expect_close(sum(softmax(c, 0), {0}), ones({2}), 1e-6, 0);
}

TEST_P(Softmax, NaNPropagatesToItsRow) {
  Tensor x = f32({1, NAN, 2, 1, 2, 3}, {2, 3}, device());
  const auto y = host(softmax(x, 1));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(y[i])) << i;
  for (int i = 3; i < 6; ++i) EXPECT_FALSE(std::isnan(y[i])) << i;
}

// Every layout of the kernels: row order (contiguous and strided rows), column order (softmax over
// a leading or middle dim, with tiles of rows; short rows), transposed and expanded inputs, and backward with
// contiguous, transposed and expanded (stride 0) upstream gradients.
TEST_P(Softmax, EveryLayoutMatchesTheReference) {
  struct Case {
    const char* name;
    Shape shape;
    std::function<Tensor(const Tensor&)> view;
    int dim;
  };
  auto id = [](const Tensor& t) { return t; };
  const std::vector<Case> cases = {
      {"last dim", {7, 33}, id, 1},
      {"first dim (columns)", {33, 7}, id, 0},
      {"first dim, several tiles", {5, 600}, id, 0},
      {"middle dim of 4-d", {2, 3, 4, 5}, id, 1},
      {"transposed, along the contiguous dim", {9, 6}, [](const Tensor& t) { return t.t(); }, 0},
      {"transposed, across it", {9, 6}, [](const Tensor& t) { return t.t(); }, 1},
      {"sliced with a step", {8, 20}, [](const Tensor& t) { return t.slice(1, 0, 20, 3); }, 1},
      {"expanded along the softmax dim", {4, 1}, [](const Tensor& t) { return t.expand({4, 6}); }, 1},
      {"expanded across it", {1, 6}, [](const Tensor& t) { return t.expand({4, 6}); }, 1},
      {"short rows (column order)", {300, 5}, id, 1},
      {"single row", {1, 50}, id, 1},
      {"rows of one", {50, 1}, id, 1},
  };
  for (DType dt : {kFloat64, kFloat32}) {
    const double tol = dt == kFloat64 ? 1e-13 : 2e-6;
    for (const Case& c : cases) {
      for (bool log : {false, true}) {
        SCOPED_TRACE(std::string(c.name) + (log ? " log_softmax " : " softmax ") + dtype_name(dt));
        Tensor x = c.view(test::rand_f64(c.shape, -4, 4, 3).to(dt).to(device()));
        Tensor y = log ? log_softmax(x, c.dim) : softmax(x, c.dim);
        Tensor ref = naive_softmax(x, c.dim, log);
        expect_close(y, ref, tol, tol);
        // Backward against the formulas in double, for three layouts of the upstream gradient.
        const Tensor g0 = test::rand_f64(x.shape(), -1, 1, 4);
        Shape ts = x.shape();
        std::swap(ts[0], ts[ts.size() - 1]);
        const std::vector<Tensor> grads = {g0, test::rand_f64(ts, -1, 1, 5).transpose(0, ts.size() - 1),
                                           test::rand_f64({x.shape().back()}, -1, 1, 6).expand(x.shape())};
        for (const Tensor& g : grads) {
          Tensor leaf = x.detach().requires_grad_();
          Tensor out = log ? log_softmax(leaf, c.dim) : softmax(leaf, c.dim);
          out.backward(g.to(dt).to(device()));
          const Tensor gd = g.to(dt).to(kFloat64);  // the gradient as the kernel saw it
          Tensor want = log ? gd - exp(ref) * sum(gd, {c.dim}, true) : ref * (gd - sum(gd * ref, {c.dim}, true));
          expect_close(leaf.grad(), want, tol, tol * 4);
        }
      }
    }
  }
}

TEST_P(Softmax, Gradcheck) {
  auto in = [] { return std::vector<Tensor>{test::rand_f64({3, 4, 5}, -2, 2)}; };
  for (int dim : {0, 1, 2, -1}) {
    SCOPED_TRACE(dim);
    expect_gradcheck([dim](const std::vector<Tensor>& x) { return softmax(x[0], dim); }, in(), device());
    expect_gradcheck([dim](const std::vector<Tensor>& x) { return log_softmax(x[0], dim); }, in(), device());
  }
  // non-contiguous inputs
  expect_gradcheck([](const std::vector<Tensor>& x) { return softmax(x[0].transpose(0, 2), 1); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return log_softmax(x[0].permute({1, 2, 0}), -1); }, in(),
                   device());
  // broadcast inputs
  expect_gradcheck([](const std::vector<Tensor>& x) { return softmax(x[0].expand({4, 5}), 1); },
                   {test::rand_f64({4, 1})}, device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return log_softmax(x[0] + x[1], 0); },
                   {test::rand_f64({4, 5}), test::rand_f64({5})}, device());
  // a scalar output: the upstream gradient reaches the kernel expanded (stride 0)
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(softmax(x[0], 1) * x[1]); },
                   {test::rand_f64({3, 6}), test::rand_f64({3, 6})}, device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return log_softmax(x[0], 0).sum(); }, {test::rand_f64({6, 2})},
                   device());
  // 0-d
  expect_gradcheck([](const std::vector<Tensor>& x) { return softmax(x[0].sum(), 0) * x[0]; }, {test::rand_f64({3})},
                   device());
}

TEST_P(Softmax, LongRowMatchesADoubleReference) {
  // One row of 2^20 + 5 float32 logits with a wide range.
  Tensor x = test::rand_f64({1, (1 << 20) + 5}, -20, 20, 9).to(kFloat32).to(device());
  Tensor y = softmax(x, 1);
  EXPECT_NEAR(sum(y.to(kFloat64)).item(), 1.0, 1e-5);
  expect_close(y, naive_softmax(x, 1, false), 1e-5, 1e-12);
  expect_close(log_softmax(x, 1), naive_softmax(x, 1, true), 1e-6, 1e-5);
  // and as a column (softmax over dim 0 of a [N, 2] tensor)
  Tensor c = x.slice(1, 0, 1 << 20).reshape({1 << 19, 2});
  expect_close(softmax(c, 0), naive_softmax(c, 0, false), 1e-5, 1e-12);
}

// Intra-op threads are a CPU setting, so this one runs on the CPU only.
TEST(SoftmaxCpu, ResultsDoNotDependOnTheThreadCount) {
  ThreadGuard guard;
  Tensor x = test::rand_f64({512, 1000}, -5, 5, 13).to(kFloat32);
  auto run = [&] { return std::vector<std::vector<double>>{host(softmax(x, 1)), host(log_softmax(x, 0))}; };
  set_num_threads(1);
  const auto one = run();
  set_num_threads(3);
  EXPECT_EQ(run(), one);
}

TEST_P(Softmax, Errors) {
  Tensor x = f32({1, 2, 3, 4}, {2, 2}, device());
  expect_error([&] { softmax(x, 2); }, {"softmax", "dim 2", "out of range", "2-d"});
  expect_error([&] { log_softmax(x, -3); }, {"log_softmax", "dim -3", "out of range"});
  Tensor i = from_vector<int64_t>({1, 2}, {2}, TensorOptions(kInt64).device(device()));
  expect_error([&] { softmax(i, 0); }, {"softmax", "floating-point", "int64", "[2]"});
  expect_error([&] { log_softmax(Tensor(), 0); }, {"log_softmax", "undefined"});
}
