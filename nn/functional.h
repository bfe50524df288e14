// nn::functional: the stateless neural-network ops the layers (nn/layers.h) are built from, with
// PyTorch's names, argument order and defaults (torch.nn.functional). Each is differentiable: its
// forward kernel call and its backward formula sit side by side in nn/functional_*.cpp, like the
// core ops. Images are NCHW; an unbatched CHW input is accepted where PyTorch accepts one.
//
//   namespace F = ember::nn::functional;
//   Tensor y = F::conv2d(x, w, b, /*stride=*/2, /*padding=*/1);
//   Tensor loss = F::cross_entropy(logits, labels, {.label_smoothing = 0.1});
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "core/generator.h"
#include "core/tensor.h"

namespace ember::nn {

// A (height, width) pair; one number means both: `stride = 2` or `kernel_size = {3, 5}`.
struct Size2 {
  int64_t h, w;
  Size2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit so a single number reads naturally
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
};

// How a loss combines the per-element losses (PyTorch's `reduction`).
enum class Reduction { None, Mean, Sum };

namespace functional {

// ---------------- linear layers (nn/functional_linear.cpp) ----------------

// x [.., in] · weightᵀ [in, out] + bias [out] -> [.., out]. One GEMM reading the weight transposed
// in place; the bias is added into the GEMM's output buffer.
Tensor linear(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor());

// Zeroes each element with probability p and scales the rest by 1/(1-p) when `training`.
Tensor dropout(const Tensor& input, double p = 0.5, bool training = true, Generator* gen = nullptr);

// ---------------- convolution and pooling (nn/functional_conv.cpp, nn/functional_pool.cpp) ----------------

// input [N, Cin, H, W] (or [Cin, H, W]), weight [Cout, Cin/groups, kh, kw], bias [Cout] (optional).
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(), Size2 stride = 1,
              Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1);

// stride defaults to kernel_size. Padding may be at most half the (dilated) kernel.
Tensor max_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                  Size2 dilation = 1, bool ceil_mode = false);
// Also returns the int64 indices (flat h*W + w position of each maximum in its input plane).
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, Size2 kernel_size,
                                                  std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                                                  Size2 dilation = 1, bool ceil_mode = false);
Tensor avg_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                  bool ceil_mode = false, bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& input, Size2 output_size);

// ---------------- normalisation (nn/functional_norm.cpp) ----------------

// input [N, C, *]. training: normalise with the batch statistics and, when running_mean /
// running_var are given, update them in place (running = (1 - momentum) * running + momentum *
// batch; the variance stored is the unbiased one). Otherwise normalise with the running statistics.
Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), bool training = false,
                  double momentum = 0.1, double eps = 1e-5);

// Normalises over the trailing dims `normalized_shape`; weight / bias have that shape (optional).
Tensor layer_norm(const Tensor& input, const std::vector<int64_t>& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

// ---------------- losses (nn/functional_loss.cpp) ----------------

struct CrossEntropyOptions {
  Reduction reduction = Reduction::Mean;
  int64_t ignore_index = -100;   // targets equal to this contribute nothing (and do not count in the mean)
  double label_smoothing = 0.0;  // mixes the one-hot target with the uniform distribution
};

// input: logits [N, C] (or [C], or [N, C, d1, ..] with target [N, d1, ..]); target: int64 class
// indices. log_softmax and the NLL run fused in one kernel forward and one backward.
Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options = {});

struct NllLossOptions {
  Reduction reduction = Reduction::Mean;
  int64_t ignore_index = -100;
};
// input: log-probabilities [N, C] (or [C]); target: int64 class indices [N] (or []).
Tensor nll_loss(const Tensor& input, const Tensor& target, const NllLossOptions& options = {});

// Squared error between two tensors of the same shape.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

}  // namespace functional
}  // namespace ember::nn
