// Softmax family: softmax and log_softmax over one dim, each one fused kernel forward
// (max-subtracted, so huge logits cannot overflow) and one fused kernel backward:
//   softmax:      y = exp(x - max) / sum(exp(x - max))    dx = y * (g - sum(g * y))
//   log_softmax:  y = x - max - log(sum(exp(x - max)))    dx = g - exp(y) * sum(g)
// Both backward formulas need only the output y, which is what we save.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

namespace {

Tensor softmax_impl(const char* name, const Tensor& a, int64_t dim, bool log) {
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
    record(name, out, {a}, [so = SavedTensor(out), d, log](const Tensor& g, NeedsGrad) -> Grads {
      const Tensor& y = so.get();
      Tensor gi = empty(y.shape(), TensorOptions(y.dtype()).device(y.device()));
      if (gi.numel() > 0) {
        const bool scalar = y.dim() == 0;  // the same [1] view as the forward
        backend_of(y).softmax_backward(scalar ? g.reshape({1}) : g, scalar ? y.reshape({1}) : y,
                                       scalar ? gi.view({1}) : gi, d, log);
      }
      return {gi};
    });
  return out;
}

}  // namespace

Tensor softmax(const Tensor& a, int64_t dim) { return softmax_impl("softmax", a, dim, /*log=*/false); }
Tensor log_softmax(const Tensor& a, int64_t dim) { return softmax_impl("log_softmax", a, dim, /*log=*/true); }

}  // namespace ember
