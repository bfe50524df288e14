// Timing several ways of doing the same work, interleaved: after one untimed warm-up call each
// (plans, JIT kernels, allocator blocks), each round calls every way once, starting from a
// different one each round, and each way gets the median of its calls. Timing one way's calls back
// to back and then the next's lets a slow second on a shared machine land on one way only; two
// sweeps timed that way disagreed on which GEMM engine wins the same shape (bench/RESULTS.md), so
// ember's engine rules rest on interleaved sweeps. Used by bench/gemm_sweep and bench/conv_sweep.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace ember::bench {

// call(i) runs way i of n; returns each way's median seconds over `reps` rounds.
template <typename Call>
std::vector<double> interleaved_median_seconds(size_t n, int reps, Call&& call) {
  for (size_t i = 0; i < n; ++i) call(i);
  std::vector<std::vector<double>> t(n, std::vector<double>(static_cast<size_t>(reps)));
  for (size_t r = 0; r < static_cast<size_t>(reps); ++r)
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (r + k) % n;
      const auto start = std::chrono::steady_clock::now();
      call(i);
      t[i][r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  std::vector<double> medians;
  for (std::vector<double>& s : t) {
    std::sort(s.begin(), s.end());
    medians.push_back(s[s.size() / 2]);
  }
  return medians;
}

}  // namespace ember::bench
