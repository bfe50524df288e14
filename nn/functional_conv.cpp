// conv2d: argument checks, output size, the forward kernel and the backward kernel side by side.
// The kernels (core/cpu/cpu_conv.cpp on the CPU) compute all three gradients in one pass over the
// batch; the backward asks only for the ones that are needed (a first layer's input never is).
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "nn/functional.h"
#include "nn/functional_util.h"

namespace ember::nn::functional {

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding,
              Size2 dilation, int64_t groups) {
  EMBER_OP_SCOPE("conv2d", input, weight, bias);
  EMBER_CHECK(input.defined() && weight.defined(), "conv2d: undefined input or weight");
  EMBER_CHECK(input.dim() == 3 || input.dim() == 4, "conv2d: expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got ",
              input.shape());
  if (input.dim() == 3) return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0);

  EMBER_CHECK(weight.dim() == 4, "conv2d: weight must be 4-D [out_channels, in_channels/groups, kh, kw], got ",
              weight.shape());
  detail::check_same_kind("conv2d", input, weight, "weight");
  EMBER_CHECK(groups > 0, "conv2d: groups must be positive, got ", groups);
  detail::check_window("conv2d", "stride", stride, 1);
  detail::check_window("conv2d", "padding", padding, 0);
  detail::check_window("conv2d", "dilation", dilation, 1);
  const int64_t C = input.size(1), M = weight.size(0);
  EMBER_CHECK(C == weight.size(1) * groups, "conv2d: input ", input.shape(), " has ", C, " channels but weight ",
              weight.shape(), " expects ", weight.size(1) * groups, " (groups=", groups, ")");
  EMBER_CHECK(M % groups == 0, "conv2d: weight ", weight.shape(), " has ", M,
              " output channels, which is not divisible by groups=", groups);
  if (bias.defined()) {
    detail::check_same_kind("conv2d", input, bias, "bias");
    EMBER_CHECK(bias.dim() == 1 && bias.size(0) == M, "conv2d: bias ", bias.shape(), " must be [", M,
                "], one value per output channel of weight ", weight.shape());
  }

  Window2d w{weight.size(2), weight.size(3), stride.h, stride.w, padding.h, padding.w, dilation.h, dilation.w};
  const int64_t H = input.size(2), W = input.size(3);
  const int64_t ekh = dilation.h * (w.kh - 1) + 1, ekw = dilation.w * (w.kw - 1) + 1;  // dilated kernel
  EMBER_CHECK(H + 2 * padding.h >= ekh && W + 2 * padding.w >= ekw, "conv2d: input ", input.shape(), " padded to ",
              H + 2 * padding.h, "x", W + 2 * padding.w, " is smaller than the (dilated) kernel ", ekh, "x", ekw,
              " of weight ", weight.shape());
  const int64_t OH = (H + 2 * padding.h - ekh) / stride.h + 1, OW = (W + 2 * padding.w - ekw) / stride.w + 1;

  const Tensor x = input.detach().contiguous(), wt = weight.detach().contiguous();
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty({input.size(0), M, OH, OW}, TensorOptions(input.dtype()).device(input.device()));
  backend_of(input).conv2d(x, wt, b, out, w, groups);

  if (grad_needed({input, weight, bias})) {
    // The input gradient needs the weight, the weight gradient needs the input: save only those.
    record("conv2d", out, {input, weight, bias},
           [sx = weight.requires_grad() ? SavedTensor(x) : SavedTensor(), sw = SavedTensor(wt), w, groups,
            x_shape = input.shape()](const Tensor& g, NeedsGrad n) -> Grads {
             const Tensor& wv = sw.get();
             const TensorOptions opts = TensorOptions(g.dtype()).device(g.device());
             Tensor gx = n[0] ? empty(x_shape, opts) : Tensor();
             Tensor gw = n[1] ? empty(wv.shape(), opts) : Tensor();
             Tensor gb = n[2] ? empty({wv.size(0)}, opts) : Tensor();
             backend_of(g).conv2d_backward(g.contiguous(), n[1] ? sx.get() : Tensor(), wv, gx, gw, gb, w, groups);
             return {gx, gw, gb};
           });
  }
  return out;
}

}  // namespace ember::nn::functional
