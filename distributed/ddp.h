// DistributedDataParallel: data-parallel training over a Communicator, shaped like PyTorch's
// torch.nn.parallel.DistributedDataParallel.
//
//   auto comm = distributed::make_mpi_communicator();          // one process per rank
//   auto model = nn::models::mnist_cnn();                     // nn/models/models.h
//   auto ddp = std::make_shared<nn::DistributedDataParallel>(model, comm);
//   optim::SGD opt(ddp->parameters(), 0.01);
//   for (auto& batch : loader) {                               // each rank: its own shard
//     Tensor loss = F::cross_entropy(ddp->forward(batch.data), batch.target);
//     ddp->zero_grad();
//     loss.backward();      // gradients are averaged over the ranks while backward runs
//     opt.step();           // every rank applies the same update: the replicas stay identical
//   }
//
// How it works:
//  * Construction first checks that every rank wraps the same model (distributed/handshake.h:
//    parameter and buffer names, shapes, dtypes and requires_grad, in order) and passes the same
//    bucket and buffer options; a mismatch throws on every rank, naming both ranks and the first
//    difference. Then it broadcasts rank 0's parameters and buffers, so every replica starts equal.
//  * Parameters are assigned to buckets of about bucket_cap_mb, in reverse registration order:
//    backward produces the last layers' gradients first, so the first bucket fills first.
//  * A gradient hook on each parameter (core/autograd.h: it fires once per backward, with the
//    parameter's final .grad) copies the gradient into its bucket's persistent flat buffer. When a
//    bucket is full it is all-reduced (ReduceOp::Mean) asynchronously at once, so communication overlaps
//    the rest of backward. Buckets start strictly in index order, the same on every rank, so the
//    collectives always match even if hooks fired in different orders on different ranks.
//  * When the last bucket has started, that hook waits on all of them and copies the averaged
//    values back into the .grad tensors: when loss.backward() returns, the gradients are final.
//
// Unused parameters (no gradient in a step). A bucket with a parameter whose hook never fires
// would never be reduced. Policy, as in PyTorch:
//  * find_unused_parameters = false (default, cheapest): every parameter must get a gradient in
//    every synced backward. If one did not, backward returns with the reduction unfinished and the
//    next forward() (or finish()) throws naming the parameters that got none.
//  * find_unused_parameters = true: forward() walks the output's autograd graph and records which
//    parameters it cannot reach; at the first hook of the backward those are marked ready with
//    their current local .grad (zeros if undefined). A reachable parameter that still got no
//    gradient is handled the same way by finish() (called by the next forward() automatically).
//  After a synced step every bucketed parameter's .grad is defined (the average over ranks,
//  zero where no rank used it), so optimizers treat all replicas alike.
//
// no_sync(): an RAII guard; backward passes run while it lives only accumulate .grad locally (no
// communication). The next backward outside it reduces the accumulated total, as PyTorch's
// no_sync context does (gradient accumulation over micro-batches).
//
// Buffers (BatchNorm statistics): with broadcast_buffers (default), every forward() first
// broadcasts rank 0's buffers, so all replicas normalise with the same statistics.
//
// The wrapper's parameters(), state_dict() and named_*() are the model's, with the model's own
// names (no "module." prefix): a checkpoint from a DDP run loads into the plain model and back.
// (The model's children and tensors are registered directly on the wrapper; do not register new
// parameters on the model after wrapping it.)
//
// Devices: the model must live on comm->device(). On CUDA, wait() orders the compute stream after
// the collective instead of blocking the host, so the copy-back is stream-ordered and the host
// never stalls; comm_wait_seconds is then only the host time spent enqueueing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "nn/module.h"

namespace ember::nn {

struct DDPOptions {
  double bucket_cap_mb = 25;            // a bucket closes once it holds at least this many MiB
  bool broadcast_buffers = true;        // rank 0's buffers are broadcast at each forward
  bool find_unused_parameters = false;  // see the header comment
  // After the reduction, .grad tensors are views into the bucket buffers instead of copies (saves
  // one copy and the memory of the gradients). They are overwritten by the next synced backward.
  bool gradient_as_bucket_view = false;

  DDPOptions bucket_cap(double mb) const {
    auto o = *this;
    o.bucket_cap_mb = mb;
    return o;
  }
  DDPOptions broadcast_buffers_each_forward(bool b) const {
    auto o = *this;
    o.broadcast_buffers = b;
    return o;
  }
  DDPOptions find_unused(bool f = true) const {
    auto o = *this;
    o.find_unused_parameters = f;
    return o;
  }
  DDPOptions grad_as_bucket_view(bool v = true) const {
    auto o = *this;
    o.gradient_as_bucket_view = v;
    return o;
  }
};

// What the reducer did; for tests and the scaling tool.
struct DDPStats {
  int64_t synced_steps = 0;  // backward passes whose reduction completed
  int64_t all_reduces = 0;   // bucket all-reduces started, over the whole run
  int64_t broadcasts = 0;    // broadcasts started (parameters at start-up, buffers per forward)
  // Per bucket: how many times it was all-reduced in the last synced step (1 each when healthy).
  std::vector<int> last_step_reductions;
  // Parameter indices (positions in parameters()) in the order their hooks fired during the last
  // backward, synced or not.
  std::vector<int64_t> last_hook_order;
  int64_t last_step_bytes = 0;        // bytes all-reduced in the last synced step
  double last_comm_wait_seconds = 0;  // host time blocked in Work::wait() in the last step
  double total_comm_wait_seconds = 0;
};

class DistributedDataParallel : public Module {
 public:
  DistributedDataParallel(std::shared_ptr<Module> model, std::shared_ptr<distributed::Communicator> comm,
                          DDPOptions options = {});
  ~DistributedDataParallel() override;

  // Broadcasts buffers (if enabled), finishes or rejects an unfinished previous reduction, runs the
  // model, and (with find_unused_parameters) records which parameters the output cannot reach.
  Tensor forward(const Tensor& input) override;
  void train(bool on = true) override;  // also sets the wrapped model's own flag

  // Completes the current step's reduction if backward left it unfinished (see "Unused
  // parameters"); a no-op otherwise. Collective: every rank must call it when one does.
  void finish();

  // Collective: throws on every rank unless all ranks will run `steps` synced steps this epoch
  // (a rank with fewer would leave the others waiting in an all-reduce). Call it once the data
  // loader is built, e.g. ddp->check_steps_per_epoch(loader.num_batches()).
  void check_steps_per_epoch(int64_t steps) const;

  class NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& ddp);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel& ddp_;
  };
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  const std::shared_ptr<Module>& module() const { return model_; }
  distributed::Communicator& communicator() const { return *comm_; }
  const DDPOptions& options() const { return options_; }
  int64_t num_buckets() const;
  // Parameter indices (positions in parameters()) of each bucket, in bucket order.
  std::vector<std::vector<int64_t>> bucket_parameters() const;
  const DDPStats& stats() const;

  class Reducer;  // ddp.cpp: buckets, hooks, the per-step state

 private:
  std::shared_ptr<Module> model_;
  std::shared_ptr<distributed::Communicator> comm_;
  DDPOptions options_;
  // Shared with the parameters' hooks through weak pointers: a hook that outlives the wrapper
  // (the model is used again without it) does nothing.
  std::shared_ptr<Reducer> reducer_;
};

// Broadcasts `tensors` from `root` with one collective per dtype (they are packed into a flat
// buffer and unpacked again). Collective; every tensor must live on comm.device().
void broadcast_coalesced(distributed::Communicator& comm, const std::vector<Tensor>& tensors, int root = 0);

}  // namespace ember::nn
