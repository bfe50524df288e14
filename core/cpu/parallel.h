// Intra-op parallelism for CPU kernels (OpenMP underneath). Small problems run inline: a
// parallel region costs a few microseconds, more than adding a thousand floats.
#pragma once

#include <algorithm>
#include <cstdint>

#include <omp.h>

#include "core/backend.h"

namespace ember {

// The kinds of loop whose parallel split shares a grain: at least that many elements per thread,
// so a smaller loop runs on the calling thread. Opening an OpenMP region costs a few microseconds,
// and what a loop of n elements costs per element differs by kind (a ReLU streams two arrays, an
// Adam step seven, a softmax row computes exponentials), so each kind has its own grain, measured
// by bench/grain_sweep.cpp (bench/RESULTS.md): the smallest size where two threads beat one by
// 10 %, halved (elements per thread).
enum class Grain {
  Elementwise,    // elementwise ops and copies (StridedLoop), fills, the split-K sum
  Reduction,      // sum, mean, max, ... over any dims
  RowWise,        // softmax, log_softmax, cross-entropy: per row
  Normalization,  // batch norm (per channel), layer norm (per row)
  Pooling,        // max / average pooling: per plane
  Optimizer,      // SGD and Adam steps: per parameter element
};
inline constexpr int kGrainKinds = 6;

// While active, OpenMP-threaded libraries called on this thread run on it alone: the GEMM engines
// (dnnl_sgemm, Eigen, OpenBLAS's OpenMP build) size their team from OpenMP's thread count at the
// call, and oneDNN's primitives from the count when they are made. Restores the count after.
class OneThread {
 public:
  explicit OneThread(bool active) : saved_(active ? omp_get_max_threads() : 0) {
    if (saved_ > 1) omp_set_num_threads(1);
  }
  ~OneThread() {
    if (saved_ > 1) omp_set_num_threads(saved_);
  }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int saved_;
};

namespace detail {
// Elements per thread at least, by Grain, in Grain's order: bench/grain_sweep on the Zen 5 under
// PVM (2026-12-07, 2 threads), where opening a region cost about 4 us; two threads won from 256k
// elements for a ReLU or a sum, 16k for softmax rows of 100, 64k for batch norm and max pooling,
// 128k for an SGD step (below those the one-thread loop was faster or level). set_grain_size
// changes them.
inline int64_t grain_sizes[kGrainKinds] = {131072, 131072, 8192, 32768, 32768, 65536};
}  // namespace detail

inline int64_t grain_size(Grain kind) { return detail::grain_sizes[static_cast<int>(kind)]; }
// The grain of a loop over items of `item_elements` elements each (channels, rows, planes): how
// many items make a kind's grain, at least 1.
inline int64_t items_per_grain(Grain kind, int64_t item_elements) {
  return std::max<int64_t>(1, grain_size(kind) / std::max<int64_t>(1, item_elements));
}
// For bench/grain_sweep and tests: not thread-safe against running kernels, set it between calls.
inline void set_grain_size(Grain kind, int64_t elements) {
  detail::grain_sizes[static_cast<int>(kind)] = std::max<int64_t>(1, elements);
}

// Calls fn(begin, end) on disjoint chunks covering [0, n), in parallel when n is large enough.
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  int threads = static_cast<int>(std::min<int64_t>(get_num_threads(), (n + grain - 1) / grain));
  if (threads <= 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    // The team can be smaller than asked (one thread inside another region): chunk by its size.
    const int team = omp_get_num_threads();
    int t = omp_get_thread_num();
    int64_t chunk = (n + team - 1) / team;
    int64_t b = std::min<int64_t>(n, t * chunk), e = std::min<int64_t>(n, b + chunk);
    if (b < e) fn(b, e);
  }
}

}  // namespace ember
