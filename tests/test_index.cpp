// Indexing ops (index_select, gather, embedding, one_hot) and dropout: forward values against
// hand-written expectations, accumulation of repeated indices in backward, float64 gradchecks
// (with non-contiguous inputs and index tensors), dropout statistics and reproducibility, errors.
#include <cmath>

#include "tests/test_util.h"

using namespace ember;
using test::expect_close;
using test::expect_error;
using test::expect_gradcheck;

namespace {

Tensor i64(const std::vector<int64_t>& v, const Shape& s, Device d) {
  return from_vector<int64_t>(v, s, TensorOptions(kInt64).device(d));
}
Tensor f32(const std::vector<float>& v, const Shape& s, Device d) {
  return from_vector<float>(v, s, TensorOptions(kFloat32).device(d));
}
// 0, 1, 2, ... in `shape` (values are easy to read back in expectations).
Tensor iota(const Shape& s, Device d, DType t = kFloat32) {
  return arange(static_cast<double>(s.numel()), TensorOptions(t).device(d)).reshape(s);
}
std::vector<float> host_f32(const Tensor& t) { return t.detach().to(kCPU).contiguous().to_vector<float>(); }

}  // namespace

EMBER_DEVICE_SUITE(IndexOps);

// ---------------- index_select ----------------

TEST_P(IndexOps, IndexSelectForwardAlongEachDim) {
  Tensor a = iota({4, 3}, device());  // [[0,1,2],[3,4,5],[6,7,8],[9,10,11]]
  Tensor rows = index_select(a, 0, i64({2, 0, 2}, {3}, device()));
  EXPECT_EQ(rows.shape(), Shape({3, 3}));
  EXPECT_EQ(host_f32(rows), (std::vector<float>{6, 7, 8, 0, 1, 2, 6, 7, 8}));

  Tensor cols = a.index_select(1, i64({2, 0}, {2}, device()));
  EXPECT_EQ(cols.shape(), Shape({4, 2}));
  EXPECT_EQ(host_f32(cols), (std::vector<float>{2, 0, 5, 3, 8, 6, 11, 9}));
  // dim -1 is the last dim
  EXPECT_EQ(host_f32(index_select(a, -1, i64({2, 0}, {2}, device()))), host_f32(cols));

  // 3-D, middle dim: b[i, j, k] = 12i + 4j + k
  Tensor b = iota({2, 3, 4}, device());
  Tensor mid = index_select(b, 1, i64({1, 1, 0}, {3}, device()));
  EXPECT_EQ(mid.shape(), Shape({2, 3, 4}));
  EXPECT_EQ(host_f32(mid), (std::vector<float>{4, 5, 6, 7, 4, 5, 6, 7, 0, 1, 2, 3,  //
                                               16, 17, 18, 19, 16, 17, 18, 19, 12, 13, 14, 15}));
  // An empty index gives an empty dim.
  EXPECT_EQ(index_select(b, 2, i64({}, {0}, device())).shape(), Shape({2, 3, 0}));
}

TEST_P(IndexOps, IndexSelectStridedInputsIndicesAndAllDtypes) {
  // Transposed input: at[i, j] = a[j, i] with a = iota [3, 4]; select rows 3 and 1 of at.
  Tensor at = iota({3, 4}, device()).t();
  ASSERT_FALSE(at.is_contiguous());
  // A strided index: every other element of [3, 9, 1, 9].
  Tensor idx = i64({3, 9, 1, 9}, {4}, device()).slice(0, 0, 4, 2);
  ASSERT_EQ(idx.stride(0), 2);
  EXPECT_EQ(host_f32(index_select(at, 0, idx)), (std::vector<float>{3, 7, 11, 1, 5, 9}));
  EXPECT_EQ(host_f32(index_select(at, 1, idx.slice(0, 1, 2))), (std::vector<float>{4, 5, 6, 7}));

  // Rows with a gap between them (stride(0) larger than a row) still take the row-copy path.
  Tensor gappy = iota({6, 2}, device()).slice(0, 0, 6, 2);  // rows [0,1], [4,5], [8,9]
  EXPECT_EQ(host_f32(index_select(gappy, 0, i64({2, 0}, {2}, device()))), (std::vector<float>{8, 9, 0, 1}));

  for (DType t : {kFloat64, kInt64, kUInt8}) {
    Tensor x = iota({2, 3}, device(), t);
    Tensor y = index_select(x, 1, i64({2, 2, 0}, {3}, device()));
    EXPECT_EQ(y.dtype(), t);
    EXPECT_EQ(y.to(kFloat32).to_vector<float>(), (std::vector<float>{2, 2, 0, 5, 5, 3})) << dtype_name(t);
  }
}

TEST_P(IndexOps, IndexSelectLargeMatchesElementwiseReference) {
  // Big enough to run the parallel row-copy path and the parallel general path.
  const int64_t V = 500, D = 70, N = 3000;
  Generator g(3);
  Tensor w = randn({V, D}, TensorOptions(kFloat32).device(device()), &g);
  Tensor idx = randint(0, V, {N}, TensorOptions(kInt64).device(device()), &g);
  auto wv = host_f32(w);
  auto iv = idx.to(kCPU).to_vector<int64_t>();
  std::vector<float> rows(N * D);
  for (int64_t k = 0; k < N; ++k)
    for (int64_t j = 0; j < D; ++j) rows[k * D + j] = wv[iv[k] * D + j];
  EXPECT_EQ(host_f32(index_select(w, 0, idx)), rows);
  EXPECT_EQ(host_f32(embedding(w, idx)), rows);

  // Along dim 1 (columns: the index varies along the innermost dim of the output).
  Tensor cidx = randint(0, D, {N}, TensorOptions(kInt64).device(device()), &g);
  auto cv = cidx.to(kCPU).to_vector<int64_t>();
  std::vector<float> cols(V * N);
  for (int64_t i = 0; i < V; ++i)
    for (int64_t k = 0; k < N; ++k) cols[i * N + k] = wv[i * D + cv[k]];
  EXPECT_EQ(host_f32(index_select(w, 1, cidx)), cols);
}

TEST_P(IndexOps, IndexSelectBackwardAccumulatesRepeatedIndices) {
  Tensor a = zeros({4, 3}, TensorOptions(kFloat32).device(device())).requires_grad_();
  Tensor out = index_select(a, 0, i64({1, 3, 1, 1}, {4}, device()));
  out.backward(ones_like(out));
  // Row 1 was read three times, row 3 once, rows 0 and 2 never.
  EXPECT_EQ(host_f32(a.grad()), (std::vector<float>{0, 0, 0, 3, 3, 3, 0, 0, 0, 1, 1, 1}));

  Tensor b = zeros({2, 3}, TensorOptions(kFloat32).device(device())).requires_grad_();
  Tensor o2 = index_select(b, -1, i64({2, 2, 0}, {3}, device()));
  o2.backward(f32({1, 2, 3, 4, 5, 6}, {2, 3}, device()));
  EXPECT_EQ(host_f32(b.grad()), (std::vector<float>{3, 0, 3, 6, 0, 9}));
}

TEST_P(IndexOps, IndexSelectGradcheck) {
  Tensor idx = i64({2, 0, 2, 1}, {4}, kCPU);
  auto x = test::rand_f64({3, 4});
  for (int64_t d : {0, 1, -1}) {
    expect_gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], d, idx.to(in[0].device())); },
                     {x}, device());
  }
  // Non-contiguous input (transposed) and a 3-D input along the middle dim.
  expect_gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0].t(), 1, idx.to(in[0].device())); },
                   {x}, device());
  expect_gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], 1, idx.to(in[0].device())); },
                   {test::rand_f64({2, 3, 2})}, device());
}

// ---------------- gather ----------------

TEST_P(IndexOps, GatherForward) {
  Tensor a = f32({1, 2, 3, 4}, {2, 2}, device());
  // PyTorch's documentation example: out[i][j] = a[i][index[i][j]] for dim 1.
  EXPECT_EQ(host_f32(gather(a, 1, i64({0, 0, 1, 0}, {2, 2}, device()))), (std::vector<float>{1, 1, 4, 3}));
  EXPECT_EQ(host_f32(a.gather(-1, i64({0, 0, 1, 0}, {2, 2}, device()))), (std::vector<float>{1, 1, 4, 3}));
  // dim 0: out[i][j] = a[index[i][j]][j]
  EXPECT_EQ(host_f32(gather(a, 0, i64({1, 0, 0, 0}, {2, 2}, device()))), (std::vector<float>{3, 2, 1, 2}));

  // The index may be smaller than the input in the other dims and larger along `dim`.
  Tensor b = iota({3, 4}, device());  // [[0..3],[4..7],[8..11]]
  Tensor small = gather(b, 1, i64({3, 0, 1, 1}, {2, 2}, device()));
  EXPECT_EQ(small.shape(), Shape({2, 2}));
  EXPECT_EQ(host_f32(small), (std::vector<float>{3, 0, 5, 5}));
  Tensor wide = gather(b, 0, i64({2, 2, 2, 2, 0, 1, 2, 0, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2}, {5, 4}, device()));
  EXPECT_EQ(wide.shape(), Shape({5, 4}));
  EXPECT_EQ(host_f32(wide), (std::vector<float>{8, 9, 10, 11, 0, 5, 10, 3, 4, 5, 6, 7, 0, 1, 2, 3, 8, 9, 10, 11}));

  // 3-D along the last dim, with a transposed (non-contiguous) input and index.
  Tensor c = iota({2, 2, 3}, device());  // c[i, j, k] = 6i + 3j + k
  Tensor ci = i64({2, 1, 0, 0}, {2, 2, 1}, device());
  EXPECT_EQ(host_f32(gather(c, 2, ci)), (std::vector<float>{2, 4, 6, 9}));
  Tensor ct = c.transpose(0, 1);  // ct[j, i, k] = c[i, j, k]
  Tensor cit = ci.transpose(0, 1);
  EXPECT_EQ(host_f32(gather(ct, 2, cit)), (std::vector<float>{2, 6, 4, 9}));

  for (DType t : {kFloat64, kInt64, kUInt8})
    EXPECT_EQ(gather(iota({2, 2}, device(), t), 1, i64({1, 1, 0, 1}, {2, 2}, device())).to(kFloat32).to_vector<float>(),
              (std::vector<float>{1, 1, 2, 3}))
        << dtype_name(t);
}

TEST_P(IndexOps, GatherBackwardAccumulatesRepeatedIndices) {
  Tensor a = zeros({2, 3}, TensorOptions(kFloat32).device(device())).requires_grad_();
  Tensor out = gather(a, 1, i64({0, 0, 0, 2, 1, 2}, {2, 3}, device()));
  out.backward(ones_like(out));
  EXPECT_EQ(host_f32(a.grad()), (std::vector<float>{3, 0, 0, 0, 1, 2}));
}

TEST_P(IndexOps, GatherGradcheck) {
  Tensor idx0 = i64({2, 0, 1, 1, 0, 0}, {2, 3}, kCPU);     // dim 0 of a [3, 3]
  Tensor idx1 = i64({0, 0, 2, 1, 2, 2, 1, 0}, {2, 4}, kCPU);  // dim 1 of a [3, 3]: wider than the input
  auto x = test::rand_f64({3, 3});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 0, idx0.to(in[0].device())); }, {x},
                   device());
  expect_gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 1, idx1.to(in[0].device())); }, {x},
                   device());
  // Non-contiguous input and index: 3-D, transposed both.
  Tensor idx3 = i64({1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1}, {2, 3, 2}, kCPU);
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) {
        return gather(in[0].transpose(0, 2), 1, idx3.to(in[0].device()).transpose(0, 2));  // [2,3,2] -> [2,3,2]
      },
      {test::rand_f64({2, 4, 2})}, device());
}

// ---------------- embedding ----------------

TEST_P(IndexOps, EmbeddingForwardShapes) {
  Tensor w = iota({5, 3}, device());  // row r = [3r, 3r+1, 3r+2]
  Tensor out = embedding(w, i64({4, 0, 1, 4}, {2, 2}, device()));
  EXPECT_EQ(out.shape(), Shape({2, 2, 3}));
  EXPECT_EQ(host_f32(out), (std::vector<float>{12, 13, 14, 0, 1, 2, 3, 4, 5, 12, 13, 14}));
  // A 0-d index gives one row; an empty index gives [0, D].
  Tensor one = embedding(w, i64({2}, {}, device()));
  EXPECT_EQ(one.shape(), Shape({3}));
  EXPECT_EQ(host_f32(one), (std::vector<float>{6, 7, 8}));
  EXPECT_EQ(embedding(w, i64({}, {0}, device())).shape(), Shape({0, 3}));
  // Non-contiguous indices.
  Tensor it = i64({1, 2, 3, 4}, {2, 2}, device()).t();  // [[1, 3], [2, 4]]
  EXPECT_EQ(host_f32(embedding(w, it)), (std::vector<float>{3, 4, 5, 9, 10, 11, 6, 7, 8, 12, 13, 14}));
}

TEST_P(IndexOps, EmbeddingBackwardAccumulatesAndIsDeterministic) {
  Tensor w = zeros({4, 2}, TensorOptions(kFloat32).device(device())).requires_grad_();
  Tensor out = embedding(w, i64({3, 3, 0, 3}, {2, 2}, device()));
  out.backward(f32({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2}, device()));
  EXPECT_EQ(host_f32(w.grad()), (std::vector<float>{5, 6, 0, 0, 0, 0, 11, 14}));

  // Many repeats of few rows (a heavy collision case): the float32 gradient must be bit-identical
  // for 1 and 2 threads (serial accumulation per column) and close to a float64 reference.
  if (device().is_cpu()) {
    const int64_t V = 8, D = 256, N = 20000;
    Generator g(5);
    Tensor idx = randint(0, V, {N}, TensorOptions(kInt64), &g);
    Tensor up = randn({N, D}, TensorOptions(kFloat32), &g);
    auto grad_with = [&](int threads) {
      int prev = get_num_threads();
      set_num_threads(threads);
      Tensor wt = zeros({V, D}).requires_grad_();
      embedding(wt, idx).backward(up);
      set_num_threads(prev);
      return host_f32(wt.grad());
    };
    std::vector<float> g1 = grad_with(1), g2 = grad_with(2);
    EXPECT_EQ(g1, g2);
    auto iv = idx.to_vector<int64_t>();
    auto uv = up.to_vector<float>();
    std::vector<double> ref(V * D, 0.0);
    for (int64_t k = 0; k < N; ++k)
      for (int64_t j = 0; j < D; ++j) ref[iv[k] * D + j] += uv[k * D + j];
    for (int64_t i = 0; i < V * D; ++i) ASSERT_NEAR(g1[i], ref[i], 1e-3) << "element " << i;
  }
}

TEST_P(IndexOps, EmbeddingGradcheck) {
  Tensor idx = i64({3, 0, 3, 1, 1, 1}, {2, 3}, kCPU);
  expect_gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], idx.to(in[0].device())); },
                   {test::rand_f64({4, 3})}, device());
  // Non-contiguous weight (a transposed [D, V] parameter) and non-contiguous indices.
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) { return embedding(in[0].t(), idx.to(in[0].device()).t()); },
      {test::rand_f64({3, 4})}, device());
}

// ---------------- one_hot ----------------

TEST_P(IndexOps, OneHotValuesAndInference) {
  Tensor oh = one_hot(i64({0, 2, 1}, {3}, device()), 4);
  EXPECT_EQ(oh.dtype(), kInt64);
  EXPECT_EQ(oh.shape(), Shape({3, 4}));
  EXPECT_EQ(oh.to(kCPU).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0}));
  // num_classes = -1 infers max + 1 = 4; the input's shape is kept.
  Tensor inf = one_hot(i64({1, 3, 0, 1}, {2, 2}, device()), -1);
  EXPECT_EQ(inf.shape(), Shape({2, 2, 4}));
  EXPECT_EQ(inf.to(kCPU).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0}));
  EXPECT_EQ(one_hot(i64({}, {0}, device()), 3).shape(), Shape({0, 3}));
}

// ---------------- dropout ----------------

TEST_P(IndexOps, DropoutIdentityAndAllDropped) {
  Tensor x = f32({1, -2, 3, 4}, {2, 2}, device());
  EXPECT_TRUE(dropout(x, 0.0).is_same(x));
  EXPECT_TRUE(dropout(x, 0.7, /*train=*/false).is_same(x));

  Tensor xr = f32({1, -2, 3, NAN}, {2, 2}, device()).requires_grad_();
  Tensor z = dropout(xr, 1.0);
  EXPECT_EQ(host_f32(z), (std::vector<float>{0, 0, 0, 0}));  // even a NaN input is dropped
  z.backward(ones_like(z));
  EXPECT_EQ(host_f32(xr.grad()), (std::vector<float>{0, 0, 0, 0}));
}

TEST_P(IndexOps, DropoutKeepsTheMeanAndDropsTheRightFraction) {
  // x = 1 everywhere: each output is 0 or 1/0.7, and the fraction kept B/N ~ Binomial(N, 0.7)/N has
  // standard deviation sqrt(0.7 * 0.3 / N) = 4.6e-4 for N = 1M; the mean (B/N)/0.7 has 6.5e-4.
  // Tolerances of ~6 standard deviations make a false failure practically impossible (seeded anyway)
  // while still catching a wrong keep probability or a missing 1/(1-p) scale (a 30% error).
  const int64_t N = 1 << 20;
  const double p = 0.3;
  Generator g(11);
  Tensor y = dropout(ones({N}, TensorOptions(kFloat32).device(device())), p, true, &g);
  auto v = host_f32(y);
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  double sum = 0;
  int64_t kept = 0;
  for (float e : v) {
    ASSERT_TRUE(e == 0.f || e == scale) << e;
    sum += e;
    kept += e != 0.f;
  }
  EXPECT_NEAR(static_cast<double>(kept) / N, 1.0 - p, 3e-3);
  EXPECT_NEAR(sum / N, 1.0, 4e-3);
}

TEST_P(IndexOps, DropoutIsReproducibleFromTheSeed) {
  Tensor x = test::rand_f64({1000}).to(kFloat32).to(device());
  Generator g1(42), g2(42), g3(43);
  std::vector<float> a = host_f32(dropout(x, 0.5, true, &g1)), b = host_f32(dropout(x, 0.5, true, &g2));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, host_f32(dropout(x, 0.5, true, &g3)));
  // The generator advances: a second draw from g1 gives a different mask.
  EXPECT_NE(a, host_f32(dropout(x, 0.5, true, &g1)));
  // The default generator follows manual_seed.
  manual_seed(9);
  std::vector<float> c = host_f32(dropout(x, 0.5));
  manual_seed(9);
  EXPECT_EQ(c, host_f32(dropout(x, 0.5)));
}

TEST_P(IndexOps, DropoutGradientIsTheScaledMask) {
  const double p = 0.4;
  Generator g(3);
  Tensor x = uniform({50, 40}, 0.5, 1.5, TensorOptions(kFloat32).device(device()), &g).requires_grad_();
  Tensor y = dropout(x, p, true, &g);
  y.backward(ones_like(y));
  auto xv = host_f32(x), yv = host_f32(y), gv = host_f32(x.grad());
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  int64_t dropped = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    // grad = mask / (1-p): 0 where dropped, 1/(1-p) where kept — and y = x * grad.
    ASSERT_TRUE(gv[i] == 0.f || gv[i] == scale) << gv[i];
    ASSERT_FLOAT_EQ(yv[i], xv[i] * gv[i]);
    dropped += gv[i] == 0.f;
  }
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, static_cast<int64_t>(xv.size()));

  // float64 gradcheck: a fresh generator with the same seed on every call gives the same mask.
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator gg(21);
        return dropout(in[0].t(), 0.25, true, &gg);  // non-contiguous input
      },
      {test::rand_f64({3, 5})}, device());
}

// ---------------- errors ----------------

TEST_P(IndexOps, ArgumentErrors) {
  Tensor a = iota({10, 3}, device());
  expect_error([&] { index_select(a, 0, f32({1}, {1}, device())); },
               {"index_select", "index must be an int64 tensor", "float32"});
  expect_error([&] { index_select(a, 0, i64({1, 2}, {1, 2}, device())); }, {"index_select", "1-D", "[1, 2]"});
  expect_error([&] { index_select(a, 2, i64({1}, {1}, device())); }, {"index_select", "dim 2 out of range"});
  expect_error([&] { gather(a, 1, f32({0}, {1, 1}, device())); }, {"gather", "int64", "float32"});
  expect_error([&] { gather(a, 1, i64({0, 1}, {2}, device())); },
               {"gather", "as many dims as the input", "[2]", "[10, 3]"});
  expect_error([&] { gather(a, 1, zeros({11, 1}, TensorOptions(kInt64).device(device()))); },
               {"gather", "[11, 1] is larger than input [10, 3] in dim 0"});
  expect_error([&] { embedding(iota({4}, device()), i64({1}, {1}, device())); }, {"embedding", "2-D", "[4]"});
  expect_error([&] { embedding(a, f32({1}, {1}, device())); }, {"embedding", "int64", "float32"});
  expect_error([&] { one_hot(f32({1}, {1}, device()), 3); }, {"one_hot", "int64", "float32"});
  expect_error([&] { one_hot(i64({1}, {1}, device()), 0); }, {"one_hot", "num_classes", "got 0"});
  expect_error([&] { one_hot(i64({}, {0}, device()), -1); }, {"one_hot", "empty"});
  expect_error([&] { dropout(a, -0.1); }, {"dropout", "[0, 1]", "-0.1"});
  expect_error([&] { dropout(a, 1.5); }, {"dropout", "[0, 1]", "1.5"});
  expect_error([&] { dropout(a, std::nan("")); }, {"dropout", "[0, 1]", "nan"});
  expect_error([&] { dropout(iota({3}, device(), kInt64), 0.5); }, {"dropout", "floating-point", "int64"});
}

TEST_P(IndexOps, OutOfRangeAndNegativeIndexErrors) {
  // Inferring num_classes reads the indices back on every device, so this error is the same everywhere.
  expect_error([&] { one_hot(i64({0, -1}, {2}, device()), -1); }, {"one_hot: class index -1 is negative"});
  // The checks below read the indices on the host. CUDA validates them inside its kernels instead
  // (a device-side assert, which ends the process's CUDA context, so it cannot be tested here).
  if (device().is_cuda()) return;
  Tensor a = iota({10, 3}, device());
  expect_error([&] { index_select(a, 0, i64({1, 12, 3}, {3}, device())); },
               {"index_select: index 12 is out of range for dim 0 of size 10"});
  expect_error([&] { index_select(a, -1, i64({3}, {1}, device())); },
               {"index_select: index 3 is out of range for dim 1 of size 3"});
  expect_error([&] { index_select(a, 0, i64({1, -1}, {2}, device())); },
               {"index_select: index -1 is negative", "dim 0 of size 10", "not supported"});
  expect_error([&] { gather(a, 1, i64({0, 3}, {1, 2}, device())); },
               {"gather: index 3 is out of range for dim 1 of size 3"});
  expect_error([&] { gather(a, 0, i64({-2}, {1, 1}, device())); }, {"gather: index -2 is negative"});
  expect_error([&] { embedding(a, i64({0, 10}, {2}, device())); },
               {"embedding: index 10 is out of range for dim 0 of size 10"});
  expect_error([&] { embedding(a, i64({-1}, {1}, device())); }, {"embedding: index -1 is negative"});
  expect_error([&] { one_hot(i64({0, 3}, {2}, device()), 3); },
               {"one_hot: class index 3 is out of range for num_classes 3"});
}
