// Intra-op parallelism for CPU kernels (OpenMP underneath). Small problems run inline: a
// parallel region costs a few microseconds, more than adding a thousand floats.
#pragma once

#include <algorithm>
#include <cstdint>

#include <omp.h>

#include "core/backend.h"

namespace ember {

// Below this many elements a kernel runs on one thread.
inline constexpr int64_t kGrainSize = 32768;

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
