// The two Systems that BlockPool (cuda/block_pool.h) runs on — device memory and pinned host
// memory — and the Allocators built from them.
#include "cuda/caching_allocator.h"

#include <unistd.h>

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/block_pool.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/runtime.h"

namespace ember::cuda {

namespace {

// A stream together with its device: events must be created on the stream's device, and the pinned
// pool serves uploads to every device.
struct StreamRef {
  int device = -1;
  cudaStream_t stream = nullptr;
  friend bool operator==(const StreamRef&, const StreamRef&) = default;
  friend bool operator<(const StreamRef& a, const StreamRef& b) {
    if (a.device != b.device) return a.device < b.device;
    return std::less<cudaStream_t>()(a.stream, b.stream);
  }
};

struct DeviceEvent {
  int device = 0;
  cudaEvent_t event = nullptr;
};

// Events for BlockPool's "has this stream's work finished", recycled per device: creating one is a
// driver call, and a training loop that records streams frees blocks every step. Only used with
// the owning pool's mutex held, so it needs no lock.
class EventCache {
 public:
  DeviceEvent record(const StreamRef& s) {
    DeviceGuard guard(s.device);  // an event must belong to its stream's device
    if (static_cast<int>(free_.size()) <= s.device) free_.resize(s.device + 1);
    std::vector<cudaEvent_t>& spare = free_[s.device];
    cudaEvent_t e = nullptr;
    if (spare.empty()) {
      EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    } else {
      e = spare.back();
      spare.pop_back();
    }
    const cudaError_t status = cudaEventRecord(e, s.stream);
    if (status != cudaSuccess) spare.push_back(e);
    EMBER_CUDA_CHECK(status);
    return {s.device, e};
  }
  bool done(const DeviceEvent& e) {
    const cudaError_t status = cudaEventQuery(e.event);
    if (status == cudaErrorNotReady) {
      (void)cudaGetLastError();  // "not ready" is an answer, not an error for the next check to report
      return false;
    }
    EMBER_CUDA_CHECK(status);
    return true;
  }
  void wait(const DeviceEvent& e) { EMBER_CUDA_CHECK(cudaEventSynchronize(e.event)); }
  void release(const DeviceEvent& e) { free_[e.device].push_back(e.event); }

 private:
  std::vector<std::vector<cudaEvent_t>> free_;  // by device
};

// Device memory of one GPU.
class DeviceSystem {
 public:
  using Stream = StreamRef;
  using Event = DeviceEvent;

  explicit DeviceSystem(int device) : device_(device) {}

  void* allocate(size_t bytes) {
    DeviceGuard guard(device_);
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // the pool handles this one: release the cache, retry or report
      return nullptr;
    }
    EMBER_CUDA_CHECK(status);
    return p;
  }
  void free(void* p, size_t) {
    DeviceGuard guard(device_);
    EMBER_CUDA_CHECK(cudaFree(p));  // waits for the device: the pool only does this on its slow paths
  }
  Event record_event(const Stream& s) { return events_.record(s); }
  bool event_done(const Event& e) { return events_.done(e); }
  void wait_event(const Event& e) { events_.wait(e); }
  void release_event(const Event& e) { events_.release(e); }
  MemoryInfo memory_info() {
    DeviceGuard guard(device_);
    MemoryInfo info;
    EMBER_CUDA_CHECK(cudaMemGetInfo(&info.free, &info.total));
    return info;
  }
  std::string name() const { return "cuda:" + std::to_string(device_); }

 private:
  int device_;
  EventCache events_;
};

// Page-locked host memory. Portable: usable by uploads to every device, not just the current one.
class PinnedSystem {
 public:
  using Stream = StreamRef;
  using Event = DeviceEvent;

  void* allocate(size_t bytes) {
    void* p = nullptr;
    const cudaError_t status = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    EMBER_CUDA_CHECK(status);
    return p;
  }
  void free(void* p, size_t) { EMBER_CUDA_CHECK(cudaFreeHost(p)); }
  Event record_event(const Stream& s) { return events_.record(s); }
  bool event_done(const Event& e) { return events_.done(e); }
  void wait_event(const Event& e) { events_.wait(e); }
  void release_event(const Event& e) { events_.release(e); }
  MemoryInfo memory_info() {
    const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return {static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * page, static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page};
  }
  std::string name() const { return "pinned host memory"; }

 private:
  EventCache events_;
};

class DeviceCachingAllocator final : public Allocator {
 public:
  explicit DeviceCachingAllocator(int device) : device_(device), pool_(DeviceSystem(device)) {}

  void* allocate(size_t nbytes) override { return pool_.allocate(nbytes, {device_, compute_stream(device_)}); }
  void* allocate_on(size_t nbytes, cudaStream_t stream) { return pool_.allocate(nbytes, {device_, stream}); }
  void deallocate(void* ptr, size_t) override { pool_.deallocate(ptr); }
  Device device() const override { return Device(DeviceType::CUDA, device_); }
  AllocatorStats stats() const override { return pool_.stats(); }

  bool record_stream(const void* ptr, cudaStream_t stream) { return pool_.record_stream(ptr, {device_, stream}); }
  void forget_stream(cudaStream_t stream) { pool_.forget_stream({device_, stream}); }
  void empty_cache() { pool_.empty_cache(); }

 private:
  int device_;
  BlockPool<DeviceSystem> pool_;
};

// Host blocks all belong to one pseudo-stream: any host request may reuse any freed block once the
// uploads recorded on it (record_pinned_use) have finished.
const StreamRef kHostStream{};

class PinnedCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override { return pool_.allocate(nbytes, kHostStream); }
  void deallocate(void* ptr, size_t) override { pool_.deallocate(ptr); }
  Device device() const override { return kCPU; }
  AllocatorStats stats() const override { return pool_.stats(); }

  bool record_use(const void* ptr, const StreamRef& s) { return pool_.record_stream(ptr, s); }
  void empty_cache() { pool_.empty_cache(); }

 private:
  BlockPool<PinnedSystem> pool_;
};

DeviceCachingAllocator& device_allocator_impl(int device) {
  // Made once for every visible device; deliberately never destroyed (see caching_allocator.h).
  static const std::vector<DeviceCachingAllocator*> allocators = [] {
    std::vector<DeviceCachingAllocator*> v;
    for (int i = 0; i < device_count(); ++i) v.push_back(new DeviceCachingAllocator(i));
    return v;
  }();
  EMBER_CHECK(device >= 0 && device < static_cast<int>(allocators.size()), "cuda:", device, ": not available (",
              allocators.size(), " CUDA devices visible)");
  return *allocators[device];
}

PinnedCachingAllocator& pinned_allocator_impl() {
  static PinnedCachingAllocator* const allocator = new PinnedCachingAllocator;  // never destroyed, as above
  return *allocator;
}

}  // namespace

Allocator& device_allocator(int device) { return device_allocator_impl(device); }

void record_stream(const Tensor& t, cudaStream_t stream) {
  EMBER_CHECK(t.defined() && t.device().is_cuda(), "record_stream: expected a CUDA tensor, got ",
              t.defined() ? t.device().str() : std::string("an undefined tensor"));
  const bool ours = device_allocator_impl(t.device().index).record_stream(t.data_ptr(), stream);
  EMBER_CHECK(ours, "record_stream: the memory of this ", t.device(), " tensor of shape ", t.shape(),
              " does not come from ember's caching allocator (from_blob?); its owner must keep it alive until "
              "the stream's work is done");
}

void forget_stream(int device, cudaStream_t stream) { device_allocator_impl(device).forget_stream(stream); }

void empty_cache(int device) { device_allocator_impl(device).empty_cache(); }

StreamBlock::StreamBlock(int device, size_t nbytes, cudaStream_t stream)
    : device_(device), ptr_(device_allocator_impl(device).allocate_on(nbytes, stream)) {}

StreamBlock::~StreamBlock() {
  if (ptr_) device_allocator_impl(device_).deallocate(ptr_, 0);
}

void StreamBlock::record_use(cudaStream_t stream) {
  const bool ours = device_allocator_impl(device_).record_stream(ptr_, stream);
  EMBER_CHECK(ours, "StreamBlock: lost track of its own block");  // cannot happen: it came from the pool
}

Allocator& pinned_allocator() { return pinned_allocator_impl(); }
void empty_pinned_cache() { pinned_allocator_impl().empty_cache(); }

bool record_pinned_use(const void* host, int device, cudaStream_t stream) {
  return pinned_allocator_impl().record_use(host, {device, stream});
}

}  // namespace ember::cuda
