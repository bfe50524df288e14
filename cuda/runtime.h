// Per-device CUDA runtime state, created once and shared by every kernel file: the compute stream
// all ember work runs on, a copy stream for uploads that overlap compute, the cuBLAS and cuDNN
// handles bound to the compute stream, RAII events, and the launch counter behind
// Backend::kernel_launches().
//
// Why a created stream instead of the legacy default stream: work on the legacy stream
// serialises with every other stream in the process (an NCCL stream, a copy stream), and CUDA
// graphs cannot capture it. The compute stream is created with cudaStreamNonBlocking, so anything
// that must see its results (a host read, another stream) waits on it explicitly: by
// cudaStreamSynchronize or by an Event.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdint>

namespace ember::cuda {

// Valid indices are [0, device_count()); each is created on first use, thread-safely.
cudaStream_t compute_stream(int device);
cudaStream_t copy_stream(int device);
cublasHandle_t cublas_handle(int device);  // math mode follows ember::allow_tf32() at each call site
cudnnHandle_t cudnn_handle(int device);

// Counts one kernel launch or library call (called by EMBER_CUDA_CHECK_LAUNCH and after each
// cuBLAS/cuDNN call); read by CudaBackend::kernel_launches().
void count_launch();
uint64_t launch_count();

// An event without timing (cheapest kind), for ordering between streams and for "is this done".
class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& other) noexcept : event_(other.event_) { other.event_ = nullptr; }
  Event& operator=(Event&& other) noexcept;

  void record(cudaStream_t stream);
  void wait(cudaStream_t stream) const;  // `stream` waits for the recorded work; the host does not
  bool query() const;                    // true when the recorded work has finished
  void synchronize() const;              // blocks the host
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace ember::cuda
