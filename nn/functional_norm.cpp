// batch_norm and layer_norm: one fused kernel forward (statistics, normalisation and the affine
// transform in one pass per channel / row) and one fused kernel backward (all three gradients),
// from core/cpu/cpu_norm.cpp on the CPU. The kernels see the input as [N, C, S] (batch norm) or
// [rows, features] (layer norm), which for a contiguous tensor are free views.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "nn/functional.h"
#include "nn/functional_util.h"

namespace ember::nn::functional {

namespace {

// A per-channel (or per-feature) parameter must have exactly `shape`.
void check_param(const char* op, const Tensor& input, const Tensor& t, const char* what, const Shape& shape) {
  if (!t.defined()) return;
  detail::check_same_kind(op, input, t, what);
  EMBER_CHECK(t.shape() == shape, op, ": ", what, " has shape ", t.shape(), " but the input ", input.shape(), " needs ",
              shape);
}

}  // namespace

Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  EMBER_OP_SCOPE("batch_norm", input, running_mean, running_var, weight, bias);
  EMBER_CHECK(input.defined(), "batch_norm: undefined input");
  EMBER_CHECK(input.dim() >= 2, "batch_norm: expected an input [N, C, *] with at least 2 dims, got ", input.shape());
  EMBER_CHECK(is_floating(input.dtype()), "batch_norm: expected a floating-point input, got ",
              dtype_name(input.dtype()), " of shape ", input.shape());
  const int64_t N = input.size(0), C = input.size(1), S = input.numel() / std::max<int64_t>(N * C, 1);
  check_param("batch_norm", input, weight, "weight", {C});
  check_param("batch_norm", input, bias, "bias", {C});
  check_param("batch_norm", input, running_mean, "running_mean", {C});
  check_param("batch_norm", input, running_var, "running_var", {C});
  EMBER_CHECK(running_mean.defined() == running_var.defined(),
              "batch_norm: running_mean and running_var must be given together");
  EMBER_CHECK(!running_mean.defined() || (running_mean.is_contiguous() && running_var.is_contiguous()),
              "batch_norm: running_mean and running_var must be contiguous (they are updated in place)");
  EMBER_CHECK(eps >= 0, "batch_norm: eps must be non-negative, got ", eps);
  // Without running statistics the batch's own are the only ones there are (PyTorch's rule).
  const bool use_batch_stats = training || !running_mean.defined();
  EMBER_CHECK(!use_batch_stats || N * S > 1,
              "batch_norm: expected more than 1 value per channel when training, got input ", input.shape());
  if (training && running_mean.defined()) {  // written in place: bump their versions like any in-place op
    check_inplace(running_mean, "batch_norm");
    check_inplace(running_var, "batch_norm");
  }

  const Tensor x = input.detach().contiguous().view({N, C, S});
  const TensorOptions opts = TensorOptions(input.dtype()).device(input.device());
  Tensor out = empty(input.shape(), opts);
  Tensor save_mean = empty({C}, opts), save_invstd = empty({C}, opts);
  const Tensor w = weight.defined() ? weight.detach().contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  // With batch statistics the kernel also updates the running ones (when given); otherwise it
  // normalises with the running ones.
  if (x.numel() > 0)
    backend_of(input).batch_norm(x, w, b, running_mean, running_var, out.view({N, C, S}), save_mean, save_invstd,
                                 use_batch_stats, momentum, eps);

  if (grad_needed({input, weight, bias}))
    record("batch_norm", out, {input, weight, bias},
           [sx = SavedTensor(x), sw = SavedTensor(w), sm = SavedTensor(save_mean), si = SavedTensor(save_invstd),
            use_batch_stats, eps, in_shape = input.shape()](const Tensor& g, NeedsGrad n) -> Grads {
             const Tensor& xv = sx.get();
             const TensorOptions o = TensorOptions(g.dtype()).device(g.device());
             const int64_t C = xv.size(1);
             Tensor gx = n[0] ? empty(in_shape, o) : Tensor();
             Tensor gw = n[1] ? empty({C}, o) : Tensor();
             Tensor gb = n[2] ? empty({C}, o) : Tensor();
             if (xv.numel() == 0) return {gx, n[1] ? zeros({C}, o) : Tensor(), n[2] ? zeros({C}, o) : Tensor()};
             backend_of(g).batch_norm_backward(g.contiguous().view(xv.shape()), xv, sw.get(), sm.get(), si.get(),
                                               n[0] ? gx.view(xv.shape()) : Tensor(), gw, gb, use_batch_stats, eps);
             return {gx, gw, gb};
           });
  return out;
}

Tensor layer_norm(const Tensor& input, const std::vector<int64_t>& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps) {
  EMBER_OP_SCOPE("layer_norm", input, weight, bias);
  EMBER_CHECK(input.defined(), "layer_norm: undefined input");
  EMBER_CHECK(is_floating(input.dtype()), "layer_norm: expected a floating-point input, got ",
              dtype_name(input.dtype()), " of shape ", input.shape());
  const Shape norm(normalized_shape);
  const int k = norm.size();
  EMBER_CHECK(k >= 1, "layer_norm: normalized_shape must have at least one dim");
  bool match = input.dim() >= k;
  for (int i = 0; match && i < k; ++i) match = input.size(input.dim() - k + i) == norm[i];
  EMBER_CHECK(match, "layer_norm: input ", input.shape(), " does not end with normalized_shape ", norm);
  check_param("layer_norm", input, weight, "weight", norm);
  check_param("layer_norm", input, bias, "bias", norm);

  const int64_t cols = norm.numel(), rows = cols == 0 ? 0 : input.numel() / cols;
  const Tensor x = input.detach().contiguous().view({rows, cols});
  const TensorOptions opts = TensorOptions(input.dtype()).device(input.device());
  Tensor out = empty(input.shape(), opts);
  Tensor mean = empty({rows}, opts), rstd = empty({rows}, opts);
  const Tensor w = weight.defined() ? weight.detach().contiguous().view({cols}) : Tensor();
  const Tensor b = bias.defined() ? bias.detach().contiguous().view({cols}) : Tensor();
  if (x.numel() > 0) backend_of(input).layer_norm(x, w, b, out.view({rows, cols}), mean, rstd, eps);

  if (grad_needed({input, weight, bias}))
    record("layer_norm", out, {input, weight, bias},
           [sx = SavedTensor(x), sw = SavedTensor(w), sm = SavedTensor(mean), sr = SavedTensor(rstd),
            in_shape = input.shape(), norm](const Tensor& g, NeedsGrad n) -> Grads {
             const Tensor& xv = sx.get();
             const TensorOptions o = TensorOptions(g.dtype()).device(g.device());
             Tensor gx = n[0] ? empty(in_shape, o) : Tensor();
             Tensor gw = n[1] ? empty(norm, o) : Tensor();
             Tensor gb = n[2] ? empty(norm, o) : Tensor();
             if (xv.numel() > 0)
               backend_of(g).layer_norm_backward(g.contiguous().view(xv.shape()), xv, sw.get(), sm.get(), sr.get(),
                                                 n[0] ? gx.view(xv.shape()) : Tensor(),
                                                 n[1] ? gw.view({xv.size(1)}) : Tensor(),
                                                 n[2] ? gb.view({xv.size(1)}) : Tensor());
             return {gx, gw, gb};
           });
  return out;
}

}  // namespace ember::nn::functional
