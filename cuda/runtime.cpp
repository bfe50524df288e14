// Per-device streams and library handles, made lazily and kept for the life of the process (they
// are deliberately never destroyed: static destructors run after the CUDA context may be gone).
// Each is made on its own first use (cuda/lazy_handle.h): a tensor allocation makes the compute
// stream only, and cuBLAS and cuDNN are loaded by the first matmul or convolution, so a cuDNN that
// fails to load breaks convolutions, not every CUDA allocation.
#include "cuda/runtime.h"

#include <array>
#include <atomic>

#include "cuda/cublas_library.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/lazy_handle.h"

namespace ember::cuda {

namespace {

constexpr int kMaxDevices = 64;

struct DeviceState {
  LazyHandle<cudaStream_t> compute, copy;
  LazyHandle<cublasHandle_t> cublas;
  LazyHandle<cudnnHandle_t> cudnn;
};

DeviceState& state(int device) {
  static std::array<DeviceState, kMaxDevices> states;
  EMBER_CHECK(device >= 0 && device < device_count() && device < kMaxDevices, "cuda:", device,
              ": not available (", device_count(), " CUDA devices visible)");
  return states[device];
}

cudaStream_t make_stream(int device) {
  DeviceGuard guard(device);
  cudaStream_t s = nullptr;
  EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

// A library handle bound to the compute stream; destroyed again if the binding fails, so a throw
// leaks nothing.
cublasHandle_t make_cublas(int device) {
  const cudaStream_t stream = compute_stream(device);
  DeviceGuard guard(device);
  cublasHandle_t h = nullptr;
  EMBER_CUDA_CHECK(cublas().create(&h));  // opens libcublas on the first call
  try {
    EMBER_CUDA_CHECK(cublas().set_stream(h, stream));
  } catch (...) {
    (void)cublas().destroy(h);
    throw;
  }
  return h;
}

cudnnHandle_t make_cudnn(int device) {
  const cudaStream_t stream = compute_stream(device);
  DeviceGuard guard(device);
  cudnnHandle_t h = nullptr;
  EMBER_CUDA_CHECK(cudnnCreate(&h));
  try {
    EMBER_CUDA_CHECK(cudnnSetStream(h, stream));
  } catch (...) {
    (void)cudnnDestroy(h);
    throw;
  }
  return h;
}

std::atomic<uint64_t> g_launches{0};

}  // namespace

cudaStream_t compute_stream(int device) {
  return state(device).compute.get([&] { return make_stream(device); });
}
cudaStream_t copy_stream(int device) {
  return state(device).copy.get([&] { return make_stream(device); });
}
cublasHandle_t cublas_handle(int device) {
  return state(device).cublas.get([&] { return make_cublas(device); });
}
cudnnHandle_t cudnn_handle(int device) {
  return state(device).cudnn.get([&] { return make_cudnn(device); });
}

void count_launch() { g_launches.fetch_add(1, std::memory_order_relaxed); }
uint64_t launch_count() { return g_launches.load(std::memory_order_relaxed); }

// ---------------- Event ----------------

Event::Event() { EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }

Event::~Event() {
  if (event_) (void)cudaEventDestroy(event_);  // destructors must not throw
}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_) (void)cudaEventDestroy(event_);
    event_ = other.event_;
    other.event_ = nullptr;
  }
  return *this;
}

void Event::record(cudaStream_t stream) { EMBER_CUDA_CHECK(cudaEventRecord(event_, stream)); }
void Event::wait(cudaStream_t stream) const { EMBER_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0)); }

bool Event::query() const {
  const cudaError_t s = cudaEventQuery(event_);
  if (s == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  EMBER_CUDA_CHECK(s);
  return true;
}

void Event::synchronize() const { EMBER_CUDA_CHECK(cudaEventSynchronize(event_)); }

}  // namespace ember::cuda
