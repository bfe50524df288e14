// The row math of softmax and log_softmax, defined once for the CPU loops
// (core/cpu/cpu_softmax.cpp) and the CUDA kernels (cuda/cuda_softmax.cu); cross entropy's row math
// (core/cross_entropy_row.h) builds on it. A row x of n elements is summarised by
//   m = max(x)                  (a NaN anywhere makes the row NaN, as in PyTorch)
//   s = sum(exp(x - m))         (accumulated in double by both devices; at least 1)
// and then
//   softmax       y = exp(x - m) / s          backward  gi = y * (g - sum(g * y))
//   log_softmax   y = (x - m) - log(s)        backward  gi = g - exp(y) * sum(g)
// (x - m) is taken first: it is exact for the logits that matter, those close to the max.
//
// How each device computes exp and adds up a row (vectorised chunks on the CPU, lanes and warp
// shuffles on the GPU) stays with the device; exp is passed in already evaluated, because the CPU
// uses its own vectorisable float32 exp. All EMBER_HD.
#pragma once

#include <cmath>

#include "core/host_device.h"

namespace ember::softmax_math {

// The max of a softmax row: a NaN on either side wins (so a NaN anywhere makes the row NaN).
template <typename T>
EMBER_HD T max_nan(T a, T b) {
  return (a > b) | (a != a) ? a : b;
}

// The factor that turns exp(x - m) into softmax: 1 / s, rounded to T once per row.
template <typename T>
EMBER_HD T inverse_sum(double s) {
  return static_cast<T>(1.0 / s);
}

// log(s), rounded to T once per row: what log_softmax subtracts.
template <typename T>
EMBER_HD T log_sum(double s) {
  return static_cast<T>(std::log(s));
}

// log_softmax of x in a row with max m and log-sum ls: (x - m) first, then ls.
template <typename T>
EMBER_HD T log_softmax(T x, T m, T ls) {
  return (x - m) - ls;
}

// Gradient of softmax at an element with output y and incoming gradient g; dot = sum(g * y) over the row.
template <typename T>
EMBER_HD T softmax_grad(T g, T y, T dot) {
  return y * (g - dot);
}

// Gradient of log_softmax at an element with incoming gradient g; exp_y = exp(y) is the softmax
// there, sum_g = sum(g) over the row.
template <typename T>
EMBER_HD T log_softmax_grad(T g, T exp_y, T sum_g) {
  return g - exp_y * sum_g;
}

}  // namespace ember::softmax_math
