// SyncBatchNorm: see sync_batch_norm.h.
#include "distributed/sync_batch_norm.h"

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"

namespace ember::distributed {

Tensor all_reduce_sum(const std::shared_ptr<Communicator>& comm, const Tensor& t) {
  Tensor out = t.detach().contiguous().clone();
  comm->all_reduce(out, ReduceOp::Sum);
  if (grad_needed(t))
    // out_s = sum_r t_r on every rank s, so d(loss)/d(t_r) = sum_s d(loss)/d(out_s): the same
    // all-reduce on the gradients. Written with this function, so it is differentiable again.
    record("all_reduce_sum", out, {t}, [comm](const Tensor& g, NeedsGrad) -> Grads { return {all_reduce_sum(comm, g)}; });
  return out;
}

Tensor sync_batch_norm(const std::shared_ptr<Communicator>& comm, const Tensor& input, const Tensor& running_mean,
                       const Tensor& running_var, const Tensor& weight, const Tensor& bias, double momentum,
                       double eps) {
  EMBER_CHECK(input.dim() >= 2, "sync_batch_norm: expected an input [N, C, *] with at least 2 dims, got ",
              input.shape());
  EMBER_CHECK(input.device() == comm->device(), "sync_batch_norm: input is on ", input.device(), " but the ",
              comm->name(), " communicator works on ", comm->device());
  const int64_t N = input.size(0), C = input.size(1);
  // S spelled out, not -1: a rank whose batch is empty (N = 0) still takes part in the all-reduces
  // (its count is 0), and reshape cannot infer -1 next to a 0.
  int64_t S = 1;
  for (int d = 2; d < input.dim(); ++d) S *= input.size(d);
  // Statistics in float32 for 16-bit inputs, as batch_norm under autocast (core/autocast.h): a
  // bfloat16 count or sum of squares would round (4900 values count as 4896).
  const Tensor x = (is_reduced_floating(input.dtype()) ? input.to(kFloat32) : input).reshape({N, C, S});  // [N, C, S]
  const Shape per_channel{1, C, 1};

  // Pass 1: global mean. The count rides along with the sums, so ranks may hold different N.
  const Tensor count = full({1}, static_cast<double>(x.numel() / C), TensorOptions(x.dtype()).device(x.device()));
  const Tensor sums = all_reduce_sum(comm, cat({x.sum({0, 2}), count}));  // [C + 1]
  const double n = sums.narrow(0, C, 1).item();
  EMBER_CHECK(n > 1, "sync_batch_norm: expected more than 1 value per channel over all ranks when training, got ",
              n, " (this rank's input ", input.shape(), ")");
  const Tensor mean = sums.narrow(0, 0, C) / n;  // [C]

  // Pass 2: global biased variance, from deviations about the global mean.
  const Tensor centered = x - mean.view(per_channel);
  const Tensor var = all_reduce_sum(comm, centered.pow(2).sum({0, 2})) / n;  // [C]
  Tensor y = centered * (var + eps).pow(-0.5).view(per_channel);
  if (weight.defined()) y = y * weight.view(per_channel);
  if (bias.defined()) y = y + bias.view(per_channel);

  if (running_mean.defined()) {
    NoGradGuard no_grad;
    // As BatchNorm: running = (1 - momentum) * running + momentum * batch, unbiased variance.
    Tensor(running_mean).mul_(1 - momentum).add_(mean.detach(), momentum);
    Tensor(running_var).mul_(1 - momentum).add_(var.detach() * (n / (n - 1)), momentum);
  }
  return y.reshape(input.shape());  // float32 for a 16-bit input, as batch_norm under autocast
}

SyncBatchNorm::SyncBatchNorm(int64_t num_features, std::shared_ptr<Communicator> comm, nn::BatchNormOptions options)
    : BatchNorm("SyncBatchNorm", num_features, options) {
  convert_sync_batchnorm(*this, std::move(comm));
}

void SyncBatchNorm::check_input(const Tensor& input) const {
  EMBER_CHECK(input.dim() >= 2, "SyncBatchNorm: expected an input [N, C, *] with at least 2 dims, got ",
              input.shape());
  EMBER_CHECK(input.size(1) == num_features, "SyncBatchNorm: input ", input.shape(), " has ", input.size(1),
              " channels, expected num_features=", num_features);
}

int convert_sync_batchnorm(nn::Module& module, std::shared_ptr<Communicator> comm) {
  EMBER_CHECK(comm != nullptr, "convert_sync_batchnorm: communicator is null");
  int converted = 0;
  module.apply([&](nn::Module& m) {
    auto* bn = dynamic_cast<nn::BatchNorm*>(&m);
    if (bn == nullptr) return;
    bn->training_forward = [comm](const nn::BatchNorm& self, const Tensor& input, double momentum) {
      return sync_batch_norm(comm, input, self.options.track_running_stats ? self.running_mean : Tensor(),
                             self.options.track_running_stats ? self.running_var : Tensor(), self.weight, self.bias,
                             momentum, self.options.eps);
    };
    ++converted;
  });
  return converted;
}

}  // namespace ember::distributed
