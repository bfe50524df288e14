// Choosing a cuDNN convolution algorithm among cuDNN's candidates (cuda/cuda_conv.cpp), as plain
// C++ so that the policy is tested on the CPU with fake candidates (tests/test_algorithm_search.cpp).
//
// The policy, after PyTorch's:
//   - Candidates come in cuDNN's rank order, already filtered (runs here, deterministic when
//     asked, no TF32 for float32 unless allowed). Those whose workspace exceeds a cap are dropped,
//     so one convolution cannot take most of the GPU's memory for scratch.
//   - Measured search (ember::set_cudnn_benchmark(true)): each candidate runs once untimed and
//     once timed; the order becomes fastest first. A candidate whose workspace cannot be
//     allocated, or that fails to run, is left out.
//   - Every call runs the first candidate, from the one last used, whose workspace can be
//     allocated: on out-of-memory it moves to the next (and remembers that), instead of failing
//     every step although a smaller workspace would fit (before: the first ranked algorithm was
//     cached whatever its workspace; issue 19 item 3).
// The order is cached per problem (pass, shapes, window, groups, dtype, switches, device).
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/error.h"

namespace ember::cuda {

// One usable cuDNN algorithm for a problem: its enum, the math type it runs with (both as ints, so
// this header needs no cuDNN), and the workspace it needs.
struct ConvCandidate {
  int algo = 0;
  int math = 0;
  size_t workspace_bytes = 0;
  double measured_ms = -1;  // set by the measured search; -1 when not measured
  bool operator==(const ConvCandidate&) const = default;
};

// The candidates of one problem in the order to try them, and the one in use.
struct ConvChoice {
  std::vector<ConvCandidate> order;
  size_t current = 0;
};

// Keeps the candidates whose workspace is at most cap_bytes, in their order.
inline std::vector<ConvCandidate> within_workspace_cap(const std::vector<ConvCandidate>& ranked, size_t cap_bytes) {
  std::vector<ConvCandidate> kept;
  for (const ConvCandidate& c : ranked)
    if (c.workspace_bytes <= cap_bytes) kept.push_back(c);
  return kept;
}

// The measured search. allocate(bytes) returns a workspace or throws OutOfMemoryError;
// time_ms(candidate, workspace) runs it and returns milliseconds, or throws Error when it fails.
// Returns the candidates that ran, fastest first (ties keep rank order).
template <typename Allocate, typename TimeMs>
std::vector<ConvCandidate> order_by_measured_time(const std::vector<ConvCandidate>& ranked, Allocate&& allocate,
                                                  TimeMs&& time_ms) {
  std::vector<ConvCandidate> ran;
  for (ConvCandidate c : ranked) {
    try {
      const auto workspace = allocate(c.workspace_bytes);
      c.measured_ms = time_ms(c, workspace);
    } catch (const Error&) {  // OutOfMemoryError included: this candidate cannot run now
      continue;
    }
    ran.push_back(c);
  }
  std::stable_sort(ran.begin(), ran.end(),
                   [](const ConvCandidate& a, const ConvCandidate& b) { return a.measured_ms < b.measured_ms; });
  return ran;
}

// Runs `run(candidate, workspace)` with the first candidate from choice.current on whose
// workspace allocate() can provide, and returns its index (the caller remembers it). Rethrows the
// last OutOfMemoryError when none fits; other errors propagate at once.
template <typename Allocate, typename Run>
size_t run_first_that_fits(const ConvChoice& choice, Allocate&& allocate, Run&& run) {
  EMBER_CHECK(choice.current < choice.order.size(), "cuDNN convolution: no candidate algorithm left to try");
  for (size_t i = choice.current;; ++i) {
    try {
      const auto workspace = allocate(choice.order[i].workspace_bytes);
      run(choice.order[i], workspace);
      return i;
    } catch (const OutOfMemoryError&) {
      if (i + 1 == choice.order.size()) throw;  // every candidate's workspace is too big now
    }
  }
}

// The cached choices, shared by all threads. Key is any ordered type.
template <typename Key>
class ConvChoiceCache {
 public:
  // A copy of key's choice, made by make() (which returns the candidate order) on first use.
  // make() runs under the lock: two threads never search for the same key at once.
  template <typename Make>
  ConvChoice get(const Key& key, Make&& make) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) it = entries_.emplace(key, ConvChoice{make(), 0}).first;
    return it->second;
  }
  // Later calls for key start at candidate `index` (the ones before it did not fit).
  void use(const Key& key, size_t index) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it != entries_.end() && index < it->second.order.size()) it->second.current = index;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  std::mutex mutex_;
  std::map<Key, ConvChoice> entries_;
};

}  // namespace ember::cuda
