// Pooling ops: max, average and adaptive average over 2-D windows of NCHW tensors. Each checks
// its window, computes the output size as PyTorch does (including ceil_mode), runs the forward
// kernel and records a backward that is one more op: max_pool2d_backward, avg_pool2d_backward or
// adaptive_avg_pool2d_backward, each a kernel of its own (core/cpu/cpu_pool.cpp on the CPU) that
// records its own backward in turn. All three are linear in grad_output: max pooling's backward
// scatters to the saved indices (its transpose gathers from them), and the average poolings'
// backwards are the transposes of the forwards (their transposes are the forwards again).
#include "core/autograd.h"
#include "core/profiler.h"
#include "core/kernels/pool_kernels.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/ops/nn_checks.h"

namespace ember {

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
Window2d pool_window(const char* op, const Shape& input_shape, Size2 kernel, std::optional<Size2> stride, Size2 padding,
                     Size2 dilation, bool ceil_mode, Shape& out_shape) {
  const Size2 s = stride.value_or(kernel);
  detail::check_window(op, "kernel_size", kernel, 1);
  detail::check_window(op, "stride", s, 1);
  detail::check_window(op, "padding", padding, 0);
  detail::check_window(op, "dilation", dilation, 1);
  EMBER_CHECK(padding.h <= kernel.h / 2 && padding.w <= kernel.w / 2, op, ": padding (", padding.h, ", ", padding.w,
              ") must be at most half the kernel size (", kernel.h, ", ", kernel.w, ")");
  const int64_t H = input_shape[input_shape.size() - 2], W = input_shape[input_shape.size() - 1];
  const int64_t OH = pool_out_size(H, kernel.h, s.h, padding.h, dilation.h, ceil_mode);
  const int64_t OW = pool_out_size(W, kernel.w, s.w, padding.w, dilation.w, ceil_mode);
  EMBER_CHECK(OH > 0 && OW > 0, op, ": input ", input_shape, " is too small for kernel (", kernel.h, ", ", kernel.w,
              ") with padding (", padding.h, ", ", padding.w, ") and dilation (", dilation.h, ", ", dilation.w,
              "): the output would be ", OH, "x", OW);
  out_shape = input_shape;
  out_shape[out_shape.size() - 2] = OH;
  out_shape[out_shape.size() - 1] = OW;
  return {kernel.h, kernel.w, s.h, s.w, padding.h, padding.w, dilation.h, dilation.w};
}

// Kernels take 4-D tensors: an unbatched [C, H, W] input is viewed as [1, C, H, W].
Tensor as_4d(const Tensor& t) { return t.dim() == 4 ? t : t.unsqueeze(0); }

// A pooling backward's grad_output must be what the forward on input_shape produced.
void check_pool_grad(const char* op, const Tensor& grad_output, const Shape& input_shape, const Shape& out_shape) {
  EMBER_CHECK(grad_output.defined(), op, ": undefined grad_output");
  EMBER_CHECK(is_floating(grad_output.dtype()), op, ": expected a floating-point grad_output, got ",
              dtype_name(grad_output.dtype()));
  EMBER_CHECK(grad_output.shape() == out_shape, op, ": grad_output ", grad_output.shape(), " does not match the ",
              out_shape, " that pooling an input of shape ", input_shape, " gives");
}

// An input shape for a pooling backward: 3-D [C, H, W] or 4-D [N, C, H, W].
void check_pool_input_shape(const char* op, const Shape& input_shape) {
  EMBER_CHECK(input_shape.size() == 3 || input_shape.size() == 4, op,
              ": expected a 3-D [C, H, W] or 4-D [N, C, H, W] input shape, got ", input_shape);
}

}  // namespace

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride,
                                                  Size2 padding, Size2 dilation, bool ceil_mode) {
  EMBER_OP_SCOPE("max_pool2d_with_indices", input);
  check_input("max_pool2d", input);
  Shape out_shape;
  const Window2d w =
      pool_window("max_pool2d", input.shape(), kernel_size, stride, padding, dilation, ceil_mode, out_shape);
  const Tensor x = input.detach().contiguous();
  const TensorOptions opts = TensorOptions(input.dtype()).device(input.device());
  Tensor out = empty(out_shape, opts);
  Tensor indices = empty(out_shape, TensorOptions(kInt64).device(input.device()));
  if (out.numel() > 0) pool_kernels(input.device()).max_pool2d(as_4d(x), as_4d(out), as_4d(indices), w);
  if (grad_needed(input))
    record("max_pool2d", out, {input},
           [si = SavedTensor(indices), in_shape = input.shape()](const Tensor& g, NeedsGrad) -> Grads {
             return {max_pool2d_backward(g, si.get(), in_shape)};
           });
  return {out, indices};
}

Tensor max_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride, Size2 padding, Size2 dilation,
                  bool ceil_mode) {
  EMBER_OP_SCOPE("max_pool2d", input);
  return max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode).first;
}

Tensor max_pool2d_backward(const Tensor& grad_output, const Tensor& indices, const Shape& input_shape) {
  EMBER_OP_SCOPE("max_pool2d_backward", grad_output, indices);
  const char* op = "max_pool2d_backward";
  check_pool_input_shape(op, input_shape);
  EMBER_CHECK(indices.defined() && indices.dtype() == kInt64, op, ": indices must be an int64 tensor");
  check_pool_grad(op, grad_output, input_shape, indices.shape());
  EMBER_CHECK(indices.device() == grad_output.device(), op, ": indices are on ", indices.device(),
              " but grad_output is on ", grad_output.device());
  for (int d = 0; d + 2 < input_shape.size(); ++d)
    EMBER_CHECK(input_shape[d] == grad_output.size(d), op, ": grad_output ", grad_output.shape(),
                " and input shape ", input_shape, " differ in their batch / channel dims");

  Tensor gx = empty(input_shape, TensorOptions(grad_output.dtype()).device(grad_output.device()));
  if (gx.numel() > 0)
    pool_kernels(grad_output.device())
        .max_pool2d_backward(as_4d(grad_output.contiguous()), as_4d(indices.contiguous()), as_4d(gx));
  if (grad_needed(grad_output))
    // gx scatters g to the indices, so its transpose gathers from them: each output position reads
    // ggx at the flat input position its maximum came from.
    record(op, gx, {grad_output}, [si = SavedTensor(indices)](const Tensor& ggx, NeedsGrad) -> Grads {
      const Tensor& idx = si.get();
      Shape planes = ggx.shape(), idx_planes = idx.shape();  // [.., H, W] -> [.., H*W]
      planes.erase(planes.size() - 1);
      planes[planes.size() - 1] = ggx.size(-2) * ggx.size(-1);
      idx_planes.erase(idx_planes.size() - 1);
      idx_planes[idx_planes.size() - 1] = idx.size(-2) * idx.size(-1);
      return {gather(ggx.reshape(planes), -1, idx.reshape(idx_planes)).reshape(idx.shape())};
    });
  return gx;
}

Tensor avg_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride, Size2 padding, bool ceil_mode,
                  bool count_include_pad) {
  EMBER_OP_SCOPE("avg_pool2d", input);
  check_input("avg_pool2d", input);
  Shape out_shape;
  const Window2d w = pool_window("avg_pool2d", input.shape(), kernel_size, stride, padding, 1, ceil_mode, out_shape);
  const Tensor x = input.detach().contiguous();
  Tensor out = empty(out_shape, TensorOptions(input.dtype()).device(input.device()));
  if (out.numel() > 0) pool_kernels(input.device()).avg_pool2d(as_4d(x), as_4d(out), w, count_include_pad);
  if (grad_needed(input))
    record("avg_pool2d", out, {input},
           [kernel_size, stride, padding, ceil_mode, count_include_pad, in_shape = input.shape()](
               const Tensor& g, NeedsGrad) -> Grads {
             return {avg_pool2d_backward(g, in_shape, kernel_size, stride, padding, ceil_mode, count_include_pad)};
           });
  return out;
}

Tensor avg_pool2d_backward(const Tensor& grad_output, const Shape& input_shape, Size2 kernel_size,
                           std::optional<Size2> stride, Size2 padding, bool ceil_mode, bool count_include_pad) {
  EMBER_OP_SCOPE("avg_pool2d_backward", grad_output);
  const char* op = "avg_pool2d_backward";
  check_pool_input_shape(op, input_shape);
  Shape out_shape;
  const Window2d w = pool_window(op, input_shape, kernel_size, stride, padding, 1, ceil_mode, out_shape);
  check_pool_grad(op, grad_output, input_shape, out_shape);

  Tensor gx = empty(input_shape, TensorOptions(grad_output.dtype()).device(grad_output.device()));
  if (gx.numel() > 0)
    pool_kernels(grad_output.device())
        .avg_pool2d_backward(as_4d(grad_output.contiguous()), as_4d(gx), w, count_include_pad);
  if (grad_needed(grad_output))
    // avg_pool2d is linear and this is its transpose, so the transpose of this is avg_pool2d.
    record(op, gx, {grad_output},
           [kernel_size, stride, padding, ceil_mode, count_include_pad](const Tensor& ggx, NeedsGrad) -> Grads {
             return {avg_pool2d(ggx, kernel_size, stride, padding, ceil_mode, count_include_pad)};
           });
  return gx;
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
  if (out.numel() > 0) pool_kernels(input.device()).adaptive_avg_pool2d(as_4d(x), as_4d(out));
  if (grad_needed(input))
    record("adaptive_avg_pool2d", out, {input}, [in_shape = input.shape()](const Tensor& g, NeedsGrad) -> Grads {
      return {adaptive_avg_pool2d_backward(g, in_shape)};
    });
  return out;
}

Tensor adaptive_avg_pool2d_backward(const Tensor& grad_output, const Shape& input_shape) {
  EMBER_OP_SCOPE("adaptive_avg_pool2d_backward", grad_output);
  const char* op = "adaptive_avg_pool2d_backward";
  check_pool_input_shape(op, input_shape);
  EMBER_CHECK(grad_output.defined() && grad_output.dim() == static_cast<int64_t>(input_shape.size()), op,
              ": grad_output must have the input's ", input_shape.size(), " dims");
  Shape out_shape = input_shape;
  out_shape[out_shape.size() - 2] = grad_output.size(-2);
  out_shape[out_shape.size() - 1] = grad_output.size(-1);
  check_pool_grad(op, grad_output, input_shape, out_shape);

  Tensor gx = empty(input_shape, TensorOptions(grad_output.dtype()).device(grad_output.device()));
  if (gx.numel() > 0)
    pool_kernels(grad_output.device()).adaptive_avg_pool2d_backward(as_4d(grad_output.contiguous()), as_4d(gx));
  if (grad_needed(grad_output))
    // The transpose of a transpose: adaptive_avg_pool2d to grad_output's spatial size.
    record(op, gx, {grad_output},
           [out_size = Size2(grad_output.size(-2), grad_output.size(-1))](const Tensor& ggx, NeedsGrad) -> Grads {
             return {adaptive_avg_pool2d(ggx, out_size)};
           });
  return gx;
}

}  // namespace ember
