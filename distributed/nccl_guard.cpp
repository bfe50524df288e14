// NcclGuard: see nccl_guard.h. Host code only (no CUDA, no NCCL headers): the NCCL calls go
// through NcclApi, so this file is built, and tested with a fake, in every configuration.
#include "distributed/nccl_guard.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <utility>

#include "core/error.h"
#include "distributed/watchdog.h"

namespace ember::distributed {

namespace {

using namespace std::chrono_literals;

// The pause between two polls: a microsecond at first (an enqueue on one GPU takes a few), then
// doubling up to a millisecond, so a long wait costs little CPU and a short one little latency.
class Backoff {
 public:
  void sleep() {
    std::this_thread::sleep_for(pause_);
    if (pause_ < 1000us) pause_ *= 2;
  }

 private:
  std::chrono::microseconds pause_{1};
};

const char* state_name(NcclGuard::State s) {
  switch (s) {
    case NcclGuard::State::Empty: return "not initialised";
    case NcclGuard::State::Initializing: return "still initialising";
    case NcclGuard::State::Ready: return "ready";
    case NcclGuard::State::Failed: return "failed";
    case NcclGuard::State::Closed: return "shut down";
  }
  return "?";
}

}  // namespace

NcclGuard::NcclGuard(std::shared_ptr<NcclApi> api, int rank, int world_size, std::string where,
                     std::chrono::milliseconds timeout)
    : api_(std::move(api)), rank_(rank), world_size_(world_size), where_(std::move(where)), timeout_(timeout) {
  EMBER_CHECK(api_ != nullptr, "NcclGuard: no NcclApi given");
  EMBER_CHECK(world_size_ >= 1 && rank_ >= 0 && rank_ < world_size_, "NCCL communicator: rank ", rank_,
              " is not in [0, world size ", world_size_, ")");
  EMBER_CHECK(timeout_.count() > 0, "NCCL communicator: the timeout must be positive, got ", timeout_.count(), " ms");
}

NcclGuard::~NcclGuard() { shutdown(); }

std::string NcclGuard::timeout_message(const std::string& op) const {
  return detail::str_cat(op, " timed out on rank ", rank_, " (", where_, ") after ", timeout_.count(),
                         " ms (CommunicatorOptions::timeout): a peer rank has not called the same collective "
                         "(it failed, hangs, or called collectives in another order or with other sizes); "
                         "the NCCL communicator is aborted");
}

std::string NcclGuard::error_message(const std::string& op, const std::string& error) const {
  return detail::str_cat(op, " failed on rank ", rank_, " (", where_, "): ", error, "; the NCCL communicator is aborted");
}

NcclGuard::State NcclGuard::state() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return state_;
}

std::string NcclGuard::failure() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return failure_;
}

bool NcclGuard::failure_reported() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return reported_;
}

void NcclGuard::fail(const std::string& reason, bool print) noexcept {
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    if (state_ == State::Failed || state_ == State::Closed) return;  // the first reason stays
    state_ = State::Failed;
    failure_ = reason;
  }
  wake_.notify_all();
  // Printed before waiting for comm_mutex_: even if a call were stuck inside NCCL, the reason is out.
  if (print) {
    std::fprintf(stderr, "%s\n", reason.c_str());
    std::fflush(stderr);
  }
  std::lock_guard<std::mutex> lock(comm_mutex_);
  if (aborted_ || comm_ == nullptr) return;
  aborted_ = true;
  try {
    const NcclStatus s = api_->abort(comm_);  // its kernels return; the handle is freed
    if (s.is_error()) std::fprintf(stderr, "rank %d: ncclCommAbort: %s\n", rank_, s.message.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: ncclCommAbort: %s\n", rank_, e.what());
  }
}

void NcclGuard::throw_failure(const std::string& prefix) {
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    reported_ = true;
    reason = failure_;
  }
  EMBER_FAIL(prefix, reason);
}

void NcclGuard::check_usable() {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (state_ == State::Ready) return;
  if (state_ == State::Failed) {
    reported_ = true;
    EMBER_FAIL("NCCL communicator (rank ", rank_, ", ", where_, ") is unusable: ", failure_);
  }
  EMBER_FAIL("NCCL communicator (rank ", rank_, ", ", where_, ") is ", state_name(state_),
             ": it takes collectives only between its init and its shutdown");
}

void NcclGuard::start_init(const NcclUniqueId& id) {
  std::lock_guard<std::mutex> launching(launch_mutex_);
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    EMBER_CHECK(state_ == State::Empty, "NCCL communicator (rank ", rank_, ", ", where_, ") is ", state_name(state_),
                ": init runs once");
    state_ = State::Initializing;
  }
  NcclStatus s;
  {
    std::lock_guard<std::mutex> lock(comm_mutex_);
    s = api_->init_rank(&comm_, world_size_, id, rank_);
  }
  if (s.is_error()) {
    fail(error_message("NCCL communicator init (ncclCommInitRankConfig)", s.message));
    throw_failure("");
  }
}

void NcclGuard::finish_init() {
  {
    std::lock_guard<std::mutex> launching(launch_mutex_);
    if (state() != State::Initializing) check_usable();  // throws: failed, or never started
    const auto deadline = Clock::now() + timeout_;
    NcclStatus s;
    {
      std::lock_guard<std::mutex> lock(comm_mutex_);
      if (aborted_) throw_failure("");
      s = api_->get_async_error(comm_);
    }
    poll("NCCL communicator init", s, deadline,
         detail::str_cat("NCCL communicator init timed out on rank ", rank_, " of ", world_size_, " (", where_,
                         ") after ", timeout_.count(),
                         " ms (CommunicatorOptions::timeout): not every rank joined (one failed or was never "
                         "started, or the ranks were given different unique ids); the NCCL communicator is aborted"));
    std::lock_guard<std::mutex> lock(state_mutex_);
    EMBER_CHECK(state_ == State::Initializing, "NCCL communicator (rank ", rank_, ", ", where_, ") is ",
                state_name(state_), " at the end of its init");
    state_ = State::Ready;
  }
  watchdog_ = std::thread([this] { watch(); });
}

void NcclGuard::poll(const std::string& op, NcclStatus status, Clock::time_point deadline,
                     const std::string& timeout_reason) {
  Backoff backoff;
  while (status.is_in_progress()) {
    if (Clock::now() > deadline) {
      fail(timeout_reason);
      throw_failure("");
    }
    backoff.sleep();
    std::lock_guard<std::mutex> lock(comm_mutex_);
    // Another thread (the watchdog) may have failed the guard meanwhile: no call on an aborted handle.
    if (aborted_ || state() == State::Failed)
      throw_failure(detail::str_cat(op, " on rank ", rank_, " (", where_, ") stopped: "));
    status = api_->get_async_error(comm_);
  }
  if (status.is_error()) {
    fail(error_message(op, status.message));
    throw_failure("");
  }
}

std::shared_ptr<NcclEvent> NcclGuard::launch(const std::string& op, const NcclCall& call) {
  std::lock_guard<std::mutex> launching(launch_mutex_);
  check_usable();
  const auto deadline = Clock::now() + timeout_;
  uint64_t id = 0;
  {
    // The watchdog sees the collective from here on, before NCCL does.
    std::lock_guard<std::mutex> lock(state_mutex_);
    id = next_id_++;
    in_flight_.push_back({id, op, nullptr, deadline});
  }
  try {
    NcclStatus s;
    {
      std::lock_guard<std::mutex> lock(comm_mutex_);
      if (aborted_ || state() == State::Failed)
        throw_failure(detail::str_cat(op, " on rank ", rank_, " (", where_, ") not started: "));
      s = api_->enqueue(comm_, call);
    }
    poll(op, s, deadline, timeout_message(op));
  } catch (const std::exception& e) {
    // A call that threw (a CUDA error making the device current) leaves the collective half-made:
    // fail now rather than let the watchdog time it out. A no-op when poll() has failed it already.
    fail(error_message(op, e.what()));
    throw;
  }
  if (state() == State::Failed)  // another thread failed it while the enqueue ran: nothing to return
    throw_failure(detail::str_cat(op, " on rank ", rank_, " (", where_, ") stopped: "));
  // Only now is the collective on the stream (InProgress meant it was not yet): mark its end.
  std::shared_ptr<NcclEvent> done;
  try {
    done = api_->record_event();
  } catch (const std::exception& e) {
    fail(error_message(op, std::string("CUDA error after enqueueing it: ") + e.what()));
    throw_failure("");
  }
  std::lock_guard<std::mutex> lock(state_mutex_);
  for (auto it = in_flight_.rbegin(); it != in_flight_.rend(); ++it)
    if (it->id == id) {
      it->done = done;
      break;
    }
  return done;
}

void NcclGuard::wait_host(const std::string& op, const std::shared_ptr<NcclEvent>& done) {
  const auto deadline = Clock::now() + timeout_;
  Backoff backoff;
  for (;;) {
    check_usable();  // the watchdog may have failed the guard meanwhile
    bool finished = false;
    try {
      finished = done->query();
    } catch (const std::exception& e) {
      fail(error_message(op, std::string("CUDA error while waiting for it: ") + e.what()));
      throw_failure("");
    }
    if (finished) return;
    if (Clock::now() > deadline) {
      fail(timeout_message(op));
      throw_failure("");
    }
    backoff.sleep();
  }
}

std::string NcclGuard::async_error(bool wait_for_lock) {
  std::unique_lock<std::mutex> lock(comm_mutex_, std::defer_lock);
  if (wait_for_lock) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return "";  // a call is in progress on another thread; its own poll sees the error
  }
  if (aborted_ || comm_ == nullptr) return "";
  try {
    const NcclStatus s = api_->get_async_error(comm_);
    return s.is_error() ? s.message : "";  // InProgress: a launch or init is being polled, not an error
  } catch (const std::exception& e) {
    return e.what();
  }
}

// The watchdog thread. check_collectives never throws (distributed/watchdog.h); a failure only
// marks the guard Failed and aborts NCCL (see the top of nccl_guard.h for why not the job).
void NcclGuard::watch() {
  const auto period = std::clamp<std::chrono::milliseconds>(timeout_ / 10, 1ms, 1000ms);
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(state_mutex_);
      wake_.wait_for(lock, period, [this] { return stopping_ || state_ != State::Ready; });
      if (stopping_ || state_ != State::Ready) return;
    }
    // Before state_mutex_ (comm_mutex_ is never taken after it), and without waiting for a call in
    // progress: the deadlines below are checked even while another thread is inside NCCL.
    const std::string error = async_error(/*wait_for_lock=*/false);
    WatchdogVerdict verdict;
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      if (stopping_ || state_ != State::Ready) return;
      verdict = check_collectives(in_flight_, Clock::now(), [&] { return error; });
    }
    if (verdict.kind == WatchdogVerdict::Kind::TimedOut) fail(timeout_message(verdict.op));
    if (verdict.kind == WatchdogVerdict::Kind::Failed) fail(error_message(verdict.op, verdict.error));
  }
}

void NcclGuard::stop_watchdog() {
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

void NcclGuard::shutdown() noexcept {
  stop_watchdog();
  std::lock_guard<std::mutex> launching(launch_mutex_);
  switch (state()) {
    case State::Ready:
      try {
        close_healthy();
      } catch (const std::exception& e) {  // close_healthy has failed the guard already, or a query threw
        fail(error_message("shutdown", e.what()));
      }
      break;
    case State::Initializing: fail(detail::str_cat("NCCL communicator (rank ", rank_, ", ", where_,
                                                   ") shut down before its init finished; it is aborted"));
      break;
    case State::Empty:   // no handle
    case State::Failed:  // fail() has aborted it
    case State::Closed:  // finalized and destroyed
      break;
  }
}

// Healthy: every collective in flight finished (each within its own deadline), then finalize
// (polled: it waits for the peers' side too), then destroy. Any failure aborts instead, via fail().
void NcclGuard::close_healthy() {
  Backoff backoff;
  for (;;) {
    const std::string error = async_error(/*wait_for_lock=*/true);
    WatchdogVerdict verdict;
    bool idle = false;
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      verdict = check_collectives(in_flight_, Clock::now(), [&] { return error; });
      idle = in_flight_.empty();
    }
    if (verdict.kind == WatchdogVerdict::Kind::TimedOut) return fail(timeout_message(verdict.op + " (at shutdown)"));
    if (verdict.kind == WatchdogVerdict::Kind::Failed) return fail(error_message(verdict.op + " (at shutdown)", verdict.error));
    if (idle) break;
    backoff.sleep();
  }
  if (const std::string error = async_error(/*wait_for_lock=*/true); !error.empty())
    return fail(error_message("shutdown", "NCCL asynchronous error: " + error));

  NcclStatus s;
  {
    std::lock_guard<std::mutex> lock(comm_mutex_);
    s = api_->finalize(comm_);
  }
  poll("shutdown (ncclCommFinalize)", s, Clock::now() + timeout_,
       detail::str_cat("shutdown (ncclCommFinalize) timed out on rank ", rank_, " (", where_, ") after ",
                       timeout_.count(),
                       " ms (CommunicatorOptions::timeout): a peer has not finished the collectives issued before "
                       "it; the NCCL communicator is aborted"));

  std::lock_guard<std::mutex> lock(comm_mutex_);
  const NcclStatus destroyed = api_->destroy(comm_);
  comm_ = nullptr;  // freed (also when destroy reports an error: nothing else may use it)
  {
    std::lock_guard<std::mutex> state_lock(state_mutex_);
    state_ = State::Closed;
  }
  if (destroyed.is_error())
    std::fprintf(stderr, "rank %d (%s): ncclCommDestroy: %s\n", rank_, where_.c_str(), destroyed.message.c_str());
}

}  // namespace ember::distributed
