// NcclGuard: one NCCL communicator handle, driven through an NcclApi (distributed/nccl_api.h) so
// that no call can hang. It is the state machine of the NCCL communicator
// (distributed/nccl_communicator.cpp), kept free of CUDA so the tests drive it on the CPU with a
// fake (tests/test_nccl_guard.cpp).
//
//   Empty --start_init--> Initializing --finish_init--> Ready --shutdown--> Closed
//                              |                          |
//                              +--- timeout / error ------+--> Failed (NCCL aborted)
//
// - Init is nonblocking: start_init() calls ncclCommInitRankConfig, finish_init() polls
//   ncclCommGetAsyncError until the communicator is ready; on an error, or when `timeout` passes
//   (a peer never joined), it aborts and throws an Error naming the rank and the timeout.
// - launch() hands the collective to the watchdog BEFORE enqueueing it, so a collective that
//   cannot be enqueued (NCCL connects to peers lazily, at the first collective) is watched too;
//   then enqueues it and polls ncclInProgress under the same deadline.
// - A watchdog thread checks the collectives in flight (distributed/watchdog.h) and NCCL's
//   asynchronous error. On a timeout or an error it marks the guard Failed and aborts NCCL, and
//   nothing more: it never ends the job (under MPI_THREAD_SERIALIZED it must not call MPI). The
//   next call on this thread or any other (launch, check_usable from Work::wait, wait_host)
//   throws the reason, and the program's guarded main (run_guarded) aborts the job from there.
// - shutdown(): when healthy, waits (bounded) for the collectives in flight, then
//   ncclCommFinalize polled with the timeout, then ncclCommDestroy; when unhealthy, or when any
//   of that fails or times out, ncclCommAbort. Never both, never neither.
//
// Locks (why abort and launch cannot race): every call on the NCCL handle, ncclCommAbort
// included, is made under one mutex, comm_mutex_, and the state is checked under it before each
// call. A nonblocking communicator never waits inside a call, so comm_mutex_ is held only for
// moments and the watchdog can always take it to abort; and no enqueue starts on an aborted
// handle, because the launching thread sees Failed under the same lock. (One mutex rather than an
// abort flag read without it: NCCL allows one thread at a time on a communicator, for
// ncclCommGetAsyncError and ncclCommAbort as well.) launch_mutex_ orders whole launches (one
// collective at a time, polling included, in call order); only the callers' threads take it.
// The watchdog queries NCCL's error only when comm_mutex_ is free (try_lock), checks the deadlines
// in any case, and records a failure (and prints it) before it waits for comm_mutex_ to abort: so
// even a call stuck inside NCCL, which a nonblocking communicator should never have, is reported
// on time (the abort itself, and a shutdown, would then wait for that call to return).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "distributed/nccl_api.h"

namespace ember::distributed {

class NcclGuard {
 public:
  enum class State { Empty, Initializing, Ready, Failed, Closed };
  using Clock = std::chrono::steady_clock;

  // `where` names the device in messages ("cuda:0"); `timeout` bounds init, every collective
  // (from its launch) and shutdown.
  NcclGuard(std::shared_ptr<NcclApi> api, int rank, int world_size, std::string where,
            std::chrono::milliseconds timeout);
  ~NcclGuard();  // shutdown()
  NcclGuard(const NcclGuard&) = delete;
  NcclGuard& operator=(const NcclGuard&) = delete;

  // Creation in two steps, so that several communicators of one process can start theirs inside
  // one ncclGroupStart/ncclGroupEnd (distributed/nccl_communicator.cpp). init() does both.
  void start_init(const NcclUniqueId& id);  // Empty -> Initializing; throws (after aborting) on an error
  void finish_init();                       // Initializing -> Ready (watchdog started); throws on timeout
  void init(const NcclUniqueId& id) {
    start_init(id);
    finish_init();
  }

  // Registers `op` with the watchdog, enqueues `call` and polls it under the deadline, then
  // records the event marking its end (returned). Throws an Error naming `op` and the rank when
  // the guard has failed, or fails now (timeout, NCCL error, CUDA error).
  std::shared_ptr<NcclEvent> launch(const std::string& op, const NcclCall& call);

  // Blocks the host until `done` (from launch) has finished, within the timeout; throws like
  // launch. For barrier().
  void wait_host(const std::string& op, const std::shared_ptr<NcclEvent>& done);

  // Throws "NCCL communicator (rank R, where) is unusable: <reason>" once the guard has failed.
  void check_usable();

  // Marks the guard Failed with `reason` (printed to stderr unless `print` is false) and aborts
  // NCCL, once; later calls keep the first reason. Any thread. Never ends the job.
  void fail(const std::string& reason, bool print = true) noexcept;

  // See the top of the file. Never throws; a second call does nothing.
  void shutdown() noexcept;

  State state() const;
  bool healthy() const { return state() == State::Ready; }
  std::string failure() const;  // the reason, or "" while healthy
  // True once a caller was told of the failure by an exception (so somebody can abort the job).
  bool failure_reported() const;

  int rank() const { return rank_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  std::string timeout_message(const std::string& op) const;
  std::string error_message(const std::string& op, const std::string& error) const;

 private:
  struct InFlight {
    uint64_t id;
    std::string op;
    std::shared_ptr<NcclEvent> done;  // null while it is being enqueued
    Clock::time_point deadline;
  };

  // Polls get_async_error from `status` until it leaves InProgress. Fails the guard and throws on
  // an error (naming `op`) or at the deadline (`timeout_reason`); throws when another thread
  // failed it meanwhile.
  void poll(const std::string& op, NcclStatus status, Clock::time_point deadline, const std::string& timeout_reason);
  [[noreturn]] void throw_failure(const std::string& prefix);
  // The asynchronous error as text ("" when none, or when the handle is gone). Without
  // `wait_for_lock` (the watchdog), "" also when another thread is inside a call.
  std::string async_error(bool wait_for_lock);
  void watch();
  void stop_watchdog();
  void close_healthy();  // the healthy half of shutdown(); throws, and shutdown() then aborts

  const std::shared_ptr<NcclApi> api_;
  const int rank_;
  const int world_size_;
  const std::string where_;
  const std::chrono::milliseconds timeout_;

  std::mutex launch_mutex_;  // one launch at a time, in call order (callers' threads only)

  std::mutex comm_mutex_;  // every call on comm_; guards comm_ and aborted_
  NcclApi::Comm comm_ = nullptr;
  bool aborted_ = false;  // ncclCommAbort done: no call on comm_ may follow

  mutable std::mutex state_mutex_;  // taken after comm_mutex_ when both are needed, never before
  State state_ = State::Empty;
  std::string failure_;
  bool reported_ = false;
  std::deque<InFlight> in_flight_;  // launch order: the oldest at the front
  uint64_t next_id_ = 0;
  bool stopping_ = false;
  std::condition_variable wake_;
  std::thread watchdog_;
};

}  // namespace ember::distributed
