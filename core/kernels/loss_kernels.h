// Loss kernels (core/ops/loss.cpp calls them; core/cpu/cpu_loss.cpp and cuda/cuda_loss.cu
// implement them, both with the row math of core/cross_entropy_row.h). A kernel table: see
// core/kernels/registry.h. Tensors passed in are already on the table's device and checked.
#pragma once

#include <cstdint>

#include "core/error.h"
#include "core/kernels/registry.h"
#include "core/tensor.h"

namespace ember {

struct LossKernels {
  virtual ~LossKernels() = default;

  // Fused log_softmax + negative log likelihood per row of logits [N, C] (contiguous) with int64
  // class targets [N]: loss[i] = (1 - s) * (lse_i - x[i, t_i]) + s * (lse_i - mean_c x[i, c]) with
  // s the label smoothing, and 0 where t_i == ignore_index. Writes loss [N] and row_stats [N, 2]:
  // each row's max m and log(sum(exp(x - m))), kept for the backward (core/cross_entropy_row.h
  // says why the two are kept apart rather than summed into a logsumexp). A target outside [0, C)
  // other than ignore_index is an error on the CPU; on CUDA, where reporting it would need a host
  // read of the targets every step, that row's loss and gradient are NaN instead
  // (cuda/cuda_loss.cu) and memory is never indexed by it.
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& row_stats,
                             int64_t ignore_index, double label_smoothing) {
    EMBER_FAIL("cross_entropy: not implemented on this device (", logits.device(), ")");
  }
  // grad_logits[i, c] = grad_loss[i] * (softmax[i, c] - (1 - s) * [c == t_i] - s / C); 0 on ignored
  // rows. grad_loss [N] may have stride 0 (the gradient of a mean or sum, broadcast). Writes
  // grad_logits, never accumulates into it.
  virtual void cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                                      const Tensor& row_stats, const Tensor& grad_logits, int64_t ignore_index,
                                      double label_smoothing) {
    EMBER_FAIL("cross_entropy_backward: not implemented on this device (", logits.device(), ")");
  }
};

inline LossKernels& loss_kernels(Device d) { return KernelRegistry<LossKernels>::get(d); }

}  // namespace ember
