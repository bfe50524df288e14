// batch_norm and layer_norm: one fused kernel forward (statistics, normalisation and the affine
// transform in one pass per channel / row) and a backward that is an op of its own,
// batch_norm_backward / layer_norm_backward (all three gradients).
//
// Those backward ops have two bodies, as in PyTorch: the fused kernel (core/cpu/cpu_norm.cpp on the
// CPU) when no graph is being recorded — every ordinary training step — and a composite of ordinary
// ops when it is (create_graph), which autograd differentiates again. The composite recomputes the
// statistics from the input with ops, so the second derivative flows through them; the test
// NormBackward.FusedMatchesComposite checks the two bodies agree in float64. The kernels see the
// input as [N, C, S] (batch norm) or [rows, features] (layer norm), free views of a contiguous tensor.
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/profiler.h"
#include "core/kernels/norm_kernels.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/ops/nn_checks.h"

namespace ember {

namespace {

// A per-channel (or per-feature) parameter must have exactly `shape`.
void check_param(const char* op, const Tensor& input, const Tensor& t, const char* what, const Shape& shape) {
  if (!t.defined()) return;
  detail::check_same_kind(op, input, t, what);
  EMBER_CHECK(t.shape() == shape, op, ": ", what, " has shape ", t.shape(), " but the input ", input.shape(), " needs ",
              shape);
}

void check_grad_output(const char* op, const Tensor& grad_output, const Tensor& input) {
  EMBER_CHECK(grad_output.defined() && input.defined(), op, ": undefined grad_output or input");
  EMBER_CHECK(grad_output.shape() == input.shape(), op, ": grad_output ", grad_output.shape(),
              " must have the input's shape ", input.shape());
  detail::check_same_kind(op, input, grad_output, "grad_output");
}

// The three gradients of an affine normalisation, given x̂ and g viewed so that `dims` are the ones
// the statistics run over and `scale` = weight * invstd broadcast against them:
//   gx = scale * (g - mean(g) - x̂ * mean(g * x̂))   (with batch statistics)
//   gx = scale * g                                  (with constant statistics)
//   gw = sum(g * x̂)    gb = sum(g)                  (over the other dims: `param_dims`)
std::tuple<Tensor, Tensor, Tensor> affine_norm_grads(const Tensor& g, const Tensor& xhat, const Tensor& scale,
                                                     const std::vector<int64_t>& stat_dims,
                                                     const std::vector<int64_t>& param_dims, bool batch_stats,
                                                     std::array<bool, 3> mask) {
  Tensor gx, gw, gb;
  if (mask[0]) {
    gx = batch_stats ? scale * (g - mean(g, stat_dims, true) - xhat * mean(g * xhat, stat_dims, true)) : scale * g;
  }
  if (mask[1]) gw = sum(g * xhat, param_dims);
  if (mask[2]) gb = sum(g, param_dims);
  return {gx, gw, gb};
}

// The fused kernel bodies, on the kernel's views: x [N, C, S] (batch norm: contiguous, or
// channels-last when `format` says so) or [rows, cols] (layer norm, contiguous); w [C] / [cols]
// contiguous or undefined; g has the input's shape. The forward's backward calls these directly
// with the views it saved, so an ordinary backward allocates exactly the gradients.
// With `relu` (batch_norm_relu's backward), b is the forward's bias, for the ReLU's mask.
std::tuple<Tensor, Tensor, Tensor> batch_norm_backward_fused(const Tensor& g, const Tensor& x, const Tensor& w,
                                                             const Tensor& save_mean, const Tensor& save_invstd,
                                                             bool training, double eps, std::array<bool, 3> mask,
                                                             MemoryFormat format, bool relu = false,
                                                             const Tensor& b = Tensor()) {
  const int64_t C = x.size(1);
  const TensorOptions o = TensorOptions(x.dtype()).device(x.device());
  Tensor gx = mask[0] ? empty(g.shape(), o, format) : Tensor();
  if (x.numel() == 0) return {gx, mask[1] ? zeros({C}, o) : Tensor(), mask[2] ? zeros({C}, o) : Tensor()};
  Tensor gw = mask[1] ? empty({C}, o) : Tensor();
  Tensor gb = mask[2] ? empty({C}, o) : Tensor();
  NormKernels& kernels = norm_kernels(x.device());
  const Tensor gv = g.contiguous(format).view(x.shape()), gxv = mask[0] ? gx.view(x.shape()) : Tensor();
  if (relu)
    kernels.batch_norm_relu_backward(gv, x, w, b, save_mean.contiguous(), save_invstd.contiguous(), gxv, gw, gb,
                                     training, eps);
  else
    kernels.batch_norm_backward(gv, x, w, save_mean.contiguous(), save_invstd.contiguous(), gxv, gw, gb, training,
                                eps);
  return {gx, gw, gb};
}

std::tuple<Tensor, Tensor, Tensor> layer_norm_backward_fused(const Tensor& g, const Tensor& x, const Tensor& w,
                                                             const Tensor& mean, const Tensor& rstd, const Shape& norm,
                                                             std::array<bool, 3> mask) {
  const TensorOptions o = TensorOptions(x.dtype()).device(x.device());
  Tensor gx = mask[0] ? empty(g.shape(), o) : Tensor();
  Tensor gw = mask[1] ? empty(norm, o) : Tensor();
  Tensor gb = mask[2] ? empty(norm, o) : Tensor();
  if (x.numel() > 0)
    norm_kernels(x.device()).layer_norm_backward(g.contiguous().view(x.shape()), x, w, mean, rstd,
                                      mask[0] ? gx.view(x.shape()) : Tensor(), mask[1] ? gw.view({x.size(1)}) : Tensor(),
                                      mask[2] ? gb.view({x.size(1)}) : Tensor());
  return {gx, gw, gb};
}

}  // namespace

namespace {

// batch_norm, or batch_norm_relu when `relu` (op is the name errors and the profiler give).
Tensor batch_norm_op(const char* op, const Tensor& input_in, const Tensor& running_mean, const Tensor& running_var,
                     const Tensor& weight, const Tensor& bias, bool training, double momentum, double eps, bool relu) {
  const Tensor input = autocast::to_float32(input_in);  // autocast's float32 list (core/autocast.h)
  EMBER_OP_SCOPE(op, input, running_mean, running_var, weight, bias);
  EMBER_CHECK(input.defined(), op, ": undefined input");
  EMBER_CHECK(input.dim() >= 2, op, ": expected an input [N, C, *] with at least 2 dims, got ", input.shape());
  EMBER_CHECK(is_floating(input.dtype()), op, ": expected a floating-point input, got ", dtype_name(input.dtype()),
              " of shape ", input.shape());
  const int64_t N = input.size(0), C = input.size(1), S = input.numel() / std::max<int64_t>(N * C, 1);
  check_param(op, input, weight, "weight", {C});
  check_param(op, input, bias, "bias", {C});
  check_param(op, input, running_mean, "running_mean", {C});
  check_param(op, input, running_var, "running_var", {C});
  EMBER_CHECK(running_mean.defined() == running_var.defined(), op,
              ": running_mean and running_var must be given together");
  EMBER_CHECK(!running_mean.defined() || (running_mean.is_contiguous() && running_var.is_contiguous()), op,
              ": running_mean and running_var must be contiguous (they are updated in place)");
  EMBER_CHECK(eps >= 0, op, ": eps must be non-negative, got ", eps);
  // Without running statistics the batch's own are the only ones there are (PyTorch's rule).
  const bool use_batch_stats = training || !running_mean.defined();
  EMBER_CHECK(!use_batch_stats || N * S > 1, op, ": expected more than 1 value per channel when training, got input ",
              input.shape());
  if (training && running_mean.defined()) {  // written in place: bump their versions like any in-place op
    check_inplace(running_mean, op);
    check_inplace(running_var, op);
  }
  NormKernels& kernels = norm_kernels(input.device());
  // A device without the fused kernel: the two ops (the checks above have run once, by this name).
  if (relu && !kernels.fuses_batch_norm_relu())
    return ember::relu(batch_norm_op("batch_norm", input, running_mean, running_var, weight, bias, training, momentum,
                                     eps, false));

  // A channels-last input stays so where the kernels take it (the CPU's): x, out and the gradients
  // are then [N, C, S] views with strides (S*C, 1, C).
  const MemoryFormat format =
      kernels.takes_channels_last() ? suggest_memory_format(input) : MemoryFormat::Contiguous;
  const Tensor x = input.detach().contiguous(format).view({N, C, S});
  const TensorOptions opts = TensorOptions(input.dtype()).device(input.device());
  Tensor out = empty(input.shape(), opts, format);
  Tensor save_mean = empty({C}, opts), save_invstd = empty({C}, opts);
  const Tensor w = weight.defined() ? weight.detach().contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  // With batch statistics the kernel also updates the running ones (when given); otherwise it
  // normalises with the running ones.
  if (x.numel() > 0) {
    const Tensor y = out.view({N, C, S});
    if (relu)
      kernels.batch_norm_relu(x, w, b, running_mean, running_var, y, save_mean, save_invstd, use_batch_stats, momentum,
                              eps);
    else
      kernels.batch_norm(x, w, b, running_mean, running_var, y, save_mean, save_invstd, use_batch_stats, momentum, eps);
  }

  if (grad_needed({input, weight, bias}))
    // The kernel views (x, w, b) serve an ordinary backward; the originals (input, weight) a
    // recorded one (create_graph), whose ops must link back to them. There batch_norm_relu's
    // backward is relu's (through the saved output) and then batch norm's.
    record(op, out, {input, weight, bias},
           [sx = SavedTensor(x), sw = SavedTensor(w), sb = SavedTensor(b), sinput = SavedTensor(input),
            sweight = SavedTensor(weight), sm = SavedTensor(save_mean), si = SavedTensor(save_invstd),
            sout = relu ? SavedTensor::output(out) : SavedTensor(), use_batch_stats, eps, relu,
            format](const Tensor& g, NeedsGrad n) -> Grads {
             const std::array<bool, 3> mask = {n[0], n[1], n[2]};
             auto [gx, gw, gb] =
                 GradMode::is_enabled()
                     ? batch_norm_backward(relu ? relu_backward(g, sout.get()) : g, sinput.get(), sweight.get(),
                                           sm.get(), si.get(), use_batch_stats, eps, mask)
                     : batch_norm_backward_fused(g, sx.get(), sw.get(), sm.get(), si.get(), use_batch_stats, eps, mask,
                                                 format, relu, sb.get());
             return {gx, gw, gb};
           });
  return out;
}

}  // namespace

Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  return batch_norm_op("batch_norm", input, running_mean, running_var, weight, bias, training, momentum, eps, false);
}

Tensor batch_norm_relu(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& weight, const Tensor& bias, bool training, double momentum, double eps) {
  return batch_norm_op("batch_norm_relu", input, running_mean, running_var, weight, bias, training, momentum, eps,
                       true);
}

Tensor layer_norm(const Tensor& input_in, const std::vector<int64_t>& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps) {
  const Tensor input = autocast::to_float32(input_in);  // autocast's float32 list (core/autocast.h)
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
  if (x.numel() > 0) norm_kernels(input.device()).layer_norm(x, w, b, out.view({rows, cols}), mean, rstd, eps);

  if (grad_needed({input, weight, bias}))
    // As in batch_norm: kernel views for an ordinary backward, originals for a recorded one.
    record("layer_norm", out, {input, weight, bias},
           [sx = SavedTensor(x), sw = SavedTensor(w), sinput = SavedTensor(input), sweight = SavedTensor(weight),
            sm = SavedTensor(mean), sr = SavedTensor(rstd), normalized_shape, norm,
            eps](const Tensor& g, NeedsGrad n) -> Grads {
             const std::array<bool, 3> mask = {n[0], n[1], n[2]};
             auto [gx, gw, gb] =
                 GradMode::is_enabled()
                     ? layer_norm_backward(g, sinput.get(), normalized_shape, sm.get(), sr.get(), sweight.get(), eps,
                                           mask)
                     : layer_norm_backward_fused(g, sx.get(), sw.get(), sm.get(), sr.get(), norm, mask);
             return {gx, gw, gb};
           });
  return out;
}

std::tuple<Tensor, Tensor, Tensor> batch_norm_backward(const Tensor& grad_output, const Tensor& input,
                                                       const Tensor& weight, const Tensor& save_mean,
                                                       const Tensor& save_invstd, bool training, double eps,
                                                       std::array<bool, 3> mask) {
  EMBER_OP_SCOPE("batch_norm_backward", grad_output, input);
  const char* op = "batch_norm_backward";
  check_grad_output(op, grad_output, input);
  EMBER_CHECK(input.dim() >= 2, op, ": expected an input [N, C, *] with at least 2 dims, got ", input.shape());
  const int64_t N = input.size(0), C = input.size(1), S = input.numel() / std::max<int64_t>(N * C, 1);
  check_param(op, input, weight, "weight", {C});
  check_param(op, input, save_mean, "save_mean", {C});
  check_param(op, input, save_invstd, "save_invstd", {C});
  EMBER_CHECK(!mask[1] || weight.defined(), op, ": the weight gradient was asked for without a weight");
  if (grad_needed({grad_output, input, weight}))  // a graph is being recorded: the differentiable body
    return batch_norm_backward_composite(grad_output, input, weight, save_mean, save_invstd, training, eps, mask);

  const MemoryFormat format = norm_kernels(input.device()).takes_channels_last() ? suggest_memory_format(input)
                                                                                 : MemoryFormat::Contiguous;
  return batch_norm_backward_fused(grad_output, input.contiguous(format).view({N, C, S}),
                                   weight.defined() ? weight.contiguous() : Tensor(), save_mean, save_invstd, training,
                                   eps, mask, format);
}

std::tuple<Tensor, Tensor, Tensor> batch_norm_backward_composite(const Tensor& grad_output, const Tensor& input,
                                                                 const Tensor& weight, const Tensor& save_mean,
                                                                 const Tensor& save_invstd, bool training, double eps,
                                                                 std::array<bool, 3> mask) {
  const int64_t N = input.size(0), C = input.size(1), S = input.numel() / std::max<int64_t>(N * C, 1);
  const Tensor x = input.reshape({N, C, S}), g = grad_output.reshape({N, C, S});
  Tensor mu, invstd;  // [1, C, 1]
  if (training) {  // the batch statistics, as functions of x (biased variance, as the forward uses)
    mu = mean(x, {0, 2}, true);
    invstd = (mean((x - mu) * (x - mu), {0, 2}, true) + eps).pow(-0.5);
  } else {  // the running statistics: constants
    mu = save_mean.reshape({1, C, 1});
    invstd = save_invstd.reshape({1, C, 1});
  }
  const Tensor xhat = (x - mu) * invstd;
  const Tensor scale = weight.defined() ? invstd * weight.reshape({1, C, 1}) : invstd;
  auto [gx, gw, gb] = affine_norm_grads(g, xhat, scale, {0, 2}, {0, 2}, training, mask);
  return {gx.defined() ? gx.reshape(input.shape()) : gx, gw, gb};
}

std::tuple<Tensor, Tensor, Tensor> layer_norm_backward(const Tensor& grad_output, const Tensor& input,
                                                       const std::vector<int64_t>& normalized_shape,
                                                       const Tensor& mean, const Tensor& rstd, const Tensor& weight,
                                                       double eps, std::array<bool, 3> mask) {
  EMBER_OP_SCOPE("layer_norm_backward", grad_output, input);
  const char* op = "layer_norm_backward";
  check_grad_output(op, grad_output, input);
  const Shape norm(normalized_shape);
  check_param(op, input, weight, "weight", norm);
  EMBER_CHECK(!mask[1] || weight.defined(), op, ": the weight gradient was asked for without a weight");
  const int64_t cols = norm.numel(), rows = cols == 0 ? 0 : input.numel() / cols;
  EMBER_CHECK(mean.defined() && rstd.defined() && mean.numel() == rows && rstd.numel() == rows, op,
              ": mean and rstd must hold one value per normalised row (", rows, ")");
  if (grad_needed({grad_output, input, weight}))  // a graph is being recorded: the differentiable body
    return layer_norm_backward_composite(grad_output, input, normalized_shape, weight, eps, mask);

  return layer_norm_backward_fused(grad_output, input.contiguous().view({rows, cols}),
                                   weight.defined() ? weight.contiguous().view({cols}) : Tensor(),
                                   mean.contiguous().view({rows}), rstd.contiguous().view({rows}), norm, mask);
}

std::tuple<Tensor, Tensor, Tensor> layer_norm_backward_composite(const Tensor& grad_output, const Tensor& input,
                                                                 const std::vector<int64_t>& normalized_shape,
                                                                 const Tensor& weight, double eps,
                                                                 std::array<bool, 3> mask) {
  const Shape norm(normalized_shape);
  const int64_t cols = norm.numel(), rows = cols == 0 ? 0 : input.numel() / cols;
  const Tensor x = input.reshape({rows, cols}), g = grad_output.reshape({rows, cols});
  const Tensor mu = mean(x, {1}, true);                                    // [rows, 1]
  const Tensor rstd = (mean((x - mu) * (x - mu), {1}, true) + eps).pow(-0.5);  // as functions of x
  const Tensor xhat = (x - mu) * rstd;
  // Here the weight scales g before the row statistics, not after: gx = rstd * (g·w - mean(g·w) - ...).
  const Tensor gw_in = weight.defined() ? g * weight.reshape({1, cols}) : g;
  auto [gx, unused_w, unused_b] = affine_norm_grads(gw_in, xhat, rstd, {1}, {0}, true, {mask[0], false, false});
  Tensor gw = mask[1] ? sum(g * xhat, {0}).reshape(norm) : Tensor();
  Tensor gb = mask[2] ? sum(g, {0}).reshape(norm) : Tensor();
  return {gx.defined() ? gx.reshape(input.shape()) : gx, gw, gb};
}

}  // namespace ember
