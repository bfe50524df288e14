// cuda/lazy_handle.h on the CPU: each per-device resource of cuda/runtime.cpp is made on its own
// first use, once, and a creation that throws is retried without remaking the others (issue 19
// item 4: one call_once made the streams, cuBLAS and cuDNN together on the first allocation, so
// a cuDNN load failure broke every allocation and leaked the streams made before it).
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cuda/lazy_handle.h"

using ember::cuda::LazyHandle;

namespace {

int g_stream_object = 0, g_library_object = 0;

}  // namespace

TEST(LazyHandle, MakesEachResourceOnItsOwnFirstUse) {
  LazyHandle<int*> stream, library;
  int stream_made = 0, library_made = 0;
  auto make_stream = [&] { ++stream_made; return &g_stream_object; };
  auto make_library = [&] { ++library_made; return &g_library_object; };
  EXPECT_EQ(stream.get(make_stream), &g_stream_object);
  EXPECT_EQ(stream.get(make_stream), &g_stream_object);
  EXPECT_EQ(stream_made, 1);
  EXPECT_EQ(library_made, 0) << "asking for the stream must not load the library";
  EXPECT_FALSE(library.made());
  EXPECT_EQ(library.get(make_library), &g_library_object);
  EXPECT_EQ(library_made, 1);
}

TEST(LazyHandle, AFailedCreationIsRetriedAndLeavesOtherResourcesAlone) {
  LazyHandle<int*> stream, library;
  int stream_made = 0, library_tries = 0;
  auto make_stream = [&] { ++stream_made; return &g_stream_object; };
  auto broken_library = [&]() -> int* {
    ++library_tries;
    throw std::runtime_error("cudnnCreate: CUDNN_STATUS_NOT_INITIALIZED");
  };
  stream.get(make_stream);
  EXPECT_THROW(library.get(broken_library), std::runtime_error);
  EXPECT_THROW(library.get(broken_library), std::runtime_error) << "tried again, not remembered as made";
  EXPECT_EQ(library_tries, 2);
  EXPECT_FALSE(library.made());
  EXPECT_EQ(stream.get(make_stream), &g_stream_object) << "the stream still works";
  EXPECT_EQ(stream_made, 1) << "and was not made a second time (a leak)";
  EXPECT_EQ(library.get([] { return &g_library_object; }), &g_library_object);
}

TEST(LazyHandle, ConcurrentFirstUsesMakeItOnce) {
  LazyHandle<int*> handle;
  std::atomic<int> made{0};
  std::vector<std::thread> threads;
  std::vector<int*> got(8, nullptr);
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      got[t] = handle.get([&] {
        made.fetch_add(1);
        std::this_thread::yield();
        return &g_stream_object;
      });
    });
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(made.load(), 1);
  for (int* p : got) EXPECT_EQ(p, &g_stream_object);
}
