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
//  * Parameters are assigned to buckets in reverse registration order (backward produces the last
//    layers' gradients first). The first bucket is small (first_bucket_mb, 1 MiB as in PyTorch) so
//    communication starts early in backward; the others close at bucket_cap_mb.
//  * After the first synced step the buckets are rebuilt once from the order in which gradients
//    actually became ready (the registration order is only a guess: a model may use its layers in
//    another order). Ranks could observe different orders, so rank 0's (inside join(): the lowest
//    rank still training) is broadcast and used by all. Unused parameters go last.
//  * A gradient hook on each parameter (core/autograd.h: it fires once per backward, with the
//    parameter's final .grad) copies the gradient into its bucket's persistent flat buffer. A
//    bucket whose gradients are all in is reduced asynchronously at once (ReduceOp::Mean, or the
//    registered comm hook), so communication overlaps the rest of backward.
//    Launch order: every backend (MPI, Gloo, NCCL) matches collectives by the order in which each
//    rank issues them, so all ranks must launch the buckets in the same order. Buckets therefore
//    start in bucket index order, as PyTorch's reducer does: a bucket that is complete before its
//    predecessor waits only until the predecessor is complete too. The rebuild above makes the index
//    order the observed ready order, so in a steady state each bucket starts the moment it is full.
//  * Progress: MPI advances a non-blocking collective only while some MPI call runs on the rank.
//    DDP polls the buckets in flight (Work::is_completed, i.e. MPI_Test) from every gradient hook,
//    so communication proceeds between layers while backward runs. A progress thread was not
//    chosen: it would need MPI_THREAD_MULTIPLE or contend for the communicator's lock, and on a
//    machine where the ranks share cores it takes a core from the computation it should overlap.
//    Polling needs only the Communicator interface, so Gloo and NCCL get it unchanged. The gap:
//    no progress inside one long layer's backward.
//  * When the last bucket has started, that hook waits on all of them and copies the averaged
//    values back into the .grad tensors: when loss.backward() returns, the gradients are final.
//  * Measured overlap (DDPStats): per bucket, when it became ready, was launched and was seen
//    complete; its communication is "hidden" for the part that ran before the last gradient was
//    ready (backward still computing), "exposed" for the rest (PyTorch's DDP logger measures the
//    same overlap of communication with backward compute).
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
// broadcasts rank 0's buffers (inside join(): the lowest rank still training), so all replicas
// normalise with the same statistics.
//
// Uneven inputs: join(loop) runs this rank's training loop; a rank that runs out of data keeps
// taking part in the others' collectives until every rank is out (PyTorch's Join context manager):
//   ddp->join([&] { for (auto& batch : my_shard) train_step(batch); });
// Inside join() every forward first all-reduces which ranks are still training (a [W + 1] int64
// vector: one flag per rank and whether the step will sync). A rank whose loop has ended answers
// with zeros, then shadows the step: the same buffer broadcast and the same bucket reductions with
// zero gradients. The gradients are divided by the world size (divide_by_initial_world_size, the
// default, as PyTorch) or by the number of ranks still training. When no rank is training, every
// rank takes the parameters and buffers of the lowest rank that trained longest (a joined rank's
// optimizer did not step).
// What a joined rank's tensors hold, as with PyTorch's Join (its joined ranks reduce
// Reducer::get_grad_buckets(return_zero_tensors=true), i.e. fresh zero buffers, and discard the
// result; Join's post-hook then syncs the final model from the last rank to join):
//  * its zero contributions come from scratch buffers: its .grad tensors (with
//    gradient_as_bucket_view: views into its bucket buffers) keep the gradients of its own last
//    step, and the shadowed averages are discarded;
//  * its parameters do not follow the shadowed steps (it runs no optimizer step) until join() ends,
//    when every rank takes the state of the rank that trained longest (its gradients stay local).
// Misuse inside join() is reported on every rank at the next join round (each forward's first
// collective), after the faulty step's reductions were completed with zeros, so no rank hangs:
//  * a forward with grad mode on and outside no_sync must be followed by a backward before the next
//    forward or the end of the loop (the joined ranks reduce zeros for that step and wait for it);
//  * a backward in which some parameter got no gradient (find_unused_parameters off);
//  * a model whose forward runs collectives (SyncBatchNorm in training mode) once some rank has
//    joined: the joined rank cannot take part in them; likewise when only some training ranks run
//    them (the others' SyncBatchNorm in evaluation mode). PyTorch documents SyncBatchNorm as
//    unsupported inside join() (it hangs there); ember throws on every rank instead.
//
// The wrapper's parameters(), state_dict() and named_*() are the model's, with the model's own
// names (no "module." prefix): a checkpoint from a DDP run loads into the plain model and back.
// (The model's children and tensors are registered directly on the wrapper; do not register new
// parameters on the model after wrapping it, nor convert it with model->to(...): every forward()
// checks that the model's parameters are still the tensors, shapes, dtypes and devices DDP wrapped,
// and throws naming the rank and the parameter otherwise.)
//
// Devices: the model must live on comm->device(). On CUDA, wait() orders the compute stream after
// the collective instead of blocking the host, so the copy-back is stream-ordered and the host
// never stalls; comm_wait_seconds is then only the host time spent enqueueing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "distributed/comm_hooks.h"
#include "distributed/communicator.h"
#include "nn/module.h"

namespace ember::nn {

struct DDPOptions {
  double bucket_cap_mb = 25;            // a bucket closes once it holds at least this many MiB
  double first_bucket_mb = 1;           // ... the first one already at min(this, bucket_cap_mb)
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
  DDPOptions first_bucket(double mb) const {
    auto o = *this;
    o.first_bucket_mb = mb;
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

// One bucket's communication in the last synced step. Times are seconds on std::chrono::steady_clock
// (time_since_epoch), so a caller can relate them to its own clock readings.
struct BucketTiming {
  int64_t bytes = 0;
  double ready_s = 0;   // its last gradient arrived
  double launch_s = 0;  // its reduction started (ready, and every earlier bucket started)
  double done_s = 0;    // its reduction was first seen complete (polled from hooks, or waited on)
};

// What the reducer did; for tests and the scaling tool.
struct DDPStats {
  int64_t synced_steps = 0;  // backward passes whose reduction completed (and join()'s shadowed steps)
  int64_t all_reduces = 0;   // bucket reductions started, over the whole run
  int64_t broadcasts = 0;    // broadcasts started (parameters at start-up, buffers per forward)
  int64_t bucket_rebuilds = 0;  // 1 once the buckets follow the observed gradient order
  int64_t joined_steps = 0;     // steps this rank shadowed inside join() after its data ran out
  // Per bucket: how many times it was all-reduced in the last synced step (1 each when healthy).
  std::vector<int> last_step_reductions;
  // Parameter indices (positions in parameters()) in the order their hooks fired during the last
  // backward, synced or not.
  std::vector<int64_t> last_hook_order;
  int64_t last_step_bytes = 0;        // bytes all-reduced in the last synced step
  double last_comm_wait_seconds = 0;  // host time blocked in Work::wait() in the last step
  double total_comm_wait_seconds = 0;
  // Overlap, per synced step: communication time is the sum over buckets of done - launch; the
  // hidden part of a bucket is what ran before the last gradient became ready (backward_end_s).
  std::vector<BucketTiming> last_buckets;
  double last_backward_end_s = 0;
  double last_comm_seconds = 0, last_comm_hidden_seconds = 0;
  double total_comm_seconds = 0, total_comm_hidden_seconds = 0;
  // Hidden / total communication time over the run (0 when nothing was communicated).
  double overlap() const { return total_comm_seconds > 0 ? total_comm_hidden_seconds / total_comm_seconds : 0; }
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

  // Uneven inputs (see the header comment): runs `loop` (this rank's training loop), then shadows
  // the other ranks' steps until every rank's loop has ended, then every rank takes the state of
  // the rank that trained longest. Collective: every rank calls it once per epoch.
  void join(const std::function<void()>& loop, bool divide_by_initial_world_size = true);

  // Replaces the bucket all-reduce with `hook` (comm_hooks.h). Every rank must register the same
  // hook, before the first backward.
  void register_comm_hook(distributed::CommHook hook);

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
  // join(): while its loop runs, forward() first agrees with the other ranks on who still trains.
  bool joining_ = false;
  bool join_divide_by_initial_world_size_ = true;
  int join_last_root_ = 0;  // the lowest rank still training in the last step anyone trained

  // join(): whether the last forward inside it promised a synced step, and stats().synced_steps
  // then (unchanged at the next forward: no backward ran).
  bool join_step_syncs_ = false;
  int64_t join_step_synced_at_ = 0;
  std::string join_misuse_detail_;  // this rank's missing parameter names, for the error

  // What a rank's last step inside join() did wrong; every rank reports it at the next round.
  enum class JoinMisuse : int64_t { None = 0, NoBackward = 1, MissingGradients = 2 };
  // Completes the reductions this rank's last step left unstarted (so every rank reaches the next
  // round) and says what was wrong with it.
  JoinMisuse settle_join_step();
  // True when the model's forward runs collectives of its own (SyncBatchNorm in training mode).
  bool forward_communicates() const;

  // One join round: every rank says whether it trains this step, whether the step syncs, and
  // whether its last step was misused; throws on every rank alike when a step cannot be shadowed.
  struct JoinRound {
    int active = 0;   // ranks still training
    int syncing = 0;  // of them, ranks whose step reduces gradients
    int root = 0;     // the lowest training rank: source of buffers and of the bucket order
  };
  JoinRound join_round(bool active, bool syncs, JoinMisuse misuse);
  // The part of forward() before the model runs that every rank (training or joined) must do alike.
  void agree_before_step(int root);
};

// Broadcasts `tensors` from `root` with one collective per dtype (they are packed into a flat
// buffer and unpacked again). Collective; every tensor must live on comm.device().
void broadcast_coalesced(distributed::Communicator& comm, const std::vector<Tensor>& tensors, int root = 0);

}  // namespace ember::nn
