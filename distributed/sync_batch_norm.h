// SyncBatchNorm: batch normalisation whose training statistics are those of the global batch, i.e.
// of every rank's rows together (PyTorch's torch.nn.SyncBatchNorm). With small per-GPU batches the
// per-rank statistics are noisy; synchronising them makes N ranks of batch B normalise exactly like
// one process with batch N*B.
//
//   auto model = make_resnet();                              // any model with BatchNorm layers
//   distributed::convert_sync_batchnorm(*model, comm);       // in place; returns how many it converted
//   auto ddp = std::make_shared<nn::DistributedDataParallel>(model, comm);
//
// Forward (training): per channel, the local sum and element count are all-reduced (one collective
// of C + 1 values), giving the global mean; then the local sum of squared deviations from it is
// all-reduced, giving the global (biased) variance. Two passes, as a single process computes them,
// instead of sum and sum of squares in one pass, whose difference cancels badly. The running
// statistics are updated as BatchNorm does (unbiased variance, with the global count), identically
// on every rank.
// Backward: the normalisation is written with ordinary ops around a differentiable all-reduce, whose
// backward is again an all-reduce (sum) of the incoming gradient. So backward all-reduces the
// gradients of the two statistics, i.e. the two per-channel sums sum(dy) and sum(dy * x_hat) that
// PyTorch's kernel all-reduces, and the gradient can be differentiated again like any ember op.
// The weight and bias gradients stay local; DDP averages them with the others.
// Evaluation uses the running statistics and communicates nothing.
//
// Collectives run inside forward and backward, so every rank must run the same forwards and
// backwards (true under DDP). join() cannot shadow them: uneven inputs need equal step counts here
// (DDP::join throws on every rank once a rank runs out of data while a SyncBatchNorm trains).
#pragma once

#include <memory>

#include "distributed/communicator.h"
#include "nn/layers.h"

namespace ember::distributed {

// t summed over the ranks (a new tensor; t is not changed). Differentiable: the gradient of each
// rank's t is the sum over ranks of the gradients of the result. Collective.
Tensor all_reduce_sum(const std::shared_ptr<Communicator>& comm, const Tensor& t);

// Training-mode batch norm over the global batch; input [N, C, *] (N may differ between ranks).
// Updates running_mean / running_var (when defined) with `momentum`. Collective.
Tensor sync_batch_norm(const std::shared_ptr<Communicator>& comm, const Tensor& input, const Tensor& running_mean,
                       const Tensor& running_var, const Tensor& weight, const Tensor& bias, double momentum,
                       double eps);

// A BatchNorm layer for inputs [N, C, *] whose training statistics span the ranks of `comm`.
class SyncBatchNorm : public nn::BatchNorm {
 public:
  SyncBatchNorm(int64_t num_features, std::shared_ptr<Communicator> comm, nn::BatchNormOptions options = {});

 protected:
  void check_input(const Tensor& input) const override;
};

// Makes every BatchNorm layer in `module`'s tree synchronise its statistics over `comm` (in place:
// the layers keep their type, parameters and buffers; their training forward becomes
// sync_batch_norm). Returns the number of layers converted.
int convert_sync_batchnorm(nn::Module& module, std::shared_ptr<Communicator> comm);

}  // namespace ember::distributed
