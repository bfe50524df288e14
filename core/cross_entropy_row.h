// Cross entropy of one row of logits, defined once for the CPU (core/cpu/cpu_loss.cpp) and CUDA
// (cuda/cuda_loss.cu) kernels. A row is summarised by two numbers kept for the backward:
//   m       = max(x)                  (NaNs skipped: row_max)
//   log_sum = log(sum(exp(x - m)))    (between 0 and log C)
// and every formula goes through the log-softmax in the stable form (x - m) - log_sum
// (softmax_math::log_softmax, core/softmax_math.h). Why not x - lse with lse = m + log_sum: for
// logits near 1e4, lse rounds to a float32 ulp of 1e-3, and that error lands in every exp of the
// backward (2e-4 relative, where PyTorch is exact); x - m is exact for the logits that matter
// (those close to the max) and log_sum is small.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/host_device.h"
#include "core/softmax_math.h"

namespace ember::xent {

// The running max of a row after seeing x (std::max(m, x), m starting at -inf): a NaN logit is
// skipped here and reaches the loss through the sum of exps instead.
template <typename T>
EMBER_HD T row_max(T m, T x) {
  return m < x ? x : m;
}

// The shift m actually subtracted: 0 when the max is infinite (all -inf, or a +inf present), so
// that x - m stays defined.
template <typename T>
EMBER_HD T shift(T m) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  return m == inf || m == -inf ? T(0) : m;
}

template <typename T>
EMBER_HD T log_softmax(T x, T m, T log_sum) {
  return softmax_math::log_softmax(x, m, log_sum);
}

// (1 - s) * -log_softmax(x[t]) + s * -mean(log_softmax(x)), with s the label smoothing and
// mean(log_softmax(x)) = (mean(x) - m) - log_sum.
template <typename T>
EMBER_HD T loss(T x_target, T mean_x, T m, T log_sum, double smoothing) {
  const T nll = -log_softmax(x_target, m, log_sum);
  if (smoothing == 0) return nll;
  return static_cast<T>((1 - smoothing) * nll + smoothing * -log_softmax(mean_x, m, log_sum));
}

// The part of d loss / d x[c] every class has: g * (p - s / C), with p = softmax[c] and smooth = s / C.
template <typename T>
EMBER_HD T logit_grad_common(T g, T p, T smooth) {
  return g * (p - smooth);
}

// The target class's extra part, subtracted from logit_grad_common: g * (1 - s), keep = 1 - s.
template <typename T>
EMBER_HD T logit_grad_target(T g, T keep) {
  return g * keep;
}

// d loss / d x[c] = g * (softmax[c] - s / C - (1 - s) * [c == t]), softmax from the log-softmax.
// (The CPU kernel applies the two parts in separate loops, so that the per-class loop vectorises.)
template <typename T>
EMBER_HD T logit_grad(T g, T x, T m, T log_sum, bool is_target, T keep, T smooth) {
  T v = logit_grad_common(g, std::exp(log_softmax(x, m, log_sum)), smooth);
  if (is_target) v -= logit_grad_target(g, keep);
  return v;
}

}  // namespace ember::xent
