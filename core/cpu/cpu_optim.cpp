// CPU fused optimizer steps (Backend::sgd_step / adam_step): one pass over each parameter's
// contiguous memory that reads p, g and the state once and writes them once, with no temporaries.
// The optimizers (optim/sgd.cpp, optim/adam.cpp) call these for every contiguous float parameter;
// the arithmetic is PyTorch's _single_tensor_sgd / _single_tensor_adam, in the parameter's dtype.
// cuda/cuda_optim.cu does the same arithmetic on the GPU: keep the two in step.
#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"

namespace ember {

namespace {

// buf is null when momentum == 0. `first`: the momentum buffer was just created, so it takes the
// value of d instead of being decayed.
template <typename T>
void sgd_fused(T* p, const T* g, T* buf, int64_t n, const Backend::SGDStep& s) {
  const T lr = s.lr, mom = s.momentum, wd = s.weight_decay, keep = 1 - s.dampening;
  const bool use_mom = buf != nullptr, nesterov = s.nesterov, first = s.first;
  parallel_for(n, kGrainSize, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T d = g[i];
      if (wd != 0) d = d + wd * p[i];
      if (use_mom) {
        T b = first ? d : buf[i] * mom + keep * d;
        buf[i] = b;
        d = nesterov ? d + mom * b : b;
      }
      p[i] = p[i] - lr * d;
    }
  });
}

// vmax is null unless amsgrad.
template <typename T>
void adam_fused(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, const Backend::AdamStep& s) {
  const T b1 = s.beta1, b2 = s.beta2, one_b1 = 1 - s.beta1, one_b2 = 1 - s.beta2, eps = s.eps;
  const T wd = s.weight_decay, decay = 1 - s.lr * s.weight_decay, bc2 = s.bias_corr2_sqrt, neg_step = -s.step_size;
  const bool l2 = !s.decoupled && s.weight_decay != 0, decoupled = s.decoupled && s.weight_decay != 0;
  parallel_for(n, kGrainSize, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T grad = g[i];
      T param = p[i];
      if (l2) grad = grad + wd * param;
      if (decoupled) param = param * decay;
      T mi = m[i] * b1 + one_b1 * grad;
      T vi = v[i] * b2 + one_b2 * grad * grad;
      m[i] = mi;
      v[i] = vi;
      if (vmax) {
        vi = vmax[i] > vi ? vmax[i] : vi;
        vmax[i] = vi;
      }
      const T denom = std::sqrt(vi) / bc2 + eps;
      p[i] = param + neg_step * (mi / denom);
    }
  });
}

}  // namespace

// Parameters are updated one after another; each update is parallel over its elements.
void CpuBackend::sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                          const std::vector<Tensor>& momentum_buffers, const SGDStep& s) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    EMBER_DISPATCH_FLOAT(p.dtype(), "sgd_step", [&]<typename T>() {
      T* buf = momentum_buffers.empty() ? nullptr : momentum_buffers[i].data<T>();
      sgd_fused<T>(p.data<T>(), grads[i].data<T>(), buf, p.numel(), s);
    });
  }
}

void CpuBackend::adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                           const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                           const std::vector<Tensor>& max_exp_avg_sqs, const AdamStep& s) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    EMBER_DISPATCH_FLOAT(p.dtype(), "adam_step", [&]<typename T>() {
      T* vmax = max_exp_avg_sqs.empty() ? nullptr : max_exp_avg_sqs[i].data<T>();
      adam_fused<T>(p.data<T>(), grads[i].data<T>(), exp_avgs[i].data<T>(), exp_avg_sqs[i].data<T>(), vmax,
                    p.numel(), s);
    });
  }
}

}  // namespace ember
