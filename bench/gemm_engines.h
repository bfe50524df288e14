// The three CPU GEMM engines available on this machine, called directly (no ember in between), as
// bench/peak.cpp and bench/gemm_sweep.cpp call them, and the sweep's timing of them.
//   openblas  cblas_sgemm from the OpenMP build of OpenBLAS (the file ember links)
//   eigen     a plain Eigen::Map product, threaded by Eigen's OpenMP loop (needs -fopenmp)
//   dnnl      oneDNN's dnnl_sgemm (<oneapi/dnnl/dnnl.h>, Debian's libdnnl 2.6, also on libgomp)
//   dnnl_matmul  oneDNN's matmul primitive on the same memory: made once per shape and thread count
//             (outside the timing: the warm-up call makes it), scratchpad allocated once, run through
//             the C API; where B is read transposed it picks brgemm kernels that beat dnnl_sgemm
//             (core/cpu/onednn_matmul.cpp, which ember runs for those products)
// All take row-major C[M,N] = op(A)[M,K] * op(B)[K,N], beta = 0. Threads are set once per
// thread count for all of them (omp_set_num_threads drives oneDNN, openblas_set_num_threads
// OpenBLAS, Eigen::setNbThreads Eigen).
#pragma once

#include <cblas.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when it inlines
// Eigen's packet transposes into the GEMM (core/cpu/cpu_matmul.cpp silences it the same way).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <functional>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "bench/interleaved.h"

namespace ember::bench {

enum class Engine { OpenBlas, Eigen, Dnnl, DnnlMatmul };
inline constexpr Engine kEngines[] = {Engine::OpenBlas, Engine::Eigen, Engine::Dnnl, Engine::DnnlMatmul};

inline const char* engine_name(Engine e) {
  switch (e) {
    case Engine::OpenBlas: return "openblas";
    case Engine::Eigen: return "eigen";
    case Engine::Dnnl: return "dnnl";
    case Engine::DnnlMatmul: return "dnnl_matmul";
  }
  return "?";
}

struct GemmArgs {
  int64_t m, n, k;
  bool trans_a, trans_b;
  const float* a;  // op(A) is [M,K]: A is stored [K,M] when transposed
  const float* b;  // op(B) is [K,N]: B is stored [N,K] when transposed
  float* c;        // [M,N]
};

inline void set_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);  // its OpenMP build may have sized its pool at load time
  Eigen::setNbThreads(n);
}

inline void sgemm_openblas(const GemmArgs& g) {
  const int lda = static_cast<int>(g.trans_a ? g.m : g.k), ldb = static_cast<int>(g.trans_b ? g.k : g.n);
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), 1.0f, g.a, lda, g.b, ldb, 0.0f, g.c,
              static_cast<int>(g.n));
}

inline void sgemm_dnnl(const GemmArgs& g) {
  const dnnl_dim_t lda = g.trans_a ? g.m : g.k, ldb = g.trans_b ? g.k : g.n;
  const dnnl_status_t s = dnnl_sgemm(g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.m, g.n, g.k, 1.0f, g.a, lda,
                                     g.b, ldb, 0.0f, g.c, g.n);
  if (s != dnnl_success) {
    std::fprintf(stderr, "dnnl_sgemm failed (status %d) on M=%lld N=%lld K=%lld\n", static_cast<int>(s),
                 static_cast<long long>(g.m), static_cast<long long>(g.n), static_cast<long long>(g.k));
    std::exit(1);
  }
}

// One matmul primitive per product (shape, transposes, pointers) and OpenMP thread count, with its
// memory objects and a scratchpad of its own, made on the first call.
inline void sgemm_dnnl_matmul(const GemmArgs& g) {
  using dnnl::memory;
  struct Plan {
    dnnl::matmul primitive;
    memory a, b, c, scratchpad;
    std::vector<char> scratch;
    std::vector<dnnl_exec_arg_t> args;
  };
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  static dnnl::stream stream(engine);
  static std::map<std::tuple<int64_t, int64_t, int64_t, bool, bool, const float*, const float*, float*, int>, Plan>
      plans;
  Plan& p = plans[{g.m, g.n, g.k, g.trans_a, g.trans_b, g.a, g.b, g.c, omp_get_max_threads()}];
  if (!p.primitive) {
    auto md = [](int64_t rows, int64_t cols, bool trans) {  // op(X) [rows, cols] of a packed matrix
      return memory::desc({rows, cols}, memory::data_type::f32, trans ? memory::dims{1, rows} : memory::dims{cols, 1});
    };
    const memory::desc a = md(g.m, g.k, g.trans_a), b = md(g.k, g.n, g.trans_b), c = md(g.m, g.n, false);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, engine);
    p.primitive = dnnl::matmul(pd);
    p.a = memory(a, engine, const_cast<float*>(g.a));
    p.b = memory(b, engine, const_cast<float*>(g.b));
    p.c = memory(c, engine, g.c);
    p.scratch.resize(pd.scratchpad_desc().get_size() + 64);
    void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p.scratch.data()) + 63) & ~uintptr_t{63});
    p.scratchpad = memory(pd.scratchpad_desc(), engine, aligned);
    p.args = {{DNNL_ARG_SRC, p.a.get()}, {DNNL_ARG_WEIGHTS, p.b.get()}, {DNNL_ARG_DST, p.c.get()},
              {DNNL_ARG_SCRATCHPAD, p.scratchpad.get()}};
  }
  const dnnl_status_t s =
      dnnl_primitive_execute(p.primitive.get(), stream.get(), static_cast<int>(p.args.size()), p.args.data());
  if (s != dnnl_success) {
    std::fprintf(stderr, "oneDNN matmul failed (status %d) on M=%lld N=%lld K=%lld\n", static_cast<int>(s),
                 static_cast<long long>(g.m), static_cast<long long>(g.n), static_cast<long long>(g.k));
    std::exit(1);
  }
}

// Row-major maps; a transposed operand is the map of its stored shape, transposed.
inline void sgemm_eigen(const GemmArgs& g) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const RowMajor>;
  Eigen::Map<RowMajor> c(g.c, g.m, g.n);
  const ConstMap a_stored(g.a, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k);
  const ConstMap b_stored(g.b, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n);
  if (g.trans_a && g.trans_b) c.noalias() = a_stored.transpose() * b_stored.transpose();
  else if (g.trans_a) c.noalias() = a_stored.transpose() * b_stored;
  else if (g.trans_b) c.noalias() = a_stored * b_stored.transpose();
  else c.noalias() = a_stored * b_stored;
}

inline void sgemm(Engine e, const GemmArgs& g) {
  switch (e) {
    case Engine::OpenBlas: return sgemm_openblas(g);
    case Engine::Eigen: return sgemm_eigen(g);
    case Engine::Dnnl: return sgemm_dnnl(g);
    case Engine::DnnlMatmul: return sgemm_dnnl_matmul(g);
  }
}

// The median seconds of every engine in kEngines on one GEMM, interleaved (bench/interleaved.h).
// `extra`, when given, takes its turn after the engines and its median comes last.
inline std::vector<double> engine_median_seconds(const GemmArgs& g, int reps, const std::function<void()>& extra = {}) {
  const size_t n = std::size(kEngines) + (extra ? 1 : 0);
  return interleaved_median_seconds(n, reps, [&](size_t e) {
    if (e < std::size(kEngines)) sgemm(kEngines[e], g);
    else extra();
  });
}

// Operands for the largest GEMM of a run, allocated and filled once, reused for every shape (and
// by the sweep's call of ember's own kernel, so every contender reads the same memory). 64-byte
// aligned, as ember's allocator aligns tensors: Eigen ran small products ~5% slower on the 16-byte
// alignment of a std::vector.
struct GemmBuffers {
  struct Aligned {
    explicit Aligned(size_t n)
        : p(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64)), &std::free), size(n) {
      if (!p) {
        std::fprintf(stderr, "GemmBuffers: out of memory for %zu floats\n", n);
        std::exit(1);
      }
      std::fill_n(p.get(), n, 0.0f);
    }
    float* data() const { return p.get(); }
    std::unique_ptr<float, decltype(&std::free)> p;
    size_t size;
  };
  Aligned a, b, c;
  GemmBuffers(size_t a_size, size_t b_size, size_t c_size) : a(a_size), b(b_size), c(c_size) {
    uint32_t x = 12345;  // cheap deterministic values in [-1, 1): the timing does not depend on them
    for (const Aligned* v : {&a, &b})
      for (size_t i = 0; i < v->size; ++i)
        v->data()[i] = static_cast<float>((x = x * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
  }
  GemmArgs args(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b) {
    return {m, n, k, trans_a, trans_b, a.data(), b.data(), c.data()};
  }
};

}  // namespace ember::bench
