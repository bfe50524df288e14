// A scripted NcclApi (distributed/nccl_api.h) for the CPU tests of NcclGuard
// (tests/test_nccl_guard.cpp). It plays a nonblocking NCCL communicator and its CUDA events:
//
//   init_polls / enqueue_polls / finalize_polls   get_async_error says InProgress that many times
//                                   after init_rank / each enqueue / finalize (kForever: always)
//   collectives_finish = false      a peer never arrives: no event ever completes
//   set_async_error("...")          NCCL reports an asynchronous error from now on
//   sticky_cuda_error = true        every event query throws, as after a device assert
//   enqueue_blocks = true           an enqueue blocks inside NCCL until release_enqueue()
//   enqueue_throws = "..."          an enqueue throws (the real table's cudaSetDevice failing)
//
// and it checks NCCL's rules as it goes, recording every breach in violations(): two calls on the
// communicator at once (NCCL allows one thread at a time), any call after abort or destroy, a
// new call while the last one is still InProgress, and an event recorded before its collective
// was on the stream. calls() lists every call in order.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "distributed/nccl_api.h"

namespace ember::test {

class FakeNcclApi : public distributed::NcclApi,
                    public std::enable_shared_from_this<FakeNcclApi> {
 public:
  using NcclStatus = distributed::NcclStatus;
  static constexpr int kForever = -1;

  // The script. Plain ints are set before the guard starts; the atomics may change while it runs.
  int init_polls = 0;
  int enqueue_polls = 0;
  int finalize_polls = 0;
  std::string init_error;  // init_rank itself fails with this
  std::string enqueue_throws;  // enqueue throws ember::Error with this (a CUDA error in the table itself)
  std::atomic<bool> collectives_finish{true};
  std::atomic<bool> sticky_cuda_error{false};
  std::atomic<bool> enqueue_blocks{false};
  std::atomic<int> pause_us{0};  // each call on the communicator lingers this long (widens races)

  void set_async_error(const std::string& error) {
    std::lock_guard<std::mutex> lock(mutex_);
    async_error_ = error;
  }
  void release_enqueue() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      enqueue_released_ = true;
    }
    cv_.notify_all();
  }
  bool inside_enqueue() const { return inside_enqueue_; }

  // What happened.
  std::vector<std::string> calls() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }
  int count(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int>(std::count(calls_.begin(), calls_.end(), name));
  }
  // Index of the first call named `name` at or after `from`, or -1.
  int find(const std::string& name, int from = 0) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int i = from; i < static_cast<int>(calls_.size()); ++i)
      if (calls_[i] == name) return i;
    return -1;
  }
  std::vector<std::string> violations() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return violations_;
  }

  // ---- NcclApi ----
  NcclStatus init_rank(Comm* comm, int, const distributed::NcclUniqueId&, int) override {
    Call call(*this, "init_rank");
    *comm = &handle_;
    if (!init_error.empty()) return NcclStatus::error(init_error);
    return start(init_polls);
  }

  NcclStatus get_async_error(Comm comm) override {
    Call call(*this, "get_async_error", comm);
    std::lock_guard<std::mutex> lock(mutex_);
    if (!async_error_.empty()) return NcclStatus::error(async_error_);
    if (pending_polls_ == 0) return NcclStatus::success();
    if (pending_polls_ > 0) --pending_polls_;
    return NcclStatus::in_progress();
  }

  NcclStatus enqueue(Comm comm, const distributed::NcclCall&) override {
    Call call(*this, "enqueue", comm);
    if (!enqueue_throws.empty()) EMBER_FAIL(enqueue_throws);
    if (enqueue_blocks) {  // a lazy connect that blocks although the communicator is nonblocking
      inside_enqueue_ = true;
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait_for(lock, std::chrono::seconds(10), [this] { return enqueue_released_; });
      inside_enqueue_ = false;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!async_error_.empty()) return NcclStatus::error(async_error_);
    }
    return start(enqueue_polls);
  }

  std::shared_ptr<distributed::NcclEvent> record_event() override {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.push_back("record_event");
    if (pending_polls_ != 0) violations_.push_back("record_event before the collective was enqueued (still InProgress)");
    return std::make_shared<Event>(shared_from_this());
  }

  NcclStatus finalize(Comm comm) override {
    Call call(*this, "finalize", comm);
    return start(finalize_polls);
  }

  NcclStatus destroy(Comm comm) override {
    Call call(*this, "destroy", comm);
    destroyed_ = true;
    return NcclStatus::success();
  }

  NcclStatus abort(Comm comm) override {
    Call call(*this, "abort", comm);
    aborted_ = true;
    return NcclStatus::success();
  }

 private:
  class Event : public distributed::NcclEvent {
   public:
    explicit Event(std::shared_ptr<FakeNcclApi> api) : api_(std::move(api)) {}
    bool query() override {
      if (api_->sticky_cuda_error)
        EMBER_FAIL("cuda/runtime.cpp:80: cudaEventQuery: an illegal memory access was encountered");
      return api_->collectives_finish;
    }

   private:
    std::shared_ptr<FakeNcclApi> api_;
  };

  // One call on the communicator: logged, checked against NCCL's rules, and made to linger.
  class Call {
   public:
    Call(FakeNcclApi& api, const std::string& name, Comm comm = nullptr) : api_(api) {
      const bool overlapping = api_.inside_.fetch_add(1) != 0;
      {
        std::lock_guard<std::mutex> lock(api_.mutex_);
        api_.calls_.push_back(name);
        if (overlapping) api_.violations_.push_back(name + " while another call was inside NCCL");
        if (api_.aborted_) api_.violations_.push_back(name + " after abort");
        if (api_.destroyed_) api_.violations_.push_back(name + " after destroy");
        if (name != "init_rank" && comm != &api_.handle_) api_.violations_.push_back(name + " on a wrong handle");
        const bool may_overlap_progress = name == "get_async_error" || name == "abort";
        if (!may_overlap_progress && api_.pending_polls_ != 0)
          api_.violations_.push_back(name + " while the previous call was still InProgress");
      }
      if (const int us = api_.pause_us) std::this_thread::sleep_for(std::chrono::microseconds(us));
    }
    ~Call() { api_.inside_.fetch_sub(1); }

   private:
    FakeNcclApi& api_;
  };

  NcclStatus start(int polls) {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_polls_ = polls;
    return polls == 0 ? NcclStatus::success() : NcclStatus::in_progress();
  }

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int handle_ = 0;  // its address is the communicator handle
  int pending_polls_ = 0;
  std::string async_error_;
  bool enqueue_released_ = false;
  std::atomic<bool> inside_enqueue_{false};
  std::atomic<int> inside_{0};
  std::atomic<bool> aborted_{false};
  std::atomic<bool> destroyed_{false};
  std::vector<std::string> calls_;
  std::vector<std::string> violations_;
};

}  // namespace ember::test
