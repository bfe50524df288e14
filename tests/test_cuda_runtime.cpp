// The CUDA runtime glue: device discovery never crashes (no GPU, no driver -> zero devices), asking
// for a missing device gives a clear error, and — when a GPU is present — the CUDA elementwise,
// copy, fill, arange and random kernels agree with the CPU backend.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/ember.h"
#ifdef EMBER_WITH_CUDA
#include "cuda/cublas_library.h"
#endif
#include "tests/test_util.h"

using namespace ember;

namespace {

const Device kCuda0(DeviceType::CUDA, 0);


}  // namespace

// ---------------- runs everywhere ----------------

TEST(CudaRuntime, DeviceCountNeverFailsAndIsStable) {
  int n = -1;
  EXPECT_NO_THROW(n = cuda_device_count());
  EXPECT_GE(n, 0);
  EXPECT_EQ(cuda_device_count(), n);
  EXPECT_EQ(cuda_is_available(), n > 0);
#ifndef EMBER_WITH_CUDA
  EXPECT_EQ(n, 0) << "a build without CUDA must report zero devices";
#endif
}

// Uses the first index that is not visible: cuda:0 on a machine without a GPU.
TEST(CudaRuntime, MissingDeviceGivesClearError) {
  const int n = cuda_device_count();
  const Device missing(DeviceType::CUDA, n);
  const std::string name = missing.str();
#ifdef EMBER_WITH_CUDA
  const std::vector<std::string> parts = {name, "not available", "(" + std::to_string(n) + " CUDA device"};
#else
  const std::vector<std::string> parts = {name, "built without CUDA"};
#endif
  test::expect_error([&] { zeros({2, 3}, TensorOptions().device(missing)); }, parts);
  test::expect_error([&] { from_vector<float>({1, 2}).to(missing); }, parts);
  // The CPU keeps working after the failed request.
  EXPECT_EQ((ones({2}) + ones({2})).to_vector<float>(), (std::vector<float>{2, 2}));
}

TEST(CudaRuntime, CpuOnlyWorkDoesNotTouchCuda) {
  // A CUDA build must run every CPU op on a machine without a driver: nothing here may throw.
  Tensor a = arange(6.0).reshape({2, 3});
  Tensor b = (a * 2.0 + 1.0).transpose(0, 1).contiguous();
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{1, 7, 3, 9, 5, 11}));
}

#ifdef EMBER_WITH_CUDA
// cuBLAS is opened on first use, not linked (cuda/cublas_library.h): linking it cost every program
// of a CUDA build ~210 MB resident and 0.13 s at start-up. CPU work must not open it; the first
// request opens it and resolves every entry (no GPU needed for that).
TEST(LazyCublas, CpuWorkLeavesItUnloadedAndFirstUseLoadsIt) {
  Tensor a = randn({64, 64});
  Tensor c = matmul(a, a).sum();
  ASSERT_TRUE(std::isfinite(c.item<float>()));
  EXPECT_FALSE(cuda::cublas_is_loaded()) << "a CPU matmul mapped libcublas into the process";
  const cuda::CublasApi& api = cuda::cublas();
  EXPECT_TRUE(cuda::cublas_is_loaded());
  EXPECT_NE(api.create, nullptr);
  EXPECT_NE(api.gemm_ex, nullptr);
  EXPECT_NE(api.gemm_strided_batched_ex, nullptr);
  EXPECT_STREQ(api.status_name(CUBLAS_STATUS_NOT_INITIALIZED), "CUBLAS_STATUS_NOT_INITIALIZED");
  EXPECT_EQ(&cuda::cublas(), &api) << "loaded once";
}
#endif

// ---------------- needs a GPU ----------------

TEST(CudaRuntime, RoundTripAndAllocatorStats) {
  EMBER_REQUIRE_GPU();
  Allocator& alloc = backend(kCuda0).allocator();
  const AllocatorStats before = alloc.stats();
  {
    Tensor host = arange(1000.0, TensorOptions(kFloat64));
    Tensor dev = host.to(kCuda0);
    EXPECT_EQ(dev.device(), kCuda0);
    EXPECT_EQ(alloc.stats().live_bytes - before.live_bytes, 8000);
    test::expect_close(dev.to(kCPU), host, 0, 0);
    Tensor empty_dev = zeros({0, 4}, TensorOptions().device(kCuda0));
    EXPECT_EQ(empty_dev.to(kCPU).numel(), 0);
  }
  EXPECT_EQ(alloc.stats().live_allocations, before.live_allocations);
  EXPECT_EQ(alloc.stats().live_bytes, before.live_bytes);
}

TEST(CudaRuntime, FillArangeCopyMatchCpu) {
  EMBER_REQUIRE_GPU();
  for (DType t : {kFloat32, kFloat64, kInt64, kUInt8}) {
    SCOPED_TRACE(dtype_name(t));
    test::expect_close(full({3, 5}, 7.0, TensorOptions(t).device(kCuda0)), full({3, 5}, 7.0, t), 0, 0);
    test::expect_close(zeros({4}, TensorOptions(t).device(kCuda0)), zeros({4}, t), 0, 0);
    test::expect_close(arange(2.0, 40.0, 3.0, TensorOptions(t).device(kCuda0)), arange(2.0, 40.0, 3.0, t), 0, 0);
  }
  Tensor cpu = test::rand_f64({4, 6, 5});
  Tensor dev = cpu.to(kCuda0);
  // Strided copy (permute + contiguous), casting copy, and a fill through a strided view.
  test::expect_close(dev.permute({2, 0, 1}).contiguous(), cpu.permute({2, 0, 1}).contiguous(), 0, 0);
  test::expect_close(dev.to(kFloat32), cpu.to(kFloat32), 0, 0);
  test::expect_close(dev.to(kInt64).to(kFloat64), cpu.to(kInt64).to(kFloat64), 0, 0);
  Tensor d2 = dev.clone(), c2 = cpu.clone();
  d2.slice(1, 0, 6, 2).fill_(-1.0);
  c2.slice(1, 0, 6, 2).fill_(-1.0);
  test::expect_close(d2, c2, 0, 0);
}

TEST(CudaRuntime, RandomMatchesCpuStream) {
  EMBER_REQUIRE_GPU();
  for (DType t : {kFloat32, kFloat64}) {
    SCOPED_TRACE(dtype_name(t));
    Generator gc(42), gd(42);
    test::expect_close(uniform({1000}, -2, 3, TensorOptions(t).device(kCuda0), &gd), uniform({1000}, -2, 3, t, &gc));
    test::expect_close(normal({1000}, 1, 2, TensorOptions(t).device(kCuda0), &gd), normal({1000}, 1, 2, t, &gc));
  }
  Generator gc(7), gd(7);
  test::expect_close(randint(-5, 100, {500}, TensorOptions(kInt64).device(kCuda0), &gd),
                     randint(-5, 100, {500}, TensorOptions(kInt64), &gc), 0, 0);
}

TEST(CudaRuntime, UnaryOpsMatchCpu) {
  EMBER_REQUIRE_GPU();
  using UnaryFn = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<std::string, UnaryFn>> ops = {
      {"neg", [](const Tensor& x) { return neg(x); }},
      {"exp", [](const Tensor& x) { return exp(x); }},
      {"log", [](const Tensor& x) { return log(abs(x) + 0.1); }},
      {"sqrt", [](const Tensor& x) { return sqrt(abs(x)); }},
      {"abs", [](const Tensor& x) { return abs(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
      {"relu", [](const Tensor& x) { return relu(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"sign", [](const Tensor& x) { return sign(x); }},
      {"scalars", [](const Tensor& x) { return rdiv(rsub(x * 3.0 + 2.0, 10.0), 4.0); }},
      {"pow", [](const Tensor& x) { return pow(abs(x), 1.5); }},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.25); }},
      {"compare", [](const Tensor& x) { return gt(x, 0.1).to(x.dtype()) + le(x, -0.2).to(x.dtype()); }},
  };
  for (DType t : {kFloat32, kFloat64}) {
    Tensor cpu = test::rand_f64({7, 33}, -2, 2).to(t);
    Tensor dev = cpu.to(kCuda0);
    for (const auto& [name, fn] : ops) {
      SCOPED_TRACE(name + " " + dtype_name(t));
      test::expect_close(fn(dev), fn(cpu), 1e-5, 1e-6);                                // contiguous
      test::expect_close(fn(dev.transpose(0, 1)), fn(cpu.transpose(0, 1)), 1e-5, 1e-6);  // strided
    }
  }
}

TEST(CudaRuntime, BinaryOpsAndWhereMatchCpu) {
  EMBER_REQUIRE_GPU();
  using BinaryFn = std::function<Tensor(const Tensor&, const Tensor&)>;
  const std::vector<std::pair<std::string, BinaryFn>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / (abs(b) + 0.5); }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(abs(a) + 0.1, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
      {"lt", [](const Tensor& a, const Tensor& b) { return lt(a, b); }},
      {"eq", [](const Tensor& a, const Tensor& b) { return eq(a, a) + ne(a, b) + ge(a, b); }},
      {"where", [](const Tensor& a, const Tensor& b) { return where(gt(a, b), a, b * 2.0); }},
  };
  for (DType t : {kFloat32, kFloat64}) {
    Tensor a = test::rand_f64({5, 8}, -2, 2, 1).to(t), b = test::rand_f64({5, 8}, -2, 2, 2).to(t);
    Tensor row = test::rand_f64({1, 8}, -2, 2, 3).to(t);
    Tensor da = a.to(kCuda0), db = b.to(kCuda0), drow = row.to(kCuda0);
    for (const auto& [name, fn] : ops) {
      SCOPED_TRACE(name + " " + dtype_name(t));
      test::expect_close(fn(da, db), fn(a, b));                                              // contiguous
      test::expect_close(fn(da, drow), fn(a, row));                                          // broadcast
      test::expect_close(fn(da.t(), db.t().contiguous()), fn(a.t(), b.t().contiguous()));  // strided
    }
  }
  Tensor i = arange(-6.0, 6.0, 1.0, kInt64), j = full({12}, 4.0, kInt64);
  test::expect_close((i.to(kCuda0) * j.to(kCuda0)) - i.to(kCuda0), i * j - i, 0, 0);
}

TEST(CudaRuntime, KernelLaunchesAreCounted) {
  EMBER_REQUIRE_GPU();
  Tensor a = ones({2, 3}, TensorOptions().device(kCuda0));
  const uint64_t before = backend(kCuda0).kernel_launches();
  Tensor c = matmul(a, a.t()) + 1.0;  // one cuBLAS call and one elementwise kernel
  const uint64_t after = backend(kCuda0).kernel_launches();
  EXPECT_GE(after - before, 2u);
  EXPECT_LE(after - before, 4u) << "a matmul and an add should not need more launches";
  EXPECT_EQ(c.to(kCPU).to_vector<float>(), (std::vector<float>{4, 4, 4, 4}));
}
