// The CUDA memory allocators: device memory for tensors on cuda:N and page-locked ("pinned") host
// memory for batches uploaded to the GPU. Both are BlockPools (cuda/block_pool.h: size classes,
// reuse, splitting, per-stream safety, out-of-memory recovery), over cudaMalloc/cudaFree and
// cudaHostAlloc/cudaFreeHost respectively. Each is made on first use, without any CUDA call before
// that, and never destroyed: tensors held in static variables are freed after main returns.
//
// Streams: device blocks are allocated for the device's compute stream (cuda/runtime.h), where all
// ember work runs, so a freed block is reused at once and stream order keeps the old and new users
// apart. A tensor also used on another stream must say so with record_stream; its block is then not
// reused until that stream's work (queued before the tensor was freed) has finished.
#pragma once

#include <cuda_runtime.h>

#include "core/allocator.h"
#include "core/tensor.h"

namespace ember::cuda {

// The caching allocator of cuda:<device> (what backend(cuda:<device>).allocator() returns).
Allocator& device_allocator(int device);

// Marks `t`'s memory as used by work queued on `stream` (a stream of t's device): when the last
// tensor viewing it is freed, the memory is not reused until that work has finished. For streams
// other than ember's compute stream (which needs no marking), e.g. a user's or a NCCL stream.
void record_stream(const Tensor& t, cudaStream_t stream);

// Call before destroying a stream that record_stream was given, after synchronising it: tensors
// recorded on it and freed later then record nothing on the dead stream (cuda/block_pool.h).
void forget_stream(int device, cudaStream_t stream);

// Device memory for work queued on a stream other than the compute stream (the staging buffer of
// an upload on the copy stream): its block comes from, and returns to, that stream's pool. Uses on
// other streams must be recorded with record_use before the StreamBlock is destroyed; the block
// is then not reused until that work has finished.
class StreamBlock {
 public:
  StreamBlock(int device, size_t nbytes, cudaStream_t stream);
  ~StreamBlock();
  StreamBlock(const StreamBlock&) = delete;
  StreamBlock& operator=(const StreamBlock&) = delete;
  void* get() const { return ptr_; }
  void record_use(cudaStream_t stream);

 private:
  int device_;
  void* ptr_;
};

// Gives the cached free device memory of cuda:<device> back to CUDA (after waiting for the
// recorded stream uses of freed blocks), e.g. before handing the GPU to another library.
void empty_cache(int device);

// Page-locked host memory, cached the same way (Device kCPU). Registered as the DataLoader's
// pinned allocator (ember::set_pinned_allocator) by cuda_backend.cpp.
Allocator& pinned_allocator();
void empty_pinned_cache();

// If `host` points into a live pinned block: records that work on `stream` (of cuda:<device>)
// reads it, so the block is not reused until that work has finished, and returns true. Returns
// false for any other memory (pageable, or from another allocator).
bool record_pinned_use(const void* host, int device, cudaStream_t stream);

}  // namespace ember::cuda
