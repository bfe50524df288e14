// The small vectorised loops several CPU kernels share: a pairwise SIMD sum and an element-wise
// accumulate.
//
// Why they are plain function templates: GCC rejects `#pragma omp simd` inside the templated
// lambdas of EMBER_DISPATCH_FLOAT, so a kernel that wants a vectorised loop calls one of these (or
// a plain function of its own) from the lambda. Without `omp simd`, a floating-point sum is one
// serial chain: the compiler may not reorder the additions, so it cannot use SIMD lanes.
#pragma once

#include <cstdint>

namespace ember::simd {

constexpr int64_t kBlock = 1024;  // a run longer than this is split in halves (pairwise summation)
constexpr int64_t kShortRun = 32;  // runs shorter than this are summed by a plain (scalar) loop

// Sum of n elements x[0], x[s], x[2s], ... accumulated in A: runs of up to kBlock elements are summed
// by one vectorised loop (`omp simd` keeps one partial sum per SIMD lane); longer runs are split in
// halves and summed pairwise, so the rounding error grows with log(n), not n. kContig (s == 1) gives
// the compiler a plain contiguous loop.
template <bool kContig, typename A, typename T>
A sum_run(const T* x, int64_t s, int64_t n) {
  const int64_t st = kContig ? 1 : s;
  if (n > kBlock) {
    const int64_t h = (n / 2 + 63) / 64 * 64;  // keeps the halves' starts aligned like x
    return sum_run<kContig, A>(x, s, h) + sum_run<kContig, A>(x + h * st, s, n - h);
  }
  A acc = 0;
  if (n < kShortRun) {  // a plain loop: the SIMD version's setup and final horizontal sum would cost more
    for (int64_t i = 0; i < n; ++i) acc += static_cast<A>(x[i * st]);
    return acc;
  }
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += static_cast<A>(x[i * st]);
  return acc;
}

// Sum of the n contiguous elements of x, accumulated in T.
template <typename T>
T sum(const T* x, int64_t n) {
  return sum_run<true, T>(x, 1, n);
}

// acc[i] += x[i] for i < n. Iteration i touches element i only, so `omp simd` is safe.
template <typename T>
void add_into(T* acc, const T* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

}  // namespace ember::simd
