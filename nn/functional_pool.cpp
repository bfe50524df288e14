// Pooling ops: max, average and adaptive average over 2-D windows of NCHW tensors. Each checks
// its window, computes the output size as PyTorch does (including ceil_mode), runs the forward
// kernel and records a backward that is one more kernel (core/cpu/cpu_pool.cpp on the CPU).
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "nn/functional.h"
#include "nn/functional_util.h"

namespace ember::nn::functional {

namespace {

void check_input(const char* op, const Tensor& input) {
  EMBER_CHECK(input.defined(), op, ": undefined input");
  EMBER_CHECK(input.dim() == 3 || input.dim() == 4, op, ": expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got ",
              input.shape());
  EMBER_CHECK(is_floating(input.dtype()), op, ": expected a floating-point input, got ", dtype_name(input.dtype()),
              " of shape ", input.shape());
}

// Output length along one dim (PyTorch's pooling_output_shape). With ceil_mode the last window may
// hang over the end, but must start inside the input or its left padding.
int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t span = in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = (span >= 0 ? span / s : -((-span + s - 1) / s)) + 1;  // floor division
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

// Checks the window and returns the kernel geometry plus the output shape (input's batch/channel dims).
Window2d pool_window(const char* op, const Tensor& input, Size2 kernel, std::optional<Size2> stride, Size2 padding,
                     Size2 dilation, bool ceil_mode, Shape& out_shape) {
  const Size2 s = stride.value_or(kernel);
  detail::check_window(op, "kernel_size", kernel, 1);
  detail::check_window(op, "stride", s, 1);
  detail::check_window(op, "padding", padding, 0);
  detail::check_window(op, "dilation", dilation, 1);
  EMBER_CHECK(padding.h <= kernel.h / 2 && padding.w <= kernel.w / 2, op, ": padding (", padding.h, ", ", padding.w,
              ") must be at most half the kernel size (", kernel.h, ", ", kernel.w, ")");
  const int64_t H = input.size(-2), W = input.size(-1);
  const int64_t OH = pool_out_size(H, kernel.h, s.h, padding.h, dilation.h, ceil_mode);
  const int64_t OW = pool_out_size(W, kernel.w, s.w, padding.w, dilation.w, ceil_mode);
  EMBER_CHECK(OH > 0 && OW > 0, op, ": input ", input.shape(), " is too small for kernel (", kernel.h, ", ", kernel.w,
              ") with padding (", padding.h, ", ", padding.w, ") and dilation (", dilation.h, ", ", dilation.w,
              "): the output would be ", OH, "x", OW);
  out_shape = input.shape();
  out_shape[out_shape.size() - 2] = OH;
  out_shape[out_shape.size() - 1] = OW;
  return {kernel.h, kernel.w, s.h, s.w, padding.h, padding.w, dilation.h, dilation.w};
}

// Kernels take 4-D tensors: an unbatched [C, H, W] input is viewed as [1, C, H, W].
Tensor as_4d(const Tensor& t) { return t.dim() == 4 ? t : t.unsqueeze(0); }

}  // namespace

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride,
                                                  Size2 padding, Size2 dilation, bool ceil_mode) {
  EMBER_OP_SCOPE("max_pool2d_with_indices", input);
  check_input("max_pool2d", input);
  Shape out_shape;
  const Window2d w = pool_window("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, out_shape);
  const Tensor x = input.detach().contiguous();
  const TensorOptions opts = TensorOptions(input.dtype()).device(input.device());
  Tensor out = empty(out_shape, opts);
  Tensor indices = empty(out_shape, TensorOptions(kInt64).device(input.device()));
  if (out.numel() > 0) backend_of(input).max_pool2d(as_4d(x), as_4d(out), as_4d(indices), w);
  if (grad_needed(input))
    record("max_pool2d", out, {input},
           [si = SavedTensor(indices), in_shape = input.shape()](const Tensor& g, NeedsGrad) -> Grads {
             Tensor gx = empty(in_shape, TensorOptions(g.dtype()).device(g.device()));
             backend_of(g).max_pool2d_backward(as_4d(g.contiguous()), as_4d(si.get()), as_4d(gx));
             return {gx};
           });
  return {out, indices};
}

Tensor max_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride, Size2 padding, Size2 dilation,
                  bool ceil_mode) {
  EMBER_OP_SCOPE("max_pool2d", input);
  return max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode).first;
}

Tensor avg_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride, Size2 padding, bool ceil_mode,
                  bool count_include_pad) {
  EMBER_OP_SCOPE("avg_pool2d", input);
  check_input("avg_pool2d", input);
  Shape out_shape;
  const Window2d w = pool_window("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode, out_shape);
  const Tensor x = input.detach().contiguous();
  Tensor out = empty(out_shape, TensorOptions(input.dtype()).device(input.device()));
  if (out.numel() > 0) backend_of(input).avg_pool2d(as_4d(x), as_4d(out), w, count_include_pad);
  if (grad_needed(input))
    record("avg_pool2d", out, {input},
           [w, count_include_pad, in_shape = input.shape()](const Tensor& g, NeedsGrad) -> Grads {
             Tensor gx = empty(in_shape, TensorOptions(g.dtype()).device(g.device()));
             backend_of(g).avg_pool2d_backward(as_4d(g.contiguous()), as_4d(gx), w, count_include_pad);
             return {gx};
           });
  return out;
}

Tensor adaptive_avg_pool2d(const Tensor& input, Size2 output_size) {
  EMBER_OP_SCOPE("adaptive_avg_pool2d", input);
  check_input("adaptive_avg_pool2d", input);
  detail::check_window("adaptive_avg_pool2d", "output_size", output_size, 1);
  EMBER_CHECK(input.size(-2) > 0 && input.size(-1) > 0, "adaptive_avg_pool2d: input ", input.shape(),
              " has an empty spatial dim");
  Shape out_shape = input.shape();
  out_shape[out_shape.size() - 2] = output_size.h;
  out_shape[out_shape.size() - 1] = output_size.w;
  const Tensor x = input.detach().contiguous();
  Tensor out = empty(out_shape, TensorOptions(input.dtype()).device(input.device()));
  if (out.numel() > 0) backend_of(input).adaptive_avg_pool2d(as_4d(x), as_4d(out));
  if (grad_needed(input))
    record("adaptive_avg_pool2d", out, {input}, [in_shape = input.shape()](const Tensor& g, NeedsGrad) -> Grads {
      Tensor gx = empty(in_shape, TensorOptions(g.dtype()).device(g.device()));
      backend_of(g).adaptive_avg_pool2d_backward(as_4d(g.contiguous()), as_4d(gx));
      return {gx};
    });
  return out;
}

}  // namespace ember::nn::functional
