// The im2col + GEMM convolution (core/cpu/cpu_conv.cpp) against a naive float64 loop that shares no
// code with it: forward, input, weight and bias gradients, at shapes that make the weight gradient
// put several images side by side in one GEMM (small output planes) with a last block shorter,
// at 1 and 2 threads, with groups, stride, dilation, padding, 1x1 kernels (strided and direct),
// a rectangular kernel, one image, and a plane large enough for the per-image path. float64 always
// takes this path; float32 is forced onto it (ConvEngine::Im2col) on every GEMM engine built in
// (the weight gradient's blocks of images are taken on oneDNN's sgemm only).
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/cpu/cpu_matmul.h"
#include "nn/functional.h"
#include "tests/test_util.h"

namespace ember {
namespace {

namespace F = nn::functional;

struct Case {
  const char* name;
  Shape x, w;
  bool bias;
  int64_t stride, pad, dil, groups;
};

// Each comment gives the weight gradient's blocks of images at 2 threads / 1 thread (cpu_conv.cpp:
// kBlockColumns = 256, float32 on oneDNN's sgemm; the other engines and float64 run one image at a time).
const std::vector<Case>& cases() {
  static const std::vector<Case> cs = {
      // P = 16: 4 + 3 / one block of 7
      {"groups_stride_dilation_pad", {7, 4, 9, 9}, {6, 2, 3, 3}, true, 2, 1, 2, 2},
      // P = 100: 3 + 3 + 3 + 3 + 1 at both
      {"partial_last_block", {13, 3, 10, 10}, {5, 3, 3, 3}, true, 1, 1, 1, 1},
      // P = 9, 1x1 stride 1 (the direct case, gathered when blocked): 3 + 2 / 5
      {"one_by_one_direct", {5, 6, 3, 3}, {4, 6, 1, 1}, false, 1, 0, 1, 1},
      // P = 16, 1x1 stride 2, groups 3: 5 + 4 / 9
      {"one_by_one_stride2_groups", {9, 6, 7, 7}, {9, 2, 1, 1}, true, 2, 0, 1, 3},
      // P = 36, rectangular kernel: 2 + 1 / 3
      {"rectangular_kernel", {3, 3, 7, 8}, {4, 3, 2, 3}, true, 1, 0, 1, 1},
      // unpadded, stride 1, undilated (im2col's fast path, the MNIST nets' layers), 5x5 with
      // groups and a non-square plane, P = 56: 2 + 2 / 4
      {"valid_5x5_groups", {4, 4, 12, 11}, {6, 2, 5, 5}, true, 1, 0, 1, 2},
      // one image: no blocking
      {"one_image", {1, 2, 5, 5}, {3, 2, 3, 3}, true, 1, 1, 1, 1},
      // P = 1156 >= 1024: the per-image path
      {"large_plane_per_image", {3, 2, 34, 34}, {3, 2, 3, 3}, true, 1, 1, 1, 1},
  };
  return cs;
}

struct Result {
  Tensor out, gx, gw, gb;
};

// The naive loops: out = conv(x, w) + b and, for the loss sum(out * v), its gradients.
Result reference(const Case& c, const Tensor& x64, const Tensor& w64, const Tensor& b64, const Tensor& v64) {
  const int64_t N = c.x[0], C = c.x[1], H = c.x[2], W = c.x[3];
  const int64_t M = c.w[0], Cg = c.w[1], KH = c.w[2], KW = c.w[3], Mg = M / c.groups;
  const int64_t OH = (H + 2 * c.pad - c.dil * (KH - 1) - 1) / c.stride + 1;
  const int64_t OW = (W + 2 * c.pad - c.dil * (KW - 1) - 1) / c.stride + 1;
  const std::vector<double> x = x64.to_vector<double>(), w = w64.to_vector<double>(), v = v64.to_vector<double>();
  const std::vector<double> b = c.bias ? b64.to_vector<double>() : std::vector<double>(M, 0.0);
  std::vector<double> out(N * M * OH * OW), gx(x.size(), 0.0), gw(w.size(), 0.0), gb(M, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t o = ((n * M + m) * OH + oh) * OW + ow;
          double acc = b[m];
          for (int64_t cg = 0; cg < Cg; ++cg)
            for (int64_t ki = 0; ki < KH; ++ki)
              for (int64_t kj = 0; kj < KW; ++kj) {
                const int64_t ih = oh * c.stride - c.pad + ki * c.dil, iw = ow * c.stride - c.pad + kj * c.dil;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t xi = ((n * C + (m / Mg) * Cg + cg) * H + ih) * W + iw;
                const int64_t wi = ((m * Cg + cg) * KH + ki) * KW + kj;
                acc += x[xi] * w[wi];
                gx[xi] += w[wi] * v[o];
                gw[wi] += x[xi] * v[o];
              }
          out[o] = acc;
          gb[m] += v[o];
        }
  return {from_vector(out, {N, M, OH, OW}), from_vector(gx, c.x), from_vector(gw, c.w), from_vector(gb, {M})};
}

// ember's forward and backward of sum(conv(x, w, b) * v) in `dtype`; which gradients are asked
// for follows requires_grad (a frozen layer wants only the input's, a first layer only the weight's).
Result run(const Case& c, const Tensor& x64, const Tensor& w64, const Tensor& b64, const Tensor& v64, DType dtype,
           bool grad_x, bool grad_w) {
  // Fresh leaves each run (to() of float64 to float64 would return x64 itself, gradient and all).
  Tensor x = x64.to(dtype).clone().requires_grad_(grad_x), w = w64.to(dtype).clone().requires_grad_(grad_w);
  Tensor b = c.bias ? b64.to(dtype).clone().requires_grad_() : Tensor();
  Tensor out = F::conv2d(x, w, b, c.stride, c.pad, c.dil, c.groups);
  (out * v64.to(dtype)).sum().backward();
  return {out.detach(), x.grad(), w.grad(), c.bias ? b.grad() : Tensor()};
}

void check_case(const Case& c, DType dtype, double tol) {
  const Tensor x = test::rand_f64(c.x, -1, 1, 21), w = test::rand_f64(c.w, -1, 1, 22);
  const Tensor b = c.bias ? test::rand_f64({c.w[0]}, -1, 1, 23) : Tensor();
  Tensor probe = F::conv2d(x, w, Tensor(), c.stride, c.pad, c.dil, c.groups);
  const Tensor v = test::rand_f64(probe.shape(), -1, 1, 24);
  const Result want = reference(c, x, w, b, v);
  for (int threads : {1, 2}) {
    SCOPED_TRACE(threads);
    const int saved = get_num_threads();
    set_num_threads(threads);
    for (auto [gx, gw] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
      SCOPED_TRACE(std::string("grad_x ") + (gx ? "on" : "off") + ", grad_w " + (gw ? "on" : "off"));
      const Result got = run(c, x, w, b, v, dtype, gx, gw);
      test::expect_close(got.out, want.out, tol, tol);
      if (gx) test::expect_close(got.gx, want.gx, tol, tol);
      if (gw) test::expect_close(got.gw, want.gw, tol, tol);
      if (c.bias) test::expect_close(got.gb, want.gb, tol, tol);
    }
    set_num_threads(saved);
  }
}

// Each case twice: with the forward's columns kept for the weight gradient (a 256 MiB budget) and
// with none kept (budget 0, the default: the backward runs im2col again, in blocks of images).
TEST(CpuConvIm2col, Float64MatchesNaiveLoops) {
  const int64_t budget = cpu_conv_column_budget();
  for (int64_t b : {int64_t{256} << 20, int64_t{0}}) {
    SCOPED_TRACE(b ? "columns kept" : "columns recomputed");
    set_cpu_conv_column_budget(b);
    for (const Case& c : cases()) {
      SCOPED_TRACE(c.name);
      check_case(c, kFloat64, 1e-10);
    }
  }
  set_cpu_conv_column_budget(budget);
}

TEST(CpuConvIm2col, Float32OnEveryGemmEngineMatchesNaiveLoops) {
  const GemmEngine saved = cpu_gemm_engine();
  const ConvEngine saved_conv = cpu_conv_engine();
  const int64_t budget = cpu_conv_column_budget();
  set_cpu_conv_engine(ConvEngine::Im2col);
  for (int64_t b : {int64_t{256} << 20, int64_t{0}}) {
    SCOPED_TRACE(b ? "columns kept" : "columns recomputed");
    set_cpu_conv_column_budget(b);
    for (GemmEngine e : available_gemm_engines()) {
      SCOPED_TRACE(gemm_engine_name(e));
      set_cpu_gemm_engine(e);
      for (const Case& c : cases()) {
        SCOPED_TRACE(c.name);
        check_case(c, kFloat32, 1e-4);
      }
    }
  }
  set_cpu_conv_column_budget(budget);
  set_cpu_gemm_engine(saved);
  set_cpu_conv_engine(saved_conv);
}

// The kept columns: a forward whose weight needs a gradient keeps N*groups*K*P elements (here
// 4 * 1 * 27 * 81 float64) until its graph is gone; nothing is kept when the weight needs no
// gradient, under no_grad, for a 1x1 direct convolution (it has no columns), or past the budget;
// an input changed in place after the forward makes the backward an error (autograd's version
// check), never a gradient from stale columns.
TEST(CpuConvIm2col, ForwardKeepsColumnsForTheWeightGradientWithinTheBudget) {
  const int64_t budget = cpu_conv_column_budget();
  set_cpu_conv_column_budget(int64_t{256} << 20);
  const int64_t before = cpu_conv_kept_column_bytes();
  const Tensor x = test::rand_f64({4, 3, 9, 9}, -1, 1, 31);
  const int64_t want = 4 * 1 * 27 * 81 * 8;
  {
    Tensor w = test::rand_f64({5, 3, 3, 3}, -1, 1, 32).requires_grad_();
    Tensor y = F::conv2d(x, w, Tensor(), 1, 1);
    EXPECT_EQ(cpu_conv_kept_column_bytes(), before + want);
    Tensor w_frozen = w.detach();
    Tensor y_frozen = F::conv2d(x.clone().requires_grad_(), w_frozen, Tensor(), 1, 1);  // weight needs no gradient
    EXPECT_EQ(cpu_conv_kept_column_bytes(), before + want);
    {
      NoGradGuard no_grad;
      F::conv2d(x, w, Tensor(), 1, 1);
    }
    EXPECT_EQ(cpu_conv_kept_column_bytes(), before + want);
    Tensor w1x1 = test::rand_f64({5, 3, 1, 1}, -1, 1, 33).requires_grad_();
    Tensor y1x1 = F::conv2d(x, w1x1, Tensor(), 1, 0);
    EXPECT_EQ(cpu_conv_kept_column_bytes(), before + want);
    set_cpu_conv_column_budget(before + want + want / 2);  // room for half of a second layer's
    Tensor y2 = F::conv2d(x, w, Tensor(), 1, 1);
    EXPECT_EQ(cpu_conv_kept_column_bytes(), before + want);
    set_cpu_conv_column_budget(int64_t{256} << 20);
    // Kept and recomputed columns give the same weight gradient.
    y.sum().backward();
    const Tensor kept_grad = w.grad().clone();
    w.zero_grad();
    y2.sum().backward();
    test::expect_close(w.grad(), kept_grad, 1e-12, 1e-12);
  }
  EXPECT_EQ(cpu_conv_kept_column_bytes(), before);  // the graphs are gone, and the columns with them

  Tensor x2 = x.clone();
  Tensor w = test::rand_f64({5, 3, 3, 3}, -1, 1, 34).requires_grad_();
  Tensor y = F::conv2d(x2, w, Tensor(), 1, 1);
  x2.add_(1.0);
  EXPECT_ANY_THROW(y.sum().backward());
  EXPECT_ANY_THROW(set_cpu_conv_column_budget(-1));
  set_cpu_conv_column_budget(budget);
  if (!std::getenv("EMBER_CONV_KEEP_COLUMNS_MB")) {
    EXPECT_EQ(cpu_conv_column_budget(), 0) << "keeping columns is opt-in";
  }
}

}  // namespace
}  // namespace ember
