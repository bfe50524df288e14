// The NCCL watchdog's check (distributed/watchdog.h) with fake events, on the CPU: finished
// collectives are dropped, an overdue or failed one is named, and a query that throws (a sticky
// CUDA error) becomes a Failed verdict instead of an exception on the watchdog thread (issue 19
// item 2: that was std::terminate, with no NCCL abort and no job-wide abort).
#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "distributed/watchdog.h"

using namespace ember;
using namespace ember::distributed;
using Clock = std::chrono::steady_clock;

namespace {

struct FakeEvent {
  bool finished = false;
  bool sticky_error = false;  // query() throws, as cuda::Event::query does after a device assert
  bool query() const {
    if (sticky_error) throw Error("cuda/runtime.cpp:80: cudaEventQuery: an illegal memory access was encountered");
    return finished;
  }
};

struct Entry {
  std::string op;
  std::shared_ptr<FakeEvent> done;
  Clock::time_point deadline;
};

const Clock::time_point kNow = Clock::now();
const auto kLater = kNow + std::chrono::seconds(60);
auto no_error = [] { return std::string(); };

Entry entry(const std::string& op, bool finished, Clock::time_point deadline = kLater) {
  return {op, std::make_shared<FakeEvent>(FakeEvent{finished, false}), deadline};
}

}  // namespace

TEST(NcclWatchdog, DropsFinishedCollectivesAndIsHealthyWhileOthersAreOnTime) {
  std::deque<Entry> in_flight{entry("broadcast", true), entry("all_reduce(sum)", true), entry("all_gather", false)};
  const WatchdogVerdict v = check_collectives(in_flight, kNow, no_error);
  EXPECT_TRUE(v.healthy());
  ASSERT_EQ(in_flight.size(), 1u);
  EXPECT_EQ(in_flight.front().op, "all_gather");
  in_flight.front().done->finished = true;
  EXPECT_TRUE(check_collectives(in_flight, kNow, no_error).healthy());
  EXPECT_TRUE(in_flight.empty());
}

TEST(NcclWatchdog, NamesTheOldestOverdueCollective) {
  std::deque<Entry> in_flight{entry("broadcast", true), entry("all_reduce(sum)", false, kNow - std::chrono::seconds(1)),
                              entry("all_gather", false)};
  const WatchdogVerdict v = check_collectives(in_flight, kNow, no_error);
  EXPECT_EQ(v.kind, WatchdogVerdict::Kind::TimedOut);
  EXPECT_EQ(v.op, "all_reduce(sum)");
}

TEST(NcclWatchdog, ReportsNcclsAsynchronousError) {
  std::deque<Entry> in_flight{entry("reduce_scatter(sum)", false)};
  const WatchdogVerdict v = check_collectives(in_flight, kNow, [] { return std::string("remote process exited"); });
  EXPECT_EQ(v.kind, WatchdogVerdict::Kind::Failed);
  EXPECT_EQ(v.op, "reduce_scatter(sum)");
  EXPECT_NE(v.error.find("NCCL asynchronous error: remote process exited"), std::string::npos) << v.error;
}

TEST(NcclWatchdog, AStickyCudaErrorInAQueryIsAFailureNotAnException) {
  std::deque<Entry> in_flight{entry("broadcast", true), entry("all_reduce(average)", false)};
  in_flight.back().done->sticky_error = true;
  WatchdogVerdict v;
  EXPECT_NO_THROW(v = check_collectives(in_flight, kNow, no_error));
  EXPECT_EQ(v.kind, WatchdogVerdict::Kind::Failed);
  EXPECT_EQ(v.op, "all_reduce(average)");
  EXPECT_NE(v.error.find("illegal memory access"), std::string::npos) << v.error;

  // The NCCL error query failing the same way is handled alike.
  std::deque<Entry> other{entry("all_gather", false)};
  EXPECT_NO_THROW(v = check_collectives(other, kNow, []() -> std::string { throw std::runtime_error("gone"); }));
  EXPECT_EQ(v.kind, WatchdogVerdict::Kind::Failed);
  EXPECT_EQ(v.op, "all_gather");
}

// NcclGuard::launch registers a collective before enqueueing it (done is null until then): it is
// not finished, blocks the ones behind it from being dropped, and times out like any other.
TEST(NcclWatchdog, ACollectiveStillBeingEnqueuedIsWatched) {
  std::deque<Entry> in_flight{entry("broadcast", true), {"all_reduce(sum)", nullptr, kLater}, entry("all_gather", true)};
  EXPECT_TRUE(check_collectives(in_flight, kNow, no_error).healthy());
  ASSERT_EQ(in_flight.size(), 2u);
  EXPECT_EQ(in_flight.front().op, "all_reduce(sum)");
  const WatchdogVerdict v = check_collectives(in_flight, kLater + std::chrono::seconds(1), no_error);
  EXPECT_EQ(v.kind, WatchdogVerdict::Kind::TimedOut);
  EXPECT_EQ(v.op, "all_reduce(sum)");
}
