// Backend registry: maps a Device to its Backend. The CPU backend always exists; the CUDA backend
// registers itself from cuda/ when ember is built with CUDA. Without it, asking for a CUDA device
// raises one clear error here instead of #ifdefs across the code.
#include "core/backend.h"

#include <omp.h>

#include <atomic>
#include <charconv>
#include <limits>
#include <string>

#include "core/build_info.h"
#include "core/cpu/cpu_backend.h"

namespace ember {

namespace {
Backend* (*g_cuda_get)(int) = nullptr;
int (*g_cuda_count)() = nullptr;

CpuBackend& cpu_backend() {
  static CpuBackend cpu;
  return cpu;
}

// The CPU backend implements every kernel table (core/kernels/) itself.
template <typename Kernels>
void register_cpu_kernels() {
  KernelRegistry<Kernels>::add(DeviceType::CPU, [](int) -> Kernels* { return &cpu_backend(); });
}

[[maybe_unused]] const bool cpu_kernels_registered = [] {
  register_cpu_kernels<ConvKernels>();
  register_cpu_kernels<PoolKernels>();
  register_cpu_kernels<NormKernels>();
  register_cpu_kernels<LossKernels>();
  register_cpu_kernels<OptimKernels>();
  return true;
}();
}  // namespace

void register_cuda_backend(Backend* (*get)(int), int (*device_count)()) {
  g_cuda_get = get;
  g_cuda_count = device_count;
}

bool cuda_is_built() { return g_cuda_get != nullptr; }
int cuda_device_count() { return g_cuda_count ? g_cuda_count() : 0; }
bool cuda_is_available() { return cuda_device_count() > 0; }

Backend& backend(Device d) {
  if (d.is_cpu()) return cpu_backend();
  EMBER_CHECK(g_cuda_get != nullptr, "device ", d, ": ember was built without CUDA (configure with -DEMBER_CUDA=ON)");
  int n = cuda_device_count();
  EMBER_CHECK(d.index >= 0 && d.index < n, "device ", d, ": not available (", n, " CUDA device",
              n == 1 ? "" : "s", " visible)");
  return *g_cuda_get(d.index);
}

Device::Device(const std::string& spec) {
  if (spec == "cpu") {
    type = DeviceType::CPU;
  } else if (spec == "cuda") {
    type = DeviceType::CUDA;
  } else if (spec.rfind("cuda:", 0) == 0 && spec.size() > 5 && spec.find_first_not_of("0123456789", 5) == std::string::npos) {
    type = DeviceType::CUDA;
    // from_chars, not stoi: an index too large for int is a parse error naming the spec.
    const char* first = spec.data() + 5;
    const char* last = spec.data() + spec.size();
    auto [end, ec] = std::from_chars(first, last, index);
    EMBER_CHECK(ec == std::errc() && end == last, "device: cannot parse '", spec, "': the index ",
                std::string(first, last), " is out of range (at most ", std::numeric_limits<int>::max(), ")");
  } else {
    EMBER_FAIL("device: cannot parse '", spec, "' (expected cpu, cuda or cuda:N)");
  }
}

namespace {
std::atomic<bool> g_allow_tf32{false};
std::atomic<bool> g_deterministic{false};
std::atomic<bool> g_cudnn_benchmark{false};
}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }
void set_deterministic(bool on) { g_deterministic.store(on, std::memory_order_relaxed); }
bool deterministic() { return g_deterministic.load(std::memory_order_relaxed); }
void set_cudnn_benchmark(bool on) { g_cudnn_benchmark.store(on, std::memory_order_relaxed); }
bool cudnn_benchmark() { return g_cudnn_benchmark.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  EMBER_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got ", n);
  omp_set_num_threads(n);
}
int get_num_threads() { return omp_get_max_threads(); }

}  // namespace ember
