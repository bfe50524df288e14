// The kernel tables of core/kernels/: the CPU registers every family, a device that registered no
// table for a family gets the family's default (each kernel throws, naming itself), a CUDA device
// gives backend()'s errors when there is none, and a new family needs no edit to core/backend.h.
#include <gtest/gtest.h>

#include <string>

#include "core/ember.h"
#include "core/kernels/conv_kernels.h"
#include "core/kernels/loss_kernels.h"
#include "core/kernels/norm_kernels.h"
#include "core/kernels/optim_kernels.h"
#include "core/kernels/pool_kernels.h"
#include "core/kernels/registry.h"
#include "tests/test_util.h"

using namespace ember;

namespace {

// A family that exists only in this test, as a new layer's would.
struct DoublingKernels {
  virtual ~DoublingKernels() = default;
  virtual int twice(int x) { EMBER_FAIL("twice: not implemented on this device"); }
};
struct CpuDoubling final : DoublingKernels {
  int twice(int x) override { return 2 * x; }
};

TEST(KernelRegistry, TheCpuBackendServesEveryFamily) {
  Backend* cpu = &backend(kCPU);
  // Each table is the CPU backend object itself (it implements every family).
  EXPECT_EQ(dynamic_cast<ConvKernels*>(cpu), &conv_kernels(kCPU));
  EXPECT_EQ(dynamic_cast<PoolKernels*>(cpu), &pool_kernels(kCPU));
  EXPECT_EQ(dynamic_cast<NormKernels*>(cpu), &norm_kernels(kCPU));
  EXPECT_EQ(dynamic_cast<LossKernels*>(cpu), &loss_kernels(kCPU));
  EXPECT_EQ(dynamic_cast<OptimKernels*>(cpu), &optim_kernels(kCPU));
}

TEST(KernelRegistry, ANewFamilyRegistersWithoutTouchingBackend) {
  // Nothing registered yet: the family's default table, whose kernels throw naming themselves.
  test::expect_error([] { KernelRegistry<DoublingKernels>::get(kCPU).twice(1); }, {"twice", "not implemented"});
  static CpuDoubling impl;
  KernelRegistry<DoublingKernels>::add(DeviceType::CPU, [](int) -> DoublingKernels* { return &impl; });
  EXPECT_EQ(KernelRegistry<DoublingKernels>::get(kCPU).twice(21), 42);
}

TEST(KernelRegistry, ACudaTableWithoutAGpuGivesTheDeviceError) {
  if (cuda_is_available()) GTEST_SKIP() << "a GPU is present";
  const Device cuda0(DeviceType::CUDA, 0);
  // The same error as any op on cuda:0: built without CUDA, or no device visible.
  for (auto get : {+[](Device d) { conv_kernels(d); }, +[](Device d) { optim_kernels(d); }}) {
    try {
      get(cuda0);
      ADD_FAILURE() << "expected an error for cuda:0";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.find("built without CUDA") != std::string::npos ||
                  what.find("not available") != std::string::npos)
          << what;
    }
  }
}

}  // namespace
