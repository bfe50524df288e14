// The NCCL watchdog's check of the collectives in flight (distributed/nccl_guard.cpp), as
// plain host code so that it is tested on the CPU with fake events (tests/test_nccl_watchdog.cpp).
//
// Why it must never throw: it runs on the watchdog thread, which has nobody to catch for it. An
// event query throws on any sticky CUDA error (a device assert in an index kernel, an illegal
// address), and an exception leaving the thread is std::terminate: no ncclCommAbort and no
// job-wide abort, so the other ranks would wait for their timeout. A failed query is instead a
// reason to abort, like NCCL's own asynchronous errors.
#pragma once

#include <chrono>
#include <deque>
#include <exception>
#include <string>

namespace ember::distributed {

struct WatchdogVerdict {
  enum class Kind { Healthy, Failed, TimedOut };
  Kind kind = Kind::Healthy;
  std::string op;     // the oldest collective still in flight (Failed, TimedOut)
  std::string error;  // what went wrong (Failed)
  bool healthy() const { return kind == Kind::Healthy; }
};

// Drops the finished collectives from the front of `in_flight` (oldest first; each entry has `op`,
// `done` with done->query(), and `deadline`), then judges the oldest one left: Failed when
// async_error() returns a message or a query throws, TimedOut when it is past its deadline.
// An entry whose `done` is null is still being enqueued (NcclGuard::launch registers it first):
// it is not finished, and times out like any other.
template <typename Entry, typename AsyncError>
WatchdogVerdict check_collectives(std::deque<Entry>& in_flight, std::chrono::steady_clock::time_point now,
                                  AsyncError&& async_error) {
  using Kind = WatchdogVerdict::Kind;
  try {
    while (!in_flight.empty() && in_flight.front().done && in_flight.front().done->query()) in_flight.pop_front();
    if (in_flight.empty()) return {};  // nothing outstanding: nothing can hang
    const Entry& oldest = in_flight.front();
    if (std::string error = async_error(); !error.empty())
      return {Kind::Failed, oldest.op, "NCCL asynchronous error: " + error};
    if (now > oldest.deadline) return {Kind::TimedOut, oldest.op, ""};
    return {};
  } catch (const std::exception& e) {
    const std::string op = in_flight.empty() ? std::string("a collective") : in_flight.front().op;
    return {Kind::Failed, op, std::string("CUDA error while checking whether it finished: ") + e.what()};
  }
}

}  // namespace ember::distributed
