#include "core/allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string_view>

#include <sys/mman.h>

#include "core/error.h"

namespace ember {

void StatsCounter::on_alloc(size_t n) {
  live_.fetch_add(1, std::memory_order_relaxed);
  total_.fetch_add(1, std::memory_order_relaxed);
  int64_t now = bytes_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed) + static_cast<int64_t>(n);
  int64_t peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void StatsCounter::on_free(size_t n) {
  live_.fetch_sub(1, std::memory_order_relaxed);
  bytes_.fetch_sub(static_cast<int64_t>(n), std::memory_order_relaxed);
}

AllocatorStats StatsCounter::snapshot() const {
  return {live_.load(), bytes_.load(), peak_.load(), total_.load()};
}

namespace {

// Host memory, 64-byte aligned. Blocks of 64 KiB and more are cached after free and handed out
// again for a request of (nearly) the same size. glibc serves such blocks with mmap or from the top
// of the heap, and returns them to the kernel on free (munmap, or a heap trim); without the cache
// every activation, im2col buffer or oneDNN blocked copy of a training step would be page-faulted
// in afresh: measured at ~75 ms for a 64 MB tensor, and 20% of a LeNet epoch (perf: page faults
// under oneDNN's kernels writing 100-700 KiB buffers) when only blocks from 1 MiB up were cached.
// Training steps repeat the same sizes, so reuse is nearly perfect. Smaller blocks go straight to
// malloc, which keeps them in its own free lists. empty_cache() releases the cached blocks.
//
// Blocks of 2 MiB and more start on a 2 MiB boundary and are marked MADV_HUGEPAGE, so where the
// kernel's transparent huge pages are enabled for such requests ("madvise", Debian's default, or
// "always") they are backed by 2 MiB pages: one page fault and one TLB entry where 4 KiB pages take
// 512. A MNIST epoch reads its 47 MB of images at random, and in a virtual machine mapping memory
// in is expensive: on the Zen 5 under PVM, whole-process time 0.82x for the mlp (its training loop
// 0.91x), 0.88x for LeNet, 0.93x for a ResNet-20 step benchmark (its timed steps unchanged: the cache
// above already keeps those blocks mapped); bench/RESULTS.md. PyTorch's CPU allocator does the same
// from 2 MiB up in newer releases, behind C10_THP_MEM_ALLOC_ENABLE=1. EMBER_THP=0 turns it off.
class CpuAllocator final : public Allocator {
 public:
  static constexpr size_t kAlign = 64;
  static constexpr size_t kCacheMin = size_t{1} << 16;     // cache blocks from 64 KiB up
  static constexpr size_t kCacheLimit = size_t{2} << 30;   // keep at most 2 GiB of free blocks
  static constexpr size_t kHugePage = size_t{2} << 20;     // x86-64's transparent huge page

  ~CpuAllocator() override { empty_cache(); }

  void* allocate(size_t nbytes) override {
    size_t rounded = round_up(nbytes);
    void* p = nullptr;
    if (rounded >= kCacheMin) p = take_cached(rounded);
    if (p == nullptr) p = fresh_block(rounded);
    if (p == nullptr) {  // the cached free blocks may be what is in the way: give them back, try once more
      empty_cache();
      p = fresh_block(rounded);
    }
    if (p == nullptr) throw_out_of_memory(nbytes);
    stats_.on_alloc(nbytes);
    return p;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    stats_.on_free(nbytes);
    size_t rounded = round_up(nbytes);
    if (rounded >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_bytes_ + rounded <= kCacheLimit) {
        free_blocks_.emplace(rounded, ptr);
        cached_bytes_ += rounded;
        return;
      }
    }
    std::free(ptr);
  }
  Device device() const override { return kCPU; }
  AllocatorStats stats() const override { return stats_.snapshot(); }
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, p] : free_blocks_) std::free(p);
    free_blocks_.clear();
    cached_bytes_ = 0;
  }

 private:
  // A new block from the C library: huge-page aligned and advised from kHugePage up (see the top).
  static void* fresh_block(size_t rounded) {
    if (rounded < kHugePage || !huge_pages_wanted()) return std::aligned_alloc(kAlign, rounded);
    void* p = nullptr;
    if (posix_memalign(&p, kHugePage, rounded) != 0) return nullptr;
    madvise(p, rounded, MADV_HUGEPAGE);  // only advice: a kernel without transparent huge pages says EINVAL
    return p;
  }
  // EMBER_THP: unset or 1 asks for huge pages, 0 does not; read once.
  static bool huge_pages_wanted() {
    static const bool wanted = [] {
      const char* env = std::getenv("EMBER_THP");
      if (env == nullptr) return true;
      const std::string_view v(env);
      EMBER_CHECK(v == "0" || v == "1", "EMBER_THP: expected 0 (no huge pages) or 1 (huge pages for blocks from 2 MiB), got '",
                  v, "'");
      return v == "1";
    }();
    return wanted;
  }
  // Small blocks round to the alignment; cached ones to 4 KiB (a page) below 1 MiB and to 64 KiB
  // above, so near sizes share blocks. Factories ask for at most 2^63-1 bytes
  // (core/checked_math.h), so the rounding cannot wrap.
  static size_t round_up(size_t n) {
    if (n == 0) return kAlign;  // empty tensors still get a valid, unique pointer
    const size_t unit = n >= (size_t{1} << 20) ? size_t{1} << 16 : n >= kCacheMin ? size_t{1} << 12 : kAlign;
    return (n + unit - 1) / unit * unit;
  }
  // An OutOfMemoryError (not a plain Error) so callers can catch it, free tensors and go on.
  [[noreturn]] void throw_out_of_memory(size_t nbytes) const {
    const AllocatorStats s = stats_.snapshot();
    throw OutOfMemoryError(detail::str_cat("cpu allocator: out of memory allocating ", nbytes, " bytes (",
                                           static_cast<double>(nbytes) / (1 << 30), " GiB); ember holds ", s.live_bytes,
                                           " bytes in ", s.live_allocations,
                                           " tensors. Free tensors or use smaller batches (core/allocator.cpp:",
                                           __LINE__, ")"));
  }
  // A free block of at least `size` and at most 1/8 larger (bounded waste), or nullptr.
  void* take_cached(size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_blocks_.lower_bound(size);
    if (it == free_blocks_.end() || it->first > size + size / 8) return nullptr;
    void* p = it->second;
    cached_bytes_ -= it->first;
    free_blocks_.erase(it);
    return p;
  }

  StatsCounter stats_;
  std::mutex mu_;
  std::multimap<size_t, void*> free_blocks_;  // size -> block
  size_t cached_bytes_ = 0;
};

}  // namespace

static CpuAllocator& cpu_allocator_impl() {
  // Never destroyed: a tensor can be released after main() returns, by a static constructed
  // before the allocator or by a thread still running (a communicator's worker, a user's thread);
  // a destroyed allocator would be a use-after-destruction there. Reachable, so not a leak report.
  static CpuAllocator* a = new CpuAllocator;
  return *a;
}

Allocator& cpu_allocator() { return cpu_allocator_impl(); }
void cpu_empty_cache() { cpu_allocator_impl().empty_cache(); }

// ---------------- the pinned-memory slot ----------------

namespace {
// Atomic: registration happens at static-initialisation time, reads from any loader thread.
std::atomic<Allocator*> g_pinned_allocator{nullptr};
}  // namespace

void set_pinned_allocator(Allocator* allocator) { g_pinned_allocator.store(allocator); }
Allocator* pinned_allocator() { return g_pinned_allocator.load(); }

}  // namespace ember
