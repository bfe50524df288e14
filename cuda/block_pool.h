// BlockPool: the caching policy behind the CUDA device allocator and the pinned host allocator
// (cuda/caching_allocator.cpp). Plain C++ with no CUDA header: the memory, streams and events come
// from a `System` type, so the CPU tests (tests/test_block_pool.cpp) drive the policy with a fake.
//
// Why cache: cudaMalloc and cudaFree cost tens of microseconds each and cudaFree synchronises the
// whole device. A training step allocates and frees the same sizes every time, so after the first
// steps every request is served from blocks that were freed earlier, with no system call at all.
// The design follows PyTorch's CUDACachingAllocator:
//
// - Sizes round up to multiples of 512 bytes (kMinBlock), so near sizes share blocks and every
//   block starts a multiple of 512 bytes into its segment, as aligned as the segment itself
//   (cudaMalloc: at least 256 bytes), which the 16-byte vectorised kernels rely on.
// - Small requests (<= 1 MiB) are cut from 2 MiB segments; large ones get a segment rounded up to
//   2 MiB. Two pools keep small blocks from fragmenting the large segments.
// - A request takes the smallest free block that fits (best fit). A block with enough room left
//   over is split and the rest goes back to the pool; a freed block merges with free neighbours of
//   its segment, so a segment cut up by small tensors becomes one big block again.
// - Streams: a block belongs to the stream it was allocated on. Freeing it makes it reusable at
//   once for the next request on that stream, because stream order puts the new user's work after
//   the old user's. A block used on another stream too (record_stream) is different: at free, an
//   event is recorded on each such stream and the block stays out of the pool until the System
//   says all of them completed.
// - When the System refuses memory, every cached segment that is entirely free is given back and
//   the request tried once more; if that fails too, OutOfMemoryError says what was asked for and
//   what is allocated, reserved and free. The pool stays usable.
//
// The System a BlockPool<System> is made with provides (all called with the pool's mutex held, so
// a System needs no lock of its own):
//   using Stream = ...;  // copyable, default-constructible, with == and <
//   using Event = ...;   // copyable
//   void* allocate(size_t bytes);              // nullptr when out of memory; throws on other errors
//   void free(void* ptr, size_t bytes);
//   Event record_event(const Stream& stream);  // marks all work queued on `stream` so far
//   bool event_done(const Event& event);       // has that work finished? (does not block)
//   void wait_event(const Event& event);       // blocks until it has
//   void release_event(const Event& event);    // the pool no longer needs the event
//   MemoryInfo memory_info();                  // free and total memory where allocate() draws from
//   std::string name() const;                  // "cuda:0", "pinned host memory": starts messages
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"

namespace ember {

struct MemoryInfo {
  size_t free = 0;
  size_t total = 0;
};

namespace block_pool {

inline constexpr size_t kMinBlock = 512;              // size-class granularity and block alignment
inline constexpr size_t kSmallRequest = size_t{1} << 20;  // requests up to this use the small pool
inline constexpr size_t kSmallSegment = size_t{2} << 20;  // segment size of the small pool
inline constexpr size_t kLargeRound = size_t{2} << 20;    // large segments are multiples of this
// Larger requests cannot be rounded without overflow; no device has that much memory anyway.
inline constexpr size_t kMaxRequest = size_t{1} << 60;

inline size_t round_up(size_t n, size_t unit) { return (n + unit - 1) / unit * unit; }

// The block size a request gets: a multiple of 512, and at least 512 so that an empty tensor still
// gets a real, unique pointer.
inline size_t round_size(size_t nbytes) { return nbytes == 0 ? kMinBlock : round_up(nbytes, kMinBlock); }

inline bool is_small(size_t block_size) { return block_size <= kSmallRequest; }

// The segment requested from the System when no cached block fits a block of `size` bytes.
inline size_t segment_size(size_t size) { return is_small(size) ? kSmallSegment : round_up(size, kLargeRound); }

// "1.50 GiB (1610612736 bytes)"-style text for error messages.
inline std::string format_bytes(size_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace block_pool

template <typename System>
class BlockPool {
 public:
  using Stream = typename System::Stream;
  using Event = typename System::Event;

  explicit BlockPool(System system = System()) : system_(std::move(system)) {}
  // Gives every cached segment back and forgets the rest. Blocks still handed out keep their
  // segments (their memory stays valid); the CUDA allocators are never destroyed for that reason.
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // A block of at least nbytes for work on `stream`. Throws OutOfMemoryError when even an empty
  // cache leaves the System unable to provide it.
  void* allocate(size_t nbytes, const Stream& stream);
  // Returns a block from allocate(). Never calls the System unless the block was recorded on other
  // streams; a System failure then keeps the block out of use for good instead of throwing.
  void deallocate(void* ptr);
  // Records that work on `stream` uses the block containing `ptr` (any address inside it), so that
  // once freed the block waits for that work. False when `ptr` is in no block handed out.
  bool record_stream(const void* ptr, const Stream& stream);
  // `stream` has finished all its work and is about to be destroyed: drops it from the recorded
  // uses of every block handed out, so freeing those blocks later records no event on a dead
  // stream (which would fail and abandon the block, or land on a stream that reused the handle).
  // The caller must have synchronised the stream first: nothing on it is waited for any more.
  void forget_stream(const Stream& stream);
  // Gives every segment that is entirely free back to the System, first waiting for the recorded
  // other-stream uses of freed blocks.
  void empty_cache();

  AllocatorStats stats() const;
  // Bytes in reserved segments that no live or pending block occupies: reusable without a System call.
  size_t cached_free_bytes() const;
  System& system() { return system_; }

 private:
  // A run of bytes inside one segment. A segment starts as one block; splits and merges keep its
  // blocks a doubly linked list in address order.
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;       // rounded size, what the block occupies
    size_t requested = 0;  // what allocate() was asked for (statistics)
    Stream stream{};       // the stream it was allocated on; its whole segment shares it
    bool small = false;    // which pool its segment belongs to
    bool allocated = false;
    int pending_events = 0;            // recorded other-stream uses not yet known to be finished
    std::vector<Stream> stream_uses;   // other streams recorded while allocated
    Block* prev = nullptr;             // neighbours in the same segment
    Block* next = nullptr;
  };
  // Free blocks ordered by (stream, size, address): lower_bound finds the best fit on a stream.
  struct BySize {
    bool operator()(const Block* a, const Block* b) const {
      if (!(a->stream == b->stream)) return a->stream < b->stream;
      if (a->size != b->size) return a->size < b->size;
      return std::less<const char*>()(a->ptr, b->ptr);
    }
  };
  using FreeBlocks = std::set<Block*, BySize>;
  struct Pending {
    Event event;
    Block* block;
  };

  FreeBlocks& pool_of(const Block* b) { return b->small ? small_ : large_; }
  static bool is_free(const Block* b) { return !b->allocated && b->pending_events == 0; }

  Block* take_free_block(FreeBlocks& pool, const Stream& stream, size_t size);
  Block* new_segment(const Stream& stream, size_t size, size_t nbytes);
  void split(Block* block, size_t size);
  void free_block(Block* block);
  void process_events();
  void release_cached_segments();
  [[noreturn]] void throw_out_of_memory(size_t nbytes, size_t segment);

  System system_;
  mutable std::mutex mu_;
  FreeBlocks small_, large_;
  std::map<const char*, Block*> live_;  // handed-out blocks by address
  std::list<Pending> pending_;          // events of freed blocks' other-stream uses
  std::vector<Block*> abandoned_;       // blocks whose events could not be recorded: never reused
  AllocatorStats stats_;
  size_t occupied_bytes_ = 0;  // sizes of live and pending blocks
};

// ---------------- implementation ----------------

template <typename System>
BlockPool<System>::~BlockPool() {
  try {
    release_cached_segments();
  } catch (...) {  // a destructor must not throw; the System is going away anyway
  }
  // Each block is in one of these, except that a pending block may be listed more than once.
  std::set<Block*> blocks(small_.begin(), small_.end());
  blocks.insert(large_.begin(), large_.end());
  for (const auto& [ptr, b] : live_) blocks.insert(b);
  for (const Pending& p : pending_) blocks.insert(p.block);
  blocks.insert(abandoned_.begin(), abandoned_.end());
  for (Block* b : blocks) delete b;
}

template <typename System>
void* BlockPool<System>::allocate(size_t nbytes, const Stream& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  if (nbytes > block_pool::kMaxRequest) throw_out_of_memory(nbytes, 0);
  process_events();
  const size_t size = block_pool::round_size(nbytes);
  Block* block = take_free_block(block_pool::is_small(size) ? small_ : large_, stream, size);
  if (block == nullptr) block = new_segment(stream, size, nbytes);
  split(block, size);
  block->allocated = true;
  block->requested = nbytes;
  live_.emplace(block->ptr, block);
  occupied_bytes_ += block->size;

  ++stats_.live_allocations;
  ++stats_.total_allocations;
  stats_.live_bytes += static_cast<int64_t>(nbytes);
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.live_bytes);
  return block->ptr;
}

// The smallest free block of `stream` holding at least `size` bytes, taken out of the pool.
template <typename System>
typename BlockPool<System>::Block* BlockPool<System>::take_free_block(FreeBlocks& pool, const Stream& stream,
                                                                       size_t size) {
  Block key;
  key.stream = stream;
  key.size = size;  // ptr nullptr: before every real block of this stream and size
  auto it = pool.lower_bound(&key);
  if (it == pool.end() || !((*it)->stream == stream)) return nullptr;
  Block* block = *it;
  pool.erase(it);
  return block;
}

// A fresh segment from the System for a block of `size`, as one block (split by the caller).
template <typename System>
typename BlockPool<System>::Block* BlockPool<System>::new_segment(const Stream& stream, size_t size, size_t nbytes) {
  const size_t bytes = block_pool::segment_size(size);
  auto block = std::make_unique<Block>();  // before the System call: nothing to undo if this throws
  void* p = system_.allocate(bytes);
  if (p == nullptr) {
    // Cached free segments may be what fills the memory: give them back and try once more.
    release_cached_segments();
    p = system_.allocate(bytes);
  }
  if (p == nullptr) throw_out_of_memory(nbytes, bytes);
  block->ptr = static_cast<char*>(p);
  block->size = bytes;
  block->stream = stream;
  block->small = block_pool::is_small(size);
  stats_.reserved_bytes += static_cast<int64_t>(bytes);
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  ++stats_.system_allocations;
  return block.release();
}

// Cuts `block` down to `size` when the rest is worth keeping as a block of its own: any 512 bytes
// in the small pool; in the large pool only more than 1 MiB, the least a large request needs (a
// smaller rest would sit unused, and bounding the waste at 1 MiB is cheaper than the bookkeeping).
template <typename System>
void BlockPool<System>::split(Block* block, size_t size) {
  const size_t rest_size = block->size - size;
  const bool worth_it = block->small ? rest_size >= block_pool::kMinBlock : rest_size > block_pool::kSmallRequest;
  if (!worth_it) return;
  auto* rest = new Block;
  rest->ptr = block->ptr + size;
  rest->size = rest_size;
  rest->stream = block->stream;
  rest->small = block->small;
  rest->prev = block;
  rest->next = block->next;
  if (rest->next != nullptr) rest->next->prev = rest;
  block->next = rest;
  block->size = size;
  pool_of(rest).insert(rest);
}

template <typename System>
void BlockPool<System>::deallocate(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(static_cast<const char*>(ptr));
  EMBER_CHECK(it != live_.end(), system_.name(), " allocator: deallocate(", ptr,
              ") of a pointer it did not hand out, or freed twice");
  Block* block = it->second;
  live_.erase(it);
  --stats_.live_allocations;
  stats_.live_bytes -= static_cast<int64_t>(block->requested);
  block->allocated = false;

  // Work on other streams may still read or write the block: it waits for an event on each.
  std::vector<Stream> uses = std::move(block->stream_uses);
  block->stream_uses.clear();
  bool recorded_all = true;
  for (const Stream& s : uses) {
    try {
      pending_.push_back({system_.record_event(s), block});
      ++block->pending_events;
    } catch (...) {  // called from destructors: must not throw (e.g. a CUDA context already gone)
      recorded_all = false;
    }
  }
  if (!recorded_all) {
    // Without the event nothing says when the other stream is done: never hand the block out again.
    ++block->pending_events;
    abandoned_.push_back(block);
    return;
  }
  if (block->pending_events == 0) {
    occupied_bytes_ -= block->size;
    free_block(block);
  }
}

// Puts a block nobody uses any more back in its pool, merged with the free neighbours in its segment.
template <typename System>
void BlockPool<System>::free_block(Block* block) {
  FreeBlocks& pool = pool_of(block);
  if (Block* prev = block->prev; prev != nullptr && is_free(prev)) {
    pool.erase(prev);
    block->ptr = prev->ptr;
    block->size += prev->size;
    block->prev = prev->prev;
    if (block->prev != nullptr) block->prev->next = block;
    delete prev;
  }
  if (Block* next = block->next; next != nullptr && is_free(next)) {
    pool.erase(next);
    block->size += next->size;
    block->next = next->next;
    if (block->next != nullptr) block->next->prev = block;
    delete next;
  }
  pool.insert(block);
}

// Frees the blocks whose other-stream uses have all finished.
template <typename System>
void BlockPool<System>::process_events() {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (!system_.event_done(it->event)) {
      ++it;
      continue;
    }
    system_.release_event(it->event);
    Block* block = it->block;
    it = pending_.erase(it);
    if (--block->pending_events == 0) {
      occupied_bytes_ -= block->size;
      free_block(block);
    }
  }
}

template <typename System>
bool BlockPool<System>::record_stream(const void* ptr, const Stream& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  const char* p = static_cast<const char*>(ptr);
  auto it = live_.upper_bound(p);  // the first block starting after p; the one before may hold p
  if (it == live_.begin()) return false;
  Block* block = std::prev(it)->second;
  if (!std::less<const char*>()(p, block->ptr + block->size)) return false;
  if (stream == block->stream) return true;  // stream order already protects the block there
  for (const Stream& s : block->stream_uses)
    if (s == stream) return true;
  block->stream_uses.push_back(stream);
  return true;
}

template <typename System>
void BlockPool<System>::forget_stream(const Stream& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [ptr, block] : live_) std::erase(block->stream_uses, stream);
}

template <typename System>
void BlockPool<System>::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_segments();
}

// Waits for every pending event (this is the slow path: out of memory, or empty_cache), then gives
// every segment that is one free block back to the System.
template <typename System>
void BlockPool<System>::release_cached_segments() {
  for (const Pending& p : pending_) system_.wait_event(p.event);
  process_events();
  for (FreeBlocks* pool : {&small_, &large_}) {
    for (auto it = pool->begin(); it != pool->end();) {
      Block* b = *it;
      if (b->prev != nullptr || b->next != nullptr) {  // part of a segment still partly in use
        ++it;
        continue;
      }
      it = pool->erase(it);
      stats_.reserved_bytes -= static_cast<int64_t>(b->size);
      const std::unique_ptr<Block> gone(b);
      system_.free(b->ptr, b->size);
    }
  }
}

template <typename System>
void BlockPool<System>::throw_out_of_memory(size_t nbytes, size_t segment) {
  using block_pool::format_bytes;
  std::string device;
  try {
    const MemoryInfo info = system_.memory_info();
    device = detail::str_cat(format_bytes(info.free), " free of ", format_bytes(info.total), " total");
  } catch (const std::exception& e) {  // the out-of-memory report matters more than this detail
    device = detail::str_cat("free memory unknown (", e.what(), ")");
  }
  const size_t reserved = static_cast<size_t>(stats_.reserved_bytes);
  throw OutOfMemoryError(detail::str_cat(
      system_.name(), ": out of memory allocating ", format_bytes(nbytes), " (", nbytes, " bytes",
      segment > 0 ? detail::str_cat(", as a segment of ", format_bytes(segment)) : std::string(),
      "), even after releasing the allocator's cached blocks. Allocated by ember: ",
      format_bytes(static_cast<size_t>(stats_.live_bytes)), " in ", stats_.live_allocations,
      " blocks; reserved by its caching allocator: ", format_bytes(reserved), " (",
      format_bytes(reserved - occupied_bytes_), " of it cached and free); device: ", device,
      ". Free tensors or use smaller batches (cuda/block_pool.h:", __LINE__, ")"));
}

template <typename System>
AllocatorStats BlockPool<System>::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

template <typename System>
size_t BlockPool<System>::cached_free_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(stats_.reserved_bytes) - occupied_bytes_;
}


}  // namespace ember
