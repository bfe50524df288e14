// 2-D pooling windows, defined once for the CPU loops (core/cpu/cpu_pool.cpp) and the CUDA
// kernels (cuda/cuda_pool.cu): which input positions an output cell reads, what an average divides
// by, and how a max picks its winner. Each function works on one dim (rows or columns) of an
// [H, W] plane; a window is the product of a row range and a column range. All EMBER_HD.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace ember::pool {

// ---------------------------------------------------------------- max pooling

// The taps of max-pooling output o along one dim (kernel k, stride s, padding pad, dilation d, input
// length size) that lie inside the input: first, first + d, ... while < end.
struct Taps {
  int64_t first, end;
};
EMBER_HD Taps max_taps(int64_t o, int64_t k, int64_t s, int64_t pad, int64_t d, int64_t size) {
  int64_t first = o * s - pad;
  const int64_t last = first + (k - 1) * d + 1;
  const int64_t end = last < size ? last : size;
  while (first < 0) first += d;  // first tap inside the input (padding is at most half the window)
  return {first, end};
}

// "v replaces the best so far" (PyTorch's rule): strictly greater — so the first of equal maxima
// in row-major order is kept — or NaN, so a NaN wins and only a later NaN replaces it. The best
// starts at -inf.
template <typename T>
EMBER_HD bool max_replaces(T v, T best) {
  return v > best || v != v;
}

// ---------------------------------------------------------------- average pooling

// The window of output o along one dim (PyTorch's avg_pool arithmetic): it may reach into the
// padding up to size + pad; [start, end) is the part inside the input, and `span` its length
// before clipping, which is the divisor when padded positions count.
struct AvgWindow {
  int64_t start, end, span;
};
EMBER_HD AvgWindow avg_window(int64_t o, int64_t k, int64_t s, int64_t pad, int64_t size) {
  const int64_t start = o * s - pad;
  const int64_t end = start + k < size + pad ? start + k : size + pad;
  return {start > 0 ? start : 0, end < size ? end : size, end - start};
}

// What the average of window (h, w) divides by: its full span when padded positions count
// (count_include_pad), else the number of real input positions in it.
EMBER_HD int64_t avg_divisor(const AvgWindow& h, const AvgWindow& w, bool count_include_pad) {
  return count_include_pad ? h.span * w.span : (h.end - h.start) * (w.end - w.start);
}

// The outputs [first, end) whose windows contain input position i (the backward as a gather).
// Window o covers [o*s - pad, o*s - pad + k) (its clip at size + pad never cuts off a real
// position), so they run from the first o with o*s > i + pad - k to the last with o*s <= i + pad.
struct Outputs {
  int64_t first, end;
};
EMBER_HD Outputs avg_outputs_covering(int64_t i, int64_t k, int64_t s, int64_t pad, int64_t out_size) {
  const int64_t first = i + pad < k ? 0 : (i + pad - k) / s + 1;
  const int64_t end = (i + pad) / s + 1;
  return {first, end < out_size ? end : out_size};
}

// ---------------------------------------------------------------- adaptive average pooling

// Output cell o of out_size covers input [floor(o*size/out_size), ceil((o+1)*size/out_size)).
EMBER_HD int64_t adaptive_start(int64_t o, int64_t out_size, int64_t size) { return (o * size) / out_size; }
EMBER_HD int64_t adaptive_end(int64_t o, int64_t out_size, int64_t size) {
  return ((o + 1) * size + out_size - 1) / out_size;
}

// Output cell o covers input i exactly when floor(i*out_size/size) <= o < ceil((i+1)*out_size/size):
// the same formulas with the roles of input and output swapped.
EMBER_HD Outputs adaptive_outputs_covering(int64_t i, int64_t size, int64_t out_size) {
  return {adaptive_start(i, size, out_size), adaptive_end(i, size, out_size)};
}

}  // namespace ember::pool
