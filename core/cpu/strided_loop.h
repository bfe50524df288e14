// The CPU's strided iteration engine (a small cousin of PyTorch's TensorIterator).
// N operands (operand 0 is the output) share one shape; each has its own byte strides (0 on a
// broadcast dim). Dims of size 1 are dropped, the rest taken in the output's memory order, and
// adjacent dims that are contiguous for every operand are merged, so a contiguous, channels-last
// or simply-broadcast op becomes one flat inner loop that the compiler vectorises. The flat index
// range is split across threads.
#pragma once

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstdint>

#include "core/cpu/parallel.h"
#include "core/tensor.h"

namespace ember {

template <int N>
struct StridedLoop {
  int ndim = 0;
  int64_t size[kMaxDims];
  int64_t stride[kMaxDims][N];  // bytes
  char* base[N];
  int64_t numel = 1;

  explicit StridedLoop(const std::array<const Tensor*, N>& ops) {
    const Shape& shape = ops[0]->shape();
    for (int i = 0; i < N; ++i) base[i] = static_cast<char*>(ops[i]->data_ptr());
    // Walk the dims in the output's memory order (largest stride outermost), so a channels-last
    // output (and inputs laid out like it) merges into one flat run as a contiguous one does.
    // Every element is computed on its own, so the order changes nothing but speed. An output
    // that repeats elements (stride 0) keeps the logical order.
    int order[kMaxDims];
    int n = 0;
    bool output_dense = true;
    for (int d = 0; d < shape.size(); ++d) {
      if (shape[d] == 1) continue;
      order[n++] = d;
      output_dense = output_dense && ops[0]->stride(d) != 0;
    }
    if (output_dense)
      std::stable_sort(order, order + n,
                       [&](int x, int y) { return std::abs(ops[0]->stride(x)) > std::abs(ops[0]->stride(y)); });
    for (int k = 0; k < n; ++k) {
      const int d = order[k];
      bool merged = false;
      if (ndim > 0) {  // merge into the previous (outer) dim when contiguous for all operands
        bool ok = true;
        for (int i = 0; i < N; ++i)
          ok = ok && stride[ndim - 1][i] == ops[i]->stride(d) * static_cast<int64_t>(ops[i]->element_size()) * shape[d];
        if (ok) {
          size[ndim - 1] *= shape[d];
          for (int i = 0; i < N; ++i) stride[ndim - 1][i] = ops[i]->stride(d) * static_cast<int64_t>(ops[i]->element_size());
          merged = true;
        }
      }
      if (!merged) {
        size[ndim] = shape[d];
        for (int i = 0; i < N; ++i) stride[ndim][i] = ops[i]->stride(d) * static_cast<int64_t>(ops[i]->element_size());
        ++ndim;
      }
    }
    if (ndim == 0) {  // scalar or all-ones shape: one element
      size[0] = 1;
      for (int i = 0; i < N; ++i) stride[0][i] = 0;
      ndim = 1;
    }
    for (int d = 0; d < ndim; ++d) numel *= size[d];
    if (shape.numel() == 0) numel = 0;
  }

  // Calls inner(ptrs, inner_strides, n) over runs of the innermost dim covering all elements.
  template <typename Inner>
  void run(Inner&& inner, int64_t grain = grain_size(Grain::Elementwise)) const {
    parallel_for(numel, grain, [&](int64_t b, int64_t e) { run_range(b, e, inner); });
  }

  template <typename Inner>
  void run_range(int64_t b, int64_t e, Inner& inner) const {
    const int last = ndim - 1;
    int64_t idx[kMaxDims];
    char* p[N];
    for (int i = 0; i < N; ++i) p[i] = base[i];
    int64_t rem = b;
    for (int d = last; d >= 0; --d) {
      idx[d] = rem % size[d];
      rem /= size[d];
      for (int i = 0; i < N; ++i) p[i] += idx[d] * stride[d][i];
    }
    while (b < e) {
      int64_t n = std::min(size[last] - idx[last], e - b);
      inner(p, stride[last], n);
      b += n;
      idx[last] += n;
      for (int i = 0; i < N; ++i) p[i] += n * stride[last][i];
      for (int d = last; d > 0 && idx[d] == size[d]; --d) {
        for (int i = 0; i < N; ++i) p[i] += stride[d - 1][i] - idx[d] * stride[d][i];
        idx[d] = 0;
        ++idx[d - 1];
      }
    }
  }
};

}  // namespace ember
