// The oneDNN CPU engine and stream every oneDNN call in ember runs on (onednn_conv.cpp,
// onednn_matmul.cpp): one engine per process, one stream per calling thread, each made once (making
// a stream per call cost an allocation every convolution). Only compiled with oneDNN.
#pragma once

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

}  // namespace ember
