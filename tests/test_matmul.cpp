// matmul: every PyTorch shape rule against a naive double-precision reference loop, views
// (transposed, strided, broadcast) without copies, both CPU GEMM engines, thread counts,
// float64 gradchecks and error messages.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <omp.h>

#include <thread>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_matmul.h"
#include "core/cpu/onednn_matmul.h"
#include "tests/test_util.h"

using namespace ember;

namespace {

// The reference: PyTorch's matmul rules written out as plain loops over host doubles. It shares
// no code with ember's matmul (only to_vector/from_vector to move the numbers).
Tensor reference_matmul(const Tensor& a, const Tensor& b) {
  Shape as = a.shape(), bs = b.shape();
  const bool vec_a = as.size() == 1, vec_b = bs.size() == 1;
  if (vec_a) as = Shape{1, as[0]};
  if (vec_b) bs = Shape{bs[0], 1};
  const int64_t M = as[as.size() - 2], K = as[as.size() - 1], N = bs[bs.size() - 1];
  // Broadcast batch dims, right-aligned.
  const int na = as.size() - 2, nb = bs.size() - 2, n = std::max(na, nb);
  std::vector<int64_t> batch(n), ba(n, 1), bb(n, 1);
  for (int i = 0; i < n; ++i) {
    if (i - (n - na) >= 0) ba[i] = as[i - (n - na)];
    if (i - (n - nb) >= 0) bb[i] = bs[i - (n - nb)];
    batch[i] = ba[i] == 1 ? bb[i] : ba[i];  // broadcasting: 1 stretches (0 stays 0)
  }
  int64_t count = 1;
  for (int64_t s : batch) count *= s;
  const auto av = a.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  const auto bv = b.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  std::vector<double> out(count * M * N, 0.0);
  for (int64_t flat = 0; flat < count; ++flat) {
    // Batch index -> matrix number in a and b (a size-1 dim always uses index 0).
    int64_t rem = flat, ia = 0, ib = 0, sa = 1, sb = 1;
    for (int i = n - 1; i >= 0; --i) {
      const int64_t idx = rem % batch[i];
      rem /= batch[i];
      ia += (ba[i] == 1 ? 0 : idx) * sa;
      ib += (bb[i] == 1 ? 0 : idx) * sb;
      sa *= ba[i];
      sb *= bb[i];
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += av[ia * M * K + m * K + k] * bv[ib * K * N + k * N + j];
        out[flat * M * N + m * N + j] = s;
      }
  }
  Shape out_shape(batch);
  if (!vec_a) out_shape.push_back(M);
  if (!vec_b) out_shape.push_back(N);
  return from_vector(out, out_shape);
}

// Random tensor of `dtype` on `device`.
Tensor rnd(const Shape& shape, DType dtype, Device device, uint64_t seed = 7) {
  return test::rand_f64(shape, -1.0, 1.0, seed).to(dtype).to(device);
}

// float32 sums of K products: allow for rounding that grows with K.
void expect_matches_reference(const Tensor& a, const Tensor& b) {
  Tensor out = matmul(a, b);
  EXPECT_EQ(out.dtype(), a.dtype());
  EXPECT_EQ(out.device(), a.device());
  const double tol = a.dtype() == kFloat64 ? 1e-12 : 1e-5 * std::max<int64_t>(8, a.size(-1));
  test::expect_close(out, reference_matmul(a, b), tol, tol);
}

}  // namespace

EMBER_DEVICE_SUITE(Matmul);

TEST_P(Matmul, EveryShapeRuleMatchesReference) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{5}, {5}},                    // dot -> 0-d
      {{3, 4}, {4, 5}},              // 2-D
      {{4}, {4, 5}},                 // vector on the left
      {{3, 4}, {4}},                 // vector on the right
      {{4}, {2, 4, 5}},              // vector x batch
      {{2, 3, 4}, {4}},              // batch x vector
      {{2, 3, 4}, {2, 4, 5}},        // batched
      {{2, 3, 4}, {4, 5}},           // batch x matrix (folded into one 2-D product)
      {{3, 4}, {2, 4, 5}},           // matrix x batch (broadcast a)
      {{2, 1, 3, 4}, {5, 4, 2}},     // both batch dims broadcast
      {{1, 3, 4}, {2, 1, 4, 2}},     // size-1 batch dims on both sides
      {{2, 2, 3, 4}, {2, 2, 4, 1}},  // N = 1
      {{1, 1}, {1, 1}},              // 1 x 1
      {{0, 3}, {3, 4}},              // empty rows
      {{2, 0}, {0, 3}},              // K = 0: zeros
      {{0, 2, 3}, {3, 2}},           // empty batch
  };
  for (DType dt : {kFloat32, kFloat64}) {
    for (const auto& [sa, sb] : cases) {
      SCOPED_TRACE(sa.str() + " x " + sb.str() + " " + dtype_name(dt));
      expect_matches_reference(rnd(sa, dt, device(), 1), rnd(sb, dt, device(), 2));
    }
  }
  EXPECT_EQ(matmul(rnd({5}, kFloat32, device()), rnd({5}, kFloat32, device())).dim(), 0);
  EXPECT_EQ(matmul(rnd({2, 1, 3, 4}, kFloat32, device()), rnd({5, 4, 2}, kFloat32, device())).shape(),
            (Shape{2, 5, 3, 2}));
  EXPECT_EQ(matmul(zeros({2, 0}, TensorOptions().device(device())), ones({0, 3}, TensorOptions().device(device())))
                .to(kCPU)
                .to_vector<float>(),
            std::vector<float>(6, 0.0f));
}

TEST_P(Matmul, TransposedAndStridedViews) {
  for (DType dt : {kFloat32, kFloat64}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor a = rnd({6, 7}, dt, device(), 1), at = rnd({7, 6}, dt, device(), 2).t();
    Tensor b = rnd({7, 5}, dt, device(), 3), bt = rnd({5, 7}, dt, device(), 4).t();
    ASSERT_FALSE(at.is_contiguous());
    expect_matches_reference(a, b);
    expect_matches_reference(at, b);
    expect_matches_reference(a, bt);
    expect_matches_reference(at, bt);
    // Batched transposes, and a batch dim that is not the outermost in memory.
    expect_matches_reference(rnd({3, 7, 6}, dt, device(), 5).transpose(1, 2),
                             rnd({3, 5, 7}, dt, device(), 6).transpose(1, 2));
    expect_matches_reference(rnd({6, 3, 7}, dt, device(), 7).permute({1, 0, 2}),
                             rnd({7, 3, 5}, dt, device(), 8).transpose(0, 1));
    // Column slice: rows keep a larger stride (a leading dimension), no copy needed.
    expect_matches_reference(rnd({6, 12}, dt, device(), 9).slice(1, 2, 9), b);
    // Stepped in both dims: no unit stride at all (the kernel copies this one).
    expect_matches_reference(rnd({12, 14}, dt, device(), 10).slice(0, 0, 12, 2).slice(1, 0, 14, 2), b);
    // Broadcast inside the matrix (stride 0 rows) and a single strided row / column.
    expect_matches_reference(rnd({1, 7}, dt, device(), 11).expand({6, 7}), b);
    expect_matches_reference(rnd({7, 4}, dt, device(), 12).select(1, 1), b);
    expect_matches_reference(a, rnd({4, 7}, dt, device(), 13).select(0, 2).unsqueeze(1).expand({7, 3}));
    // Batch broadcast through expand (batch stride 0) on both sides.
    expect_matches_reference(rnd({1, 6, 7}, dt, device(), 14).expand({4, 6, 7}), rnd({4, 7, 5}, dt, device(), 15));
  }
}

TEST_P(Matmul, BatchBroadcastThatCannotCollapse) {
  // a [2,1,3,4] broadcast to [2,5,3,4] has batch strides [12, 0]: the batch dims cannot be read as
  // one, so the op loops over the outer one. Likewise an attention-like [B, H] x [1, H] batch.
  expect_matches_reference(rnd({2, 1, 3, 4}, kFloat32, device(), 1), rnd({5, 4, 2}, kFloat32, device(), 2));
  expect_matches_reference(rnd({3, 4, 5, 6}, kFloat64, device(), 3), rnd({1, 4, 6, 2}, kFloat64, device(), 4));
  expect_matches_reference(rnd({4, 1, 3, 1, 2, 3}, kFloat64, device(), 5), rnd({2, 1, 2, 3, 4}, kFloat64, device(), 6));
}

TEST_P(Matmul, LargeAndManySmall) {
  // Large enough for the engine's blocked, multi-threaded code paths.
  expect_matches_reference(rnd({257, 513}, kFloat32, device(), 1), rnd({513, 129}, kFloat32, device(), 2));
  expect_matches_reference(rnd({513, 257}, kFloat64, device(), 3).t(), rnd({129, 513}, kFloat64, device(), 4).t());
  // Many small products: the CPU kernel splits the batch across threads.
  expect_matches_reference(rnd({64, 32, 32}, kFloat32, device(), 5), rnd({64, 32, 32}, kFloat32, device(), 6));
  expect_matches_reference(rnd({64, 32, 32}, kFloat32, device(), 7),
                           rnd({32, 32}, kFloat32, device(), 8).expand({64, 32, 32}));
}

// ---------------- gradients (float64 finite differences) ----------------

TEST_P(Matmul, GradcheckMatrixAndBatched) {
  auto mm = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  test::expect_gradcheck(mm, {test::rand_f64({3, 4}, -1, 1, 1), test::rand_f64({4, 5}, -1, 1, 2)}, device());
  test::expect_gradcheck(mm, {test::rand_f64({2, 3, 4}, -1, 1, 3), test::rand_f64({2, 4, 2}, -1, 1, 4)}, device());
  test::expect_gradcheck(mm, {test::rand_f64({2, 3, 4}, -1, 1, 5), test::rand_f64({4, 2}, -1, 1, 6)}, device());
}

TEST_P(Matmul, GradcheckVectors) {
  auto mm = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  test::expect_gradcheck(mm, {test::rand_f64({4}, -1, 1, 1), test::rand_f64({4}, -1, 1, 2)}, device());
  test::expect_gradcheck(mm, {test::rand_f64({4}, -1, 1, 3), test::rand_f64({4, 3}, -1, 1, 4)}, device());
  test::expect_gradcheck(mm, {test::rand_f64({3, 4}, -1, 1, 5), test::rand_f64({4}, -1, 1, 6)}, device());
  test::expect_gradcheck(mm, {test::rand_f64({4}, -1, 1, 7), test::rand_f64({2, 4, 3}, -1, 1, 8)}, device());
  test::expect_gradcheck(mm, {test::rand_f64({2, 3, 4}, -1, 1, 9), test::rand_f64({4}, -1, 1, 10)}, device());
}

TEST_P(Matmul, GradcheckNonContiguous) {
  // Transposed inputs, a stepped slice, and a batch that is not outermost in memory.
  test::expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0].t(), x[1].t()); },
                         {test::rand_f64({4, 3}, -1, 1, 1), test::rand_f64({5, 4}, -1, 1, 2)}, device());
  test::expect_gradcheck(
      [](const std::vector<Tensor>& x) {
        return matmul(x[0].slice(0, 0, 6, 2).slice(1, 1, 9, 2), x[1].transpose(1, 2));
      },
      {test::rand_f64({6, 9}, -1, 1, 3), test::rand_f64({2, 3, 4}, -1, 1, 4)}, device());
  test::expect_gradcheck(
      [](const std::vector<Tensor>& x) {
        return matmul(x[0].permute({1, 0, 2}), x[1]);
      },
      {test::rand_f64({3, 2, 4}, -1, 1, 5), test::rand_f64({2, 4, 3}, -1, 1, 6)}, device());
}

TEST_P(Matmul, GradcheckBroadcast) {
  // Broadcast batch dims: the per-entry gradients are summed back to each input's shape.
  auto mm = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  test::expect_gradcheck(mm, {test::rand_f64({2, 1, 3, 4}, -1, 1, 1), test::rand_f64({5, 4, 2}, -1, 1, 2)}, device());
  test::expect_gradcheck(mm, {test::rand_f64({3, 4}, -1, 1, 3), test::rand_f64({2, 4, 5}, -1, 1, 4)}, device());
  // expand() inside the matrix dims and on the batch.
  test::expect_gradcheck(
      [](const std::vector<Tensor>& x) {
        return matmul(x[0].expand({3, 4}), x[1].expand({2, 4, 2}));
      },
      {test::rand_f64({1, 4}, -1, 1, 5), test::rand_f64({4, 2}, -1, 1, 6)}, device());
}

TEST_P(Matmul, GradientValues) {
  // d(a·b)/da = b and d(a·b)/db = a for a dot product; dA = g·Bᵀ for 2-D.
  Tensor a = from_vector<double>({1, 2, 3}).to(device()).detach().requires_grad_();
  Tensor b = from_vector<double>({4, 5, 6}).to(device()).detach().requires_grad_();
  Tensor d = matmul(a, b);
  EXPECT_DOUBLE_EQ(d.item(), 32.0);
  d.backward();
  EXPECT_EQ(a.grad().to(kCPU).to_vector<double>(), (std::vector<double>{4, 5, 6}));
  EXPECT_EQ(b.grad().to(kCPU).to_vector<double>(), (std::vector<double>{1, 2, 3}));

  // Only the input that requires grad gets one.
  Tensor w = from_vector<double>({1, 2, 3, 4}, {2, 2}).to(device()).detach().requires_grad_();
  Tensor x = from_vector<double>({1, 0, 0, 1}, {2, 2}).to(device());
  Tensor y = matmul(x, w);
  y.backward(ones_like(y));
  EXPECT_EQ(w.grad().to(kCPU).to_vector<double>(), (std::vector<double>{1, 1, 1, 1}));  // xᵀ·1
  EXPECT_FALSE(x.grad().defined());
}

// ---------------- errors ----------------

TEST_P(Matmul, ErrorsNameTheOpAndShapes) {
  auto f32 = [&](const Shape& s) { return zeros(s, TensorOptions().device(device())); };
  test::expect_error(
      [&] {
        matmul(f32({64, 784}), f32({512, 10}));
      },
      {"matmul: [64, 784] x [512, 10]: inner dimensions differ", "784 vs 512"});
  test::expect_error([&] { matmul(f32({3}), f32({4})); }, {"matmul: [3] x [4]: inner dimensions differ"});
  test::expect_error([&] { matmul(f32({2, 3}), f32({4})); }, {"matmul: [2, 3] x [4]: inner dimensions differ"});
  test::expect_error(
      [&] {
        matmul(f32({2, 3, 4}), f32({3, 4, 5}));
      },
      {"matmul: [2, 3, 4] x [3, 4, 5]", "batch dimensions cannot be broadcast", "2 vs 3"});
  test::expect_error([&] { matmul(f32({}), f32({3})); }, {"matmul: [] x [3]", "at least 1 dimension"});
  test::expect_error(
      [&] {
        matmul(f32({2, 3}), zeros({3, 2}, TensorOptions(kFloat64).device(device())));
      },
      {"matmul: [2, 3] x [3, 2]", "dtype mismatch", "float32", "float64"});
  Tensor i64 = zeros({2, 2}, TensorOptions(kInt64).device(device()));
  test::expect_error([&] { matmul(i64, i64); }, {"matmul: [2, 2] x [2, 2]", "floating-point", "int64"});
  test::expect_error([&] { matmul(Tensor(), f32({2})); }, {"matmul", "undefined"});
  if (device().is_cuda())
    test::expect_error([&] { matmul(f32({2, 2}), zeros({2, 2})); }, {"matmul: [2, 2] x [2, 2]", "device mismatch"});
}

// ---------------- CPU kernel specifics ----------------

// Views are read in place: a matmul allocates its output and nothing else.
TEST(MatmulCpu, ViewsAreNotCopied) {
  Tensor a = test::rand_f64({8, 6}, -1, 1, 1), b = test::rand_f64({5, 8}, -1, 1, 2);
  Tensor big = test::rand_f64({2, 1, 6, 8}, -1, 1, 3), batch = test::rand_f64({3, 8, 5}, -1, 1, 4);
  Tensor v = test::rand_f64({8}, -1, 1, 5), x = test::rand_f64({4, 6, 8}, -1, 1, 6);
  auto allocations = [] { return cpu_allocator().stats().total_allocations; };
  const std::vector<std::pair<Tensor, Tensor>> cases = {
      {a.t(), b.t()},  // transposed on both sides
      {big, batch},    // broadcast batch dims, looped over in the op
      {a.t().expand({3, 6, 8}), batch},
      {x, b.t()},  // folded into one 2-D product
      {v, batch},  // promoted vector
      {v, v},
  };
  for (const auto& [l, r] : cases) {
    const int64_t before = allocations();
    Tensor out = matmul(l, r);
    EXPECT_EQ(allocations() - before, 1) << l.shape() << " x " << r.shape();
  }
}

TEST(MatmulCpu, EveryEngineMatchesReference) {
  const GemmEngine saved = cpu_gemm_engine();
  if (!cpu_blas_available())
    test::expect_error([] { set_cpu_gemm_engine(GemmEngine::Blas); }, {"built without OpenBLAS"});
  if (!cpu_onednn_available()) {
    test::expect_error([] { set_cpu_gemm_engine(GemmEngine::OneDnn); }, {"built without oneDNN"});
    test::expect_error([] { set_cpu_gemm_engine(GemmEngine::Auto); }, {"built without oneDNN"});
  }
  for (GemmEngine e : available_gemm_engines()) {
    SCOPED_TRACE(gemm_engine_name(e));
    set_cpu_gemm_engine(e);
    EXPECT_EQ(cpu_gemm_engine(), e);
    for (DType dt : {kFloat32, kFloat64}) {
      expect_matches_reference(rnd({65, 33}, dt, kCPU, 1), rnd({33, 17}, dt, kCPU, 2));
      expect_matches_reference(rnd({33, 65}, dt, kCPU, 3).t(), rnd({17, 33}, dt, kCPU, 4).t());
      expect_matches_reference(rnd({2, 1, 9, 7}, dt, kCPU, 5),
                               rnd({3, 7, 4}, dt, kCPU, 6).transpose(1, 2).transpose(1, 2));
      expect_matches_reference(rnd({16, 8, 8}, dt, kCPU, 7), rnd({8, 8}, dt, kCPU, 8).t().expand({16, 8, 8}));
      expect_matches_reference(rnd({12, 14}, dt, kCPU, 9).slice(0, 0, 12, 2).slice(1, 0, 14, 2),
                               rnd({7, 3}, dt, kCPU, 10));
      expect_matches_reference(rnd({200, 300}, dt, kCPU, 11), rnd({300, 100}, dt, kCPU, 12));
      // Auto's OpenBLAS class (B as stored, M >= 64, N >= 256, K >= 64): a weight-gradient-like
      // g^T · x and an input-gradient-like g · W, with a row stride wider than the row.
      expect_matches_reference(rnd({64, 70}, dt, kCPU, 13).t(), rnd({64, 260}, dt, kCPU, 14));
      expect_matches_reference(rnd({65, 80}, dt, kCPU, 15), rnd({80, 300}, dt, kCPU, 16).slice(1, 0, 257));
    }
  }
  set_cpu_gemm_engine(saved);
  EXPECT_NE(cpu_gemm_info().find("matmul engine"), std::string::npos);
}

// The CPU kernel's accumulating form (out += a · b, GEMM beta = 1; the im2col convolution's weight
// gradient uses it) on every engine built in, every dtype the engines take (16-bit floats through
// the float32 stand-ins), transposed operands, a batch split over threads and an empty sum (K = 0:
// out unchanged).
TEST(MatmulCpu, AccumulateAddsTheProductOnEveryEngine) {
  auto& cpu = static_cast<CpuBackend&>(backend(kCPU));
  const GemmEngine saved = cpu_gemm_engine();
  const int saved_threads = get_num_threads();
  for (GemmEngine e : available_gemm_engines()) {
    SCOPED_TRACE(gemm_engine_name(e));
    set_cpu_gemm_engine(e);
    for (int threads : {1, 2}) {
      SCOPED_TRACE(threads);
      set_num_threads(threads);
      for (DType dt : {kFloat32, kFloat64, kBFloat16}) {
        SCOPED_TRACE(dtype_name(dt));
        const double tol = dt == kFloat64 ? 1e-12 : dt == kFloat32 ? 1e-4 : 5e-2;
        struct Operands {
          Tensor a, b;
        };
        const std::vector<Operands> cases = {
            {rnd({1, 65, 33}, dt, kCPU, 1), rnd({1, 33, 17}, dt, kCPU, 2)},
            {rnd({1, 33, 65}, dt, kCPU, 3).transpose(1, 2), rnd({1, 17, 33}, dt, kCPU, 4).transpose(1, 2)},
            {rnd({6, 9, 7}, dt, kCPU, 5), rnd({6, 7, 4}, dt, kCPU, 6)},  // small products: split over threads
            {rnd({1, 200, 300}, dt, kCPU, 7), rnd({1, 300, 100}, dt, kCPU, 8)},
            {rnd({1, 64, 70}, dt, kCPU, 12).transpose(1, 2), rnd({1, 64, 260}, dt, kCPU, 13)},  // Auto: OpenBLAS
            {rnd({2, 5, 0}, dt, kCPU, 9), rnd({2, 0, 3}, dt, kCPU, 10)},  // K = 0
            // Small output, long sum: split along K across threads (thread 0 keeps beta = 1).
            {rnd({1, 16, 8195}, dt, kCPU, 14), rnd({1, 8195, 20}, dt, kCPU, 15)},
            {rnd({3, 8195, 16}, dt, kCPU, 16).transpose(1, 2), rnd({3, 20, 8195}, dt, kCPU, 17).transpose(1, 2)},
        };
        for (const Operands& c : cases) {
          SCOPED_TRACE(c.a.shape());
          const Tensor start = rnd({c.a.size(0), c.a.size(1), c.b.size(2)}, dt, kCPU, 11);
          Tensor out = start.clone();
          cpu.matmul(c.a, c.b, out, /*accumulate=*/true);
          const Tensor want = start.to(kFloat64) + reference_matmul(c.a.to(kFloat64), c.b.to(kFloat64));
          test::expect_close(out, want, tol, tol);
          cpu.matmul(c.a, c.b, out, /*accumulate=*/false);  // the plain form overwrites
          test::expect_close(out, reference_matmul(c.a.to(kFloat64), c.b.to(kFloat64)), tol, tol);
        }
      }
    }
  }
  set_num_threads(saved_threads);
  set_cpu_gemm_engine(saved);
}

// GemmEngine::Auto is oneDNN except for one float32 class: products with B read as stored and
// M >= 64, N >= 256, K >= 64 (the linear layers' gradients) go to OpenBLAS when it is built in and
// oneDNN runs AVX2 kernels (not AVX-512 ones); every other float32 product, small ones included,
// goes to oneDNN unmeasured (GemmEngine::Measured, opt-in, times small ones: next tests). A forced
// engine applies to every product (float64 never runs on oneDNN, which has no dgemm).
TEST(MatmulCpu, AutoFollowsTheMeasuredShapeRules) {
  if (!cpu_onednn_available()) GTEST_SKIP() << "Auto needs oneDNN";
  const GemmEngine saved = cpu_gemm_engine();
  set_cpu_gemm_engine(GemmEngine::Auto);
  // The class goes to OpenBLAS only where oneDNN runs AVX2 kernels like OpenBLAS's; where oneDNN
  // runs AVX-512 ones, every float32 product stays on oneDNN.
  const bool class_on_blas = cpu_blas_available() && !cpu_onednn_runs_avx512();
  const GemmEngine blas_if_built = class_on_blas ? GemmEngine::Blas : GemmEngine::OneDnn;
  EXPECT_EQ(gemm_engine_for(kFloat32, 512, 784, 128, false, /*b_transposed=*/false, 1), blas_if_built);  // mlp fc1 grad_w
  EXPECT_EQ(gemm_engine_for(kFloat32, 128, 512, 512, false, false, 1), blas_if_built);                   // mlp fc2 grad_in
  EXPECT_EQ(gemm_engine_for(kFloat32, 64, 256, 64, false, false, 1), blas_if_built);                     // the corner
  EXPECT_EQ(gemm_engine_for(kFloat32, 128, 512, 784, false, /*b_transposed=*/true, 1), GemmEngine::OneDnn);  // forward
  EXPECT_EQ(gemm_engine_for(kFloat32, 63, 256, 128, false, false, 1), GemmEngine::OneDnn);
  EXPECT_EQ(gemm_engine_for(kFloat32, 64, 255, 128, false, false, 1), GemmEngine::OneDnn);
  EXPECT_EQ(gemm_engine_for(kFloat32, 128, 256, 63, false, false, 1), GemmEngine::OneDnn);
  // Tiny products stay on oneDNN, unmeasured (they run on one thread instead; see below), so a
  // run's rounding repeats exactly in the next process.
  const size_t measured_before = measured_gemm_shape_count();
  EXPECT_EQ(gemm_engine_for(kFloat32, 64, 10, 50, false, /*b_transposed=*/true, 1), GemmEngine::OneDnn);  // LeNet fc2 forward
  EXPECT_EQ(gemm_engine_for(kFloat32, 32, 10, 64, false, true, 1), GemmEngine::OneDnn);  // ResNet-20 fc forward, batch 32
  EXPECT_EQ(gemm_engine_for(kFloat32, 64, 10, 128, false, true, 1), GemmEngine::OneDnn);  // cnn fc2 forward
  EXPECT_EQ(gemm_engine_for(kFloat32, 10, 64, 32, true, false, 1), GemmEngine::OneDnn);  // ResNet-20 fc grad_w, b32
  EXPECT_EQ(measured_gemm_shape_count(), measured_before);
  EXPECT_NE(gemm_engine_for(kFloat64, 512, 784, 128, false, false, 1), GemmEngine::OneDnn);
  EXPECT_NE(gemm_engine_for(kFloat64, 512, 784, 128, false, false, 1), GemmEngine::Auto);
  set_cpu_gemm_engine(GemmEngine::OneDnn);
  EXPECT_EQ(gemm_engine_for(kFloat32, 512, 784, 128, false, false, 1), GemmEngine::OneDnn);
  set_cpu_gemm_engine(GemmEngine::Eigen);
  EXPECT_EQ(gemm_engine_for(kFloat32, 512, 784, 128, false, false, 1), GemmEngine::Eigen);
  set_cpu_gemm_engine(saved);
}

// Auto's rule for a measured shape: oneDNN unless another engine is at least 5% faster, then the
// fastest of the others; without a oneDNN timing, simply the fastest.
TEST(MatmulCpu, MeasuredChoiceKeepsOneDnnUnlessAnotherIsFivePercentFaster) {
  using E = GemmEngine;
  EXPECT_EQ(gemm_engine_from_timings({{E::Eigen, 1.0}, {E::Blas, 1.2}, {E::OneDnn, 1.04}}), E::OneDnn);
  EXPECT_EQ(gemm_engine_from_timings({{E::Eigen, 1.0}, {E::Blas, 1.2}, {E::OneDnn, 1.06}}), E::Eigen);
  EXPECT_EQ(gemm_engine_from_timings({{E::Eigen, 1.3}, {E::Blas, 1.0}, {E::OneDnn, 1.5}}), E::Blas);
  EXPECT_EQ(gemm_engine_from_timings({{E::Eigen, 2.0}, {E::Blas, 3.0}, {E::OneDnn, 1.0}}), E::OneDnn);
  EXPECT_EQ(gemm_engine_from_timings({{E::Eigen, 2.0}, {E::Blas, 1.0}}), E::Blas);
  EXPECT_EQ(gemm_engine_from_timings({{E::OneDnn, 1.0}}), E::OneDnn);
}

// Under Measured, a float32 product of under 2^20 multiply-adds is timed on the engines the first
// time its shape (transposes and thread count included) comes up; later calls reuse the answer.
// The measurement leaves the thread setting alone; larger products, float64, Auto and forced
// engines are never measured; past 256 shapes new ones take Auto's rule unmeasured. ember's matmul
// on such a product is exact to float32 rounding whichever engine won.
TEST(MatmulCpu, MeasuredTimesSmallProductsOncePerShape) {
  const GemmEngine saved = cpu_gemm_engine();
  const int saved_threads = get_num_threads();
  set_cpu_gemm_engine(GemmEngine::Measured);
  // Auto's rule for an unmeasured small float32 product: oneDNN, or without it the float64 rule.
  const GemmEngine rule =
      cpu_onednn_available() ? GemmEngine::OneDnn : gemm_engine_for(kFloat64, 2, 3, 1000, false, false, 1);
  const std::vector<GemmEngine> engines = available_gemm_engines();
  auto is_an_engine = [&](GemmEngine e) {
    return e != GemmEngine::Auto && e != GemmEngine::Measured &&
           std::find(engines.begin(), engines.end(), e) != engines.end();
  };
  const size_t before = measured_gemm_shape_count();
  const GemmEngine first = gemm_engine_for(kFloat32, 32, 10, 64, false, true, 2);  // ResNet-20 fc forward, b32
  EXPECT_TRUE(is_an_engine(first)) << gemm_engine_name(first);
  EXPECT_EQ(get_num_threads(), saved_threads);
  const size_t after_first = measured_gemm_shape_count();
  EXPECT_LE(after_first, before + 1);  // +1 unless an earlier test met the shape
  EXPECT_EQ(gemm_engine_for(kFloat32, 32, 10, 64, false, true, 2), first);
  EXPECT_EQ(measured_gemm_shape_count(), after_first);
  // Larger products, float64, Auto and forced engines are never measured.
  gemm_engine_for(kFloat32, 128, 512, 784, false, true, 2);
  gemm_engine_for(kFloat64, 33, 10, 64, false, true, 2);
  set_cpu_gemm_engine(GemmEngine::Eigen);
  EXPECT_EQ(gemm_engine_for(kFloat32, 34, 10, 64, false, true, 2), GemmEngine::Eigen);
  if (cpu_onednn_available()) {
    set_cpu_gemm_engine(GemmEngine::Auto);
    EXPECT_EQ(gemm_engine_for(kFloat32, 35, 10, 64, false, true, 2), GemmEngine::OneDnn);
  }
  set_cpu_gemm_engine(GemmEngine::Measured);
  EXPECT_EQ(measured_gemm_shape_count(), after_first);

  // ember's matmul on small shapes (each measured on first use) against a float64 reference.
  for (auto [m, n, k] : {std::array<int64_t, 3>{32, 10, 64}, {10, 64, 32}, {64, 50, 320}, {3, 5, 7}}) {
    Tensor a = randn({m, k}), b = randn({n, k});
    Tensor c = matmul(a, b.transpose(0, 1));
    Tensor want = matmul(a.to(kFloat64), b.to(kFloat64).transpose(0, 1));
    EXPECT_TRUE(allclose(c.to(kFloat64), want, 1e-5, 1e-5)) << m << "x" << n << "x" << k;
  }

  // The budget: however many shapes come, at most 256 are measured; the rest take Auto's rule.
  for (int64_t k = 1; measured_gemm_shape_count() < 256 && k < 400; ++k) gemm_engine_for(kFloat32, 2, 3, k, false, false, 1);
  EXPECT_EQ(measured_gemm_shape_count(), 256u);
  EXPECT_EQ(gemm_engine_for(kFloat32, 2, 3, 1000, false, false, 1), rule);
  EXPECT_EQ(measured_gemm_shape_count(), 256u);
  set_cpu_gemm_engine(saved);
}

// Products of at most 2^18 multiply-adds per call (all matrices together) run on one thread: the
// last layers of the MNIST nets and ResNet-20, not the mlp's last layer or LeNet's fc1. The call
// leaves the thread setting as it found it.
TEST(MatmulCpu, TinyProductsRunOnOneThreadAndRestoreTheSetting) {
  EXPECT_TRUE(gemm_runs_on_one_thread(1, 64, 10, 128));    // cnn fc2 forward
  EXPECT_TRUE(gemm_runs_on_one_thread(1, 128, 10, 64));    // ResNet-20 fc forward, batch 128
  EXPECT_TRUE(gemm_runs_on_one_thread(4, 64, 64, 16));     // 4 x 65536: the whole call counts
  EXPECT_FALSE(gemm_runs_on_one_thread(5, 64, 64, 16));
  EXPECT_FALSE(gemm_runs_on_one_thread(1, 128, 10, 512));  // mlp fc3 forward
  EXPECT_FALSE(gemm_runs_on_one_thread(1, 64, 50, 320));   // LeNet fc1 forward
  EXPECT_FALSE(gemm_runs_on_one_thread(int64_t{1} << 40, int64_t{1} << 40, 2, 2));  // no overflow into "small"
  EXPECT_FALSE(gemm_runs_on_one_thread(2, int64_t{1} << 17, int64_t{1} << 17, int64_t{1} << 17));
  const int saved_threads = get_num_threads();
  set_num_threads(2);
  const Tensor a = randn({64, 128}), w = randn({10, 128});
  const Tensor y = matmul(a, w.transpose(0, 1));
  EXPECT_EQ(get_num_threads(), 2);
  test::expect_close(y, matmul(a.to(kFloat64), w.to(kFloat64).transpose(0, 1)).to(kFloat32), 1e-4, 1e-4);
  set_num_threads(saved_threads);
}

TEST(MatmulCpu, OneDnnReportsAvx512WhereEmberWasCompiledForIt) {
  // ember is compiled with -march=native: a build that carries AVX-512 runs on a CPU that has it,
  // and there oneDNN must report AVX-512 kernels (unless ONEDNN_MAX_CPU_ISA lowers them), or Auto
  // would send the linear gradients to OpenBLAS's AVX2 kernels at half the speed.
  if (!cpu_onednn_available()) {
    EXPECT_FALSE(cpu_onednn_runs_avx512());
    return;
  }
#if defined(__AVX512F__)
  if (std::getenv("ONEDNN_MAX_CPU_ISA") == nullptr) {
    EXPECT_TRUE(cpu_onednn_runs_avx512());
  }
#endif
  EXPECT_NE(cpu_gemm_info().find(cpu_onednn_runs_avx512() ? "threading, AVX-512 kernels" : "threading, no AVX-512 kernels"),
            std::string::npos)
      << cpu_gemm_info();
}

TEST(MatmulCpu, LongSumsSplitAcrossThreadsMatchTheReference) {
  // Products with a small output and K >= 8 max(M, N) are split along K, one slice per thread,
  // and the slices added (cpu_matmul.cpp, splits_k): every layout, an odd K, 1-3 threads, and the
  // cnn's 9216 -> 128 layer. Inside another parallel region the team has one thread, and that
  // thread must still sum every slice.
  const int saved = get_num_threads();
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(threads);
    set_num_threads(threads);
    for (DType dt : {kFloat32, kFloat64}) {
      SCOPED_TRACE(dtype_name(dt));
      expect_matches_reference(rnd({24, 4099}, dt, kCPU, 1), rnd({4099, 40}, dt, kCPU, 2));
      expect_matches_reference(rnd({4099, 24}, dt, kCPU, 3).t(), rnd({40, 4099}, dt, kCPU, 4).t());
      expect_matches_reference(rnd({24, 4099}, dt, kCPU, 5), rnd({40, 4099}, dt, kCPU, 6).t());
      expect_matches_reference(rnd({3, 24, 4099}, dt, kCPU, 7), rnd({3, 4099, 40}, dt, kCPU, 8));
    }
    expect_matches_reference(rnd({64, 9216}, kFloat32, kCPU, 9), rnd({128, 9216}, kFloat32, kCPU, 10).t());
    // Rows longer than the sum (slices): oneDNN's matmul primitive has no kernel for them, so
    // ember's own split runs even where the primitive would have shared the product out itself.
    expect_matches_reference(rnd({64, 9300}, kFloat32, kCPU, 17).slice(1, 0, 9216),
                             rnd({128, 9300}, kFloat32, kCPU, 18).slice(1, 0, 9216).t());
  }
  set_num_threads(2);
  const Tensor a = rnd({24, 4099}, kFloat32, kCPU, 11), b = rnd({4099, 40}, kFloat32, kCPU, 12);
  const Tensor want = reference_matmul(a, b);
  std::vector<Tensor> got(2);
#pragma omp parallel num_threads(2)
  got[omp_get_thread_num()] = matmul(a, b);
  for (const Tensor& g : got) test::expect_close(g, want, 1e-3, 1e-3);
  set_num_threads(saved);
}

TEST(MatmulCpu, ThreadCountsGiveTheSameResult) {
  // Big products share threads inside one GEMM; small ones split the batch; odd batches of big
  // products stay serial. Every path must agree with the reference at 1 and 2 threads.
  const int saved = get_num_threads();
  for (int threads : {1, 2}) {
    SCOPED_TRACE(threads);
    set_num_threads(threads);
    expect_matches_reference(rnd({4, 160, 160}, kFloat32, kCPU, 1), rnd({4, 160, 160}, kFloat32, kCPU, 2));
    expect_matches_reference(rnd({3, 160, 160}, kFloat32, kCPU, 3),
                             rnd({160, 160}, kFloat32, kCPU, 4).expand({3, 160, 160}));
    expect_matches_reference(rnd({64, 16, 16}, kFloat64, kCPU, 5), rnd({64, 16, 16}, kFloat64, kCPU, 6));
  }
  set_num_threads(saved);
}

// Float32 products with B read transposed (x · Wᵀ) run on oneDNN's matmul primitive where it has a
// brgemm kernel (AVX-512 CPUs), through per-thread plans keyed by shape, layout, accumulation and
// thread count (core/cpu/onednn_matmul.cpp). Every layout and thread count must match the
// reference, repeat its bits, stay right when the thread count changes between calls and inside
// a parallel region (one-thread plans there).
TEST(MatmulCpu, TransposedBProductsOnOneDnnsMatmulPrimitive) {
  if (!cpu_onednn_available()) {
    EXPECT_EQ(onednn_matmul_kernel(32, 10, 64, false, true), "");
    float a = 1, b = 2, c = 0;
    EXPECT_FALSE(onednn_matmul(1, 1, 1, &a, false, 1, &b, true, 1, &c, false));
    GTEST_SKIP() << "built without oneDNN";
  }
  const std::string kernel = onednn_matmul_kernel(32, 10, 64, false, true);
  if (cpu_onednn_runs_avx512()) {
    EXPECT_EQ(kernel.rfind("brg", 0), 0u) << kernel;
  }
  const GemmEngine saved = cpu_gemm_engine();
  const int saved_threads = get_num_threads();
  for (GemmEngine e : {GemmEngine::Auto, GemmEngine::OneDnn}) {
    SCOPED_TRACE(gemm_engine_name(e));
    set_cpu_gemm_engine(e);
    for (int threads : {1, 2, 3, 2}) {  // back to 2: plans for 2 threads met again after 3
      SCOPED_TRACE(threads);
      set_num_threads(threads);
      expect_matches_reference(rnd({32, 64}, kFloat32, kCPU, 1), rnd({10, 64}, kFloat32, kCPU, 2).t());
      expect_matches_reference(rnd({64, 320}, kFloat32, kCPU, 3), rnd({50, 320}, kFloat32, kCPU, 4).t());
      expect_matches_reference(rnd({128, 512}, kFloat32, kCPU, 5), rnd({300, 512}, kFloat32, kCPU, 6).t());
      // A transposed too, and a row stride wider than the row on both sides.
      expect_matches_reference(rnd({64, 33}, kFloat32, kCPU, 7).t(), rnd({17, 64}, kFloat32, kCPU, 8).t());
      expect_matches_reference(rnd({40, 100}, kFloat32, kCPU, 9).slice(1, 0, 70),
                               rnd({21, 90}, kFloat32, kCPU, 10).slice(1, 0, 70).t());
      // A long sum the primitive splits itself instead of ember (primitive_splits_evenly).
      expect_matches_reference(rnd({64, 9216}, kFloat32, kCPU, 11), rnd({128, 9216}, kFloat32, kCPU, 12).t());
      // The same product twice gives the same bits (a resumed run repeats an uninterrupted one).
      const Tensor a = rnd({64, 320}, kFloat32, kCPU, 13), b = rnd({50, 320}, kFloat32, kCPU, 14).t();
      EXPECT_EQ(matmul(a, b).to_vector<float>(), matmul(a, b).to_vector<float>());
    }
  }
  // Inside a parallel region (someone's, or ember's own kernels sharing out images) each thread
  // runs its product alone, on a plan of its own made for one thread; every result must be right.
  set_num_threads(2);
  const Tensor a = rnd({48, 96}, kFloat32, kCPU, 15), b = rnd({24, 96}, kFloat32, kCPU, 16).t();
  const Tensor want = reference_matmul(a, b);
  std::vector<Tensor> got(2);
  std::vector<size_t> new_plans(2, 0);
#pragma omp parallel num_threads(2)
  {
    const size_t before = onednn_matmul_plan_count();
    got[omp_get_thread_num()] = matmul(a, b);
    new_plans[omp_get_thread_num()] = onednn_matmul_plan_count() - before;
  }
  for (const Tensor& g : got) test::expect_close(g, want, 1e-4, 1e-4);
  if (cpu_onednn_runs_avx512()) {
    for (size_t n : new_plans) EXPECT_LE(n, 1u);  // at most one: a thread may have met the shape before
    EXPECT_EQ(get_num_threads(), 2);              // the one-thread setting was put back
  }
  set_num_threads(saved_threads);
  set_cpu_gemm_engine(saved);
}

// The primitive called directly: accumulation (C += A · Bᵀ through a sum post-op), the same shape
// with different pointers (a plan's memory objects take each call's), a plan per thread count (oneDNN
// splits the work for the count it was made for), and at most 512 plans per thread however many
// shapes come.
TEST(MatmulCpu, OneDnnMatmulAccumulatesAndBoundsItsPlans) {
  if (!cpu_onednn_available() || !cpu_onednn_runs_avx512()) GTEST_SKIP() << "no brgemm matmul here";
  const int saved_threads = get_num_threads();
  set_num_threads(1);
  const int64_t M = 24, N = 12, K = 40;
  const Tensor a = rnd({M, K}, kFloat32, kCPU, 1), b = rnd({N, K}, kFloat32, kCPU, 2);
  const Tensor start = rnd({M, N}, kFloat32, kCPU, 3);
  const Tensor want = start.to(kFloat64) + reference_matmul(a.to(kFloat64), b.t().to(kFloat64));
  for (int round = 0; round < 2; ++round) {  // the second call reuses the plan with new pointers
    Tensor out = start.clone();
    ASSERT_TRUE(onednn_matmul(M, N, K, a.data<float>(), false, K, b.data<float>(), true, K, out.data<float>(), true));
    test::expect_close(out, want, 1e-4, 1e-4);
    ASSERT_TRUE(onednn_matmul(M, N, K, a.data<float>(), false, K, b.data<float>(), true, K, out.data<float>(), false));
    test::expect_close(out, reference_matmul(a.to(kFloat64), b.t().to(kFloat64)), 1e-4, 1e-4);
  }
  const size_t before = onednn_matmul_plan_count();
  EXPECT_GE(before, 2u);
  set_num_threads(2);
  Tensor out = start.clone();
  ASSERT_TRUE(onednn_matmul(M, N, K, a.data<float>(), false, K, b.data<float>(), true, K, out.data<float>(), true));
  test::expect_close(out, want, 1e-4, 1e-4);
  EXPECT_EQ(onednn_matmul_plan_count(), before + 1);
  set_num_threads(1);
  std::vector<float> x(8 * 600, 1.0f), y(8 * 600, 1.0f), z(64, 0.0f);
  for (int64_t k = 1; k <= 520; ++k) {
    ASSERT_TRUE(onednn_matmul(8, 8, k, x.data(), false, k, y.data(), true, k, z.data(), false));
    ASSERT_EQ(z[0], static_cast<float>(k));
    ASSERT_LE(onednn_matmul_plan_count(), 512u);
  }
  set_num_threads(saved_threads);
}

// Threads of the user's own (not OpenMP's) each get their own plans, scratchpad and stream: four
// std::threads multiplying x · Wᵀ at once, on the same shapes, must each get the product. (Not
// bit for bit against the main thread: a new thread starts from OpenMP's default thread count,
// which can differ from the one this process set, and the product's split with it.)
TEST(MatmulCpu, TransposedBProductsFromSeveralUserThreads) {
  const Tensor a = rnd({64, 320}, kFloat32, kCPU, 1), w = rnd({50, 320}, kFloat32, kCPU, 2);
  const Tensor c = rnd({32, 64}, kFloat32, kCPU, 3), v = rnd({10, 64}, kFloat32, kCPU, 4);
  const Tensor want1 = reference_matmul(a, w.t()), want2 = reference_matmul(c, v.t());
  std::vector<int> wrong(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        if (!allclose(matmul(a, w.t()).to(kFloat64), want1, 1e-4, 1e-4)) ++wrong[t];
        if (!allclose(matmul(c, v.t()).to(kFloat64), want2, 1e-4, 1e-4)) ++wrong[t];
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong, std::vector<int>(4, 0));
}
