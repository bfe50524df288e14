// Collective communication between the processes (ranks) of a data-parallel job.
//
// One Communicator per process: rank() in [0, world_size()), all on the same kind of device.
//   MpiCommunicator  (distributed/mpi_communicator.*)  — CPU tensors, over MPI. CI tests DDP with it.
//   NcclCommunicator (distributed/nccl_communicator.*) — CUDA tensors, one process (or thread) per GPU;
//                    its ncclUniqueId travels over MPI, so `mpirun` launches both kinds alike.
//
// Every collective has an asynchronous form returning a Work handle and a blocking form that waits
// on it. Collectives work in place on contiguous tensors, and every rank must call the same
// collectives in the same order with the same shapes and dtypes (checked where it is cheap, e.g.
// sizes at start-up; a mismatch elsewhere is reported by the timeout, naming the op).
//
// What "done" means differs by device, as in PyTorch: for CPU tensors wait() returns when the
// result is in the tensor; for CUDA tensors wait() makes the compute stream wait for the
// collective (the host does not block), so kernels queued afterwards see the result.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/reduce_op.h"
#include "core/tensor.h"

namespace ember::distributed {

// Collectives reduce with core's ReduceOp (core/reduce_op.h): Sum, Mean (the average over ranks),
// Max and Min. Shared check of every implementation: throws, naming the collective and the op, for
// ArgMax / ArgMin (not a reduction of values across ranks) and for Mean of an integer tensor (an
// integer average would round). `collective` is e.g. "all_reduce(mean)".
void check_collective_op(const std::string& collective, ReduceOp op, DType dtype);

// Shared argument check of all_gather (in [n] -> out [world_size * n]) and reduce_scatter
// (in [world_size * n] -> out [n]) for every implementation: same dtype, and the larger tensor
// holds world_size times the elements of the smaller. `op` names the collective in the error.
void check_world_sized(const std::string& op, const Tensor& in, const Tensor& out, int world_size,
                       bool out_is_larger);

// A backend's own check of one tensor passed to a collective (device, contiguity, a dtype it can
// send); `what` names the collective and the argument, e.g. "reduce_scatter(sum) (in)".
using TensorCheck = std::function<void(const Tensor& t, const std::string& what)>;

// Every implementation's argument checks of reduce_scatter, in one place: `check_tensor` on in and
// out, then check_world_sized (in [world_size * n] -> out [n]) and check_collective_op. Returns
// the collective's name for later messages, e.g. "reduce_scatter(sum)".
std::string check_reduce_scatter_args(const Tensor& in, const Tensor& out, ReduceOp op, int world_size,
                                      const TensorCheck& check_tensor);

// A collective in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks (CPU) or orders the compute stream after the collective (CUDA). Throws ember::Error
  // naming the op, the rank and the timeout when the collective does not finish in time.
  virtual void wait() = 0;
  virtual bool is_completed() = 0;  // never blocks
};
using WorkHandle = std::shared_ptr<Work>;

struct CommunicatorOptions {
  // How long a collective may take before it is declared hung: the waiting rank throws an Error
  // naming the op and the ranks, and the job is aborted so no rank hangs forever.
  // MPI counts from the call to wait() (MPI only makes progress inside it); NCCL counts from the
  // launch (its watchdog thread watches every collective in flight).
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual Device device() const = 0;  // tensors passed in must live here
  virtual std::string name() const = 0;  // "mpi" or "nccl"

  // t <- op over ranks of t (in place); op is Sum, Mean, Max or Min (check_collective_op).
  virtual WorkHandle all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  // t <- rank root's t.
  virtual WorkHandle broadcast_async(const Tensor& t, int root = 0) = 0;
  // out [world_size * n] <- the concatenation of every rank's in [n] (flattened), in rank order.
  virtual WorkHandle all_gather_async(const Tensor& in, const Tensor& out) = 0;
  // out [n] <- op over ranks of this rank's slice of in [world_size * n].
  virtual WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::Sum) = 0;
  virtual void barrier() = 0;

  // Kills every rank of the job (MPI_Abort / ncclCommAbort) after printing `reason`; for a rank
  // that cannot go on, so the others stop instead of waiting for it.
  [[noreturn]] virtual void abort(const std::string& reason) = 0;

  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) { all_reduce_async(t, op)->wait(); }
  void broadcast(const Tensor& t, int root = 0) { broadcast_async(t, root)->wait(); }
  void all_gather(const Tensor& in, const Tensor& out) { all_gather_async(in, out)->wait(); }
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::Sum) {
    reduce_scatter_async(in, out, op)->wait();
  }
};

}  // namespace ember::distributed
