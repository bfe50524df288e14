// Fused optimizer steps (optim/sgd.cpp and optim/adam.cpp call them; core/cpu/cpu_optim.cpp and
// cuda/cuda_optim.cu implement them, both with the per-element math of core/optim_math.h). A
// kernel table: see core/kernels/registry.h.
//
// Multi-tensor: one call updates a whole list of parameters, so a device can cover them with one
// or a few kernel launches instead of one per parameter per operation. Tensor i of every list has
// the same shape and dtype (float32 or float64), all contiguous, all on the table's device. The
// arithmetic is PyTorch's (_single_tensor_sgd / _single_tensor_adam), in the parameters' dtype.
#pragma once

#include <vector>

#include "core/error.h"
#include "core/kernels/registry.h"
#include "core/tensor.h"

namespace ember {

struct OptimKernels {
  virtual ~OptimKernels() = default;

  struct SGDStep {
    double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
    bool nesterov = false;
    bool first = false;  // the momentum buffers were just created: they take d instead of decaying
  };
  // momentum_buffers is empty when momentum == 0.
  virtual void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                        const std::vector<Tensor>& momentum_buffers, const SGDStep& s) {
    EMBER_FAIL("sgd_step: not implemented on this device");
  }

  struct AdamStep {
    double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
    bool amsgrad = false, decoupled = false;  // decoupled: AdamW's weight decay
    double step_size = 0;        // lr / (1 - beta1^t)
    double bias_corr2_sqrt = 0;  // sqrt(1 - beta2^t)
  };
  // max_exp_avg_sqs is empty unless amsgrad. All parameters in one call share the step count t.
  virtual void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                         const std::vector<Tensor>& max_exp_avg_sqs, const AdamStep& s) {
    EMBER_FAIL("adam_step: not implemented on this device");
  }
};

inline OptimKernels& optim_kernels(Device d) { return KernelRegistry<OptimKernels>::get(d); }

}  // namespace ember
