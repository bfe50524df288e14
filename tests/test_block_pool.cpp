// The caching policy of the CUDA allocators (cuda/block_pool.h), driven by a fake System on the CPU:
// size classes, reuse, the two pools, splitting and merging, per-stream reuse with recorded uses,
// out-of-memory recovery and statistics. Runs everywhere; needs no GPU and no CUDA headers.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "cuda/block_pool.h"
#include "tests/test_util.h"

using namespace ember;
using block_pool::kMinBlock;

namespace {

constexpr size_t KiB = size_t{1} << 10;
constexpr size_t MiB = size_t{1} << 20;

// Real (untouched, so cheap) host memory up to a capacity, streams as ints, and events the test
// completes by hand.
struct FakeSystem {
  using Stream = int;
  using Event = int;

  struct State {
    size_t capacity = 64 * MiB;
    size_t used = 0;
    int allocate_calls = 0;  // including refused ones
    int free_calls = 0;
    std::map<int, std::pair<Stream, bool>> events;  // live events: id -> (stream, done)
    int next_event = 0;
    int events_released = 0;
    bool fail_record = false;  // record_event throws, as CUDA does once its context is gone
  };
  std::shared_ptr<State> s = std::make_shared<State>();

  void* allocate(size_t bytes) {
    ++s->allocate_calls;
    if (s->used + bytes > s->capacity) return nullptr;
    s->used += bytes;
    return std::aligned_alloc(4096, bytes);  // multiples of 512 KiB at least: a valid size
  }
  void free(void* p, size_t bytes) {
    ++s->free_calls;
    s->used -= bytes;
    std::free(p);
  }
  Event record_event(const Stream& stream) {
    if (s->fail_record) throw Error("fake:0: cannot record an event");
    s->events[s->next_event] = {stream, false};
    return s->next_event++;
  }
  bool event_done(const Event& e) { return s->events.at(e).second; }
  void wait_event(const Event& e) { s->events.at(e).second = true; }  // the host waited for it
  void release_event(const Event& e) {
    s->events.erase(e);
    ++s->events_released;
  }
  MemoryInfo memory_info() { return {s->capacity - s->used, s->capacity}; }
  std::string name() const { return "fake:0"; }

  // Test controls: the work queued on `stream` so far finishes.
  void finish(Stream stream) {
    for (auto& [id, ev] : s->events)
      if (ev.first == stream) ev.second = true;
  }
  int events_on(Stream stream) const {
    int n = 0;
    for (const auto& [id, ev] : s->events) n += ev.first == stream;
    return n;
  }
};

using Pool = BlockPool<FakeSystem>;
constexpr int kS1 = 1, kS2 = 2, kS3 = 3;

char* at(void* p) { return static_cast<char*>(p); }

}  // namespace

TEST(BlockPool, SizeClasses) {
  EXPECT_EQ(block_pool::round_size(0), kMinBlock);
  EXPECT_EQ(block_pool::round_size(1), 512u);
  EXPECT_EQ(block_pool::round_size(512), 512u);
  EXPECT_EQ(block_pool::round_size(513), 1024u);
  EXPECT_EQ(block_pool::round_size(MiB), MiB);
  EXPECT_EQ(block_pool::segment_size(512), 2 * MiB);       // small requests share 2 MiB segments
  EXPECT_EQ(block_pool::segment_size(MiB), 2 * MiB);
  EXPECT_EQ(block_pool::segment_size(MiB + 512), 2 * MiB);  // large: rounded up to 2 MiB
  EXPECT_EQ(block_pool::segment_size(3 * MiB), 4 * MiB);
  EXPECT_EQ(block_pool::segment_size(4 * MiB), 4 * MiB);

  // Consecutive small blocks are cut from one segment at their rounded sizes.
  Pool pool;
  void* a = pool.allocate(1, kS1);
  void* b = pool.allocate(513, kS1);
  void* c = pool.allocate(0, kS1);
  EXPECT_EQ(at(b) - at(a), 512);
  EXPECT_EQ(at(c) - at(b), 1024);
  EXPECT_NE(c, nullptr) << "an empty request still gets a real, unique pointer";
  EXPECT_EQ(pool.stats().system_allocations, 1);
  for (void* p : {a, b, c}) pool.deallocate(p);
}

TEST(BlockPool, ReusesFreedBlock) {
  Pool pool;
  void* p = pool.allocate(1000, kS1);
  pool.deallocate(p);
  EXPECT_EQ(pool.allocate(900, kS1), p) << "same size class on the same stream: the cached block";
  pool.deallocate(p);
  void* big = pool.allocate(5 * MiB, kS1);
  pool.deallocate(big);
  EXPECT_EQ(pool.allocate(5 * MiB - 100, kS1), big);
  pool.deallocate(big);
  EXPECT_EQ(pool.stats().system_allocations, 2);
  EXPECT_EQ(pool.system().s->allocate_calls, 2);
}

TEST(BlockPool, SmallAndLargePoolsAreSeparate) {
  Pool pool;
  std::vector<void*> small;
  for (int i = 0; i < 10; ++i) small.push_back(pool.allocate(100 * KiB, kS1));
  EXPECT_EQ(pool.stats().system_allocations, 1) << "ten 100 KiB blocks fit one 2 MiB segment";
  void* large = pool.allocate(3 * MiB, kS1);
  EXPECT_EQ(pool.stats().system_allocations, 2);
  EXPECT_EQ(pool.stats().reserved_bytes, static_cast<int64_t>(2 * MiB + 4 * MiB));

  // A freed large block does not serve small requests ...
  pool.deallocate(large);
  void* s = pool.allocate(1000, kS1);
  EXPECT_FALSE(at(s) >= at(large) && at(s) < at(large) + 4 * MiB);
  EXPECT_EQ(pool.stats().system_allocations, 2);
  // ... and free small segments do not serve large requests.
  for (void* p : small) pool.deallocate(p);
  pool.deallocate(s);
  void* l2 = pool.allocate(MiB + 512, kS1);
  EXPECT_EQ(l2, large) << "the cached 4 MiB large block, not the free 2 MiB small segment";
  pool.deallocate(l2);
  EXPECT_EQ(pool.stats().system_allocations, 2);
}

TEST(BlockPool, SplitsAndMergesSmallBlocks) {
  Pool pool;
  void* a = pool.allocate(512 * KiB, kS1);
  void* b = pool.allocate(512 * KiB, kS1);
  void* c = pool.allocate(512 * KiB, kS1);
  EXPECT_EQ(at(b), at(a) + 512 * KiB);
  EXPECT_EQ(at(c), at(b) + 512 * KiB);
  pool.deallocate(a);
  pool.deallocate(b);
  // a and b merged into one 1 MiB block; without merging a new segment would be needed.
  void* ab = pool.allocate(MiB, kS1);
  EXPECT_EQ(ab, a);
  EXPECT_EQ(pool.stats().system_allocations, 1);
  pool.deallocate(ab);
  pool.deallocate(c);
  EXPECT_EQ(pool.cached_free_bytes(), 2 * MiB);
  pool.empty_cache();
  EXPECT_EQ(pool.stats().reserved_bytes, 0) << "the whole segment merged back into one free block";
  EXPECT_EQ(pool.system().s->used, 0u);
}

TEST(BlockPool, SplitsAndMergesLargeBlocks) {
  Pool pool;
  void* base = pool.allocate(10 * MiB, kS1);
  pool.deallocate(base);
  void* x = pool.allocate(4 * MiB, kS1);  // best fit: the cached 10 MiB block, split 4 + 6
  void* y = pool.allocate(6 * MiB, kS1);
  EXPECT_EQ(x, base);
  EXPECT_EQ(at(y), at(base) + 4 * MiB);
  EXPECT_EQ(pool.stats().system_allocations, 1);
  pool.deallocate(y);
  pool.deallocate(x);
  EXPECT_EQ(pool.allocate(10 * MiB, kS1), base) << "the two halves merged again";
  pool.deallocate(base);
  EXPECT_EQ(pool.stats().system_allocations, 1);

  // A rest of 1 MiB or less is not split off: 3 MiB takes the whole of a new 4 MiB segment.
  void* big = pool.allocate(10 * MiB, kS1);
  void* t = pool.allocate(3 * MiB, kS1);
  EXPECT_EQ(pool.stats().system_allocations, 2);
  EXPECT_EQ(pool.cached_free_bytes(), 0u);

  // Best fit between two free large blocks: 4 MiB goes to the 4 MiB block, not the 10 MiB one.
  pool.deallocate(big);
  pool.deallocate(t);
  EXPECT_EQ(pool.allocate(4 * MiB, kS1), t);
  pool.deallocate(t);
}

TEST(BlockPool, BlocksAreReusedOnlyOnTheirStream) {
  Pool pool;
  void* p = pool.allocate(1000, kS1);
  pool.deallocate(p);
  void* q = pool.allocate(1000, kS2);
  EXPECT_NE(q, p) << "another stream may still be using p in stream order";
  EXPECT_EQ(pool.stats().system_allocations, 2);
  EXPECT_EQ(pool.allocate(1000, kS1), p);
  pool.deallocate(p);
  pool.deallocate(q);
}

TEST(BlockPool, RecordedStreamDelaysReuseUntilItsEventCompletes) {
  Pool pool;
  FakeSystem& sys = pool.system();
  void* p = pool.allocate(4096, kS1);
  EXPECT_TRUE(pool.record_stream(at(p) + 100, kS2)) << "any address inside the block";
  EXPECT_TRUE(pool.record_stream(p, kS2));  // recorded once
  EXPECT_TRUE(pool.record_stream(p, kS1));  // its own stream: nothing to wait for
  int outside = 0;
  EXPECT_FALSE(pool.record_stream(&outside, kS2));
  pool.deallocate(p);
  EXPECT_EQ(sys.events_on(kS2), 1);
  EXPECT_EQ(sys.events_on(kS1), 0);

  void* q = pool.allocate(4096, kS1);
  EXPECT_NE(q, p) << "stream 2 may still be reading p";
  sys.finish(kS2);
  void* r = pool.allocate(4096, kS1);
  EXPECT_EQ(r, p) << "stream 2's work finished: p is reusable";
  EXPECT_EQ(sys.s->events_released, 1);
  EXPECT_EQ(pool.stats().system_allocations, 1);

  // Two recorded streams: the block waits for both.
  EXPECT_TRUE(pool.record_stream(r, kS2));
  EXPECT_TRUE(pool.record_stream(r, kS3));
  pool.deallocate(r);
  sys.finish(kS2);
  void* u = pool.allocate(4096, kS1);
  EXPECT_NE(u, p);
  sys.finish(kS3);
  void* v = pool.allocate(4096, kS1);
  EXPECT_EQ(v, p);
  EXPECT_EQ(sys.s->events_released, 3);
  for (void* b : {q, u, v}) pool.deallocate(b);
  EXPECT_EQ(pool.stats().live_allocations, 0);
}

TEST(BlockPool, BlockWhoseEventCannotBeRecordedIsNeverReused) {
  auto state = FakeSystem().s;
  void* p = nullptr;
  {
    Pool pool(FakeSystem{state});
    p = pool.allocate(4096, kS1);
    EXPECT_TRUE(pool.record_stream(p, kS2));
    state->fail_record = true;
    EXPECT_NO_THROW(pool.deallocate(p)) << "deallocate runs in destructors: it must not throw";
    state->fail_record = false;
    pool.system().finish(kS2);
    for (int i = 0; i < 4; ++i) {
      void* q = pool.allocate(4096, kS1);
      EXPECT_NE(q, p) << "nothing says when stream 2 is done with p";
      pool.deallocate(q);
    }
    EXPECT_EQ(pool.stats().live_allocations, 0);
  }
  EXPECT_EQ(state->used, 2 * MiB) << "p's segment can never be given back";
  std::free(p);  // p starts that segment; the fake got it from aligned_alloc
}

// Issue 19 item 1: the NCCL communicator destroyed its stream while tensors recorded on it were
// still alive; freeing them later recorded an event on the dead stream (here: record_event
// throws), so their blocks were abandoned. forget_stream, called after synchronising the stream
// and before destroying it, drops the stream from every live block's recorded uses.
TEST(BlockPool, ForgottenStreamIsNotWaitedForWhenItsBlocksAreFreed) {
  Pool pool;
  FakeSystem& sys = pool.system();
  void* p = pool.allocate(4096, kS1);
  void* q = pool.allocate(4096, kS1);
  EXPECT_TRUE(pool.record_stream(p, kS2));
  EXPECT_TRUE(pool.record_stream(q, kS2));
  EXPECT_TRUE(pool.record_stream(q, kS3));
  pool.forget_stream(kS2);        // stream 2 was synchronised and is destroyed now:
  sys.s->fail_record = true;      // recording on it would fail, as cudaEventRecord on a dead stream
  EXPECT_NO_THROW(pool.deallocate(p));
  sys.s->fail_record = false;
  EXPECT_EQ(sys.events_on(kS2), 0) << "nothing may be recorded on a forgotten stream";
  EXPECT_EQ(pool.allocate(4096, kS1), p) << "p was only used on the forgotten stream: free at once";

  pool.deallocate(q);  // stream 3 is still alive and still waited for
  EXPECT_EQ(sys.events_on(kS2), 0);
  EXPECT_EQ(sys.events_on(kS3), 1);
  void* r = pool.allocate(4096, kS1);
  EXPECT_NE(r, q) << "stream 3 may still be reading q";
  sys.finish(kS3);
  EXPECT_EQ(pool.allocate(4096, kS1), q);
  for (void* b : {p, q, r}) pool.deallocate(b);
  EXPECT_EQ(pool.stats().live_allocations, 0);
}

TEST(BlockPool, OutOfMemoryReleasesCacheRetriesThenThrows) {
  Pool pool;
  FakeSystem& sys = pool.system();
  sys.s->capacity = 8 * MiB;

  // A cached 4 MiB block fills half the capacity; 6 MiB only fits once it is given back.
  void* a = pool.allocate(4 * MiB, kS1);
  pool.deallocate(a);
  void* b = pool.allocate(6 * MiB, kS1);
  EXPECT_EQ(sys.s->free_calls, 1) << "the cached segment was released";
  EXPECT_EQ(sys.s->allocate_calls, 3) << "one refused call, then the retry";
  EXPECT_EQ(pool.stats().reserved_bytes, static_cast<int64_t>(6 * MiB));

  // A block still waiting for another stream is waited for and released too.
  void* c = pool.allocate(MiB, kS1);  // small: a 2 MiB segment, 8 MiB now reserved
  EXPECT_TRUE(pool.record_stream(c, kS2));
  pool.deallocate(c);
  pool.deallocate(b);
  void* d = pool.allocate(8 * MiB, kS1);
  EXPECT_EQ(sys.s->events_released, 1);
  EXPECT_EQ(pool.stats().reserved_bytes, static_cast<int64_t>(8 * MiB));

  // Nothing left to release: OutOfMemoryError with the numbers, and the pool stays usable.
  pool.deallocate(d);
  void* e = pool.allocate(6 * MiB, kS1);  // from the cached 8 MiB block (rest 2 MiB split off)
  try {
    pool.allocate(4 * MiB + 1, kS1);
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& err) {
    const std::string msg = err.what();
    for (const char* part : {"fake:0", "out of memory allocating 4.00 MiB", "4194305 bytes",
                             "Allocated by ember: 6.00 MiB in 1 blocks", "reserved by its caching allocator: 8.00 MiB",
                             "2.00 MiB of it cached and free", "device: 0 B free of 8.00 MiB total"})
      EXPECT_NE(msg.find(part), std::string::npos) << "missing '" << part << "' in: " << msg;
  }
  void* f = pool.allocate(2 * MiB, kS1);  // the cached rest of e's segment
  EXPECT_EQ(at(f), at(e) + 6 * MiB);
  EXPECT_EQ(pool.stats().live_allocations, 2);
  pool.deallocate(e);
  pool.deallocate(f);
  EXPECT_THROW(pool.allocate(size_t{1} << 62, kS1), OutOfMemoryError) << "absurd sizes fail cleanly";
}

TEST(BlockPool, Statistics) {
  auto state = FakeSystem().s;
  void* kept = nullptr;
  {
    Pool pool(FakeSystem{state});
    void* a = pool.allocate(1000, kS1);
    void* b = pool.allocate(3 * MiB, kS1);
    AllocatorStats s = pool.stats();
    EXPECT_EQ(s.live_allocations, 2);
    EXPECT_EQ(s.live_bytes, static_cast<int64_t>(1000 + 3 * MiB)) << "requested bytes, not rounded ones";
    EXPECT_EQ(s.total_allocations, 2);
    EXPECT_EQ(s.reserved_bytes, static_cast<int64_t>(2 * MiB + 4 * MiB));
    EXPECT_EQ(s.system_allocations, 2);
    pool.deallocate(b);
    void* c = pool.allocate(3 * MiB, kS1);  // reused
    pool.deallocate(c);
    pool.deallocate(a);
    s = pool.stats();
    EXPECT_EQ(s.live_allocations, 0);
    EXPECT_EQ(s.live_bytes, 0);
    EXPECT_EQ(s.peak_bytes, static_cast<int64_t>(1000 + 3 * MiB));
    EXPECT_EQ(s.total_allocations, 3);
    EXPECT_EQ(s.system_allocations, 2);
    EXPECT_EQ(s.reserved_bytes, static_cast<int64_t>(6 * MiB)) << "freed blocks stay cached";
    pool.empty_cache();
    s = pool.stats();
    EXPECT_EQ(s.reserved_bytes, 0);
    EXPECT_EQ(s.peak_reserved_bytes, static_cast<int64_t>(6 * MiB));
    EXPECT_EQ(state->used, 0u);

    kept = pool.allocate(2000, kS1);  // still live when the pool goes: its segment stays
    EXPECT_EQ(state->used, 2 * MiB);
    void* cached = pool.allocate(5 * MiB, kS1);
    pool.deallocate(cached);
  }
  EXPECT_EQ(state->used, 2 * MiB) << "the destructor gives back cached segments only";
  std::free(kept);  // kept starts its segment; the fake got it from aligned_alloc
}

TEST(BlockPool, FreeingAnUnknownPointerFails) {
  Pool pool;
  void* p = pool.allocate(10, kS1);
  pool.deallocate(p);
  test::expect_error([&] { pool.deallocate(p); }, {"fake:0", "did not hand out, or freed twice"});
}

TEST(BlockPool, ConcurrentAllocateAndFree) {
  Pool pool;
  // Four threads hold up to 8 blocks of up to 4 MiB each: 128 MiB at worst, plus whatever the
  // interleaving leaves cached in the other pool. With the default 64 MiB an unlucky schedule ran
  // out of memory inside a thread (std::terminate; seen once under ASan in CI): this test is about
  // concurrency, not capacity, so give it room for the worst case.
  pool.system().s->capacity = 1024 * MiB;
  std::atomic<int> clobbered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, &clobbered, t] {
      std::mt19937 rng(t);
      std::vector<std::pair<int*, int>> held;  // block, the tag written into it
      for (int i = 0; i < 2000; ++i) {
        if (held.size() < 8 && rng() % 2 == 0) {
          const size_t n = rng() % 4 == 0 ? MiB + rng() % (3 * MiB) : rng() % (64 * KiB);
          int* p = static_cast<int*>(pool.allocate(n, t % 2));
          *p = t * 100000 + i;  // a block handed to two holders at once would lose its tag
          held.emplace_back(p, *p);
        } else if (!held.empty()) {
          clobbered += *held.back().first != held.back().second;
          pool.deallocate(held.back().first);
          held.pop_back();
        }
      }
      for (auto [p, tag] : held) {
        clobbered += *p != tag;
        pool.deallocate(p);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(clobbered.load(), 0);
  EXPECT_EQ(pool.stats().live_allocations, 0);
  EXPECT_EQ(pool.stats().live_bytes, 0);
  pool.empty_cache();
  EXPECT_EQ(pool.stats().reserved_bytes, 0) << "every segment merged back into one free block";
  EXPECT_EQ(pool.system().s->used, 0u);
}
