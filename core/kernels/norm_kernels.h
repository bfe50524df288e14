// Normalisation kernels (core/ops/norm.cpp calls them; core/cpu/cpu_norm.cpp,
// cuda/cuda_batch_norm.cu and cuda/cuda_layer_norm.cu implement them). A kernel table: see
// core/kernels/registry.h.
//
// All tensors are contiguous, except batch norm's [N, C, S] tensors (in, out, grad_out, grad_in)
// on a table whose takes_channels_last() says so: there they may all be channels-last together
// (strides S*C, 1, C). Optional tensors may be undefined. A backward kernel writes (never
// accumulates into) each gradient that is defined and skips the undefined ones. Tensors passed in
// are already on the table's device and already checked.
#pragma once

#include "core/error.h"
#include "core/kernels/registry.h"
#include "core/tensor.h"

namespace ember {

struct NormKernels {
  virtual ~NormKernels() = default;

  // Batch norm over in [N, C, S] per channel C. training: normalise with the batch statistics,
  // write them to save_mean / save_invstd [C] (invstd = 1/sqrt(var + eps), biased var), and, when
  // running_mean / running_var are defined, update them in place with `momentum` (the unbiased
  // variance goes into running_var, as in PyTorch). Not training: normalise with the running
  // statistics, and write them to save_mean / save_invstd in the same form for the backward.
  // weight / bias [C] are optional (affine=false).
  virtual void batch_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                          const Tensor& running_var, const Tensor& out, const Tensor& save_mean,
                          const Tensor& save_invstd, bool training, double momentum, double eps) {
    EMBER_FAIL("batch_norm: not implemented on this device (", in.device(), ")");
  }
  // training selects the full gradient through the batch statistics; otherwise they are constants.
  // eps is the forward's (cuDNN wants the same value in both passes).
  virtual void batch_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                   const Tensor& save_mean, const Tensor& save_invstd, const Tensor& grad_in,
                                   const Tensor& grad_weight, const Tensor& grad_bias, bool training, double eps) {
    EMBER_FAIL("batch_norm_backward: not implemented on this device (", in.device(), ")");
  }

  // batch_norm followed by ReLU in one pass: out = max(0, batch_norm(in)), same arguments. A table
  // that has it says so here; on the others core/ops/norm.cpp runs batch_norm and then relu. The
  // backward takes the forward's bias as well: it recomputes the ReLU's mask from in rather than
  // reading the output.
  virtual bool fuses_batch_norm_relu() const { return false; }
  // Whether batch norm's kernels take channels-last [N, C, S] tensors (else the op makes them contiguous).
  virtual bool takes_channels_last() const { return false; }
  virtual void batch_norm_relu(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, const Tensor& out, const Tensor& save_mean,
                               const Tensor& save_invstd, bool training, double momentum, double eps) {
    EMBER_FAIL("batch_norm_relu: not fused on this device (", in.device(), ")");
  }
  virtual void batch_norm_relu_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                        const Tensor& bias, const Tensor& save_mean, const Tensor& save_invstd,
                                        const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                        bool training, double eps) {
    EMBER_FAIL("batch_norm_relu_backward: not fused on this device (", in.device(), ")");
  }

  // Layer norm of each row of in [M, N]; writes mean / rstd [M]. weight / bias [N] are optional.
  virtual void layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out,
                          const Tensor& mean, const Tensor& rstd, double eps) {
    EMBER_FAIL("layer_norm: not implemented on this device (", in.device(), ")");
  }
  virtual void layer_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& grad_in, const Tensor& grad_weight,
                                   const Tensor& grad_bias) {
    EMBER_FAIL("layer_norm_backward: not implemented on this device (", in.device(), ")");
  }
};

inline NormKernels& norm_kernels(Device d) { return KernelRegistry<NormKernels>::get(d); }

}  // namespace ember
