// Per-device streams and library handles, made lazily and kept for the life of the process (they
// are deliberately never destroyed: static destructors run after the CUDA context may be gone).
#include "cuda/runtime.h"

#include <array>
#include <atomic>
#include <mutex>

#include "cuda/cuda_backend.h"
#include "cuda/error.h"

namespace ember::cuda {

namespace {

constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag once;
  cudaStream_t compute = nullptr;
  cudaStream_t copy = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
};

DeviceState& state(int device) {
  static std::array<DeviceState, kMaxDevices> states;
  EMBER_CHECK(device >= 0 && device < device_count() && device < kMaxDevices, "cuda:", device,
              ": not available (", device_count(), " CUDA devices visible)");
  DeviceState& s = states[device];
  std::call_once(s.once, [&] {
    DeviceGuard guard(device);
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&s.compute, cudaStreamNonBlocking));
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&s.copy, cudaStreamNonBlocking));
    EMBER_CUDA_CHECK(cublasCreate(&s.cublas));
    EMBER_CUDA_CHECK(cublasSetStream(s.cublas, s.compute));
    EMBER_CUDA_CHECK(cudnnCreate(&s.cudnn));
    EMBER_CUDA_CHECK(cudnnSetStream(s.cudnn, s.compute));
  });
  return s;
}

std::atomic<uint64_t> g_launches{0};

}  // namespace

cudaStream_t compute_stream(int device) { return state(device).compute; }
cudaStream_t copy_stream(int device) { return state(device).copy; }
cublasHandle_t cublas_handle(int device) { return state(device).cublas; }
cudnnHandle_t cudnn_handle(int device) { return state(device).cudnn; }

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
