// Allocators hand out raw memory for tensor storage. Tensor never calls malloc itself, so the
// CUDA caching allocator and the pinned-host allocator slot in without touching Tensor.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace ember {

// Live-allocation statistics, kept by every allocator (tests use them to prove nothing leaks).
struct AllocatorStats {
  int64_t live_allocations = 0;  // blocks handed out and not yet returned
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;
  int64_t total_allocations = 0;  // calls to allocate() since start
  // Caching allocators only (0 elsewhere): memory held from the system, including cached free
  // blocks, its peak, and how many times the system allocator (cudaMalloc, cudaHostAlloc) was called.
  int64_t reserved_bytes = 0;
  int64_t peak_reserved_bytes = 0;
  int64_t system_allocations = 0;
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual Device device() const = 0;
  virtual AllocatorStats stats() const = 0;
};

// 64-byte aligned host memory (one cache line, a full AVX-512 vector).
Allocator& cpu_allocator();
// Returns the CPU allocator's cached free blocks (1 MiB and larger) to the system.
void cpu_empty_cache();

// Page-locked ("pinned") host memory, which a GPU copies from asynchronously. Core only keeps the
// slot: the CUDA backend (cuda/) registers its cudaHostAlloc-based allocator here at start-up, and
// whoever wants pinned batches (the DataLoader's pin_memory) asks for it here, so neither has to
// know the other. nullptr (the default, and always without CUDA) means none is registered.
void set_pinned_allocator(Allocator* allocator);
Allocator* pinned_allocator();

// Helper for allocator implementations: thread-safe counters.
class StatsCounter {
 public:
  void on_alloc(size_t n);
  void on_free(size_t n);
  AllocatorStats snapshot() const;

 private:
  std::atomic<int64_t> live_{0}, bytes_{0}, peak_{0}, total_{0};
};

}  // namespace ember
