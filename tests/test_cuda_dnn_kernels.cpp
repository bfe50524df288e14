// The library-backed and windowed CUDA kernels against the CPU backend: matmul (cuBLAS: every
// transpose combination, broadcast batches, empty sums, odd sizes, float64, TF32 on and off),
// conv2d (cuDNN: stride, padding, dilation, groups, bias; the algorithm cache; deterministic
// mode), batch norm (cuDNN plus our kernels: training and eval, with and without affine
// parameters) and the pooling kernels with overlapping windows. Every test needs a GPU and skips,
// saying why, without one. The device-parameterised suites (test_matmul.cpp,
// test_nn_functional.cpp) also run these kernels through gradchecks.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/ember.h"
#include "core/kernels/norm_kernels.h"
#include "nn/nn.h"
#include "tests/test_util.h"

#ifdef EMBER_WITH_CUDA
namespace ember::cuda {
// Defined in cuda/cuda_conv.cpp and declared in cuda/cudnn_descriptors.h, which is not included
// here because it needs cuDNN's headers.
size_t conv_algorithm_cache_size();
}  // namespace ember::cuda
#endif

using namespace ember;
namespace F = ember::nn::functional;

namespace {

const Device kCuda0(DeviceType::CUDA, 0);


// Sets a numerics switch for one test and restores it afterwards, even when the test fails.
class Tf32Scope {
 public:
  explicit Tf32Scope(bool on) : before_(allow_tf32()) { set_allow_tf32(on); }
  ~Tf32Scope() { set_allow_tf32(before_); }

 private:
  bool before_;
};
class DeterministicScope {
 public:
  explicit DeterministicScope(bool on) : before_(deterministic()) { set_deterministic(on); }
  ~DeterministicScope() { set_deterministic(before_); }

 private:
  bool before_;
};

// Seeded random values in [lo, hi) as `dtype` on the CPU.
Tensor rnd(const Shape& shape, DType dtype = kFloat32, uint64_t seed = 1, double lo = -1, double hi = 1) {
  return test::rand_f64(shape, lo, hi, seed).to(dtype);
}

// Seeded small integers in [-4, 4] as `dtype`: pooling windows then hold many equal values.
Tensor small_ints(const Shape& shape, DType dtype, uint64_t seed) {
  Generator g(seed);
  return randint(-4, 5, shape, TensorOptions(kInt64), &g).to(dtype);
}

// ||actual - expected|| / ||expected|| over all elements, in double on the host.
double relative_error(const Tensor& actual, const Tensor& expected) {
  const auto a = actual.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  const auto e = expected.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - e[i]) * (a[i] - e[i]);
    norm += e[i] * e[i];
  }
  return std::sqrt(diff / norm);
}

// What one run of an op gives: its output and the gradient of every input (undefined where the
// input did not require grad), all on the CPU.
struct OpRun {
  Tensor out;
  std::vector<Tensor> grads;
};

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs op on copies of the CPU `inputs` moved to `device` (leaves; those flagged in needs_grad
// require grad), then backpropagates a fixed random upstream gradient.
OpRun run_on(Device device, const Op& op, const std::vector<Tensor>& inputs, const std::vector<bool>& needs_grad) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor t = inputs[i].detach().to(device).clone().detach();
    if (needs_grad[i]) t.requires_grad_();
    leaves.push_back(t);
  }
  OpRun r;
  Tensor out = op(leaves);
  r.out = out.detach().to(kCPU);
  if (out.requires_grad()) {
    out.backward(rnd(out.shape(), out.dtype(), 99).to(device));
    for (const Tensor& t : leaves) r.grads.push_back(t.requires_grad() ? t.grad().to(kCPU) : Tensor());
  }
  return r;
}

// The op on the GPU agrees with the op on the CPU: output and every input gradient.
void expect_cuda_matches_cpu(const Op& op, const std::vector<Tensor>& inputs, const std::vector<bool>& needs_grad,
                             double tol) {
  const OpRun cpu = run_on(kCPU, op, inputs, needs_grad), gpu = run_on(kCuda0, op, inputs, needs_grad);
  SCOPED_TRACE("output");
  test::expect_close(gpu.out, cpu.out, tol, tol);
  ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    SCOPED_TRACE("gradient of input " + std::to_string(i));
    ASSERT_EQ(gpu.grads[i].defined(), cpu.grads[i].defined());
    if (cpu.grads[i].defined()) test::expect_close(gpu.grads[i], cpu.grads[i], tol, tol);
  }
}

// Bitwise equality of two CPU tensors.
void expect_bitwise_equal(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  const Tensor x = a.to(kFloat64).contiguous(), y = b.to(kFloat64).contiguous();
  EXPECT_EQ(x.to_vector<double>(), y.to_vector<double>());
}

}  // namespace

// ---------------------------------------------------------------- matmul (cuBLAS)

TEST(CudaDnnKernels, MatmulEveryTransposeCombinationAndOddSizes) {
  EMBER_REQUIRE_GPU();
  Tf32Scope tf32(false);
  const std::vector<std::array<int64_t, 3>> sizes = {{1, 1, 1}, {7, 7, 7}, {1, 1023, 7}, {1023, 7, 1}, {7, 1, 1023},
                                                     {33, 1023, 17}};
  for (DType dtype : {kFloat32, kFloat64}) {
    for (const auto& [M, K, N] : sizes) {
      for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
          SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " M=" << M << " K=" << K << " N=" << N
                                          << (ta ? " a transposed" : "") << (tb ? " b transposed" : ""));
          // A transposed operand is stored [cols, rows] and viewed through .t(): no copy.
          const Tensor a = ta ? rnd({K, M}, dtype, 1) : rnd({M, K}, dtype, 1);
          const Tensor b = tb ? rnd({N, K}, dtype, 2) : rnd({K, N}, dtype, 2);
          // float32 sums (the product's and the gradients') of up to max(M, K, N) terms.
          const double terms = static_cast<double>(std::max({M, K, N}));
          const double tol = dtype == kFloat64 ? 1e-12 : 1e-5 * std::sqrt(terms) + 1e-6;
          expect_cuda_matches_cpu(
              [ta, tb](const auto& x) { return matmul(ta ? x[0].t() : x[0], tb ? x[1].t() : x[1]); }, {a, b},
              {true, true}, tol);
        }
      }
    }
  }
}

TEST(CudaDnnKernels, MatmulBroadcastBatchesAndStridedOperands) {
  EMBER_REQUIRE_GPU();
  Tf32Scope tf32(false);
  for (DType dtype : {kFloat32, kFloat64}) {
    SCOPED_TRACE(dtype_name(dtype));
    const double tol = dtype == kFloat64 ? 1e-12 : 1e-5;
    // b's batch is broadcast (stride 0 inside the kernel), then a's.
    expect_cuda_matches_cpu([](const auto& x) { return matmul(x[0], x[1]); },
                            {rnd({4, 5, 6}, dtype, 1), rnd({1, 6, 3}, dtype, 2)}, {true, true}, tol);
    expect_cuda_matches_cpu([](const auto& x) { return matmul(x[0], x[1]); },
                            {rnd({1, 5, 6}, dtype, 1), rnd({4, 6, 3}, dtype, 2)}, {true, true}, tol);
    // Broadcast over two batch dims, with transposed matrices in the batch.
    expect_cuda_matches_cpu(
        [](const auto& x) { return matmul(x[0].transpose(-2, -1), x[1].transpose(-2, -1)); },
        {rnd({3, 1, 6, 5}, dtype, 1), rnd({1, 2, 4, 6}, dtype, 2)}, {true, true}, tol);
    // An operand with no unit stride in its matrix dims is copied first.
    expect_cuda_matches_cpu([](const auto& x) { return matmul(x[0].slice(0, 0, 10, 2).slice(1, 0, 12, 2), x[1]); },
                            {rnd({10, 12}, dtype, 1), rnd({6, 4}, dtype, 2)}, {true, true}, tol);
    // A batch of such operands, and one broadcast batch of them.
    expect_cuda_matches_cpu(
        [](const auto& x) { return matmul(x[0].slice(1, 0, 10, 2).slice(2, 0, 12, 2), x[1]); },
        {rnd({3, 10, 12}, dtype, 1), rnd({3, 6, 4}, dtype, 2)}, {true, true}, tol);
    expect_cuda_matches_cpu(
        [](const auto& x) { return matmul(x[0], x[1].slice(1, 0, 12, 2).slice(2, 0, 8, 2).expand({3, 6, 4})); },
        {rnd({3, 5, 6}, dtype, 1), rnd({1, 12, 8}, dtype, 2)}, {true, true}, tol);
  }
}

TEST(CudaDnnKernels, MatmulEmptySumsAndEmptyOutputs) {
  EMBER_REQUIRE_GPU();
  const TensorOptions o = TensorOptions().device(kCuda0);
  // K == 0: every output is an empty sum, so zero (even where the output memory held garbage).
  Tensor out = matmul(empty({3, 0}, o), empty({0, 4}, o));
  EXPECT_EQ(out.shape(), (Shape{3, 4}));
  EXPECT_EQ(out.to_vector<float>(), std::vector<float>(12, 0.0f));
  Tensor batched = matmul(empty({2, 3, 0}, TensorOptions(kFloat64).device(kCuda0)),
                          empty({2, 0, 5}, TensorOptions(kFloat64).device(kCuda0)));
  EXPECT_EQ(batched.to_vector<double>(), std::vector<double>(30, 0.0));
  // M == 0 or N == 0: nothing to compute, the shape is still right.
  EXPECT_EQ(matmul(empty({0, 3}, o), ones({3, 4}, o)).shape(), (Shape{0, 4}));
  EXPECT_EQ(matmul(ones({2, 3}, o), empty({3, 0}, o)).shape(), (Shape{2, 0}));
}

TEST(CudaDnnKernels, MatmulTf32WithinItsPrecisionAndFullFloat32WithoutIt) {
  EMBER_REQUIRE_GPU();
  // Large enough that cuBLAS picks tensor-core kernels when TF32 is allowed.
  const Tensor a = rnd({512, 512}, kFloat32, 1), b = rnd({512, 512}, kFloat32, 2);
  const Tensor expected = matmul(a.to(kFloat64), b.to(kFloat64));
  const Tensor ag = a.to(kCuda0), bg = b.to(kCuda0);
  {
    Tf32Scope tf32(false);
    EXPECT_LT(relative_error(matmul(ag, bg), expected), 1e-5);
  }
  {
    Tf32Scope tf32(true);
    EXPECT_LT(relative_error(matmul(ag, bg), expected), 1e-2);
  }
  // float64 never uses TF32, whatever the switch says.
  Tf32Scope tf32(true);
  EXPECT_LT(relative_error(matmul(ag.to(kFloat64), bg.to(kFloat64)), expected), 1e-13);
}

// ---------------------------------------------------------------- conv2d (cuDNN)

namespace {

struct ConvCase {
  Shape input, weight;
  int64_t sh, sw, ph, pw, dh, dw, groups;
  bool bias;
};

// Forward and all three gradients of one convolution, GPU against CPU.
void expect_conv_matches_cpu(const ConvCase& c, DType dtype, double tol) {
  SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " input " << c.input << " weight " << c.weight << " stride ("
                                  << c.sh << ", " << c.sw << ") padding (" << c.ph << ", " << c.pw << ") dilation ("
                                  << c.dh << ", " << c.dw << ") groups " << c.groups << (c.bias ? " bias" : ""));
  std::vector<Tensor> inputs = {rnd(c.input, dtype, 1), rnd(c.weight, dtype, 2)};
  if (c.bias) inputs.push_back(rnd({c.weight[0]}, dtype, 3));
  const Op op = [c](const auto& x) {
    return F::conv2d(x[0], x[1], c.bias ? x[2] : Tensor(), nn::Size2{c.sh, c.sw}, nn::Size2{c.ph, c.pw},
                     nn::Size2{c.dh, c.dw}, c.groups);
  };
  expect_cuda_matches_cpu(op, inputs, std::vector<bool>(inputs.size(), true), tol);
  // Only the input gradient: the backward then gets no input tensor (only the weight gradient reads it).
  std::vector<bool> only_input(inputs.size(), false);
  only_input[0] = true;
  expect_cuda_matches_cpu(op, inputs, only_input, tol);
}

const std::vector<ConvCase> kConvCases = {
    {{2, 3, 7, 9}, {4, 3, 3, 3}, 1, 1, 1, 1, 1, 1, 1, true},       // plain 3x3, odd sizes
    {{3, 4, 11, 8}, {6, 2, 3, 2}, 2, 1, 1, 0, 1, 2, 2, true},      // stride, asymmetric padding, dilation, 2 groups
    {{2, 6, 9, 9}, {6, 1, 3, 3}, 2, 2, 2, 2, 2, 2, 6, false},      // depthwise, dilated
    {{1, 5, 6, 7}, {3, 5, 1, 1}, 1, 1, 0, 0, 1, 1, 1, true},       // 1x1
    {{4, 2, 5, 5}, {3, 2, 5, 5}, 1, 1, 0, 0, 1, 1, 1, true},       // kernel as large as the input: 1x1 output
    {{2, 3, 1, 13}, {2, 3, 1, 4}, 1, 3, 0, 1, 1, 1, 1, false},     // one row
};

}  // namespace

TEST(CudaDnnKernels, Conv2dForwardAndBackwardMatchCpu) {
  EMBER_REQUIRE_GPU();
  Tf32Scope tf32(false);
  for (const ConvCase& c : kConvCases) {
    expect_conv_matches_cpu(c, kFloat64, 1e-10);
    expect_conv_matches_cpu(c, kFloat32, 1e-4);
  }
}

TEST(CudaDnnKernels, Conv2dTf32StaysWithinItsPrecision) {
  EMBER_REQUIRE_GPU();
  const Tensor x = rnd({8, 32, 16, 16}, kFloat32, 1), w = rnd({32, 32, 3, 3}, kFloat32, 2);
  const Tensor expected = F::conv2d(x.to(kFloat64), w.to(kFloat64), Tensor(), 1, 1);
  // TF32 rounds inputs to 10 mantissa bits (errors near 5e-4 here). Without it the error stays
  // far below that, though not at matmul's 1e-5: cuDNN's Winograd and FFT algorithms add the
  // rounding of their transforms even in full float32.
  for (bool on : {false, true}) {
    Tf32Scope tf32(on);
    EXPECT_LT(relative_error(F::conv2d(x.to(kCuda0), w.to(kCuda0), Tensor(), 1, 1), expected), on ? 1e-2 : 1e-4)
        << "TF32 " << (on ? "on" : "off");
  }
}

// The measured search (set_cudnn_benchmark): off by default; on, each pass of a new problem times
// cuDNN's candidates once (a new cache entry per pass), and the fastest gives the CPU's result.
TEST(CudaDnnKernels, Conv2dMeasuredSearchMatchesTheCpuAndIsCachedPerProblem) {
  EXPECT_FALSE(cudnn_benchmark()) << "off by default, as PyTorch's cudnn.benchmark";
  EMBER_REQUIRE_GPU();
#ifdef EMBER_WITH_CUDA
  struct BenchmarkScope {
    BenchmarkScope() { set_cudnn_benchmark(true); }
    ~BenchmarkScope() { set_cudnn_benchmark(false); }
  } benchmark_on;
  const Tensor x = rnd({4, 3, 13, 12}).requires_grad_(), w = rnd({6, 3, 3, 3}).requires_grad_();
  const Tensor xg = x.detach().to(kCuda0).requires_grad_(), wg = w.detach().to(kCuda0).requires_grad_();
  const size_t before = cuda::conv_algorithm_cache_size();
  F::conv2d(xg, wg, Tensor(), 1, 1).sum().backward();
  F::conv2d(x, w, Tensor(), 1, 1).sum().backward();
  EXPECT_EQ(cuda::conv_algorithm_cache_size(), before + 3) << "forward, backward-data, backward-filter";
  const Tensor y = F::conv2d(xg.detach(), wg.detach(), Tensor(), 1, 1);
  EXPECT_EQ(cuda::conv_algorithm_cache_size(), before + 3) << "the second call reuses the measured choice";
  EXPECT_LT(relative_error(y, F::conv2d(x.detach(), w.detach(), Tensor(), 1, 1)), 1e-4);
  EXPECT_LT(relative_error(xg.grad(), x.grad()), 1e-4);
  EXPECT_LT(relative_error(wg.grad(), w.grad()), 1e-4);
#endif
}

TEST(CudaDnnKernels, Conv2dReusesItsCachedAlgorithms) {
  EMBER_REQUIRE_GPU();
#ifdef EMBER_WITH_CUDA
  Tensor x = rnd({2, 3, 10, 10}).to(kCuda0).requires_grad_(), w = rnd({5, 3, 3, 3}).to(kCuda0).requires_grad_();
  auto step = [&] {
    F::conv2d(x, w, Tensor(), 1, 1).sum().backward();
    backend(kCuda0).synchronize();
  };
  step();  // chooses forward, backward-data and backward-filter algorithms for this problem
  const size_t after_first = cuda::conv_algorithm_cache_size();
  EXPECT_GE(after_first, 3u);
  step();
  step();
  EXPECT_EQ(cuda::conv_algorithm_cache_size(), after_first) << "an identical call must reuse the cached algorithms";
  // A new shape is a new problem.
  F::conv2d(rnd({2, 3, 11, 10}).to(kCuda0), w.detach(), Tensor(), 1, 1);
  EXPECT_EQ(cuda::conv_algorithm_cache_size(), after_first + 1);
#endif
}

TEST(CudaDnnKernels, DeterministicModeGivesBitwiseEqualGradients) {
  EMBER_REQUIRE_GPU();
  DeterministicScope det(true);
  // Big enough that cuDNN's first choices for the weight gradient would be atomics-based ones.
  const std::vector<Tensor> inputs = {rnd({16, 32, 24, 24}, kFloat32, 1), rnd({32, 32, 3, 3}, kFloat32, 2),
                                      rnd({32}, kFloat32, 3)};
  const Op conv = [](const auto& x) { return F::conv2d(x[0], x[1], x[2], 1, 1); };
  const OpRun first = run_on(kCuda0, conv, inputs, {true, true, true});
  const OpRun second = run_on(kCuda0, conv, inputs, {true, true, true});
  for (size_t i = 0; i < first.grads.size(); ++i) {
    SCOPED_TRACE("conv2d gradient of input " + std::to_string(i));
    expect_bitwise_equal(first.grads[i], second.grads[i]);
  }
  // Max pooling with overlapping windows: the ordered backward adds in the CPU's order.
  const Op pool = [](const auto& x) { return F::max_pool2d(x[0], 3, 1, 1); };
  const std::vector<Tensor> image = {small_ints({4, 8, 17, 17}, kFloat32, 4)};  // ties: shared maxima
  const OpRun gpu = run_on(kCuda0, pool, image, {true}), cpu = run_on(kCPU, pool, image, {true});
  expect_bitwise_equal(gpu.grads[0], cpu.grads[0]);
}

// ---------------------------------------------------------------- batch norm (cuDNN + kernels)

TEST(CudaDnnKernels, BatchNormTrainingMatchesCpuWithAndWithoutAffine) {
  EMBER_REQUIRE_GPU();
  for (DType dtype : {kFloat32, kFloat64}) {
    const double tol = dtype == kFloat64 ? 1e-10 : 1e-4;
    for (const Shape& shape : {Shape{4, 3, 5, 7}, Shape{6, 5}, Shape{2, 4, 9}}) {
      const int64_t C = shape[1];
      for (bool affine : {true, false}) {
        SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " input " << shape << (affine ? " affine" : ""));
        std::vector<Tensor> inputs = {rnd(shape, dtype, 1, -2, 3)};
        if (affine) {
          inputs.push_back(rnd({C}, dtype, 2, 0.5, 1.5));
          inputs.push_back(rnd({C}, dtype, 3));
        }
        // Running statistics: updated in place on each device, then compared.
        const Tensor rm0 = rnd({C}, dtype, 4), rv0 = rnd({C}, dtype, 5, 0.5, 2);
        Tensor rm[2], rv[2];
        for (int d = 0; d < 2; ++d) {
          rm[d] = rm0.to(d ? kCuda0 : kCPU).clone();
          rv[d] = rv0.to(d ? kCuda0 : kCPU).clone();
        }
        int which = 0;
        const Op op = [&](const auto& x) {
          return F::batch_norm(x[0], rm[which], rv[which], affine ? x[1] : Tensor(), affine ? x[2] : Tensor(),
                               /*training=*/true, 0.3, 1e-4);
        };
        const OpRun cpu = run_on(kCPU, op, inputs, std::vector<bool>(inputs.size(), true));
        which = 1;
        const OpRun gpu = run_on(kCuda0, op, inputs, std::vector<bool>(inputs.size(), true));
        test::expect_close(gpu.out, cpu.out, tol, tol);
        for (size_t i = 0; i < inputs.size(); ++i) test::expect_close(gpu.grads[i], cpu.grads[i], tol, tol);
        test::expect_close(rm[1], rm[0], tol, tol);
        test::expect_close(rv[1], rv[0], tol, tol);  // the unbiased variance, as on the CPU
        // Without running statistics, and with only the parameter gradients wanted.
        const Op no_running = [affine](const auto& x) {
          return F::batch_norm(x[0], Tensor(), Tensor(), affine ? x[1] : Tensor(), affine ? x[2] : Tensor(), true);
        };
        expect_cuda_matches_cpu(no_running, inputs, std::vector<bool>(inputs.size(), true), tol);
        if (affine) expect_cuda_matches_cpu(no_running, inputs, {false, true, true}, tol);
      }
    }
  }
}

TEST(CudaDnnKernels, BatchNormEvalMatchesCpuWithAndWithoutAffine) {
  EMBER_REQUIRE_GPU();
  for (DType dtype : {kFloat32, kFloat64}) {
    const double tol = dtype == kFloat64 ? 1e-10 : 1e-5;
    for (const Shape& shape : {Shape{4, 3, 5, 7}, Shape{1, 5}}) {  // eval allows a single value per channel
      const int64_t C = shape[1];
      for (bool affine : {true, false}) {
        SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " input " << shape << (affine ? " affine" : ""));
        std::vector<Tensor> inputs = {rnd(shape, dtype, 1, -2, 3)};
        if (affine) {
          inputs.push_back(rnd({C}, dtype, 2, 0.5, 1.5));
          inputs.push_back(rnd({C}, dtype, 3));
        }
        const Tensor rm = rnd({C}, dtype, 4), rv = rnd({C}, dtype, 5, 0.5, 2);
        const Op op = [&](const auto& x) {
          const Device d = x[0].device();
          return F::batch_norm(x[0], rm.to(d), rv.to(d), affine ? x[1] : Tensor(), affine ? x[2] : Tensor(),
                               /*training=*/false, 0.1, 1e-3);
        };
        expect_cuda_matches_cpu(op, inputs, std::vector<bool>(inputs.size(), true), tol);
        if (affine) expect_cuda_matches_cpu(op, inputs, {false, true, false}, tol);
      }
    }
  }
}

TEST(CudaDnnKernels, BatchNormTrainingWithOneValuePerChannelIsAnError) {
  EMBER_REQUIRE_GPU();
  // The op rejects it first; the kernel itself does too, with the same message.
  const TensorOptions o = TensorOptions().device(kCuda0);
  test::expect_error([&] { F::batch_norm(ones({1, 3}, o), Tensor(), Tensor(), Tensor(), Tensor(), true); },
                     {"batch_norm: expected more than 1 value per channel when training"});
  test::expect_error(
      [&] {
        norm_kernels(kCuda0).batch_norm(ones({1, 3, 1}, o), Tensor(), Tensor(), Tensor(), Tensor(), empty({1, 3, 1}, o),
                                   empty({3}, o), empty({3}, o), true, 0.1, 1e-5);
      },
      {"batch_norm: expected more than 1 value per channel when training", "[1, 3, 1]"});
}

// ---------------------------------------------------------------- pooling (our kernels)

TEST(CudaDnnKernels, PoolsWithOverlappingWindowsMatchCpu) {
  EMBER_REQUIRE_GPU();
  for (DType dtype : {kFloat32, kFloat64}) {
    SCOPED_TRACE(dtype_name(dtype));
    const double tol = dtype == kFloat64 ? 1e-12 : 1e-6;
    // Small integers: many ties, so the choice among equal maxima is tested too.
    const std::vector<Tensor> x = {small_ints({2, 3, 11, 9}, dtype, 1)};
    const std::vector<Op> ops = {
        [](const auto& v) { return F::max_pool2d(v[0], 3, 1); },                       // stride < kernel
        [](const auto& v) { return F::max_pool2d(v[0], 3, 2, 1); },                    // with padding
        [](const auto& v) { return F::max_pool2d(v[0], nn::Size2{3, 2}, 2, 1, 2, true); },  // dilation, ceil_mode
        [](const auto& v) { return F::avg_pool2d(v[0], 3, 1); },
        [](const auto& v) { return F::avg_pool2d(v[0], 3, 2, 1, /*ceil_mode=*/true, /*count_include_pad=*/true); },
        [](const auto& v) {
          return F::avg_pool2d(v[0], nn::Size2{4, 3}, nn::Size2{2, 1}, nn::Size2{2, 1}, true, false);
        },
        [](const auto& v) { return F::adaptive_avg_pool2d(v[0], nn::Size2{4, 5}); },   // uneven, overlapping cells
        [](const auto& v) { return F::adaptive_avg_pool2d(v[0], nn::Size2{15, 13}); },  // more cells than inputs
        [](const auto& v) { return F::adaptive_avg_pool2d(v[0], 1); },
    };
    for (size_t i = 0; i < ops.size(); ++i) {
      SCOPED_TRACE("pooling case " + std::to_string(i));
      expect_cuda_matches_cpu(ops[i], x, {true}, tol);
    }
    // The indices equal the CPU's exactly (same taps in the same order, same tie rule).
    auto [cpu_y, cpu_idx] = F::max_pool2d_with_indices(x[0], 3, 2, 1, 2, true);
    auto [gpu_y, gpu_idx] = F::max_pool2d_with_indices(x[0].to(kCuda0), 3, 2, 1, 2, true);
    EXPECT_EQ(gpu_idx.to_vector<int64_t>(), cpu_idx.to_vector<int64_t>());
    expect_bitwise_equal(gpu_y.to(kCPU), cpu_y);
  }
}
