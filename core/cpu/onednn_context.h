// What every oneDNN call in ember (onednn_conv.cpp, onednn_matmul.cpp) shares: the CPU engine and
// stream it runs on (one engine per process, one stream per calling thread, each made once: making
// a stream per call cost an allocation every convolution), and the key its plan caches are looked
// up by. Only compiled with oneDNN.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <oneapi/dnnl/dnnl.hpp>

namespace ember {

inline dnnl::engine& onednn_cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A CPU stream runs each primitive on the calling thread, so each thread gets its own.
inline dnnl::stream& onednn_cpu_stream() {
  thread_local dnnl::stream stream(onednn_cpu_engine());
  return stream;
}

// Everything that decides which kernels a plan gets, as N integers, hashed FNV-1a style: the key of
// an std::unordered_map of plans (PlanKey<N>::Hash).
template <size_t N>
struct PlanKey {
  std::array<int64_t, N> v;
  bool operator==(const PlanKey& o) const { return v == o.v; }
  struct Hash {
    size_t operator()(const PlanKey& k) const {
      size_t h = 1469598103934665603ull;
      for (int64_t x : k.v) h = (h ^ static_cast<size_t>(x)) * 1099511628211ull;
      return h;
    }
  };
};

}  // namespace ember
