// Reductions (sum, mean, max, min, var, logsumexp, argmax, argmin, sum_to): forward values against
// hand-computed expectations, keepdim shapes, negative and multiple dims, integer dtypes, empty
// tensors, float64 gradchecks (non-contiguous and broadcast inputs included), gradients at ties,
// every kernel path (row / column / folded narrow columns / short rows / pieces, strided and
// expanded views) against a naive double-precision reference, accuracy and thread-count
// independence on large inputs, NaN propagation, and error messages.
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
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor f32(const std::vector<float>& v, const Shape& s, Device d) {
  return from_vector<float>(v, s, TensorOptions(kFloat32).device(d));
}
Tensor f64(const std::vector<double>& v, const Shape& s, Device d) {
  return from_vector<double>(v, s, TensorOptions(kFloat64).device(d));
}
// 0, 1, 2, ... in `shape`.
Tensor iota(const Shape& s, Device d, DType t = kFloat32) {
  return arange(static_cast<double>(s.numel()), TensorOptions(t).device(d)).reshape(s);
}
std::vector<double> host(const Tensor& t) { return t.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>(); }

// Restores the intra-op thread count when a test changes it.
struct ThreadGuard {
  int saved = get_num_threads();
  ~ThreadGuard() { set_num_threads(saved); }
};

enum class Op { Sum, Mean, Max, Min, ArgMax, ArgMin };

// The reduction of x over the dims in `mask`, computed naively in double (long double sums), in the
// keepdim shape. ArgMax/ArgMin reduce the single dim in `mask` and return the first extremal index.
std::vector<double> naive_reduce(const Tensor& x, uint32_t mask, Op op) {
  const Shape shape = x.shape();
  const std::vector<double> v = host(x);
  Shape keep = shape;
  for (int d = 0; d < shape.size(); ++d)
    if ((mask >> d) & 1u) keep[d] = 1;
  const int64_t n_out = keep.numel();
  std::vector<long double> acc(n_out, 0.0L);
  std::vector<double> best(n_out, kNaN);
  std::vector<int64_t> best_i(n_out, -1), count(n_out, 0);
  int red_dim = 0;
  for (int d = 0; d < shape.size(); ++d)
    if ((mask >> d) & 1u) red_dim = d;
  for (int64_t i = 0; i < static_cast<int64_t>(v.size()); ++i) {
    // multi-index of i, and the flat index of its output
    int64_t rem = i, o = 0, stride = 1, pos = 0;
    int64_t idx[kMaxDims];
    for (int d = shape.size() - 1; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    for (int d = shape.size() - 1; d >= 0; --d) {
      if (!((mask >> d) & 1u)) o += idx[d] * stride;
      stride *= keep[d];
    }
    if (shape.size() > 0) pos = idx[red_dim];
    const double val = v[i];
    acc[o] += val;
    ++count[o];
    const bool first = best_i[o] < 0;
    const bool bigger = val > best[o] || (std::isnan(val) && !std::isnan(best[o]));
    const bool smaller = val < best[o] || (std::isnan(val) && !std::isnan(best[o]));
    if (first || (op == Op::Max || op == Op::ArgMax ? bigger : smaller)) {
      best[o] = val;
      best_i[o] = pos;
    }
  }
  std::vector<double> out(n_out);
  for (int64_t o = 0; o < n_out; ++o) {
    switch (op) {
      case Op::Sum: out[o] = static_cast<double>(acc[o]); break;
      case Op::Mean: out[o] = static_cast<double>(acc[o] / count[o]); break;
      case Op::Max:
      case Op::Min: out[o] = best[o]; break;
      case Op::ArgMax:
      case Op::ArgMin: out[o] = static_cast<double>(best_i[o]); break;
    }
  }
  return out;
}

std::vector<int64_t> mask_to_dims(uint32_t mask, int nd) {
  std::vector<int64_t> dims;
  for (int d = 0; d < nd; ++d)
    if ((mask >> d) & 1u) dims.push_back(d);
  return dims;
}

// Runs `op` on x over `mask` (keepdim) and compares with the naive reference.
void expect_matches_naive(const Tensor& x, uint32_t mask, Op op, const std::string& what) {
  SCOPED_TRACE(what);
  const std::vector<int64_t> dims = mask_to_dims(mask, x.dim());
  Tensor got;
  switch (op) {
    case Op::Sum: got = sum(x, dims, true); break;
    case Op::Mean: got = mean(x, dims, true); break;
    case Op::Max: got = max(x, dims, true); break;
    case Op::Min: got = min(x, dims, true); break;
    case Op::ArgMax: got = argmax(x, dims.at(0), true); break;
    case Op::ArgMin: got = argmin(x, dims.at(0), true); break;
  }
  const std::vector<double> want = naive_reduce(x, mask, op);
  const std::vector<double> g = host(got);
  ASSERT_EQ(g.size(), want.size());
  // Sums may round differently (pairwise vs sequential): allow a few dozen ulps of the sum of |x|.
  // Extrema and indices are exact.
  const bool exact = op != Op::Sum && op != Op::Mean;
  const std::vector<double> abs_sum = exact ? want : naive_reduce(abs(x), mask, Op::Sum);
  int64_t n = 1;
  for (int d = 0; d < x.dim(); ++d)
    if ((mask >> d) & 1u) n *= x.size(d);
  const double eps = x.dtype() == kFloat32 ? 1.2e-7 : 2.3e-16;
  int bad = 0;
  for (size_t i = 0; i < g.size() && bad < 5; ++i) {
    const double tol = 64 * eps * abs_sum[i] / (op == Op::Mean ? n : 1);
    if (exact ? g[i] != want[i] : !(std::abs(g[i] - want[i]) <= tol)) {
      ADD_FAILURE() << "output " << i << ": " << g[i] << " vs reference " << want[i];
      ++bad;
    }
  }
}

}  // namespace

EMBER_DEVICE_SUITE(Reduce);

// ---------------------------------------------------------------- forward values

TEST_P(Reduce, SumMeanMaxMinHandValues) {
  Tensor x = iota({2, 3}, device());  // [[0, 1, 2], [3, 4, 5]]
  EXPECT_EQ(host(sum(x)), (std::vector<double>{15}));
  EXPECT_EQ(sum(x).shape(), Shape{});
  EXPECT_EQ(host(sum(x, {0})), (std::vector<double>{3, 5, 7}));
  EXPECT_EQ(host(sum(x, {1})), (std::vector<double>{3, 12}));
  EXPECT_EQ(host(mean(x, {1})), (std::vector<double>{1, 4}));
  EXPECT_EQ(host(mean(x)), (std::vector<double>{2.5}));
  EXPECT_EQ(host(max(x, {0})), (std::vector<double>{3, 4, 5}));
  EXPECT_EQ(host(min(x, {1})), (std::vector<double>{0, 3}));
  EXPECT_EQ(host(max(x)), (std::vector<double>{5}));
  EXPECT_EQ(host(min(x)), (std::vector<double>{0}));
  // Tensor methods forward to the same ops.
  EXPECT_EQ(host(x.sum({1})), (std::vector<double>{3, 12}));
  EXPECT_EQ(host(x.mean()), (std::vector<double>{2.5}));
}

TEST_P(Reduce, KeepdimShapesNegativeAndMultipleDims) {
  Tensor x = iota({2, 3, 4}, device());
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(sum(x, {1}).shape(), (Shape{2, 4}));
  EXPECT_EQ(sum(x, {}, true).shape(), (Shape{1, 1, 1}));
  EXPECT_EQ(max(x, {0, 2}, true).shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(mean(x, {-1, -3}).shape(), (Shape{3}));
  // sum over dims 0 and 2 of 0..23: element (i, j, k) = 12 i + 4 j + k
  EXPECT_EQ(host(sum(x, {0, 2})), (std::vector<double>{60, 92, 124}));
  EXPECT_EQ(host(sum(x, {-1, 0})), host(sum(x, {0, 2})));
  EXPECT_EQ(host(max(x, {0, 2})), (std::vector<double>{15, 19, 23}));
  EXPECT_EQ(host(min(x, {-3, -1}, true)), (std::vector<double>{0, 4, 8}));
  EXPECT_EQ(host(mean(x, {0, 1})), (std::vector<double>{10, 11, 12, 13}));
  // 0-d tensors: dims {} / {0} / {-1} all reduce nothing.
  Tensor s = full({}, 7.0, TensorOptions(kFloat32).device(device()));
  EXPECT_EQ(host(sum(s)), (std::vector<double>{7}));
  EXPECT_EQ(sum(s, {0}).shape(), Shape{});
  EXPECT_EQ(host(max(s, {-1}, true)), (std::vector<double>{7}));
  EXPECT_EQ(host(argmax(s, 0)), (std::vector<double>{0}));
}

TEST_P(Reduce, VarMatchesTheDefinition) {
  Tensor x = f64({1, 2, 3, 4, 2, 4, 6, 8}, {2, 4}, device());
  expect_close(var(x, {1}), f64({5.0 / 3, 20.0 / 3}, {2}, kCPU), 1e-14, 1e-14);            // unbiased: / (N - 1)
  expect_close(var(x, {1}, false), f64({1.25, 5.0}, {2}, kCPU), 1e-14, 1e-14);             // biased: / N
  expect_close(var(x, {0}, true, true), f64({0.5, 2, 4.5, 8}, {1, 4}, kCPU), 1e-14, 1e-14);
  expect_close(var(x), full({}, 37.5 / 7, kFloat64), 1e-14, 1e-14);  // all 8: mean 3.75, squares sum to 37.5
  expect_close(x.var({-1}, false), f64({1.25, 5.0}, {2}, kCPU), 1e-14, 1e-14);
  // Variance is shift invariant and computed in two passes: no cancellation at a large offset.
  Tensor shifted = f32({1e4f + 1, 1e4f + 2, 1e4f + 3, 1e4f + 4}, {4}, device());
  EXPECT_NEAR(var(shifted).item(), 5.0 / 3, 1e-5);
  // N - correction <= 0 gives NaN, as in PyTorch.
  EXPECT_TRUE(std::isnan(var(f64({3}, {1}, device())).item()));
  EXPECT_EQ(var(f64({3}, {1}, device()), {}, false).item(), 0.0);
}

TEST_P(Reduce, LogSumExpIsStable) {
  Tensor x = f64({1, 2, 3, 0, 0, 0}, {2, 3}, device());
  expect_close(logsumexp(x, {1}), f64({3.4076059644443806, std::log(3.0)}, {2}, kCPU), 1e-14, 1e-14);
  expect_close(logsumexp(x, {0, 1}), full({}, std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + 3), kFloat64),
               1e-14, 1e-14);
  expect_close(x.logsumexp({-1}, true), f64({3.4076059644443806, std::log(3.0)}, {2, 1}, kCPU), 1e-14, 1e-14);
  // Huge logits: no overflow in float32.
  Tensor big = f32({1000, 1000, -1000, -1000}, {2, 2}, device());
  expect_close(logsumexp(big, {1}), f32({1000 + std::log(2.0f), -1000 + std::log(2.0f)}, {2}, kCPU), 1e-6, 1e-4);
  // A row of -inf sums to nothing (-inf); a +inf dominates; NaN propagates.
  Tensor special = f32({-INFINITY, -INFINITY, INFINITY, 1, NAN, 1}, {3, 2}, device());
  const auto r = host(logsumexp(special, {1}));
  EXPECT_EQ(r[0], -kInf);
  EXPECT_EQ(r[1], kInf);
  EXPECT_TRUE(std::isnan(r[2]));
  // Reduced dims that are not adjacent (dims 0 and 2 of a 3-d tensor).
  Tensor y = iota({2, 3, 2}, device(), kFloat64) / 10.0;
  expect_close(logsumexp(y, {0, 2}), log(sum(exp(y), {0, 2})), 1e-14, 1e-14);
  // Empty: log of an empty sum.
  EXPECT_EQ(host(logsumexp(zeros({2, 0}, TensorOptions(kFloat32).device(device())), {1})),
            (std::vector<double>{-kInf, -kInf}));
}

TEST_P(Reduce, ArgMaxArgMinTakeTheFirstOfTies) {
  Tensor x = f32({1, 5, 5, 0, 2, 2, 2, 2, 7, -1, -1, 3}, {3, 4}, device());
  Tensor am = argmax(x, 1);
  EXPECT_EQ(am.dtype(), kInt64);
  EXPECT_EQ(am.to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(argmin(x, -1).to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{3, 0, 1}));
  EXPECT_EQ(argmax(x, 0).to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 0, 2}));
  EXPECT_EQ(argmin(x, 0, true).shape(), (Shape{1, 4}));
  EXPECT_EQ(argmin(x, 0, true).to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 2, 0}));
  EXPECT_EQ(x.argmax(-2).to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 0, 2}));
  // NaN counts as the largest value and the smallest (PyTorch): the first NaN is the answer.
  Tensor n = f32({1, NAN, 3, NAN}, {4}, device());
  EXPECT_EQ(argmax(n, 0).item<int64_t>(), 1);
  EXPECT_EQ(argmin(n, 0).item<int64_t>(), 1);
}

TEST_P(Reduce, NaNPropagatesThroughMaxAndMin) {
  // A NaN in the first, middle or last position, in row and column reductions.
  for (int pos : {0, 17, 99}) {
    std::vector<float> v(100);
    for (int i = 0; i < 100; ++i) v[i] = static_cast<float>(i % 13);
    v[pos] = NAN;
    Tensor x = f32(v, {100}, device());
    EXPECT_TRUE(std::isnan(max(x).item())) << pos;
    EXPECT_TRUE(std::isnan(min(x).item())) << pos;
    Tensor col = x.reshape({100, 1}).expand({100, 3});
    for (double r : host(max(col, {0}))) EXPECT_TRUE(std::isnan(r)) << pos;               // expanded: rows
    for (double r : host(min(col.contiguous(), {0}))) EXPECT_TRUE(std::isnan(r)) << pos;  // columns
  }
}

TEST_P(Reduce, IntegerDtypes) {
  Tensor i = from_vector<int64_t>({3, -7, 5, 9, 0, 2}, {2, 3}, TensorOptions(kInt64).device(device()));
  EXPECT_EQ(sum(i).dtype(), kInt64);
  EXPECT_EQ(sum(i, {1}).to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{1, 11}));
  EXPECT_EQ(max(i, {0}).to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{9, 0, 5}));
  EXPECT_EQ(min(i).item<int64_t>(), -7);
  EXPECT_EQ(argmax(i, 1).to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{2, 0}));
  // uint8 sums into int64 (no wrap-around at 255); max/min/argmax stay uint8 / int64.
  Tensor u = full({300}, 200.0, TensorOptions(kUInt8).device(device()));
  EXPECT_EQ(sum(u).dtype(), kInt64);
  EXPECT_EQ(sum(u).item<int64_t>(), 60000);
  Tensor u2 = from_vector<uint8_t>({4, 250, 7, 250}, {4}, TensorOptions(kUInt8).device(device()));
  EXPECT_EQ(max(u2).dtype(), kUInt8);
  EXPECT_EQ(max(u2).item<int64_t>(), 250);
  EXPECT_EQ(min(u2).item<int64_t>(), 4);
  EXPECT_EQ(argmax(u2, 0).item<int64_t>(), 1);
  // mean, var and logsumexp need floating point.
  expect_error([&] { mean(i); }, {"mean", "floating-point", "int64", "[2, 3]"});
  expect_error([&] { var(u2); }, {"var", "floating-point", "uint8"});
  expect_error([&] { logsumexp(i, {0}); }, {"logsumexp", "floating-point", "int64"});
}

TEST_P(Reduce, EmptyTensors) {
  const TensorOptions o = TensorOptions(kFloat32).device(device());
  EXPECT_EQ(sum(zeros({0}, o)).item(), 0.0);  // the sum of nothing is 0
  EXPECT_EQ(host(sum(zeros({0, 3}, o), {0})), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(sum(zeros({0, 3}, o), {1}).shape(), (Shape{0}));
  EXPECT_TRUE(std::isnan(mean(zeros({0}, o)).item()));  // 0 / 0, as in PyTorch
  // max over a non-empty dim of an empty tensor is fine (an empty result) ...
  EXPECT_EQ(max(zeros({0, 3}, o), {1}).shape(), (Shape{0}));
  // ... but max of no elements is undefined.
  expect_error([&] { max(zeros({0}, o)); }, {"max", "[0]", "size 0"});
  expect_error([&] { min(zeros({2, 0}, o), {1}); }, {"min", "dim 1", "[2, 0]"});
  expect_error([&] { argmax(zeros({3, 0}, o), 1); }, {"argmax", "dim 1", "size 0", "[3, 0]"});
  expect_error([&] { argmin(zeros({0, 2}, o), -2); }, {"argmin", "dim -2", "size 0"});
}

TEST_P(Reduce, ErrorsNameTheOpAndTheDim) {
  Tensor x = iota({2, 3}, device());
  expect_error([&] { sum(x, {2}); }, {"sum", "dim 2", "out of range", "2-d"});
  expect_error([&] { mean(x, {-3}); }, {"mean", "dim -3", "out of range"});
  expect_error([&] { max(x, {0, 5}); }, {"max", "dim 5"});
  expect_error([&] { argmax(x, 2); }, {"argmax", "dim 2", "out of range"});
  expect_error([&] { logsumexp(x, {7}); }, {"logsumexp", "dim 7"});
  expect_error([&] { var(x, {1, 1}); }, {"var", "dim 1", "more than once", "[1, 1]"});
  expect_error([&] { sum(x, {0, -2}); }, {"sum", "dim -2", "more than once", "[0, -2]"});
  expect_error([&] { min(x, {1, -1}); }, {"min", "more than once"});
  expect_error([&] { sum(Tensor()); }, {"sum", "undefined"});
}

// ---------------------------------------------------------------- sum_to

TEST_P(Reduce, SumToReversesBroadcasting) {
  Tensor x = iota({2, 3, 4}, device());
  EXPECT_TRUE(sum_to(x, {2, 3, 4}).is_same(x));  // nothing to do: the same tensor, no copy
  EXPECT_EQ(host(sum_to(x, {3, 1})), host(sum(x, {0, 2}).reshape({3, 1})));
  EXPECT_EQ(host(sum_to(x, {4})), host(sum(x, {0, 1})));
  EXPECT_EQ(host(sum_to(x, {1, 3, 1})), host(sum(x, {0, 2}, true)));
  EXPECT_EQ(host(sum_to(x, {})), (std::vector<double>{276}));
  EXPECT_EQ(sum_to(x, {1, 1, 4}).shape(), (Shape{1, 1, 4}));
  // Size-1 dims of the source stay as they are.
  Tensor y = iota({5, 1, 2}, device());
  EXPECT_EQ(host(sum_to(y, {1, 2})), (std::vector<double>{20, 25}));
  expect_error([&] { sum_to(x, {2, 4}); }, {"sum_to", "[2, 3, 4]", "[2, 4]"});
  expect_error([&] { sum_to(x, {5, 2, 3, 4}); }, {"sum_to", "[5, 2, 3, 4]"});
}

// The engine sums broadcast gradients with sum_to (tests/test_smoke.cpp's MulGradcheckBroadcast too).
TEST_P(Reduce, SumToGradcheckAndBroadcastBackward) {
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum_to(x[0], {3, 1}); }, {test::rand_f64({2, 3, 4})},
                   device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum_to(x[0].transpose(0, 2), {1, 3, 1}); },
                   {test::rand_f64({2, 3, 4})}, device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return x[0] + x[1] * x[2]; },
                   {test::rand_f64({4, 1, 3}), test::rand_f64({5, 1}), test::rand_f64({3})}, device());
}

// ---------------------------------------------------------------- gradients

TEST_P(Reduce, GradcheckSumMean) {
  auto in = [] { return std::vector<Tensor>{test::rand_f64({3, 4, 5})}; };
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(x[0]); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(x[0], {1}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(x[0], {0, -1}, true); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return mean(x[0], {2}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return mean(x[0], {}, true); }, in(), device());
  // non-contiguous input
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(x[0].transpose(0, 2), {1}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return mean(x[0].permute({2, 0, 1}), {0, 2}); }, in(), device());
  // broadcast input (the gradient of an expanded view is summed back)
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(x[0].expand({3, 4, 5}), {1}); },
                   {test::rand_f64({3, 1, 5})}, device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return mean(x[0] * x[1], {0}); },
                   {test::rand_f64({4, 3}), test::rand_f64({3})}, device());
}

TEST_P(Reduce, GradcheckMaxMin) {
  // Distinct values (no ties: finite differences need a differentiable point).
  auto in = [] { return std::vector<Tensor>{test::rand_f64({3, 4, 5})}; };
  expect_gradcheck([](const std::vector<Tensor>& x) { return max(x[0]); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return max(x[0], {1}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return min(x[0], {0, 2}, true); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return min(x[0].transpose(1, 2), {-1}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return max(x[0] + x[1], {0}); },
                   {test::rand_f64({4, 5}), test::rand_f64({5})}, device());
}

TEST_P(Reduce, MaxGradientIsSharedAmongTies) {
  Tensor x = f64({1, 3, 3, 2, 4, 4, 4, 0}, {2, 4}, device()).requires_grad_();
  max(x, {1}).sum().backward();
  EXPECT_EQ(host(x.grad()), (std::vector<double>{0, 0.5, 0.5, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3, 0}));
  Tensor y = f64({2, 2, 5, 2}, {4}, device()).requires_grad_();
  (min(y) * 6.0).backward();
  EXPECT_EQ(host(y.grad()), (std::vector<double>{2, 2, 0, 2}));
}

TEST_P(Reduce, GradcheckVarAndLogSumExp) {
  auto in = [] { return std::vector<Tensor>{test::rand_f64({3, 4, 5})}; };
  expect_gradcheck([](const std::vector<Tensor>& x) { return var(x[0]); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return var(x[0], {1}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return var(x[0], {0, 2}, false, true); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return var(x[0].transpose(0, 1), {-1}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return var(x[0].expand({3, 4, 5}), {0, 1}); },
                   {test::rand_f64({1, 4, 5})}, device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return logsumexp(x[0], {1}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return logsumexp(x[0], {0, 2}, true); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return logsumexp(x[0], {}); }, in(), device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return logsumexp(x[0].permute({2, 1, 0}), {0}); }, in(),
                   device());
  expect_gradcheck([](const std::vector<Tensor>& x) { return logsumexp(x[0] + x[1], {1}); },
                   {test::rand_f64({4, 5}), test::rand_f64({4, 1})}, device());
}

TEST_P(Reduce, ArgMaxIsNotDifferentiable) {
  Tensor x = test::rand_f64({3, 4}).to(device()).requires_grad_();
  Tensor a = argmax(x, 1);
  EXPECT_FALSE(a.requires_grad());
  EXPECT_EQ(a.dtype(), kInt64);
}

// ---------------------------------------------------------------- every kernel path

// Layouts chosen to reach each path of the CPU kernel (see core/cpu/cpu_reduce.cpp): row
// reductions (one piece, several pieces), column reductions (one tile, several tiles, pieces),
// narrow columns folded (with leftover rows, with pieces), short rows, several reduced dims with
// a kept one in between, and strided views (transposed, permuted, sliced with a step, expanded).
TEST_P(Reduce, EveryLayoutMatchesANaiveReference) {
  struct Case {
    const char* name;
    Shape shape;
    std::function<Tensor(const Tensor&)> view;
    std::vector<uint32_t> masks;
  };
  auto id = [](const Tensor& t) { return t; };
  const std::vector<Case> cases = {
      {"rows", {37, 53}, id, {1u, 2u, 3u}},
      {"rows in pieces", {3, 70001}, id, {2u, 3u}},
      {"columns in pieces", {70001, 3}, id, {1u}},
      {"wide columns, 2 tiles and pieces", {100, 2100}, id, {1u}},
      {"narrow columns folded", {1000, 16}, id, {1u}},
      {"narrow columns folded, one piece", {512, 16}, id, {1u}},
      {"narrow columns folded with leftover rows and pieces", {70001, 8}, id, {1u}},
      {"short rows", {1000, 5}, id, {2u}},
      {"kept dim between reduced ones", {4, 5, 6}, id, {5u, 2u, 1u, 4u, 6u, 7u}},
      {"transposed", {50, 60}, [](const Tensor& t) { return t.t(); }, {1u, 2u, 3u}},
      {"permuted", {6, 7, 8}, [](const Tensor& t) { return t.permute({2, 0, 1}); }, {1u, 2u, 4u, 3u, 5u, 6u, 7u}},
      {"sliced with a step", {20, 30}, [](const Tensor& t) { return t.slice(1, 1, 30, 3); }, {1u, 2u, 3u}},
      {"expanded rows", {1, 40}, [](const Tensor& t) { return t.expand({30, 40}); }, {1u, 2u, 3u}},
      {"expanded columns", {30, 1}, [](const Tensor& t) { return t.expand({30, 40}); }, {1u, 2u, 3u}},
      {"4-d with size-1 dims", {3, 1, 4, 5}, id, {1u, 2u, 4u, 8u, 9u, 12u, 15u}},
  };
  for (DType dt : {kFloat64, kFloat32}) {
    for (const Case& c : cases) {
      Tensor base = test::rand_f64(c.shape, -1, 1, 77).to(dt).to(device());
      Tensor x = c.view(base);
      for (uint32_t mask : c.masks) {
        const std::string what = std::string(c.name) + " " + dtype_name(dt) + " shape " + x.shape().str() +
                                 " mask " + std::to_string(mask);
        for (Op op : {Op::Sum, Op::Mean, Op::Max, Op::Min}) expect_matches_naive(x, mask, op, what);
        if ((mask & (mask - 1)) == 0) {  // one dim: argmax / argmin too
          expect_matches_naive(x, mask, Op::ArgMax, what);
          expect_matches_naive(x, mask, Op::ArgMin, what);
        }
      }
    }
  }
}

// ---------------------------------------------------------------- large inputs

TEST_P(Reduce, LargeFloat32SumsAreAccurate) {
  // 2^20 + 3 values in [0, 1): a sequential float32 sum would be off by ~1e-5 relative or more.
  Tensor x = test::rand_f64({(1 << 20) + 3}, 0, 1, 5).to(kFloat32).to(device());
  const std::vector<double> v = host(x);
  double ref = 0;
  for (double e : v) ref += e;
  EXPECT_NEAR(sum(x).item(), ref, 5e-7 * ref);
  EXPECT_NEAR(mean(x).item(), ref / v.size(), 5e-7 * ref / v.size());
  // The same values as columns ([N, 4] summed over N) and as rows ([4, N] summed over N).
  Tensor cols = x.slice(0, 0, 1 << 20).reshape({1 << 18, 4});
  Tensor rows = cols.t().contiguous();
  std::vector<double> ref4(4, 0.0);
  for (int64_t i = 0; i < (1 << 20); ++i) ref4[i % 4] += v[i];
  const auto s_cols = host(sum(cols, {0}));
  const auto s_rows = host(sum(rows, {1}));
  const auto s_tr = host(sum(rows.t(), {0}));
  for (int j = 0; j < 4; ++j) {
    EXPECT_NEAR(s_cols[j], ref4[j], 5e-7 * ref4[j]) << j;
    EXPECT_NEAR(s_rows[j], ref4[j], 5e-7 * ref4[j]) << j;
    EXPECT_NEAR(s_tr[j], ref4[j], 5e-7 * ref4[j]) << j;
  }
  // max / argmax of a large tensor are exact.
  double best = -1;
  int64_t best_i = 0;
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] > best) best = v[i], best_i = static_cast<int64_t>(i);
  EXPECT_EQ(max(x).item(), best);
  EXPECT_EQ(argmax(x, 0).item<int64_t>(), best_i);
}

// Intra-op threads are a CPU setting, so this one runs on the CPU only.
TEST(ReduceCpu, ResultsDoNotDependOnTheThreadCount) {
  ThreadGuard guard;
  Tensor x = test::rand_f64({3 << 20}, -1, 1, 11).to(kFloat32);
  Tensor c = x.reshape({3 << 16, 16});
  Tensor w = x.reshape({768, 4096});
  auto run = [&] {
    return std::vector<std::vector<double>>{host(sum(x)), host(sum(c, {0})), host(sum(w, {0})), host(sum(w, {1})),
                                            host(mean(w.t(), {1})), host(max(c, {0})), host(argmin(w, 0))};
  };
  set_num_threads(1);
  const auto one = run();
  for (int n : {2, 3, 4}) {
    set_num_threads(n);
    EXPECT_EQ(run(), one) << n << " threads";  // bit-identical
  }
}
