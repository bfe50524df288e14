#include "core/allocator.h"

#include <cstdlib>
#include <new>

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

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    constexpr size_t kAlign = 64;
    size_t rounded = (nbytes + kAlign - 1) / kAlign * kAlign;
    if (rounded == 0) rounded = kAlign;  // empty tensors still get a valid, unique pointer
    void* p = std::aligned_alloc(kAlign, rounded);
    EMBER_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", nbytes, " bytes");
    stats_.on_alloc(nbytes);
    return p;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    std::free(ptr);
    stats_.on_free(nbytes);
  }
  Device device() const override { return kCPU; }
  AllocatorStats stats() const override { return stats_.snapshot(); }

 private:
  StatsCounter stats_;
};

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator a;  // never destroyed before tensors in other statics: function-local, constructed first
  return a;
}

}  // namespace ember
