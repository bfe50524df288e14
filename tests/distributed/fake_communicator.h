// An in-process Communicator for tests: a "world" of N ranks that are threads of this process.
// Every collective blocks until all N ranks have called it, then the last one to arrive computes
// the result for all of them (so every rank gets bit-identical values) and wakes the others. The
// async forms therefore complete before they return; what they test is the protocol (which
// collectives, in which order, on which tensors), not overlap. Counts the collectives it ran.
//
//   run_fake_world(2, [](std::shared_ptr<ember::distributed::Communicator> comm) { ... one rank ... });
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "distributed/communicator.h"

namespace ember::testing {

class FakeWorld {
 public:
  explicit FakeWorld(int size) : size_(size), slots_(size) {}
  int size() const { return size_; }

  // Rank `rank` contributes `t`; once all have, `combine(slots)` runs once (on the last arrival's
  // thread) with every rank's tensor, in rank order, and may write into any of them.
  void collective(int rank, std::vector<Tensor> t,
                  const std::function<void(std::vector<std::vector<Tensor>>&)>& combine) {
    std::unique_lock<std::mutex> lock(mu_);
    slots_[rank] = std::move(t);
    const uint64_t gen = generation_;
    if (++arrived_ == size_) {
      NoGradGuard no_grad;
      combine(slots_);
      ++collectives_;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }
  int64_t collectives() {
    std::lock_guard<std::mutex> lock(mu_);
    return collectives_;
  }

 private:
  int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::vector<Tensor>> slots_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  int64_t collectives_ = 0;
};

class FakeCommunicator : public distributed::Communicator {
 public:
  FakeCommunicator(std::shared_ptr<FakeWorld> world, int rank) : world_(std::move(world)), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_->size(); }
  Device device() const override { return kCPU; }
  std::string name() const override { return "fake"; }

  distributed::WorkHandle all_reduce_async(const Tensor& t, ReduceOp op) override {
    distributed::check_collective_op(std::string("all_reduce(") + reduce_op_name(op) + ")", op, t.dtype());
    ++all_reduces;
    world_->collective(rank_, {t}, [op](std::vector<std::vector<Tensor>>& s) {
      Tensor acc = s[0][0].clone();
      for (size_t r = 1; r < s.size(); ++r) {
        if (op == ReduceOp::Max)
          acc = maximum(acc, s[r][0]);
        else if (op == ReduceOp::Min)
          acc = minimum(acc, s[r][0]);
        else
          acc = acc + s[r][0];
      }
      if (op == ReduceOp::Mean) acc = acc / static_cast<double>(s.size());
      for (auto& v : s) v[0].copy_(acc);
    });
    return done();
  }
  distributed::WorkHandle broadcast_async(const Tensor& t, int root) override {
    ++broadcasts;
    world_->collective(rank_, {t}, [root](std::vector<std::vector<Tensor>>& s) {
      for (size_t r = 0; r < s.size(); ++r)
        if (static_cast<int>(r) != root) s[r][0].copy_(s[root][0]);
    });
    return done();
  }
  distributed::WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    world_->collective(rank_, {in, out}, [](std::vector<std::vector<Tensor>>& s) {
      const int64_t n = s[0][0].numel();
      for (auto& dst : s)
        for (size_t r = 0; r < s.size(); ++r) dst[1].narrow(0, r * n, n).copy_(s[r][0].reshape({n}));
    });
    return done();
  }
  distributed::WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    distributed::check_reduce_scatter_args(in, out, op, world_size(), [](const Tensor&, const std::string&) {});
    world_->collective(rank_, {in, out}, [op](std::vector<std::vector<Tensor>>& s) {
      Tensor acc = s[0][0].clone();
      for (size_t r = 1; r < s.size(); ++r)
        acc = op == ReduceOp::Max   ? maximum(acc, s[r][0])
              : op == ReduceOp::Min ? minimum(acc, s[r][0])
                                    : acc + s[r][0];
      if (op == ReduceOp::Mean) acc = acc / static_cast<double>(s.size());
      const int64_t n = s[0][1].numel();
      for (size_t r = 0; r < s.size(); ++r) s[r][1].copy_(acc.narrow(0, r * n, n).view(s[r][1].shape()));
    });
    return done();
  }
  void barrier() override {
    world_->collective(rank_, {}, [](std::vector<std::vector<Tensor>>&) {});
  }
  [[noreturn]] void abort(const std::string& reason) override {
    throw std::runtime_error("FakeCommunicator::abort: " + reason);
  }

  int64_t all_reduces = 0;  // started by this rank
  int64_t broadcasts = 0;

 private:
  struct DoneWork : distributed::Work {
    void wait() override {}
    bool is_completed() override { return true; }
  };
  static distributed::WorkHandle done() { return std::make_shared<DoneWork>(); }

  std::shared_ptr<FakeWorld> world_;
  int rank_;
};

// Runs body(comm) on `size` threads, one per rank; rethrows the first exception. A rank that
// throws while others wait in a collective would hang them, so bodies should not throw midway
// (GoogleTest's EXPECT_* never do).
inline void run_fake_world(int size, const std::function<void(std::shared_ptr<distributed::Communicator>)>& body) {
  auto world = std::make_shared<FakeWorld>(size);
  std::vector<std::exception_ptr> errors(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      try {
        body(std::make_shared<FakeCommunicator>(world, r));
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace ember::testing
