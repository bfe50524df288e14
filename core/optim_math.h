// The per-element arithmetic of the fused optimizer steps (OptimKernels::sgd_step / adam_step), written
// once for every device: the CPU loops (core/cpu/cpu_optim.cpp) and the CUDA multi-tensor kernels
// (cuda/cuda_optim.cu) both call these. It is PyTorch's _single_tensor_sgd / _single_tensor_adam,
// in the parameter's dtype T; the constants are converted to T once, on the host.
#pragma once

#include <cmath>

#include "core/kernels/optim_kernels.h"
#include "core/host_device.h"

namespace ember {

template <typename T>
struct SGDMath {
  T lr, mom, wd, keep;
  bool nesterov, first;  // first: the momentum buffer was just created and takes d as it is

  static SGDMath make(const OptimKernels::SGDStep& s) {
    return {T(s.lr), T(s.momentum), T(s.weight_decay), T(1 - s.dampening), s.nesterov, s.first};
  }

  // One element; buf is null when momentum == 0. The CUDA kernels call this.
  EMBER_HD void operator()(T& p, T g, T* buf) const { apply(p, g, buf, wd != 0, buf != nullptr, nesterov, first); }

  // The same step with the choices as arguments, so that a caller can fix them: the CPU loop
  // (core/cpu/cpu_optim.cpp) passes compile-time constants, the branches fold away once this is
  // inlined, and the loop vectorises.
  EMBER_HD void apply(T& p, T g, T* buf, bool decay, bool momentum, bool nesterov_, bool first_) const {
    T d = g;
    if (decay) d = d + wd * p;
    if (momentum) {
      const T b = first_ ? d : *buf * mom + keep * d;
      *buf = b;
      d = nesterov_ ? d + mom * b : b;
    }
    p = p - lr * d;
  }
};

template <typename T>
struct AdamMath {
  T b1, b2, one_b1, one_b2, eps, wd, decay, bc2, neg_step;
  bool l2, decoupled;  // Adam's L2 penalty on the gradient, or AdamW's decay of the parameter

  static AdamMath make(const OptimKernels::AdamStep& s) {
    return {T(s.beta1), T(s.beta2), T(1 - s.beta1), T(1 - s.beta2), T(s.eps), T(s.weight_decay),
            T(1 - s.lr * s.weight_decay), T(s.bias_corr2_sqrt), T(-s.step_size),
            !s.decoupled && s.weight_decay != 0, s.decoupled && s.weight_decay != 0};
  }

  // One element; vmax is null unless amsgrad. The CUDA kernels call this.
  EMBER_HD void operator()(T& p, T g, T& m, T& v, T* vmax) const { apply(p, g, m, v, vmax, l2, decoupled, vmax != nullptr); }

  // The same step with the choices as arguments (see SGDMath::apply).
  EMBER_HD void apply(T& p, T g, T& m, T& v, T* vmax, bool l2_, bool decoupled_, bool amsgrad) const {
    T grad = g;
    T param = p;
    if (l2_) grad = grad + wd * param;
    if (decoupled_) param = param * decay;
    const T mi = m * b1 + one_b1 * grad;
    T vi = v * b2 + one_b2 * grad * grad;
    m = mi;
    v = vi;
    if (amsgrad) {
      vi = *vmax > vi ? *vmax : vi;
      *vmax = vi;
    }
    const T denom = std::sqrt(vi) / bc2 + eps;
    p = param + neg_step * (mi / denom);
  }
};

}  // namespace ember
