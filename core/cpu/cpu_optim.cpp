// CPU fused optimizer steps (OptimKernels::sgd_step / adam_step): one pass over each parameter's
// contiguous memory that reads p, g and the state once and writes them once, with no temporaries,
// in a vector loop with no branch left in it (each combination of options is its own loop).
// The optimizers (optim/sgd.cpp, optim/adam.cpp) call these for every contiguous float parameter;
// the arithmetic is PyTorch's _single_tensor_sgd / _single_tensor_adam, in the parameter's dtype.
// The arithmetic itself is in core/optim_math.h, shared with cuda/cuda_optim.cu.
#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"
#include "core/optim_math.h"

namespace ember {

namespace {

// Calls f.template operator()<b...>() with run-time booleans turned into template arguments: each
// combination of an optimizer's options gets its own branch-free loop.
template <bool... Fixed, typename F>
void with_constants(F&& f) {
  f.template operator()<Fixed...>();
}
template <bool... Fixed, typename F, typename... Rest>
void with_constants(F&& f, bool next, Rest... rest) {
  if (next) with_constants<Fixed..., true>(f, rest...);
  else with_constants<Fixed..., false>(f, rest...);
}

// The element loops are plain function templates, for the reason core/cpu/simd_loops.h gives.
// Iteration i touches element i only, so `omp simd` is safe.
template <bool kDecay, bool kMomentum, bool kNesterov, bool kFirst, typename T>
void sgd_range(const SGDMath<T>& math, T* p, const T* g, T* buf, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i)
    math.apply(p[i], g[i], kMomentum ? buf + i : nullptr, kDecay, kMomentum, kNesterov, kFirst);
}

template <bool kL2, bool kDecoupled, bool kAmsgrad, typename T>
void adam_range(const AdamMath<T>& math, T* p, const T* g, T* m, T* v, T* vmax, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i)
    math.apply(p[i], g[i], m[i], v[i], kAmsgrad ? vmax + i : nullptr, kL2, kDecoupled, kAmsgrad);
}

// One pass over contiguous memory per parameter; buf is null when momentum == 0.
template <typename T>
void sgd_fused(T* p, const T* g, T* buf, int64_t n, const OptimKernels::SGDStep& s) {
  const SGDMath<T> math = SGDMath<T>::make(s);
  with_constants(
      [&]<bool kDecay, bool kMomentum, bool kNesterov, bool kFirst>() {
        parallel_for(n, grain_size(Grain::Optimizer), [&](int64_t begin, int64_t end) {
          sgd_range<kDecay, kMomentum, kNesterov, kFirst>(math, p, g, buf, begin, end);
        });
      },
      math.wd != 0, buf != nullptr, math.nesterov, math.first);
}

// vmax is null unless amsgrad.
template <typename T>
void adam_fused(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, const OptimKernels::AdamStep& s) {
  const AdamMath<T> math = AdamMath<T>::make(s);
  with_constants(
      [&]<bool kL2, bool kDecoupled, bool kAmsgrad>() {
        parallel_for(n, grain_size(Grain::Optimizer), [&](int64_t begin, int64_t end) {
          adam_range<kL2, kDecoupled, kAmsgrad>(math, p, g, m, v, vmax, begin, end);
        });
      },
      math.l2, math.decoupled, vmax != nullptr);
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
