// Losses. cross_entropy is one fused kernel each way (log_softmax is never materialised, see
// core/cpu/cpu_loss.cpp); its backward is the op cross_entropy_backward, which runs the fused
// kernel when no graph is recorded and a composite of ops (softmax, one_hot, where) when one is
// (create_graph), so it differentiates again. nll_loss and mse_loss are short compositions of
// differentiable ops.
// A mean ignores the positions whose target is ignore_index, in the sum and in the count, like
// PyTorch (so a batch where every target is ignored has a NaN mean).
#include <limits>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/kernels/loss_kernels.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

namespace {

// Combines per-position losses; `valid` (uint8, same shape, optional) marks the positions that count in a mean.
Tensor reduce_loss(const Tensor& per, Reduction reduction, const Tensor& valid = Tensor()) {
  switch (reduction) {
    case Reduction::None:
      return per;
    case Reduction::Sum:
      return sum(per);
    case Reduction::Mean:
      if (!valid.defined()) return mean(per);
      return sum(per) / sum(valid).to(per.dtype());
  }
  return per;
}

void check_target(const char* op, const Tensor& input, const Tensor& target) {
  EMBER_CHECK(input.defined() && target.defined(), op, ": undefined input or target");
  EMBER_CHECK(is_floating(input.dtype()), op, ": expected floating-point input, got ", dtype_name(input.dtype()),
              " of shape ", input.shape());
  EMBER_CHECK(target.dtype() == kInt64, op, ": target must hold int64 class indices, got ", dtype_name(target.dtype()),
              " of shape ", target.shape());
  EMBER_CHECK(target.device() == input.device(), op, ": target is on ", target.device(), " but the input is on ",
              input.device());
  EMBER_CHECK(input.dim() >= 1, op, ": input must have a class dim, got a 0-d tensor");
  // Expected target shape: the input's without the class dim (dim 1, or dim 0 when unbatched).
  Shape want = input.shape();
  want.erase(input.dim() == 1 ? 0 : 1);
  EMBER_CHECK(target.shape() == want, op, ": input ", input.shape(), " needs target shape ", want, ", got ",
              target.shape());
}

// Per-row fused cross entropy of logits [R, C] against targets [R]: loss [R].
Tensor cross_entropy_rows(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing) {
  const int64_t R = logits.size(0);
  const Tensor x = logits.detach().contiguous(), t = target.contiguous();
  const TensorOptions opts = TensorOptions(logits.dtype()).device(logits.device());
  Tensor loss = empty({R}, opts), row_stats = empty({R, 2}, opts);  // per row: max, log-sum-exp of x - max
  if (R > 0) loss_kernels(logits.device()).cross_entropy(x, t, loss, row_stats, ignore_index, label_smoothing);
  if (grad_needed(logits))
    // The original logits are saved (not x), so a recorded backward links back to them.
    record("cross_entropy", loss, {logits},
           [sx = SavedTensor(logits), st = SavedTensor(t), sl = SavedTensor(row_stats), ignore_index, label_smoothing](
               const Tensor& g, NeedsGrad) -> Grads {
             return {cross_entropy_backward(g, sx.get(), st.get(), ignore_index, label_smoothing, sl.get())};
           });
  return loss;
}

}  // namespace

Tensor cross_entropy(const Tensor& input_in, const Tensor& target, const CrossEntropyOptions& o) {
  const Tensor input = autocast::to_float32(input_in);  // autocast's float32 list (core/autocast.h)
  EMBER_OP_SCOPE("cross_entropy", input, target);
  check_target("cross_entropy", input, target);
  EMBER_CHECK(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0,
              "cross_entropy: label_smoothing must be in [0, 1], got ", o.label_smoothing);
  const int64_t C = input.size(input.dim() == 1 ? 0 : 1);
  EMBER_CHECK(C > 0, "cross_entropy: input ", input.shape(), " has no classes");

  // Bring every case to rows of logits [R, C] with targets [R]: [C] is one row; [N, C, d1, ..]
  // moves the class dim last (a copy) so that each position is a row.
  Tensor rows, t;
  if (input.dim() <= 2) {
    rows = input.dim() == 1 ? input.unsqueeze(0) : input;
    t = target.reshape({-1});
  } else {
    Shape perm;
    perm.push_back(0);
    for (int d = 2; d < input.dim(); ++d) perm.push_back(d);
    perm.push_back(1);
    rows = input.permute(perm).reshape({-1, C});
    t = target.reshape({-1});
  }
  Tensor per = cross_entropy_rows(rows, t, o.ignore_index, o.label_smoothing).reshape(target.shape());
  if (o.reduction != Reduction::Mean) return reduce_loss(per, o.reduction);
  return reduce_loss(per, o.reduction, ne(target, static_cast<double>(o.ignore_index)));
}

Tensor nll_loss(const Tensor& input_in, const Tensor& target, const NllLossOptions& o) {
  const Tensor input = autocast::to_float32(input_in);  // autocast's float32 list (core/autocast.h)
  EMBER_OP_SCOPE("nll_loss", input, target);
  check_target("nll_loss", input, target);
  EMBER_CHECK(input.dim() <= 2, "nll_loss: expected input [N, C] or [C], got ", input.shape());
  const Tensor x = input.dim() == 1 ? input.unsqueeze(0) : input;
  const Tensor t = target.reshape({-1});
  const int64_t C = x.size(1);
  const Tensor valid = ne(t, static_cast<double>(o.ignore_index));
  // Ignored positions read class 0 (any valid index) and are then zeroed.
  const Tensor safe = where(valid, t, zeros({}, TensorOptions(kInt64).device(t.device())));
  if (t.device().is_cpu() && t.numel() > 0) {
    const Tensor s = safe.contiguous();
    const int64_t* p = s.data<int64_t>();
    for (int64_t i = 0; i < s.numel(); ++i)
      EMBER_CHECK(p[i] >= 0 && p[i] < C, "nll_loss: target ", p[i], " at position ", i, " is out of bounds for ", C,
                  " classes (valid: 0..", C - 1, ", or ignore_index ", o.ignore_index, ")");
  }
  const Tensor picked = gather(x, 1, safe.unsqueeze(1)).squeeze(1);
  Tensor per =
      where(valid, neg(picked), zeros({}, TensorOptions(x.dtype()).device(x.device()))).reshape(target.shape());
  return reduce_loss(per, o.reduction, valid.reshape(target.shape()));
}

Tensor mse_loss(const Tensor& input_in, const Tensor& target_in, Reduction reduction) {
  // Autocast's float32 list (core/autocast.h): a no-op unless a guard is active.
  const Tensor input = autocast::to_float32(input_in), target = autocast::to_float32(target_in);
  EMBER_OP_SCOPE("mse_loss", input, target);
  EMBER_CHECK(input.defined() && target.defined(), "mse_loss: undefined input or target");
  EMBER_CHECK(input.shape() == target.shape(), "mse_loss: input ", input.shape(), " and target ", target.shape(),
              " must have the same shape");
  EMBER_CHECK(is_floating(input.dtype()), "mse_loss: expected floating-point tensors, got ", dtype_name(input.dtype()));
  const Tensor d = input - target;
  return reduce_loss(d * d, reduction);
}

Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                              int64_t ignore_index, double label_smoothing, const Tensor& row_stats) {
  const char* op = "cross_entropy_backward";
  EMBER_CHECK(logits.defined() && logits.dim() == 2, op, ": expected logits [R, C], got ",
              logits.defined() ? logits.shape() : Shape{});
  check_target(op, logits, target);
  const int64_t R = logits.size(0);
  EMBER_CHECK(grad_loss.defined() && grad_loss.shape() == Shape{R}, op, ": grad_loss must be [", R,
              "], one value per row of logits ", logits.shape());
  EMBER_CHECK(grad_loss.dtype() == logits.dtype() && grad_loss.device() == logits.device(), op,
              ": grad_loss must have the logits' dtype and device");
  if (grad_needed({grad_loss, logits}))  // a graph is being recorded: the differentiable body
    return cross_entropy_backward_composite(grad_loss, logits, target, ignore_index, label_smoothing);

  const Tensor x = logits.contiguous(), t = target.contiguous();
  Tensor gx = empty(x.shape(), TensorOptions(x.dtype()).device(x.device()));
  if (x.numel() == 0) return gx;
  Tensor stats = row_stats;
  if (!stats.defined()) {  // called on its own: the forward kernel writes the row statistics
    stats = empty({R, 2}, TensorOptions(x.dtype()).device(x.device()));
    loss_kernels(x.device()).cross_entropy(x, t, empty({R}, TensorOptions(x.dtype()).device(x.device())), stats, ignore_index,
                                label_smoothing);
  }
  EMBER_CHECK(stats.shape() == Shape({R, 2}), op, ": row_stats must be [", R, ", 2], got ", stats.shape());
  // grad_loss may have stride 0 (the gradient of a mean or sum, broadcast): the kernel reads it as is.
  loss_kernels(x.device()).cross_entropy_backward(grad_loss, x, t, stats.contiguous(), gx, ignore_index,
                                       label_smoothing);
  return gx;
}

Tensor cross_entropy_backward_composite(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                                        int64_t ignore_index, double label_smoothing) {
  const int64_t C = logits.size(1);
  const TensorOptions opts = TensorOptions(logits.dtype()).device(logits.device());
  const Tensor valid = ne(target, static_cast<double>(ignore_index));  // [R] uint8
  // Ignored rows read class 0 (any valid index); their gradient is zeroed through grad_loss below.
  const Tensor safe = where(valid, target, zeros({}, TensorOptions(kInt64).device(target.device())));
  // The target distribution: (1 - s) * one_hot + s / C.
  const Tensor wanted = one_hot(safe, C).to(logits.dtype()) * (1.0 - label_smoothing) + label_smoothing / C;
  const Tensor g = where(valid, grad_loss, zeros({}, opts)).unsqueeze(1);  // [R, 1]
  return (softmax(logits, 1) - wanted) * g;
}

}  // namespace ember
