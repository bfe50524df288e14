// Device discovery, registration with core (the backends and the pinned-memory allocator), and
// host<->device copies.
#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "cuda/caching_allocator.h"
#include "cuda/error.h"
#include "cuda/runtime.h"
#include "data/dataloader.h"

namespace ember::cuda {

int device_count() {
  // Asked once: the set of visible devices cannot change while the process runs.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the error so later CUDA calls don't report it
      return 0;
    }
    return n;
  }();
  return count;
}

DeviceGuard::DeviceGuard(int index) : index_(index) {
  EMBER_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != index_) EMBER_CUDA_CHECK(cudaSetDevice(index_));
}

DeviceGuard::~DeviceGuard() {
  if (previous_ != index_) (void)cudaSetDevice(previous_);  // destructors must not throw
}

CudaBackend::CudaBackend(int index) : index_(index), allocator_(device_allocator(index)) {}

// ---------------- host <-> device ----------------

// Uploads run on the compute stream, like everything else, so they are ordered after earlier work
// that used dst's memory (a block the caching allocator just recycled may still be read by queued
// kernels) and before the kernels that read the new data.
//
// From pinned memory the copy is asynchronous: the host goes on at once, and the pinned allocator
// is told the block is read by work on the compute stream, so that if the batch is freed before the
// copy has run its block is not reused (rewritten) until then. Like PyTorch's non_blocking copies
// this assumes the host does not write to the pinned tensor itself after uploading it, which the
// DataLoader never does (each batch gets a fresh buffer).
//
// From pageable memory the host waits for the copy: the caller may free or overwrite the buffer as
// soon as this returns, and CUDA may still be reading it after an asynchronous call returns.
void CudaBackend::copy_from_host(const void* host, const Tensor& dst) {
  const size_t nbytes = dst.nbytes();
  if (nbytes == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  const bool pinned = record_pinned_use(host, index_, stream);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), host, nbytes, cudaMemcpyHostToDevice, stream));
  if (!pinned) EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// The host reads the result, so it must wait for the copy and for the work that produced src: a
// legitimate synchronisation point.
void CudaBackend::copy_to_host(const Tensor& src, void* host) {
  const size_t nbytes = src.nbytes();
  if (nbytes == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(host, src.data_ptr(), nbytes, cudaMemcpyDeviceToHost, stream));
  EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CudaBackend::synchronize() {
  DeviceGuard guard(index_);
  EMBER_CUDA_CHECK(cudaStreamSynchronize(compute_stream(index_)));
}

uint64_t CudaBackend::kernel_launches() const { return launch_count(); }

// ---------------- registration ----------------

namespace {

Backend* backend_for(int index) {
  // One backend per device, made on first use; backend() has already checked the index.
  static const std::vector<std::unique_ptr<CudaBackend>> backends = [] {
    std::vector<std::unique_ptr<CudaBackend>> v;
    for (int i = 0; i < device_count(); ++i) v.push_back(std::make_unique<CudaBackend>(i));
    return v;
  }();
  return backends[index].get();
}

// Runs at static-initialisation time of any program that links ember built with CUDA. It only
// stores pointers: no CUDA call happens until a CUDA device or pinned memory is first asked for
// (the pinned allocator is an empty pool until then). The DataLoader uses the pinned allocator only
// when a GPU is present.
[[maybe_unused]] const bool registered = [] {
  register_cuda_backend(&backend_for, &device_count);
  data::set_pinned_memory_allocator(&pinned_allocator());
  return true;
}();

}  // namespace

}  // namespace ember::cuda
