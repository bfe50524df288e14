// conv2d: argument checks, output size, the forward kernel and the backward side by side.
//
// The backward is two ops of their own, each linear in both of its arguments, so each one's
// backward is again a convolution or one of the two (this is what makes conv2d twice — and any
// number of times — differentiable):
//   gx = conv2d_backward_input(g, W)    its backward:  d/dg = conv2d(ggx, W)    d/dW = conv2d_backward_weight(g, ggx)
//   gW = conv2d_backward_weight(g, x)   its backward:  d/dg = conv2d(x, ggW)    d/dx = conv2d_backward_input(g, ggW)
//   gb = sum of g over N, H, W
// An ordinary backward (grad mode off) does not call them: the kernels (core/cpu/cpu_conv.cpp on
// the CPU) compute all three gradients in one pass over the batch, asking only for the ones that
// are needed (a first layer's input never is).
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/profiler.h"
#include "core/kernels/conv_kernels.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/ops/nn_checks.h"

namespace ember {

namespace {

Window2d conv_window(const Shape& weight_shape, Size2 stride, Size2 padding, Size2 dilation) {
  return {weight_shape[2], weight_shape[3], stride.h, stride.w, padding.h, padding.w, dilation.h, dilation.w};
}

// Checks the window and the channel counts of a convolution of `input_shape` by `weight_shape`
// and returns its output shape [N, Cout, OH, OW].
Shape conv_output_shape(const char* op, const Shape& input_shape, const Shape& weight_shape, Size2 stride,
                        Size2 padding, Size2 dilation, int64_t groups) {
  EMBER_CHECK(input_shape.size() == 4, op, ": expected a 4-D [N, C, H, W] input, got ", input_shape);
  EMBER_CHECK(weight_shape.size() == 4, op, ": weight must be 4-D [out_channels, in_channels/groups, kh, kw], got ",
              weight_shape);
  EMBER_CHECK(groups > 0, op, ": groups must be positive, got ", groups);
  detail::check_window(op, "stride", stride, 1);
  detail::check_window(op, "padding", padding, 0);
  detail::check_window(op, "dilation", dilation, 1);
  const int64_t C = input_shape[1], M = weight_shape[0];
  EMBER_CHECK(C == weight_shape[1] * groups, op, ": input ", input_shape, " has ", C, " channels but weight ",
              weight_shape, " expects ", weight_shape[1] * groups, " (groups=", groups, ")");
  EMBER_CHECK(M % groups == 0, op, ": weight ", weight_shape, " has ", M,
              " output channels, which is not divisible by groups=", groups);
  const int64_t H = input_shape[2], W = input_shape[3];
  const int64_t ekh = dilation.h * (weight_shape[2] - 1) + 1, ekw = dilation.w * (weight_shape[3] - 1) + 1;
  EMBER_CHECK(H + 2 * padding.h >= ekh && W + 2 * padding.w >= ekw, op, ": input ", input_shape, " padded to ",
              H + 2 * padding.h, "x", W + 2 * padding.w, " is smaller than the (dilated) kernel ", ekh, "x", ekw,
              " of weight ", weight_shape);
  return {input_shape[0], M, (H + 2 * padding.h - ekh) / stride.h + 1, (W + 2 * padding.w - ekw) / stride.w + 1};
}

// The layout a convolution's activations get: a channels-last input stays channels-last (input,
// output and both activation gradients) where the device's kernels take it, else NCHW.
MemoryFormat activation_format(ConvKernels& kernels, const Tensor& activation) {
  return kernels.takes_channels_last() ? suggest_memory_format(activation) : MemoryFormat::Contiguous;
}

// grad_output must have the forward's output shape.
void check_grad_output(const char* op, const Tensor& grad_output, const Shape& want) {
  EMBER_CHECK(grad_output.defined(), op, ": undefined grad_output");
  EMBER_CHECK(grad_output.shape() == want, op, ": grad_output ", grad_output.shape(),
              " does not match the convolution's output shape ", want);
}

// conv2d, or conv2d_relu when `relu` (op is the name errors and the profiler give).
Tensor conv2d_op(const char* op, const Tensor& input_in, const Tensor& weight_in, const Tensor& bias_in, Size2 stride,
                 Size2 padding, Size2 dilation, int64_t groups, bool relu) {
  // Autocast's lower-precision list (core/autocast.h): a no-op unless a guard is active.
  const Tensor input = autocast::to_lower(input_in), weight = autocast::to_lower(weight_in),
               bias = autocast::to_lower(bias_in);
  EMBER_OP_SCOPE(op, input, weight, bias);
  EMBER_CHECK(input.defined() && weight.defined(), op, ": undefined input or weight");
  EMBER_CHECK(input.dim() == 3 || input.dim() == 4, op, ": expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got ",
              input.shape());
  if (input.dim() == 3)
    return conv2d_op(op, input.unsqueeze(0), weight, bias, stride, padding, dilation, groups, relu).squeeze(0);

  detail::check_same_kind(op, input, weight, "weight");
  const Shape out_shape = conv_output_shape(op, input.shape(), weight.shape(), stride, padding, dilation, groups);
  const int64_t M = weight.size(0);
  if (bias.defined()) {
    detail::check_same_kind(op, input, bias, "bias");
    EMBER_CHECK(bias.dim() == 1 && bias.size(0) == M, op, ": bias ", bias.shape(), " must be [", M,
                "], one value per output channel of weight ", weight.shape());
  }
  ConvKernels& kernels = conv_kernels(input.device());
  // A device without the fused kernel: the two ops (the checks above have run once, by this name).
  if (relu && !kernels.fuses_conv2d_relu())
    return ember::relu(conv2d_op("conv2d", input, weight, bias, stride, padding, dilation, groups, false));

  const Window2d w = conv_window(weight.shape(), stride, padding, dilation);
  const MemoryFormat format = activation_format(kernels, input);
  const Tensor x = input.detach().contiguous(format), wt = weight.detach().contiguous();
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty(out_shape, TensorOptions(input.dtype()).device(input.device()), format);
  // When the weight will get a gradient, the kernel may keep what the backward would recompute
  // from the input (the CPU's im2col columns); the node saves it and hands it back.
  const bool graph = grad_needed({input, weight, bias});
  Tensor columns;
  if (graph && weight.requires_grad())
    columns = kernels.conv2d_keeping_columns(x, wt, b, out, w, groups, relu);
  else if (relu)
    kernels.conv2d_relu(x, wt, b, out, w, groups);
  else
    kernels.conv2d(x, wt, b, out, w, groups);

  if (graph) {
    // The input gradient needs the weight, the weight gradient needs the input: save only those.
    // The originals are saved (not x / wt), so a recorded backward links back to them.
    // conv2d_relu's backward is relu's (through the saved output), then the convolution's.
    record(op, out, {input, weight, bias},
           [sx = weight.requires_grad() ? SavedTensor(input) : SavedTensor(), sw = SavedTensor(weight),
            sout = relu ? SavedTensor::output(out) : SavedTensor(), columns, relu, w, stride, padding, dilation,
            groups, format, x_shape = input.shape()](const Tensor& g_out, NeedsGrad n) -> Grads {
             const Tensor g = relu ? relu_backward(g_out, sout.get()) : g_out;
             const Tensor& wv = sw.get();
             if (GradMode::is_enabled()) {  // the backward is being recorded (create_graph): one op per gradient
               return {n[0] ? conv2d_backward_input(g, wv, x_shape, stride, padding, dilation, groups) : Tensor(),
                       n[1] ? conv2d_backward_weight(g, sx.get(), wv.shape(), stride, padding, dilation, groups)
                            : Tensor(),
                       n[2] ? sum(g, {0, 2, 3}) : Tensor()};
             }
             // Ordinary backward: the fused kernel computes the needed gradients in one pass.
             const TensorOptions opts = TensorOptions(g.dtype()).device(g.device());
             Tensor gx = n[0] ? empty(x_shape, opts, format) : Tensor();
             Tensor gw = n[1] ? empty(wv.shape(), opts) : Tensor();
             Tensor gb = n[2] ? empty({wv.size(0)}, opts) : Tensor();
             conv_kernels(g.device()).conv2d_backward_with_columns(g.contiguous(format),
                                                                   n[1] ? sx.get().contiguous(format) : Tensor(),
                                                                   wv.contiguous(), gx, gw, gb, w, groups, columns);
             return {gx, gw, gb};
           });
  }
  return out;
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding,
              Size2 dilation, int64_t groups) {
  return conv2d_op("conv2d", input, weight, bias, stride, padding, dilation, groups, false);
}

Tensor conv2d_relu(const Tensor& input, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding,
                   Size2 dilation, int64_t groups) {
  return conv2d_op("conv2d_relu", input, weight, bias, stride, padding, dilation, groups, true);
}

Tensor conv2d_backward_input(const Tensor& grad_output, const Tensor& weight, const Shape& input_shape, Size2 stride,
                             Size2 padding, Size2 dilation, int64_t groups) {
  EMBER_OP_SCOPE("conv2d_backward_input", grad_output, weight);
  const char* op = "conv2d_backward_input";
  EMBER_CHECK(weight.defined(), op, ": undefined weight");
  check_grad_output(op, grad_output,
                    conv_output_shape(op, input_shape, weight.shape(), stride, padding, dilation, groups));
  detail::check_same_kind(op, grad_output, weight, "weight");

  const Window2d w = conv_window(weight.shape(), stride, padding, dilation);
  ConvKernels& kernels = conv_kernels(grad_output.device());
  const MemoryFormat format = activation_format(kernels, grad_output);
  Tensor gx = empty(input_shape, TensorOptions(grad_output.dtype()).device(grad_output.device()), format);
  kernels.conv2d_backward(grad_output.contiguous(format), Tensor(), weight.contiguous(), gx, Tensor(), Tensor(), w,
                          groups);

  if (grad_needed({grad_output, weight}))
    // gx is linear in g and in W: <ggx, gx> = <conv2d(ggx, W), g>.
    record(op, gx, {grad_output, weight},
           [sg = weight.requires_grad() ? SavedTensor(grad_output) : SavedTensor(),
            sw = grad_output.requires_grad() ? SavedTensor(weight) : SavedTensor(), w_shape = weight.shape(), stride,
            padding, dilation, groups](const Tensor& ggx, NeedsGrad n) -> Grads {
             return {n[0] ? conv2d(ggx, sw.get(), Tensor(), stride, padding, dilation, groups) : Tensor(),
                     n[1] ? conv2d_backward_weight(sg.get(), ggx, w_shape, stride, padding, dilation, groups)
                          : Tensor()};
           });
  return gx;
}

Tensor conv2d_backward_weight(const Tensor& grad_output, const Tensor& input, const Shape& weight_shape, Size2 stride,
                              Size2 padding, Size2 dilation, int64_t groups) {
  EMBER_OP_SCOPE("conv2d_backward_weight", grad_output, input);
  const char* op = "conv2d_backward_weight";
  EMBER_CHECK(input.defined(), op, ": undefined input");
  check_grad_output(op, grad_output,
                    conv_output_shape(op, input.shape(), weight_shape, stride, padding, dilation, groups));
  detail::check_same_kind(op, grad_output, input, "input");

  const Window2d w = conv_window(weight_shape, stride, padding, dilation);
  const TensorOptions opts = TensorOptions(grad_output.dtype()).device(grad_output.device());
  Tensor gw = empty(weight_shape, opts);
  // The kernel reads only the weight's shape when no input gradient is asked for: a one-element
  // tensor broadcast to that shape stands in for it.
  const Tensor weight_geometry = empty({1, 1, 1, 1}, opts).expand(weight_shape);
  ConvKernels& kernels = conv_kernels(grad_output.device());
  const MemoryFormat format = activation_format(kernels, input);
  kernels.conv2d_backward(grad_output.contiguous(format), input.contiguous(format), weight_geometry, Tensor(), gw,
                          Tensor(), w, groups);

  if (grad_needed({grad_output, input}))
    // gW is linear in g and in x: <ggW, gW> = <conv2d(x, ggW), g>.
    record(op, gw, {grad_output, input},
           [sg = input.requires_grad() ? SavedTensor(grad_output) : SavedTensor(),
            sx = grad_output.requires_grad() ? SavedTensor(input) : SavedTensor(), x_shape = input.shape(), stride,
            padding, dilation, groups](const Tensor& ggw, NeedsGrad n) -> Grads {
             return {n[0] ? conv2d(sx.get(), ggw, Tensor(), stride, padding, dilation, groups) : Tensor(),
                     n[1] ? conv2d_backward_input(sg.get(), ggw, x_shape, stride, padding, dilation, groups)
                          : Tensor()};
           });
  return gw;
}

}  // namespace ember
