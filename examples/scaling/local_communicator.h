// A Communicator for a world of one process: every collective is the identity (all_gather and
// reduce_scatter copy in to out). The scaling tool measures its 1-rank baseline with it, and the
// examples fall back to it when ember was built without MPI.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "distributed/communicator.h"

namespace ember::examples {

class LocalCommunicator final : public distributed::Communicator {
 public:
  explicit LocalCommunicator(Device device = kCPU) : device_(device) {}
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  Device device() const override { return device_; }
  std::string name() const override { return "local"; }

  distributed::WorkHandle all_reduce_async(const Tensor&, ReduceOp) override { return done(); }
  distributed::WorkHandle broadcast_async(const Tensor&, int) override { return done(); }
  distributed::WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    Tensor(out).copy_(in.reshape({in.numel()}));
    return done();
  }
  distributed::WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp) override {
    Tensor(out).copy_(in.reshape(out.shape()));
    return done();
  }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& reason) override { throw std::runtime_error(reason); }

 private:
  struct Done final : distributed::Work {
    void wait() override {}
    bool is_completed() override { return true; }
  };
  static distributed::WorkHandle done() { return std::make_shared<Done>(); }
  Device device_;
};

}  // namespace ember::examples
