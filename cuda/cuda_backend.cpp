// Device discovery, registration with core (the backends and the pinned-memory allocator), and
// host<->device copies.
#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "cuda/caching_allocator.h"
#include "cuda/error.h"
#include "cuda/runtime.h"

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

// From pinned memory the upload is asynchronous and overlaps the kernels already queued: the
// bytes cross PCIe on the copy stream into a staging block that belongs to that stream, then the
// compute stream waits for that upload (an event; the host does not wait) and copies staging -> dst
// at device-memory speed. Copying straight into dst on the copy stream would not be safe: dst may
// be a block the caching allocator just recycled that kernels queued on the compute stream still
// read. The pinned allocator is told the copy stream reads the host block, and the device
// allocator that the compute stream reads the staging block, so neither is reused (rewritten)
// before those copies have run, even if the batch and the staging block are freed at once. Like
// PyTorch's non_blocking copies this assumes the host does not write to the pinned tensor itself
// after uploading it, which the DataLoader never does (each batch gets a fresh buffer).
//
// From pageable memory the host waits for the copy: the caller may free or overwrite the buffer as
// soon as this returns, and CUDA may still be reading it after an asynchronous call returns. That
// copy runs on the compute stream, ordered after earlier work that used dst's memory.
void CudaBackend::copy_from_host(const void* host, const Tensor& dst) {
  const size_t nbytes = dst.nbytes();
  if (nbytes == 0) return;
  DeviceGuard guard(index_);
  const cudaStream_t compute = compute_stream(index_);
  const cudaStream_t upload = copy_stream(index_);
  if (!record_pinned_use(host, index_, upload)) {  // pageable memory
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), host, nbytes, cudaMemcpyHostToDevice, compute));
    EMBER_CUDA_CHECK(cudaStreamSynchronize(compute));
    return;
  }
  StreamBlock staging(index_, nbytes, upload);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(staging.get(), host, nbytes, cudaMemcpyHostToDevice, upload));
  Event uploaded;
  uploaded.record(upload);
  uploaded.wait(compute);  // destroying the event right after is fine: CUDA keeps it until done
  EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), staging.get(), nbytes, cudaMemcpyDeviceToDevice, compute));
  staging.record_use(compute);
  count_launch();  // the device-to-device copy
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

// Runs at static-initialisation time of any program that links ember built with CUDA (the anchor
// at the end of this file keeps it in static links). It only stores pointers: no CUDA call
// happens until a CUDA device or pinned memory is first asked for (the pinned allocator is an
// empty pool until then). Core keeps the pinned allocator's slot
// (core/allocator.h); the DataLoader takes it from there, and only when a GPU is present.
// Each kernel table (core/kernels/) of cuda:i is CudaBackend i itself.
template <typename Kernels>
void register_cuda_kernels() {
  KernelRegistry<Kernels>::add(DeviceType::CUDA,
                               [](int i) -> Kernels* { return static_cast<CudaBackend*>(backend_for(i)); });
}

[[maybe_unused]] const bool registered = [] {
  register_cuda_backend(&backend_for, &device_count);
  register_cuda_kernels<ConvKernels>();
  register_cuda_kernels<PoolKernels>();
  register_cuda_kernels<NormKernels>();
  register_cuda_kernels<LossKernels>();
  register_cuda_kernels<OptimKernels>();
  ember::set_pinned_allocator(&cuda::pinned_allocator());
  return true;
}();

}  // namespace

}  // namespace ember::cuda

// The link anchor. Nothing calls into this file by name: the registration above runs from a static
// initialiser. A static link takes an object file out of libember.a only when it defines a symbol
// the program still needs, so without help it would drop this one and the program would run
// CPU-only. cuda/CMakeLists.txt therefore puts `-u ember_cuda_backend_anchor` on the link line of
// every program that links ember (installed package or add_subdirectory), which makes the linker
// keep this file and its initialiser.
extern "C" void ember_cuda_backend_anchor() {}
