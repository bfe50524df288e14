// The CUDA reduction-family kernels (cuda/cuda_reduce.cu, cuda_softmax.cu, cuda_loss.cu,
// cuda_layer_norm.cu) against the CPU backend, on the shapes where the kernels take different
// paths: every dims mask of a non-contiguous 4-D tensor (row mode, column mode, several reduced
// dims that do not merge), broadcast (stride 0) inputs, long rows and long columns (work split
// across blocks and combined by a second pass), many short rows, odd sizes (1, 7, 1023, 65537),
// argmax/argmin ties and NaNs, empty reductions, softmax along every dim and over strided
// gradients, cross entropy with ignore_index, label smoothing and out-of-range targets, and layer
// norm rows of 1 and 4097 elements. The device suites (test_reduce.cpp, test_softmax.cpp,
// test_nn_functional.cpp) run their own cases on CUDA too; these add the kernels' special cases.
// Every test skips, saying why, without a GPU.
#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nn/nn.h"
#include "tests/test_util.h"

using namespace ember;
namespace F = ember::nn::functional;
using nn::Reduction;

namespace {

const Device kCuda0(DeviceType::CUDA, 0);


using ::ember::detail::str_cat;
template <typename... Args>
std::string str(const Args&... args) {
  return str_cat(args...);
}

std::vector<double> host(const Tensor& t) { return t.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>(); }

// The CUDA result (or a gradient that came back from the GPU) against the CPU's: same shape and
// dtype, NaN where the CPU has NaN, and |cuda - cpu| <= atol + rtol * |cpu| elsewhere. One failure
// line per call (the count and the first difference), not one per element.
void expect_match(const Tensor& cuda, const Tensor& cpu, double rtol, double atol, const std::string& what) {
  ASSERT_EQ(cuda.shape(), cpu.shape()) << what;
  ASSERT_EQ(cuda.dtype(), cpu.dtype()) << what;
  const std::vector<double> a = host(cuda), e = host(cpu);
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool ok = std::isnan(e[i]) ? std::isnan(a[i]) : std::abs(a[i] - e[i]) <= atol + rtol * std::abs(e[i]);
    if (!ok && bad++ == 0) first = static_cast<int64_t>(i);
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << a.size() << " elements differ; first at flat index " << first
                    << ": cuda " << (first >= 0 ? a[first] : 0.0) << ", cpu " << (first >= 0 ? e[first] : 0.0);
}

// Float tolerances per dtype: float32 sums of a few thousand values, or float64.
double rtol_of(DType t) { return t == kFloat32 ? 1e-5 : 1e-12; }
double atol_of(DType t) { return t == kFloat32 ? 1e-4 : 1e-10; }

std::vector<int64_t> dims_of(uint32_t mask, int nd) {
  std::vector<int64_t> dims;
  for (int d = 0; d < nd; ++d)
    if ((mask >> d) & 1u) dims.push_back(d);
  return dims;
}

// Every reduction op of x (already on each device) over `dims`, CUDA against CPU. Arg ops run when
// exactly one dim is reduced; mean only for floating types (the op requires it).
void expect_reductions_match(const Tensor& xc, const Tensor& xd, const std::vector<int64_t>& dims,
                             const std::string& what) {
  const DType t = xc.dtype();
  const bool fp = is_floating(t);
  const double rtol = fp ? rtol_of(t) : 0, atol = fp ? atol_of(t) : 0;
  expect_match(sum(xd, dims, true), sum(xc, dims, true), rtol, atol, what + " sum");
  if (fp) expect_match(mean(xd, dims, false), mean(xc, dims, false), rtol, atol, what + " mean");
  expect_match(max(xd, dims, true), max(xc, dims, true), 0, 0, what + " max");
  expect_match(min(xd, dims, false), min(xc, dims, false), 0, 0, what + " min");
  if (dims.size() == 1) {
    expect_match(argmax(xd, dims[0], true), argmax(xc, dims[0], true), 0, 0, what + " argmax");
    expect_match(argmin(xd, dims[0], false), argmin(xc, dims[0], false), 0, 0, what + " argmin");
  }
}

// Values for dtype t on the CPU: uniform in [-1, 1) for floats, small integers (many ties) otherwise.
Tensor values(const Shape& shape, DType t, uint64_t seed) {
  Generator g(seed);
  if (is_floating(t)) return uniform(shape, -1, 1, TensorOptions(t), &g);
  return randint(t == kUInt8 ? 0 : -20, 20, shape, TensorOptions(kInt64), &g).to(t);
}

}  // namespace

// ---------------------------------------------------------------- reduce

TEST(CudaReduceKernels, EveryDimsMaskOfANonContiguous4dTensor) {
  EMBER_REQUIRE_GPU();
  for (DType t : {kFloat32, kFloat64, kInt64, kUInt8}) {
    const Tensor base = values({6, 5, 9, 8}, t, 1);
    // [9, 6, 4, 5]: permuted (no dim is innermost in memory where it was) and sliced with a step.
    auto view = [](const Tensor& b) { return b.permute({2, 0, 3, 1}).slice(2, 1, 8, 2); };
    const Tensor xc = view(base), xd = view(base.to(kCuda0));
    for (uint32_t mask = 1; mask < 16; ++mask)
      expect_reductions_match(xc, xd, dims_of(mask, 4), str(dtype_name(t), " mask ", mask));
  }
}

TEST(CudaReduceKernels, BroadcastAndTransposedInputs) {
  EMBER_REQUIRE_GPU();
  const Tensor base = values({5, 1, 7}, kFloat32, 2);
  auto expanded = [](const Tensor& b) { return b.expand({5, 33, 7}); };  // stride 0 in dim 1
  for (uint32_t mask = 1; mask < 8; ++mask)
    expect_reductions_match(expanded(base), expanded(base.to(kCuda0)), dims_of(mask, 3),
                            str("expanded mask ", mask));
  const Tensor m = values({300, 70}, kFloat32, 3);
  for (int64_t d : {0, 1}) expect_reductions_match(m.t(), m.to(kCuda0).t(), {d}, str("transposed dim ", d));
}

TEST(CudaReduceKernels, FullReductionsOfOddSizes) {
  EMBER_REQUIRE_GPU();
  for (int64_t n : {1, 7, 1023, 65537}) {
    for (DType t : {kFloat32, kFloat64, kInt64, kUInt8}) {
      const Tensor x = values({n}, t, 4);
      const std::string what = str(dtype_name(t), " n=", n);
      expect_reductions_match(x, x.to(kCuda0), {0}, what);
      expect_reductions_match(x, x.to(kCuda0), {}, what + " (all dims)");
    }
  }
  // The all-reduce to a scalar: 65537 values as [17, 3855], every dim reduced.
  const Tensor x = values({17, 3855}, kFloat32, 5);
  const Tensor s = sum(x.to(kCuda0));
  EXPECT_EQ(s.dim(), 0);
  expect_match(s, sum(x), 1e-6, 5e-4, "sum of 65537");
  expect_match(mean(x.to(kCuda0)), mean(x), 1e-6, 1e-8, "mean of 65537");
  expect_match(max(x.to(kCuda0)), max(x), 0, 0, "max of 65537");
}

TEST(CudaReduceKernels, LongRowsLongColumnsAndManyShortRows) {
  EMBER_REQUIRE_GPU();
  const Tensor rows = values({3, 100003}, kFloat32, 6);
  expect_reductions_match(rows, rows.to(kCuda0), {1}, "3 long rows");
  expect_reductions_match(rows.t(), rows.to(kCuda0).t(), {0}, "3 long columns (transposed)");
  const Tensor cols = values({100003, 3}, kFloat32, 7);
  expect_reductions_match(cols, cols.to(kCuda0), {0}, "3 long columns");
  expect_reductions_match(cols, cols.to(kCuda0), {1}, "100003 rows of 3");
  const Tensor narrow = values({65537, 2}, kFloat64, 8);
  expect_reductions_match(narrow, narrow.to(kCuda0), {0}, "[65537, 2] over dim 0");
  const Tensor wide = values({7, 1023}, kFloat32, 9);
  expect_reductions_match(wide, wide.to(kCuda0), {0}, "[7, 1023] over dim 0");
  expect_reductions_match(wide, wide.to(kCuda0), {1}, "[7, 1023] over dim 1");
  const Tensor big = values({2049, 1025}, kFloat32, 10);
  expect_reductions_match(big, big.to(kCuda0), {0}, "[2049, 1025] over dim 0");
  expect_reductions_match(big, big.to(kCuda0), {1}, "[2049, 1025] over dim 1");
}

TEST(CudaReduceKernels, ArgMaxArgMinTakeTheFirstOfTiesAndOfNaNs) {
  EMBER_REQUIRE_GPU();
  // Every row constant: the first index wins everywhere, in long rows split across blocks too.
  for (int64_t n : {7, 1023, 65537}) {
    const Tensor x = full({3, n}, 2.0);
    EXPECT_EQ(host(argmax(x.to(kCuda0), 1)), std::vector<double>(3, 0.0)) << n;
    EXPECT_EQ(host(argmin(x.to(kCuda0), 1)), std::vector<double>(3, 0.0)) << n;
    EXPECT_EQ(host(argmax(x.to(kCuda0).t(), 0)), std::vector<double>(3, 0.0)) << n;
  }
  // Two maxima far apart in one long row, and NaNs: argmax and argmin point at the first NaN.
  std::vector<float> v(65537, 0.0f);
  v[40000] = v[50000] = 5.0f;
  v[1000] = v[60000] = -5.0f;
  const Tensor x = from_vector<float>(v, {65537});
  EXPECT_EQ(argmax(x.to(kCuda0), 0).item<int64_t>(), 40000);
  EXPECT_EQ(argmin(x.to(kCuda0), 0).item<int64_t>(), 1000);
  v[30000] = v[20000] = std::numeric_limits<float>::quiet_NaN();
  const Tensor xn = from_vector<float>(v, {65537});
  EXPECT_EQ(argmax(xn.to(kCuda0), 0).item<int64_t>(), 20000);
  EXPECT_EQ(argmin(xn.to(kCuda0), 0).item<int64_t>(), 20000);
  EXPECT_TRUE(std::isnan(max(xn.to(kCuda0)).item()));
  EXPECT_TRUE(std::isnan(min(xn.to(kCuda0)).item()));
  // Many ties (small integers) in every layout.
  const Tensor ties = values({40, 30}, kInt64, 11).to(kFloat32);
  for (int64_t d : {0, 1}) {
    expect_reductions_match(ties, ties.to(kCuda0), {d}, str("ties dim ", d));
    expect_reductions_match(ties.t(), ties.to(kCuda0).t(), {d}, str("transposed ties dim ", d));
  }
}

TEST(CudaReduceKernels, EmptyReductionsAndEmptyOutputs) {
  EMBER_REQUIRE_GPU();
  const Tensor x = zeros({0, 5}, TensorOptions().device(kCuda0));
  expect_match(sum(x, {0}), zeros({5}), 0, 0, "empty sum");
  expect_match(mean(x, {0}), full({5}, std::numeric_limits<double>::quiet_NaN()), 0, 0, "empty mean");
  EXPECT_EQ(sum(x, {1}).shape(), Shape({0}));
  EXPECT_EQ(max(x, {1}).shape(), Shape({0}));
}

TEST(CudaReduceKernels, SumsAreBitIdenticalFromRunToRun) {
  EMBER_REQUIRE_GPU();
  const Tensor x = values({1 << 20}, kFloat32, 12).to(kCuda0);
  const Tensor m = x.reshape({1024, 1024});
  EXPECT_EQ(host(sum(x)), host(sum(x)));
  EXPECT_EQ(host(sum(m, {0})), host(sum(m, {0})));
  EXPECT_EQ(host(mean(m, {1})), host(mean(m, {1})));
}

// ---------------------------------------------------------------- softmax

namespace {

// softmax or log_softmax of x along dim on both devices, forward and backward (upstream gradient
// `g` for the output, or the stride-0 gradient of a sum when g is undefined).
void expect_softmax_matches(const Tensor& x, int64_t dim, bool log, const Tensor& g, const std::string& what) {
  const double rtol = x.dtype() == kFloat32 ? 1e-4 : 1e-10, atol = x.dtype() == kFloat32 ? 1e-5 : 1e-12;
  auto run = [&](Device d, Tensor& grad) {
    Tensor leaf = x.detach().clone().requires_grad_();
    Tensor in = leaf.to(d);
    Tensor y = log ? log_softmax(in, dim) : softmax(in, dim);
    if (g.defined()) y.backward(g.to(d));
    else y.sum().backward();
    grad = leaf.grad();
    return y;
  };
  Tensor gc, gd;
  const Tensor yc = run(kCPU, gc), yd = run(kCuda0, gd);
  expect_match(yd, yc, rtol, atol, what + " forward");
  expect_match(gd, gc, rtol, atol, what + " backward");
}

}  // namespace

TEST(CudaSoftmaxKernels, EveryDimShortAndLongRows) {
  EMBER_REQUIRE_GPU();
  for (bool log : {false, true}) {
    const std::string name = log ? "log_softmax" : "softmax";
    for (int64_t n : {1, 7, 1023, 65537}) {
      const Tensor x = values({n}, kFloat32, 20);
      expect_softmax_matches(x, 0, log, values({n}, kFloat32, 21), str(name, " n=", n));
    }
    const Tensor many = values({65537, 3}, kFloat32, 22);  // many short rows
    expect_softmax_matches(many, 1, log, values({65537, 3}, kFloat32, 23), name + " [65537, 3] dim 1");
    expect_softmax_matches(many, 0, log, Tensor(), name + " [65537, 3] dim 0");
    const Tensor long_rows = values({3, 4097}, kFloat64, 24);  // rows longer than a block
    expect_softmax_matches(long_rows, 1, log, values({3, 4097}, kFloat64, 25), name + " [3, 4097] dim 1");
    const Tensor nchw = values({4, 6, 5, 7}, kFloat32, 26);
    for (int64_t d = 0; d < 4; ++d)
      expect_softmax_matches(nchw, d, log, values({4, 6, 5, 7}, kFloat32, 27), str(name, " 4-D dim ", d));
    // Strided input and a transposed (strided) upstream gradient.
    const Tensor xt = values({1023, 7}, kFloat32, 28).t();
    expect_softmax_matches(xt, 1, log, values({1023, 7}, kFloat32, 29).t(), name + " transposed [7, 1023] dim 1");
    expect_softmax_matches(xt, 0, log, Tensor(), name + " transposed [7, 1023] dim 0");
  }
}

TEST(CudaSoftmaxKernels, InfinitiesAndNaNs) {
  EMBER_REQUIRE_GPU();
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = from_vector<double>({1, -inf, 3, 1000, -inf, -inf, -inf, 0, nan, 2, 5, 1e300}, {4, 3});
  for (bool log : {false, true}) {
    const Tensor c = log ? log_softmax(x, 1) : softmax(x, 1);
    const Tensor d = log ? log_softmax(x.to(kCuda0), 1) : softmax(x.to(kCuda0), 1);
    expect_match(d, c, 1e-12, 1e-300, log ? "log_softmax" : "softmax");
  }
}

// ---------------------------------------------------------------- cross entropy

TEST(CudaLossKernels, CrossEntropyIgnoreIndexSmoothingForwardAndBackward) {
  EMBER_REQUIRE_GPU();
  for (int64_t N : {1, 7, 1023}) {
    for (int64_t C : {1, 3, 10, 4097}) {
      for (double smoothing : {0.0, 0.1}) {
        Generator gen(static_cast<uint64_t>(N * 10000 + C));
        const Tensor logits = uniform({N, C}, -3, 3, TensorOptions(kFloat32), &gen);
        Tensor target = randint(0, C, {N}, TensorOptions(kInt64), &gen);
        target = where(lt(uniform({N}, 0, 1, TensorOptions(kFloat64), &gen), 0.2),
                       full({N}, -100.0, TensorOptions(kInt64)), target);  // some rows ignored
        const Tensor upstream = uniform({N}, 0, 1, TensorOptions(kFloat32), &gen);  // for reduction None
        const std::string what = str("N=", N, " C=", C, " s=", smoothing);
        for (Reduction red : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
          auto run = [&](Device d, Tensor& grad) {
            Tensor leaf = logits.detach().clone().requires_grad_();
            Tensor loss = F::cross_entropy(leaf.to(d), target.to(d), {.reduction = red, .label_smoothing = smoothing});
            if (red == Reduction::None) loss.backward(upstream.to(d));
            else loss.backward();  // the kernel sees a stride-0 grad_loss
            grad = leaf.grad();
            return loss;
          };
          Tensor gc, gd;
          const Tensor lc = run(kCPU, gc), ld = run(kCuda0, gd);
          const std::string w = str(what, " reduction ", static_cast<int>(red));
          expect_match(ld, lc, 1e-5, 1e-5, w + " loss");
          expect_match(gd, gc, 1e-5, 1e-6, w + " grad");
        }
      }
    }
  }
}

TEST(CudaLossKernels, CrossEntropyOutOfRangeTargetGivesNaNInsteadOfAnError) {
  EMBER_REQUIRE_GPU();
  // The CPU reports the bad target; the GPU cannot without a synchronisation, so its row is NaN
  // (and its gradient row), and the other rows are unaffected (cuda/cuda_loss.cu).
  Tensor leaf = uniform({4, 3}, -1, 1, TensorOptions(kFloat32)).requires_grad_();
  const Tensor target = from_vector<int64_t>({0, 1, 3, -1}).to(kCuda0);
  Tensor loss = F::cross_entropy(leaf.to(kCuda0), target, {.reduction = Reduction::None});
  const std::vector<double> l = host(loss);
  EXPECT_TRUE(std::isfinite(l[0]) && std::isfinite(l[1])) << l[0] << " " << l[1];
  EXPECT_TRUE(std::isnan(l[2]) && std::isnan(l[3])) << l[2] << " " << l[3];
  loss.sum().backward();
  const std::vector<double> g = host(leaf.grad());
  for (int c = 0; c < 3; ++c) {
    EXPECT_TRUE(std::isfinite(g[c]) && std::isfinite(g[3 + c])) << c;
    EXPECT_TRUE(std::isnan(g[6 + c]) && std::isnan(g[9 + c])) << c;
  }
}

// ---------------------------------------------------------------- layer norm

TEST(CudaLayerNormKernels, RowsOf1And4097ManyRowsAndEveryAffineCombination) {
  EMBER_REQUIRE_GPU();
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {3, 1}, {3, 4097}, {5000, 7}, {1023, 65}};
  for (auto [M, N] : shapes) {
    for (int affine = 0; affine < 4; ++affine) {  // bit 0: weight, bit 1: bias
      Generator gen(static_cast<uint64_t>(M * 100 + N));
      const Tensor x = uniform({M, N}, -2, 3, TensorOptions(kFloat32), &gen);
      const Tensor w = uniform({N}, 0.5, 1.5, TensorOptions(kFloat32), &gen);
      const Tensor b = uniform({N}, -1, 1, TensorOptions(kFloat32), &gen);
      const Tensor g = uniform({M, N}, -1, 1, TensorOptions(kFloat32), &gen);
      struct Result {
        Tensor y, gx, gw, gb;
      };
      auto run = [&](Device d) {
        Tensor lx = x.detach().clone().requires_grad_(), lw = w.detach().clone().requires_grad_(),
               lb = b.detach().clone().requires_grad_();
        Tensor y = F::layer_norm(lx.to(d), {N}, affine & 1 ? lw.to(d) : Tensor(), affine & 2 ? lb.to(d) : Tensor());
        y.backward(g.to(d));
        return Result{y, lx.grad(), lw.grad(), lb.grad()};
      };
      const Result c = run(kCPU), dv = run(kCuda0);
      const std::string what = str("[", M, ", ", N, "] affine ", affine);
      expect_match(dv.y, c.y, 1e-5, 1e-5, what + " y");
      expect_match(dv.gx, c.gx, 1e-4, 1e-4, what + " grad x");
      if (affine & 1) expect_match(dv.gw, c.gw, 1e-4, 1e-4, what + " grad weight");
      if (affine & 2) expect_match(dv.gb, c.gb, 1e-4, 1e-4, what + " grad bias");
    }
  }
}
