// NcclGuard, the NCCL communicator's state machine (distributed/nccl_guard.h), driven on the CPU by
// a scripted NCCL (tests/fake_nccl_api.h): every transition that used to be able to hang or race
// (issue 13) is taken here, with the fake checking NCCL's rules on every call.
//   init:      in progress then ready; never completes -> timeout naming rank and timeout; error
//   launch:    ncclInProgress polled before the event is recorded; stuck -> timeout naming op and
//              rank; watched before it is enqueued (even if the enqueue blocks)
//   watchdog:  a peer that never arrives, NCCL's asynchronous error, a sticky CUDA error: the
//              guard fails and aborts NCCL, and the next call throws the reason
//   shutdown:  healthy -> finalize (polled) then destroy; unhealthy -> abort, never both
//   races:     abort racing launch, many times over (the ASAN build runs this too)
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "distributed/nccl_guard.h"
#include "tests/fake_nccl_api.h"
#include "tests/test_util.h"

namespace ember::test {
namespace {

using distributed::NcclCall;
using distributed::NcclGuard;
using distributed::NcclUniqueId;
using State = NcclGuard::State;
using namespace std::chrono_literals;

const NcclUniqueId kId{};
const NcclCall kAllReduce{NcclCall::Kind::AllReduce, nullptr, nullptr, 4, DType::Float32, ReduceOp::Sum, 0};
const NcclCall kBroadcast{NcclCall::Kind::Broadcast, nullptr, nullptr, 4, DType::Float32, ReduceOp::Sum, 0};

std::shared_ptr<FakeNcclApi> fake() { return std::make_shared<FakeNcclApi>(); }

// Waits (at most 10 s, far above any timeout used here) until the guard has left Ready.
bool becomes_failed(const NcclGuard& guard) {
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (guard.state() != State::Failed) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

void expect_no_violations(const FakeNcclApi& api) {
  for (const std::string& v : api.violations()) ADD_FAILURE() << "NCCL rule broken: " << v;
}

void expect_aborted_not_closed(const FakeNcclApi& api) {
  EXPECT_EQ(api.count("abort"), 1);
  EXPECT_EQ(api.count("finalize"), 0);
  EXPECT_EQ(api.count("destroy"), 0);
}

TEST(NcclGuard, InitInProgressForAWhileThenReady) {
  auto api = fake();
  api->init_polls = 5;
  NcclGuard guard(api, 1, 2, "cuda:1", 5s);
  guard.init(kId);
  EXPECT_EQ(guard.state(), State::Ready);
  EXPECT_EQ(api->calls().front(), "init_rank");
  EXPECT_GE(api->count("get_async_error"), 6);  // five InProgress, then Success
  EXPECT_NE(guard.launch("all_reduce(sum)", kAllReduce), nullptr);
  guard.shutdown();
  EXPECT_EQ(guard.state(), State::Closed);
  expect_no_violations(*api);
}

TEST(NcclGuard, InitThatNeverCompletesTimesOutNamingRankAndTimeout) {
  auto api = fake();
  api->init_polls = FakeNcclApi::kForever;  // rank 0 of 2 never started
  NcclGuard guard(api, 1, 2, "cuda:3", 50ms);
  expect_error([&] { guard.init(kId); },
               {"NCCL communicator init timed out on rank 1 of 2 (cuda:3) after 50 ms", "not every rank joined",
                "aborted"});
  EXPECT_EQ(guard.state(), State::Failed);
  EXPECT_TRUE(guard.failure_reported());
  guard.shutdown();
  expect_aborted_not_closed(*api);
  expect_no_violations(*api);
}

TEST(NcclGuard, InitErrorAbortsAndThrows) {
  auto api = fake();
  api->init_error = "unhandled system error (socket connect failed)";
  NcclGuard guard(api, 0, 2, "cuda:0", 5s);
  expect_error([&] { guard.init(kId); }, {"init", "failed on rank 0 (cuda:0)", "unhandled system error"});
  guard.shutdown();
  expect_aborted_not_closed(*api);
  expect_no_violations(*api);
}

TEST(NcclGuard, EnqueueInProgressIsPolledBeforeItsEventIsRecorded) {
  auto api = fake();
  api->enqueue_polls = 20;
  NcclGuard guard(api, 0, 2, "cuda:0", 5s);
  guard.init(kId);
  ASSERT_NE(guard.launch("all_reduce(sum)", kAllReduce), nullptr);
  const std::vector<std::string> calls = api->calls();
  const auto enqueued = std::find(calls.begin(), calls.end(), "enqueue");
  const auto recorded = std::find(enqueued, calls.end(), "record_event");
  ASSERT_NE(recorded, calls.end());
  // Every InProgress answer, then Success, before the event (the fake checks that too).
  EXPECT_GE(std::count(enqueued, recorded, "get_async_error"), 21);
  expect_no_violations(*api);
}

TEST(NcclGuard, EnqueueStuckInProgressTimesOutNamingOpAndRank) {
  auto api = fake();
  NcclGuard guard(api, 1, 4, "cuda:1", 100ms);
  guard.init(kId);
  api->enqueue_polls = FakeNcclApi::kForever;  // a peer that never connects
  expect_error([&] { guard.launch("all_reduce(sum)", kAllReduce); },
               {"all_reduce(sum)", "timed out on rank 1 (cuda:1) after 100 ms", "aborted"});
  EXPECT_EQ(guard.state(), State::Failed);
  // Every later call says why the communicator is gone.
  expect_error([&] { guard.launch("broadcast", kBroadcast); },
               {"NCCL communicator (rank 1, cuda:1) is unusable", "all_reduce(sum) timed out"});
  guard.shutdown();
  expect_aborted_not_closed(*api);
  expect_no_violations(*api);
}

TEST(NcclGuard, EnqueueThatThrowsFailsAtOnce) {
  auto api = fake();
  NcclGuard guard(api, 0, 2, "cuda:0", 10s);
  guard.init(kId);
  api->enqueue_throws = "cudaSetDevice: an illegal memory access was encountered";
  expect_error([&] { guard.launch("all_reduce(sum)", kAllReduce); }, {"illegal memory access"});
  EXPECT_EQ(guard.state(), State::Failed);  // at once, not after the 10 s timeout
  EXPECT_NE(guard.failure().find("all_reduce(sum) failed on rank 0 (cuda:0)"), std::string::npos) << guard.failure();
  guard.shutdown();
  expect_aborted_not_closed(*api);
  expect_no_violations(*api);
}

// NCCL connects to peers lazily, in the first collective's enqueue. Were that enqueue to block
// (it must not with a nonblocking communicator, but if it did), the watchdog still sees the
// collective, because launch() registers it first: the guard fails with the op's name while the
// enqueue is stuck, and NCCL is aborted only once that call has returned (never during it).
TEST(NcclGuard, WatchdogSeesACollectiveBeforeItsEnqueueReturns) {
  auto api = fake();
  NcclGuard guard(api, 0, 2, "cuda:0", 100ms);
  guard.init(kId);
  api->enqueue_blocks = true;
  std::string launch_error;
  std::thread launcher([&] {
    try {
      guard.launch("all_gather", kAllReduce);
    } catch (const Error& e) {
      launch_error = e.what();
    }
  });
  ASSERT_TRUE(becomes_failed(guard));
  EXPECT_TRUE(api->inside_enqueue()) << "the guard failed only after the enqueue returned";
  EXPECT_NE(guard.failure().find("all_gather timed out on rank 0 (cuda:0) after 100 ms"), std::string::npos)
      << guard.failure();
  EXPECT_EQ(api->count("abort"), 0) << "abort while another thread was inside an NCCL call";
  api->release_enqueue();
  launcher.join();
  EXPECT_NE(launch_error.find("all_gather timed out on rank 0"), std::string::npos) << launch_error;
  guard.shutdown();  // joins the watchdog, which aborts as soon as the enqueue has returned
  EXPECT_GT(api->find("abort"), api->find("enqueue"));
  expect_aborted_not_closed(*api);
  expect_no_violations(*api);
}

TEST(NcclGuard, PeerThatNeverArrivesTimesOutInTheWatchdog) {
  auto api = fake();
  NcclGuard guard(api, 1, 2, "cuda:0", 100ms);
  guard.init(kId);
  api->collectives_finish = false;  // enqueued fine, never completes: the peer never called it
  ASSERT_NE(guard.launch("broadcast", kBroadcast), nullptr);
  ASSERT_TRUE(becomes_failed(guard));
  EXPECT_NE(guard.failure().find("broadcast timed out on rank 1 (cuda:0) after 100 ms"), std::string::npos)
      << guard.failure();
  EXPECT_FALSE(guard.failure_reported());
  // Work::wait() and every other call check first, and throw the reason on the caller's thread.
  expect_error([&] { guard.check_usable(); }, {"is unusable", "broadcast timed out on rank 1", "100 ms"});
  EXPECT_TRUE(guard.failure_reported());
  guard.shutdown();  // joins the watchdog, which marks the guard failed first, then aborts NCCL
  expect_aborted_not_closed(*api);  // by the watchdog: the kernels return, the compute stream goes on
  expect_no_violations(*api);
}

TEST(NcclGuard, HostWaitTimesOutNamingTheOp) {
  auto api = fake();
  NcclGuard guard(api, 0, 2, "cuda:0", 100ms);
  guard.init(kId);
  api->collectives_finish = false;
  auto done = guard.launch("barrier", kAllReduce);
  expect_error([&] { guard.wait_host("barrier", done); }, {"barrier timed out on rank 0 (cuda:0) after 100 ms"});
  guard.shutdown();
  expect_aborted_not_closed(*api);
  expect_no_violations(*api);
}

TEST(NcclGuard, AsynchronousErrorFailsAndAborts) {
  auto api = fake();
  NcclGuard guard(api, 0, 2, "cuda:0", 2s);  // the error ends it (the message says which), long before this
  guard.init(kId);
  api->collectives_finish = false;
  ASSERT_NE(guard.launch("reduce_scatter(sum)", kAllReduce), nullptr);
  api->set_async_error("remote process exited or there was a network error");
  ASSERT_TRUE(becomes_failed(guard));
  EXPECT_NE(guard.failure().find("reduce_scatter(sum) failed on rank 0 (cuda:0): NCCL asynchronous error: remote "
                                 "process exited"),
            std::string::npos)
      << guard.failure();
  expect_error([&] { guard.launch("broadcast", kBroadcast); }, {"is unusable", "remote process exited"});
  guard.shutdown();
  expect_aborted_not_closed(*api);
  expect_no_violations(*api);
}

// issue 19 item 2: a sticky CUDA error makes every event query throw; on the watchdog thread that
// must become a failure (NCCL aborted, the next call throws), not std::terminate.
TEST(NcclGuard, StickyCudaErrorIsAFailureNotACrash) {
  auto api = fake();
  NcclGuard guard(api, 0, 2, "cuda:0", 2s);
  guard.init(kId);
  api->collectives_finish = false;
  ASSERT_NE(guard.launch("all_reduce(mean)", kAllReduce), nullptr);
  api->sticky_cuda_error = true;
  ASSERT_TRUE(becomes_failed(guard));
  EXPECT_NE(guard.failure().find("all_reduce(mean) failed on rank 0"), std::string::npos) << guard.failure();
  EXPECT_NE(guard.failure().find("illegal memory access"), std::string::npos) << guard.failure();
  guard.shutdown();
  expect_aborted_not_closed(*api);
  expect_no_violations(*api);
}

TEST(NcclGuard, HealthyShutdownFinalizesThenDestroys) {
  auto api = fake();
  NcclGuard guard(api, 0, 2, "cuda:0", 5s);
  guard.init(kId);
  for (int i = 0; i < 3; ++i) guard.launch("all_reduce(sum)", kAllReduce);
  api->finalize_polls = 10;  // the peers are still finishing
  guard.shutdown();
  EXPECT_EQ(guard.state(), State::Closed);
  const std::vector<std::string> calls = api->calls();
  const auto finalized = std::find(calls.begin(), calls.end(), "finalize");
  const auto destroyed = std::find(finalized, calls.end(), "destroy");
  ASSERT_NE(destroyed, calls.end()) << "destroy must follow finalize";
  EXPECT_EQ(std::count(finalized, destroyed, "get_async_error"), 11);  // InProgress ten times, then Success
  EXPECT_EQ(api->count("destroy"), 1);
  EXPECT_EQ(api->count("abort"), 0);
  guard.shutdown();  // a second shutdown does nothing
  EXPECT_EQ(api->count("destroy"), 1);
  expect_error([&] { guard.launch("broadcast", kBroadcast); }, {"rank 0", "shut down"});
  expect_no_violations(*api);
}

TEST(NcclGuard, HealthyShutdownWaitsForTheCollectivesInFlight) {
  auto api = fake();
  NcclGuard guard(api, 0, 2, "cuda:0", 10s);
  guard.init(kId);
  api->collectives_finish = false;
  guard.launch("all_reduce(sum)", kAllReduce);
  std::thread peer([&] {
    std::this_thread::sleep_for(20ms);
    api->collectives_finish = true;  // the slow peer arrives
  });
  guard.shutdown();
  peer.join();
  EXPECT_EQ(guard.state(), State::Closed);
  EXPECT_EQ(api->count("abort"), 0);
  EXPECT_EQ(api->count("destroy"), 1);
  expect_no_violations(*api);
}

TEST(NcclGuard, UnhealthyShutdownAborts) {
  {
    SCOPED_TRACE("a collective that never finishes");
    auto api = fake();
    NcclGuard guard(api, 0, 2, "cuda:0", 100ms);
    guard.init(kId);
    api->collectives_finish = false;
    guard.launch("all_gather", kAllReduce);
    guard.shutdown();  // before the watchdog's verdict or after it: aborted either way
    EXPECT_NE(guard.failure().find("all_gather"), std::string::npos) << guard.failure();
    EXPECT_NE(guard.failure().find("timed out on rank 0 (cuda:0) after 100 ms"), std::string::npos) << guard.failure();
    expect_aborted_not_closed(*api);
    expect_no_violations(*api);
  }
  {
    SCOPED_TRACE("finalize that never completes");
    auto api = fake();
    NcclGuard guard(api, 0, 2, "cuda:0", 100ms);
    guard.init(kId);
    api->finalize_polls = FakeNcclApi::kForever;
    guard.shutdown();
    EXPECT_NE(guard.failure().find("ncclCommFinalize) timed out on rank 0 (cuda:0) after 100 ms"), std::string::npos)
        << guard.failure();
    EXPECT_EQ(api->count("finalize"), 1);
    EXPECT_EQ(api->count("abort"), 1);
    EXPECT_EQ(api->count("destroy"), 0);
    expect_no_violations(*api);
  }
  {
    SCOPED_TRACE("an asynchronous error nobody has seen yet");
    auto api = fake();
    NcclGuard guard(api, 0, 2, "cuda:0", 10s);
    guard.init(kId);
    api->set_async_error("unhandled cuda error");
    guard.shutdown();
    EXPECT_NE(guard.failure().find("unhandled cuda error"), std::string::npos) << guard.failure();
    expect_aborted_not_closed(*api);
    expect_no_violations(*api);
  }
  {
    SCOPED_TRACE("init started but never finished");
    auto api = fake();
    api->init_polls = FakeNcclApi::kForever;
    NcclGuard guard(api, 0, 2, "cuda:0", 10s);
    guard.start_init(kId);
    guard.shutdown();
    expect_aborted_not_closed(*api);
    expect_no_violations(*api);
  }
}

// The watchdog (or any thread) aborting while another thread launches: NCCL never sees the abort
// during another call on the communicator, nor any call after it, and the launching thread stops
// with the reason. Many short rounds, with the abort landing at different points of the launch.
TEST(NcclGuard, AbortRacingLaunchIsSerialised) {
  for (int round = 0; round < 200; ++round) {
    SCOPED_TRACE(testing::Message() << "round " << round);
    auto api = fake();
    api->enqueue_polls = 2;
    api->pause_us = 20;
    NcclGuard guard(api, 0, 2, "cuda:0", 10s);
    guard.init(kId);
    std::atomic<int> launched{0};
    std::string error;
    std::thread launcher([&] {
      try {
        for (int i = 0; i < 100000; ++i) {
          guard.launch("all_reduce(sum)", kAllReduce);
          ++launched;
        }
      } catch (const Error& e) {
        error = e.what();
      }
    });
    while (launched < round % 5) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(37 * (round % 7)));
    guard.fail("injected abort " + std::to_string(round), /*print=*/false);
    launcher.join();
    EXPECT_NE(error.find("injected abort " + std::to_string(round)), std::string::npos) << error;
    guard.shutdown();
    expect_aborted_not_closed(*api);
    expect_no_violations(*api);
    if (::testing::Test::HasFailure()) break;  // one round's report is enough
  }
}

TEST(NcclGuard, LaunchBeforeInitSaysSo) {
  auto api = fake();
  NcclGuard guard(api, 0, 1, "cuda:0", 5s);
  expect_error([&] { guard.launch("broadcast", kBroadcast); }, {"rank 0, cuda:0", "not initialised"});
  expect_error([] { NcclGuard(fake(), 2, 2, "cuda:0", 5s); }, {"rank 2", "world size 2"});
}

}  // namespace
}  // namespace ember::test
