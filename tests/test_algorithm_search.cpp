// The cuDNN algorithm choice (cuda/algorithm_search.h) with fake candidates and a fake workspace
// allocator, on the CPU: rank order, the workspace cap, falling back to the next candidate when a
// workspace cannot be allocated (and remembering it), the measured search, and the cache per
// problem (issue 19 item 3: the first ranked algorithm was kept whatever its workspace, so a
// workspace that could not be allocated failed every step).
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "cuda/algorithm_search.h"

using namespace ember;
using namespace ember::cuda;

namespace {

constexpr size_t MiB = size_t{1} << 20;

// cuDNN's ranked list for a made-up problem: the best needs 3 GiB of workspace, then 512 MiB,
// 64 MiB, and an implicit GEMM that needs none.
std::vector<ConvCandidate> ranked() {
  return {{.algo = 6, .math = 0, .workspace_bytes = 3072 * MiB},
          {.algo = 1, .math = 0, .workspace_bytes = 512 * MiB},
          {.algo = 7, .math = 0, .workspace_bytes = 64 * MiB},
          {.algo = 0, .math = 0, .workspace_bytes = 0}};
}

// Hands out "workspaces" (their sizes) up to a free-memory limit, throwing as the allocator does.
struct FakeAllocator {
  size_t free_bytes;
  int calls = 0;
  size_t operator()(size_t bytes) {
    ++calls;
    if (bytes > free_bytes) throw OutOfMemoryError("fake: out of memory allocating " + std::to_string(bytes));
    return bytes;
  }
};

}  // namespace

TEST(AlgorithmSearch, WorkspaceCapDropsCandidatesButKeepsRankOrder) {
  const std::vector<ConvCandidate> kept = within_workspace_cap(ranked(), 1024 * MiB);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].algo, 1);
  EXPECT_EQ(kept[1].algo, 7);
  EXPECT_EQ(kept[2].algo, 0);
  EXPECT_EQ(within_workspace_cap(ranked(), 0).size(), 1u);
}

TEST(AlgorithmSearch, RunsTheFirstRankedCandidateWhoseWorkspaceFits) {
  ConvChoice choice{ranked(), 0};
  FakeAllocator plenty{size_t{8} << 30};
  std::vector<int> ran;
  auto run = [&](const ConvCandidate& c, size_t workspace) {
    EXPECT_EQ(workspace, c.workspace_bytes);
    ran.push_back(c.algo);
  };
  EXPECT_EQ(run_first_that_fits(choice, plenty, run), 0u) << "the best ranked when memory allows";

  FakeAllocator tight{100 * MiB};
  EXPECT_EQ(run_first_that_fits(choice, tight, run), 2u) << "falls back past the two that do not fit";
  EXPECT_EQ(tight.calls, 3);
  EXPECT_EQ(ran, (std::vector<int>{6, 7}));

  choice.current = 2;  // what the caller remembers: the next call starts there, no failed tries
  FakeAllocator again{100 * MiB};
  EXPECT_EQ(run_first_that_fits(choice, again, run), 2u);
  EXPECT_EQ(again.calls, 1);
}

TEST(AlgorithmSearch, OutOfMemoryOnlyWhenNoCandidateFits) {
  ConvChoice choice{{{.algo = 6, .math = 0, .workspace_bytes = 512 * MiB}, {.algo = 1, .math = 0, .workspace_bytes = 64 * MiB}}, 0};
  FakeAllocator none{MiB};
  int runs = 0;
  EXPECT_THROW(run_first_that_fits(choice, none, [&](const ConvCandidate&, size_t) { ++runs; }), OutOfMemoryError);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(none.calls, 2);
  // Another error from the run itself is not an allocation failure: it propagates at once.
  FakeAllocator plenty{size_t{1} << 30};
  EXPECT_THROW(run_first_that_fits(choice, plenty, [](const ConvCandidate&, size_t) { throw Error("cudnn: bad"); }),
               Error);
  EXPECT_EQ(plenty.calls, 1);
}

TEST(AlgorithmSearch, MeasuredSearchOrdersFastestFirstAndSkipsWhatCannotRun) {
  const std::array<double, 8> ms_by_algo = {/*0*/ 2.0, /*1*/ 0.5, 0, 0, 0, 0, /*6*/ 0.1, /*7*/ 0.5};
  FakeAllocator allocator{1024 * MiB};  // algo 6's 3 GiB workspace cannot be allocated
  int timed = 0;
  const std::vector<ConvCandidate> order =
      order_by_measured_time(ranked(), allocator, [&](const ConvCandidate& c, size_t) {
        ++timed;
        if (c.algo == 0) throw Error("cudnnConvolutionForward: CUDNN_STATUS_EXECUTION_FAILED");
        return ms_by_algo[c.algo];
      });
  EXPECT_EQ(timed, 3);
  ASSERT_EQ(order.size(), 2u) << "algo 6 (no workspace) and algo 0 (failed) are left out";
  EXPECT_EQ(order[0].algo, 1) << "ties keep rank order";
  EXPECT_EQ(order[1].algo, 7);
  EXPECT_DOUBLE_EQ(order[0].measured_ms, 0.5);
}

TEST(AlgorithmSearch, CacheSearchesOncePerKeyAndRemembersTheFallback) {
  using Key = std::tuple<int, std::string>;  // e.g. (pass, shape and dtype)
  ConvChoiceCache<Key> cache;
  int searches = 0;
  auto search = [&] {
    ++searches;
    return ranked();
  };
  const Key fp32{0, "[8,3,32,32] float32"}, fp64{0, "[8,3,32,32] float64"};
  EXPECT_EQ(cache.get(fp32, search).current, 0u);
  EXPECT_EQ(cache.get(fp32, search).order.size(), 4u);
  EXPECT_EQ(searches, 1);
  cache.get(fp64, search);
  EXPECT_EQ(searches, 2) << "another dtype is another problem";
  EXPECT_EQ(cache.size(), 2u);
  cache.use(fp32, 2);
  EXPECT_EQ(cache.get(fp32, search).current, 2u);
  EXPECT_EQ(cache.get(fp64, search).current, 0u);
  cache.use(fp32, 99);  // out of range: ignored
  EXPECT_EQ(cache.get(fp32, search).current, 2u);
}
