// The neural-network ops: linear, convolution, pooling, normalisation and the losses, with
// PyTorch's names, argument order and defaults (torch.nn.functional). Included by core/ops.h;
// nn::functional (nn/functional.h) re-exports them under libtorch's names. Images are NCHW; an
// unbatched CHW input is accepted where PyTorch accepts one.
//
// Each forward records a backward written with ops, so its gradient can be differentiated again
// (autograd::grad with create_graph). The backward of a fused kernel is itself a named op below
// (conv2d_backward_input, max_pool2d_backward, batch_norm_backward, ...): during an ordinary
// backward (grad mode off) the fused kernel runs exactly as before; when the backward is being
// recorded (create_graph), the named op records its own backward, written with ops in turn.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "core/generator.h"
#include "core/tensor.h"

namespace ember {

// A (height, width) pair; one number means both: `stride = 2` or `kernel_size = {3, 5}`.
struct Size2 {
  int64_t h, w;
  Size2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit so a single number reads naturally
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
};

// How a loss combines the per-element losses (PyTorch's `reduction`).
enum class Reduction { None, Mean, Sum };

// ---------------- linear (core/ops/matmul.cpp, beside the matmul its backward is made of) ----------------

// x [.., in] · weightᵀ [in, out] + bias [out] -> [.., out]. One GEMM reading the weight transposed
// in place; the bias is added into the GEMM's output buffer. The backward is three matmul/sum ops.
Tensor linear(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor());
// relu(linear(...)): the ReLU is applied in the same pass over the GEMM's output as the bias, and
// the backward masks the gradient with the saved output (nn::Sequential uses it for Linear, ReLU).
Tensor linear_relu(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor());

// ---------------- convolution (core/ops/conv.cpp) ----------------

// input [N, Cin, H, W] (or [Cin, H, W]), weight [Cout, Cin/groups, kh, kw], bias [Cout] (optional).
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(), Size2 stride = 1,
              Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1);
// relu(conv2d(...)) as one op: on the CPU the ReLU runs inside the convolution (a oneDNN post-op,
// or on each image's output while it is in cache on the im2col path); devices without the fused
// kernel compose the two ops. nn::Sequential uses it for Conv2d followed by ReLU.
Tensor conv2d_relu(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(), Size2 stride = 1,
                   Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1);
// The two halves of conv2d's backward, each an op of its own (linear in both arguments):
//   conv2d_backward_input(g, weight)  = d<g, conv2d(x, weight)>/dx   -> [N, Cin, H, W] (input_shape)
//   conv2d_backward_weight(g, input)  = d<g, conv2d(input, w)>/dw    -> weight_shape
// grad_output is [N, Cout, OH, OW]; the window arguments are the forward's.
Tensor conv2d_backward_input(const Tensor& grad_output, const Tensor& weight, const Shape& input_shape,
                             Size2 stride = 1, Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1);
Tensor conv2d_backward_weight(const Tensor& grad_output, const Tensor& input, const Shape& weight_shape,
                              Size2 stride = 1, Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1);

// ---------------- pooling (core/ops/pool.cpp) ----------------

// stride defaults to kernel_size. Padding may be at most half the (dilated) kernel.
Tensor max_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                  Size2 dilation = 1, bool ceil_mode = false);
// Also returns the int64 indices (flat h*W + w position of each maximum in its input plane).
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, Size2 kernel_size,
                                                  std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                                                  Size2 dilation = 1, bool ceil_mode = false);
// Sends each grad_output element to the input position its maximum came from (summing where
// windows overlap): a tensor of input_shape. Its own backward gathers at the same indices.
Tensor max_pool2d_backward(const Tensor& grad_output, const Tensor& indices, const Shape& input_shape);

Tensor avg_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                  bool ceil_mode = false, bool count_include_pad = true);
// The transpose of avg_pool2d (spreads each grad_output element evenly over its window); its own
// backward is avg_pool2d with the same window.
Tensor avg_pool2d_backward(const Tensor& grad_output, const Shape& input_shape, Size2 kernel_size,
                           std::optional<Size2> stride = std::nullopt, Size2 padding = 0, bool ceil_mode = false,
                           bool count_include_pad = true);

Tensor adaptive_avg_pool2d(const Tensor& input, Size2 output_size);
// The transpose of adaptive_avg_pool2d; its own backward is adaptive_avg_pool2d.
Tensor adaptive_avg_pool2d_backward(const Tensor& grad_output, const Shape& input_shape);

// ---------------- normalisation (core/ops/norm.cpp) ----------------

// input [N, C, *]. training: normalise with the batch statistics and, when running_mean /
// running_var are given, update them in place (running = (1 - momentum) * running + momentum *
// batch; the variance stored is the unbiased one). Otherwise normalise with the running statistics.
Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), bool training = false,
                  double momentum = 0.1, double eps = 1e-5);
// relu(batch_norm(...)) in one pass over the activation forward and one backward where the device
// fuses them (the CPU), the two ops elsewhere; the same arguments and results. ResNet's
// conv-BN-ReLU uses it through nn::BatchNorm::forward_relu.
Tensor batch_norm_relu(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), bool training = false,
                       double momentum = 0.1, double eps = 1e-5);
// (grad_input, grad_weight, grad_bias) of batch_norm, PyTorch's native_batch_norm_backward:
// save_mean / save_invstd [C] are what the forward normalised with (the batch's, or the running
// ones when !training). output_mask says which of the three to compute (the others are undefined).
// Fused kernel when no graph is recorded; otherwise batch_norm_backward_composite.
std::tuple<Tensor, Tensor, Tensor> batch_norm_backward(const Tensor& grad_output, const Tensor& input,
                                                       const Tensor& weight, const Tensor& save_mean,
                                                       const Tensor& save_invstd, bool training, double eps,
                                                       std::array<bool, 3> output_mask = {true, true, true});
// The same three gradients written with ordinary ops (differentiable again). In training mode the
// batch statistics are recomputed from `input` with ops, so the second derivative flows through
// them; save_mean / save_invstd are used only when !training.
std::tuple<Tensor, Tensor, Tensor> batch_norm_backward_composite(const Tensor& grad_output, const Tensor& input,
                                                                 const Tensor& weight, const Tensor& save_mean,
                                                                 const Tensor& save_invstd, bool training, double eps,
                                                                 std::array<bool, 3> output_mask = {true, true, true});

// Normalises over the trailing dims `normalized_shape`; weight / bias have that shape (optional).
Tensor layer_norm(const Tensor& input, const std::vector<int64_t>& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
// (grad_input, grad_weight, grad_bias) of layer_norm, PyTorch's native_layer_norm_backward: mean /
// rstd hold one value per normalised row (any shape with that many elements). Fused kernel when no
// graph is recorded; otherwise layer_norm_backward_composite, which recomputes mean / rstd from the
// input with ops (so, unlike PyTorch's, this one takes the forward's eps).
std::tuple<Tensor, Tensor, Tensor> layer_norm_backward(const Tensor& grad_output, const Tensor& input,
                                                       const std::vector<int64_t>& normalized_shape,
                                                       const Tensor& mean, const Tensor& rstd, const Tensor& weight,
                                                       double eps,
                                                       std::array<bool, 3> output_mask = {true, true, true});
std::tuple<Tensor, Tensor, Tensor> layer_norm_backward_composite(const Tensor& grad_output, const Tensor& input,
                                                                 const std::vector<int64_t>& normalized_shape,
                                                                 const Tensor& weight, double eps,
                                                                 std::array<bool, 3> output_mask = {true, true,
                                                                                                    true});

// ---------------- losses (core/ops/loss.cpp) ----------------

struct CrossEntropyOptions {
  Reduction reduction = Reduction::Mean;
  int64_t ignore_index = -100;   // targets equal to this contribute nothing (and do not count in the mean)
  double label_smoothing = 0.0;  // mixes the one-hot target with the uniform distribution
};

// input: logits [N, C] (or [C], or [N, C, d1, ..] with target [N, d1, ..]); target: int64 class
// indices. log_softmax and the NLL run fused in one kernel forward and one backward.
Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options = {});
// The gradient of the per-row losses with respect to logits [R, C] (targets [R], grad_loss [R]):
//   grad_logits[i, c] = grad_loss[i] * (softmax(x)[i, c] - (1 - s) * [c == t_i] - s / C), 0 on ignored rows.
// row_stats [R, 2] (the forward kernel's per-row max and log-sum-exp) is optional: the fused kernel
// uses it. Fused kernel when no graph is recorded; otherwise cross_entropy_backward_composite.
Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                              int64_t ignore_index = -100, double label_smoothing = 0.0,
                              const Tensor& row_stats = Tensor());
Tensor cross_entropy_backward_composite(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                                        int64_t ignore_index = -100, double label_smoothing = 0.0);

struct NllLossOptions {
  Reduction reduction = Reduction::Mean;
  int64_t ignore_index = -100;
};
// input: log-probabilities [N, C] (or [C]); target: int64 class indices [N] (or []).
Tensor nll_loss(const Tensor& input, const Tensor& target, const NllLossOptions& options = {});

// Squared error between two tensors of the same shape.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

}  // namespace ember
