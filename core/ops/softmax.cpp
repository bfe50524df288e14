// Softmax family: softmax and log_softmax over one dim, each one fused kernel forward
// (max-subtracted, so huge logits cannot overflow) and one fused kernel backward:
//   softmax:      y = exp(x - max) / sum(exp(x - max))    dx = y * (g - sum(g * y))
//   log_softmax:  y = x - max - log(sum(exp(x - max)))    dx = g - exp(y) * sum(g)
// Both backward formulas need only the output y, which is what we save.
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

namespace {

Tensor softmax_impl(const char* name, const Tensor& a_in, int64_t dim, bool log) {
  const Tensor a = autocast::to_float32(a_in);  // autocast's float32 list (core/autocast.h)
  EMBER_OP_SCOPE(name, a);
  EMBER_CHECK(a.defined(), name, ": undefined tensor argument");
  EMBER_CHECK(is_floating(a.dtype()), name, ": expected a floating-point tensor, got ", dtype_name(a.dtype()),
              " of shape ", a.shape());
  const int d = wrap_dim(name, dim, a.dim());
  // A 0-d tensor is one row of one element; the kernels see it as shape [1].
  const Shape kernel_shape = a.dim() == 0 ? Shape{1} : a.shape();
  Tensor out = empty(kernel_shape, TensorOptions(a.dtype()).device(a.device()));
  if (out.numel() > 0) backend_of(a).softmax(a.dim() == 0 ? a.reshape({1}) : a, out, d, log);
  if (a.dim() == 0) out = out.view({});
  if (grad_needed(a))
    record(name, out, {a}, [so = SavedTensor::output(out), d, log](const Tensor& g, NeedsGrad) -> Grads {
      return {log ? log_softmax_backward(g, so.get(), d) : softmax_backward(g, so.get(), d)};
    });
  return out;
}

// The fused backward kernel on (g, y) of one shape; a 0-d tensor is seen as shape [1], as in the forward.
Tensor softmax_backward_kernel(const char* name, const Tensor& g, const Tensor& y, int64_t dim, bool log) {
  EMBER_CHECK(g.defined() && y.defined(), name, ": undefined tensor argument");
  EMBER_CHECK(g.shape() == y.shape() && g.dtype() == y.dtype() && g.device() == y.device(), name, ": gradient ",
              g.shape(), " ", dtype_name(g.dtype()), " and output ", y.shape(), " ", dtype_name(y.dtype()),
              " must have one shape, dtype and device");
  const int d = wrap_dim(name, dim, y.dim());
  Tensor gi = empty(y.shape(), TensorOptions(y.dtype()).device(y.device()));
  if (gi.numel() > 0) {
    const bool scalar = y.dim() == 0;
    const Tensor gd = g.detach(), yd = y.detach();
    backend_of(y).softmax_backward(scalar ? gd.reshape({1}) : gd, scalar ? yd.reshape({1}) : yd,
                                   scalar ? gi.view({1}) : gi, d, log);
  }
  return gi;
}

}  // namespace

// dx = y * (g - sum(g * y)). Linear in g (its gradient is the same op on gg); in y:
// d/dy <gg, y * (g - s)> with s = sum(g * y) is gg * (g - s) - g * sum(gg * y).
Tensor softmax_backward(const Tensor& grad, const Tensor& output, int64_t dim) {
  Tensor out = softmax_backward_kernel("softmax_backward", grad, output, dim, /*log=*/false);
  if (grad_needed({grad, output}))
    record("softmax_backward", out, {grad, output},
           [sg = SavedTensor(grad), sy = SavedTensor(output), dim](const Tensor& gg, NeedsGrad n) -> Grads {
             const Tensor g = sg.get(), y = sy.get();
             const std::vector<int64_t> d{dim};
             Tensor gy;
             if (n[1]) gy = gg * (g - sum(g * y, d, true)) - g * sum(gg * y, d, true);
             return {n[0] ? softmax_backward(gg, y, dim) : Tensor(), gy};
           });
  return out;
}

// dx = g - exp(y) * sum(g). In g: gg - sum(gg * exp(y)); in y: -gg * exp(y) * sum(g).
Tensor log_softmax_backward(const Tensor& grad, const Tensor& output, int64_t dim) {
  Tensor out = softmax_backward_kernel("log_softmax_backward", grad, output, dim, /*log=*/true);
  if (grad_needed({grad, output}))
    record("log_softmax_backward", out, {grad, output},
           [sg = SavedTensor(grad), sy = SavedTensor(output), dim](const Tensor& gg, NeedsGrad n) -> Grads {
             const Tensor y = sy.get();
             const std::vector<int64_t> d{dim};
             const Tensor p = exp(y);
             return {n[0] ? gg - sum(gg * p, d, true) : Tensor(), n[1] ? neg(gg * p * sum(sg.get(), d, true)) : Tensor()};
           });
  return out;
}

Tensor softmax(const Tensor& a, int64_t dim) { return softmax_impl("softmax", a, dim, /*log=*/false); }
Tensor log_softmax(const Tensor& a, int64_t dim) { return softmax_impl("log_softmax", a, dim, /*log=*/true); }

}  // namespace ember
