// clip_grad_norm_: one pass over each gradient to measure it, one in-place scale if it is too long.
#include "optim/clip_grad.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/cpu/parallel.h"
#include "core/ops.h"

namespace ember::optim {

namespace {

// sum |x|^p over a CPU gradient (or max |x| for the infinity norm), accumulated in double.
// Chunks are reduced separately and combined in order, so the result does not depend on the thread count.
// The chunk size is fixed (not a tunable grain): it decides the rounding.
constexpr int64_t kChunk = 32768;
double cpu_partial_norm(const Tensor& grad, double p) {
  const Tensor g = grad.contiguous();
  return EMBER_DISPATCH_FLOAT(g.dtype(), "clip_grad_norm_", [&]<typename T>() {
    const T* x = g.data<T>();
    const int64_t n = g.numel();
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(chunks, 0.0);
    parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t c = cb; c < ce; ++c) {
        const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
        double acc = 0;
        if (std::isinf(p)) {
          for (int64_t i = begin; i < end; ++i) acc = std::max(acc, std::abs(static_cast<double>(x[i])));
        } else if (p == 2) {
          for (int64_t i = begin; i < end; ++i) acc += static_cast<double>(x[i]) * x[i];
        } else if (p == 1) {
          for (int64_t i = begin; i < end; ++i) acc += std::abs(static_cast<double>(x[i]));
        } else {
          for (int64_t i = begin; i < end; ++i) acc += std::pow(std::abs(static_cast<double>(x[i])), p);
        }
        partial[c] = acc;
      }
    });
    double total = 0;
    for (double v : partial) total = std::isinf(p) ? std::max(total, v) : total + v;
    return total;
  });
}

// The same with tensor ops, for gradients on other devices: a 0-d float64 tensor on that device.
Tensor device_partial_norm(const Tensor& g, double p) {
  Tensor a = abs(g);
  Tensor r = std::isinf(p) ? max(a) : p == 2 ? sum(a * a) : p == 1 ? sum(a) : sum(pow(a, p));
  return r.to(kFloat64);
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  EMBER_CHECK(max_norm >= 0, "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
  EMBER_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be positive (or kInfNorm), got ", norm_type);
  NoGradGuard no_grad;
  const bool inf = std::isinf(norm_type);

  std::vector<Tensor> grads;
  for (size_t i = 0; i < parameters.size(); ++i) {
    EMBER_CHECK(parameters[i].defined(), "clip_grad_norm_: parameter ", i, " is an undefined tensor");
    if (parameters[i].grad().defined()) grads.push_back(parameters[i].grad());
  }
  if (grads.empty()) return 0.0;

  // Combine every gradient's sum |x|^p (or max |x|). CPU gradients are reduced right here; the
  // others are reduced on their device and fetched with one synchronisation per device.
  double acc = 0;
  auto combine = [&](double v) { acc = inf ? std::max(acc, v) : acc + v; };
  std::vector<Tensor> device_parts;
  for (const Tensor& g : grads) {
    if (g.device().is_cpu()) combine(cpu_partial_norm(g, norm_type));
    else device_parts.push_back(device_partial_norm(g, norm_type));
  }
  while (!device_parts.empty()) {
    const Device d = device_parts.front().device();
    std::vector<Tensor> same, rest;
    for (Tensor& t : device_parts) (t.device() == d ? same : rest).push_back(t);
    Tensor s = stack(same);
    combine((inf ? max(s) : sum(s)).item());
    device_parts = std::move(rest);
  }
  const double total = inf              ? acc
                       : norm_type == 2 ? std::sqrt(acc)
                       : norm_type == 1 ? acc
                                        : std::pow(acc, 1.0 / norm_type);

  EMBER_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_: the total norm of order ", norm_type,
              " of the gradients is ", total,
              ", so they cannot be clipped (pass error_if_nonfinite = false to clip anyway)");
  const double coef = max_norm / (total + 1e-6);
  // PyTorch multiplies by min(coef, 1): skip the multiply by 1, but do apply a NaN coefficient (a
  // NaN norm then shows up in every gradient instead of being silently ignored).
  if (!(coef >= 1)) {
    for (Tensor& g : grads) g.mul_(coef);
  }
  return total;
}

}  // namespace ember::optim
