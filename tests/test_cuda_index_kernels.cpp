// The CUDA indexing kernels (cuda/cuda_index.cu) against the CPU's: index_select, gather,
// index_add and scatter_add over every dtype, along inner and outer dims, on strided views, for
// odd sizes (1, 7, 1023, 65537 rows: one element, less than a warp, not a multiple of the block,
// more than 65536), and with repeated indices in the accumulating ops.
//
// Accumulated values are small integers (also in the float dtypes), so every order of the
// GPU's atomic additions gives exactly the CPU's sum and results compare bit for bit; random
// floats are compared within float tolerance, and bit for bit in deterministic mode. Out-of-range
// indices are not tested here: the device-side assert they trigger ends the process's CUDA context.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/ember.h"
#include "tests/test_util.h"

using namespace ember;

namespace {

const Device kCuda0(DeviceType::CUDA, 0);


const int64_t kRows[] = {1, 7, 1023, 65537};
const DType kDTypes[] = {kFloat32, kFloat64, kInt64, kUInt8};

// Values that every dtype holds exactly, and whose sums stay exact (uint8 sums wrap the same way
// on both devices).
Tensor small_integers(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  const int64_t lo = dtype == kUInt8 ? 0 : -4;
  return randint(lo, 5, shape, TensorOptions(kInt64), &gen).to(dtype);
}

// `n` indices in [0, size); with `repeats`, every third one is 0, so index 0 is hit many times
// (and, for small sizes, every index is).
Tensor indices(int64_t n, int64_t size, uint64_t seed, bool repeats = false) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = repeats && i % 3 == 0 ? 0 : static_cast<int64_t>(rng() % size);
  return from_vector<int64_t>(v, {n});
}

Tensor indices(const Shape& shape, int64_t size, uint64_t seed, bool repeats = false) {
  return indices(shape.numel(), size, seed, repeats).reshape(shape);
}

// Same shape and bit-identical values (compared in float64, which holds every value used here).
void expect_equal(const Tensor& actual, const Tensor& expected) {
  ASSERT_EQ(actual.shape(), expected.shape());
  ASSERT_EQ(actual.dtype(), expected.dtype());
  const std::vector<double> a = actual.to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  const std::vector<double> e = expected.to(kFloat64).contiguous().to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != e[i]) {
      ADD_FAILURE() << "element " << i << " of shape " << actual.shape() << ": " << a[i] << " != " << e[i];
      return;
    }
}

std::string trace(const char* what, int64_t rows, DType dtype) {
  return std::string(what) + ", rows " + std::to_string(rows) + ", " + dtype_name(dtype);
}

// Sets ember::deterministic() for one scope.
class DeterministicScope {
 public:
  explicit DeterministicScope(bool on) : previous_(deterministic()) { set_deterministic(on); }
  ~DeterministicScope() { set_deterministic(previous_); }

 private:
  bool previous_;
};

}  // namespace

TEST(CudaIndexKernels, IndexSelectMatchesCpu) {
  EMBER_REQUIRE_GPU();
  for (int64_t rows : kRows) {
    for (DType dtype : kDTypes) {
      SCOPED_TRACE(trace("index_select", rows, dtype));
      const Tensor in = small_integers({rows, 3}, dtype, 1);
      const Tensor idx = indices(rows + 5, rows, 2, /*repeats=*/true);
      // dim 0 (rows: the embedding lookup), then dim 1 of a transposed view, then an outer-dim
      // pick of a 3-D tensor.
      expect_equal(index_select(in.to(kCuda0), 0, idx.to(kCuda0)), index_select(in, 0, idx));
      const Tensor in_t = in.transpose(0, 1);  // [3, rows], strides (1, 3)
      expect_equal(index_select(in.to(kCuda0).transpose(0, 1), 1, idx.to(kCuda0)), index_select(in_t, 1, idx));
      const Tensor cube = small_integers({2, rows, 2}, dtype, 3);
      const Tensor pick = indices(3, 2, 4);
      expect_equal(index_select(cube.to(kCuda0), 0, pick.to(kCuda0)), index_select(cube, 0, pick));
    }
  }
}

TEST(CudaIndexKernels, GatherMatchesCpu) {
  EMBER_REQUIRE_GPU();
  for (int64_t rows : kRows) {
    for (DType dtype : kDTypes) {
      SCOPED_TRACE(trace("gather", rows, dtype));
      const Tensor in = small_integers({rows, 4}, dtype, 5);
      // dim 0: an index with more rows than the input; dim 1: a transposed (strided) index.
      const Tensor idx0 = indices({rows + 3, 4}, rows, 6, /*repeats=*/true);
      expect_equal(gather(in.to(kCuda0), 0, idx0.to(kCuda0)), gather(in, 0, idx0));
      const Tensor idx1 = indices({6, rows}, 4, 7).transpose(0, 1);  // [rows, 6]
      expect_equal(gather(in.to(kCuda0), 1, idx1.to(kCuda0)), gather(in, 1, idx1));
    }
  }
}

TEST(CudaIndexKernels, IndexAddWithRepeatedIndicesMatchesCpu) {
  EMBER_REQUIRE_GPU();
  for (int64_t rows : kRows) {
    for (DType dtype : kDTypes) {
      SCOPED_TRACE(trace("index_add", rows, dtype));
      const int64_t m = 2 * rows + 3;  // more sources than rows: repeats are certain
      const Tensor idx = indices(m, rows, 8, /*repeats=*/true);
      // dim 0 into contiguous rows.
      const Tensor src = small_integers({m, 5}, dtype, 9);
      Tensor cpu = small_integers({rows, 5}, dtype, 10);
      Tensor gpu = cpu.to(kCuda0);
      backend(kCPU).index_add(cpu, 0, idx, src);
      backend(kCuda0).index_add(gpu, 0, idx.to(kCuda0), src.to(kCuda0));
      expect_equal(gpu, cpu);
      // dim 1 into a transposed output, from a strided source (every other column of a wider one).
      const Tensor src_wide = small_integers({5, 2 * m}, dtype, 11);
      const Tensor src1 = src_wide.slice(1, 0, 2 * m, 2);  // [5, m]
      Tensor cpu1 = zeros({rows, 5}, TensorOptions(dtype)).transpose(0, 1);  // [5, rows], strides (1, 5)
      Tensor gpu1 = zeros({rows, 5}, TensorOptions(dtype).device(kCuda0)).transpose(0, 1);
      backend(kCPU).index_add(cpu1, 1, idx, src1);
      backend(kCuda0).index_add(gpu1, 1, idx.to(kCuda0), src_wide.to(kCuda0).slice(1, 0, 2 * m, 2));
      expect_equal(gpu1, cpu1);
    }
  }
}

TEST(CudaIndexKernels, ScatterAddWithRepeatedIndicesMatchesCpu) {
  EMBER_REQUIRE_GPU();
  for (int64_t rows : kRows) {
    for (DType dtype : kDTypes) {
      SCOPED_TRACE(trace("scatter_add", rows, dtype));
      // dim 0: [2 rows + 1, 4] sources into [rows, 4]; the index is narrower than src in dim 1.
      const Tensor idx0 = indices({2 * rows + 1, 3}, rows, 12, /*repeats=*/true);
      const Tensor src0 = small_integers({2 * rows + 1, 4}, dtype, 13);
      Tensor cpu0 = zeros({rows, 4}, TensorOptions(dtype));
      Tensor gpu0 = cpu0.to(kCuda0);
      backend(kCPU).scatter_add(cpu0, 0, idx0, src0);
      backend(kCuda0).scatter_add(gpu0, 0, idx0.to(kCuda0), src0.to(kCuda0));
      expect_equal(gpu0, cpu0);
      // dim 1 (the innermost): 8 sources per row into 3 columns, transposed index.
      const Tensor idx1 = indices({8, rows}, 3, 14, /*repeats=*/true).transpose(0, 1);  // [rows, 8]
      const Tensor src1 = small_integers({rows, 8}, dtype, 15);
      Tensor cpu1 = small_integers({rows, 3}, dtype, 16);
      Tensor gpu1 = cpu1.to(kCuda0);
      backend(kCPU).scatter_add(cpu1, 1, idx1, src1);
      backend(kCuda0).scatter_add(gpu1, 1, idx1.to(kCuda0), src1.to(kCuda0));
      expect_equal(gpu1, cpu1);
    }
  }
}

TEST(CudaIndexKernels, RandomFloatSumsMatchCpuAndAreExactInDeterministicMode) {
  EMBER_REQUIRE_GPU();
  for (bool det : {false, true}) {
    DeterministicScope scope(det);
    for (int64_t rows : kRows) {
      SCOPED_TRACE(std::string(det ? "deterministic" : "atomics") + ", rows " + std::to_string(rows));
      const int64_t m = rows + 100;
      const Tensor idx = indices(m, rows, 17, /*repeats=*/true);
      Generator gen(18);
      const Tensor src = uniform({m, 6}, -1, 1, TensorOptions(kFloat32), &gen);
      Tensor cpu = zeros({rows, 6});
      Tensor gpu = cpu.to(kCuda0);
      backend(kCPU).index_add(cpu, 0, idx, src);
      backend(kCuda0).index_add(gpu, 0, idx.to(kCuda0), src.to(kCuda0));
      // scatter_add along dim 1 with repeats: [rows, 6] sources into [rows, 2].
      const Tensor sidx = indices({rows, 6}, 2, 19, /*repeats=*/true);
      const Tensor ssrc = uniform({rows, 6}, -1, 1, TensorOptions(kFloat64), &gen);
      Tensor scpu = zeros({rows, 2}, TensorOptions(kFloat64));
      Tensor sgpu = scpu.to(kCuda0);
      backend(kCPU).scatter_add(scpu, 1, sidx, ssrc);
      backend(kCuda0).scatter_add(sgpu, 1, sidx.to(kCuda0), ssrc.to(kCuda0));
      if (det) {  // the CPU's order exactly
        expect_equal(gpu, cpu);
        expect_equal(sgpu, scpu);
      } else {  // index 0 sums about m / 3 terms of size <= 1, in any order
        test::expect_close(gpu, cpu, 1e-5, 1e-6 + 1e-7 * static_cast<double>(m));
        test::expect_close(sgpu, scpu, 1e-12, 1e-12);
      }
    }
  }
}

TEST(CudaIndexKernels, EmbeddingForwardAndBackwardMatchCpu) {
  EMBER_REQUIRE_GPU();
  Generator gen(20);
  const Tensor w = uniform({1023, 16}, -1, 1, TensorOptions(kFloat32), &gen);
  const Tensor tokens = indices({7, 9}, 1023, 21, /*repeats=*/true);  // token 0 appears 21 times
  const Tensor upstream = uniform({7, 9, 16}, -1, 1, TensorOptions(kFloat32), &gen);
  auto run = [&](Device d) {
    Tensor leaf = w.to(d).detach().requires_grad_();
    Tensor out = embedding(leaf, tokens.to(d));
    (out * upstream.to(d)).sum().backward();
    return std::pair{out.detach(), leaf.grad()};
  };
  const auto [out_cpu, grad_cpu] = run(kCPU);
  const auto [out_gpu, grad_gpu] = run(kCuda0);
  expect_equal(out_gpu, out_cpu);
  test::expect_close(grad_gpu, grad_cpu, 1e-5, 1e-5);
}

TEST(CudaIndexKernels, EmptyInputsLaunchNothing) {
  EMBER_REQUIRE_GPU();
  const Tensor in = ones({4, 3}, TensorOptions().device(kCuda0));
  const Tensor none = zeros({0}, TensorOptions(kInt64).device(kCuda0));
  Tensor out = empty({0, 3}, TensorOptions().device(kCuda0));
  Tensor acc = zeros({4, 3}, TensorOptions().device(kCuda0));
  const Tensor no_src = empty({0, 3}, TensorOptions().device(kCuda0));
  const Tensor no_index = empty({0, 3}, TensorOptions(kInt64).device(kCuda0));
  const uint64_t before = backend(kCuda0).kernel_launches();
  backend(kCuda0).index_select(in, 0, none, out);
  backend(kCuda0).index_add(acc, 0, none, no_src);
  backend(kCuda0).scatter_add(acc, 0, no_index, no_src);
  EXPECT_EQ(backend(kCuda0).kernel_launches(), before);
  expect_equal(acc, zeros({4, 3}));
}
