// Device discovery, registration with core, the device allocator, host<->device copies, and the
// kernels that are not written yet.
#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "cuda/error.h"

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

// ---------------- allocator ----------------

void* CudaAllocator::allocate(size_t nbytes) {
  DeviceGuard guard(index_);
  void* p = nullptr;
  // Empty tensors still get a real, unique pointer (cudaMalloc(0) would give nullptr).
  const cudaError_t status = cudaMalloc(&p, nbytes == 0 ? 1 : nbytes);
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    const AllocatorStats s = stats_.snapshot();
    EMBER_FAIL("cuda:", index_, " allocator: out of memory allocating ", nbytes, " bytes (", s.live_bytes,
               " bytes in ", s.live_allocations, " tensors already allocated by ember)");
  }
  EMBER_CUDA_CHECK(status);
  stats_.on_alloc(nbytes);
  return p;
}

void CudaAllocator::deallocate(void* ptr, size_t nbytes) {
  // Called from Storage's destructor, which must not throw. A failure here can only mean the
  // context is already gone (e.g. static tensors freed during process exit), so it is ignored.
  int previous = 0;
  if (cudaGetDevice(&previous) == cudaSuccess && previous != index_) (void)cudaSetDevice(index_);
  if (cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
  if (previous != index_) (void)cudaSetDevice(previous);
  stats_.on_free(nbytes);
}

// ---------------- host <-> device ----------------
// Blocking copies: the host buffer may be pageable and may be freed as soon as we return.

void CudaBackend::copy_from_host(const void* host, const Tensor& dst) {
  DeviceGuard guard(index_);
  EMBER_CUDA_CHECK(cudaMemcpy(dst.data_ptr(), host, dst.nbytes(), cudaMemcpyHostToDevice));
}

void CudaBackend::copy_to_host(const Tensor& src, void* host) {
  DeviceGuard guard(index_);
  EMBER_CUDA_CHECK(cudaMemcpy(host, src.data_ptr(), src.nbytes(), cudaMemcpyDeviceToHost));
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
// stores two function pointers: no CUDA call happens until a CUDA device is first asked for.
[[maybe_unused]] const bool registered = [] {
  register_cuda_backend(&backend_for, &device_count);
  return true;
}();

}  // namespace

}  // namespace ember::cuda
