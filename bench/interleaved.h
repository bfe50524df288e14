// Timing several ways of doing the same work, interleaved: after one untimed warm-up call each
// (plans, JIT kernels, allocator blocks), each round takes one sample of every way, in an order
// shuffled afresh each round, and each way gets the median of its samples. Shuffled, not rotated:
// a rotation keeps every way behind the same neighbour, and a way that evicts the caches (im2col's
// column buffers) then slowed the one after it in every round (ConvEngine::Auto, always timed
// right after im2col, read 10-15% slower than Winograd on the same oneDNN plan). Timing one way's calls back
// to back and then the next's lets a slow second on a shared machine land on one way only; two
// sweeps timed that way disagreed on which GEMM engine wins the same shape (bench/RESULTS.md), so
// ember's engine rules rest on interleaved sweeps. Used by bench/gemm_sweep and bench/conv_sweep.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace ember::bench {

// A sample lasts at least this long: a call of a few microseconds (a small linear layer) is timed
// as a run of back-to-back calls, so that the clock's resolution and one interrupt do not decide it.
inline constexpr double kMinSampleSeconds = 50e-6;

// call(i) runs way i of n; returns each way's median seconds per call over `reps` rounds.
template <typename Call>
std::vector<double> interleaved_median_seconds(size_t n, int reps, Call&& call) {
  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  for (size_t i = 0; i < n; ++i) call(i);
  // Calls per sample, from a second (warm) call of each way.
  std::vector<int> calls(n, 1);
  for (size_t i = 0; i < n; ++i) {
    const auto start = Clock::now();
    call(i);
    const double once = seconds_since(start);
    if (once < kMinSampleSeconds) calls[i] = static_cast<int>(kMinSampleSeconds / std::max(once, 1e-9)) + 1;
  }
  std::vector<std::vector<double>> t(n, std::vector<double>(static_cast<size_t>(reps)));
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  uint32_t seed = 2463534242u;  // fixed: a sweep's order repeats from run to run
  for (size_t r = 0; r < static_cast<size_t>(reps); ++r) {
    for (size_t k = n; k > 1; --k) {  // Fisher-Yates with a xorshift generator
      seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5;
      std::swap(order[k - 1], order[seed % k]);
    }
    for (size_t k = 0; k < n; ++k) {
      const size_t i = order[k];
      const auto start = Clock::now();
      for (int c = 0; c < calls[i]; ++c) call(i);
      t[i][r] = seconds_since(start) / calls[i];
    }
  }
  std::vector<double> medians;
  for (std::vector<double>& s : t) {
    std::sort(s.begin(), s.end());
    medians.push_back(s[s.size() / 2]);
  }
  return medians;
}

}  // namespace ember::bench
