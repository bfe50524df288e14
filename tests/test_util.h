// Shared test helpers: tests that run once per device, a float64 finite-difference gradient
// check, and error-message matchers.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/ember.h"

namespace ember::test {

// Every device a test body runs on. CUDA cases skip (with the reason) when no GPU is usable.
inline std::vector<Device> all_devices() { return {kCPU, Device(DeviceType::CUDA, 0)}; }

class DeviceTest : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam().is_cuda() && !cuda_is_available())
      GTEST_SKIP() << "no CUDA device available (" << cuda_device_count() << " visible); CPU results are tested";
  }
  Device device() const { return GetParam(); }
};

inline std::string device_name(const ::testing::TestParamInfo<Device>& info) {
  return info.param.is_cpu() ? "cpu" : "cuda";
}

// EMBER_DEVICE_SUITE(Name) declares a fixture `Name`; write TEST_P(Name, Case) { device() ... }.
#define EMBER_DEVICE_SUITE(Name)                                  \
  class Name : public ::ember::test::DeviceTest {};               \
  INSTANTIATE_TEST_SUITE_P(Devices, Name, ::testing::ValuesIn(::ember::test::all_devices()), \
                           ::ember::test::device_name)

// EMBER_REQUIRE_GPU(): first line of a test that needs a GPU; on machines without one the test
// skips and says why (a GPU-less CI must not report GPU code as tested).
#define EMBER_REQUIRE_GPU()                                                                          \
  do {                                                                                               \
    if (!::ember::cuda_is_available())                                                               \
      GTEST_SKIP() << "no CUDA device available (" << ::ember::cuda_device_count() << " visible); GPU code untested"; \
  } while (0)

// Random float64 CPU tensor with values in [lo, hi) (seeded: the same test gives the same numbers).
inline Tensor rand_f64(const Shape& shape, double lo = -1.0, double hi = 1.0, uint64_t seed = 1234) {
  Generator g(seed);
  return uniform(shape, lo, hi, TensorOptions(kFloat64), &g);
}

// Finite-difference gradient check in float64.
//   fn receives the inputs already moved to `device` (the move is differentiable, so gradients
//   come back to the CPU leaves) and returns any tensor. With a fixed random upstream gradient v,
//   the analytical gradient of sum(fn(x) * v) from backward() must match central differences.
// Inputs must be contiguous float64 CPU tensors; build views (transpose, expand, slice) inside fn
// to test non-contiguous and broadcast cases.
using GradFn = std::function<Tensor(const std::vector<Tensor>&)>;
void expect_gradcheck(const GradFn& fn, std::vector<Tensor> inputs, Device device = kCPU, double eps = 1e-6,
                      double atol = 1e-6, double rtol = 1e-5);

// Second-order finite-difference check in float64 (PyTorch's gradgradcheck). With a random upstream
// gradient v (a float64 tensor of fn's output shape), the first gradients
//   G(x, v) = autograd::grad(fn(x), x, v, create_graph=true)
// are themselves a differentiable function of the inputs AND of v; expect_gradcheck checks the
// gradient of (G . random w) with respect to both against central differences. An op passes when
// its backward formula is written with differentiable ops (and is correct).
void expect_gradgradcheck(const GradFn& fn, std::vector<Tensor> inputs, Device device = kCPU, double eps = 1e-6,
                          double atol = 1e-5, double rtol = 1e-4);

// Runs fn and checks that it throws ember::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts);

// Element-wise comparison of two tensors (any device/dtype; compared in float64 on the host).
void expect_close(const Tensor& actual, const Tensor& expected, double rtol = 1e-5, double atol = 1e-6);

// A fixture whose every test gets a fresh, empty directory (named after the process and the test,
// so parallel ctest processes never share one), removed afterwards.
class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("ember_test_") + info->test_suite_name() + "_" + std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // The names of the directory's entries, sorted.
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::filesystem::path dir_;
};

}  // namespace ember::test
