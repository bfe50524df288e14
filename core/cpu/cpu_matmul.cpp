// CPU matmul: out[i] = a[i] · b[i] for every batch entry i (or out[i] += a[i] · b[i], beta = 1, when
// a CPU kernel asks to accumulate: the im2col convolution's weight gradient), on one of three GEMM
// engines:
//   - oneDNN, float32 only, when ember was built with it (EMBER_HAVE_ONEDNN): dnnl_sgemm, and for
//     products with B read transposed its matmul primitive (core/cpu/onednn_matmul.cpp: brgemm
//     kernels, 1.2-1.5x faster there on AVX-512 CPUs);
//   - OpenBLAS (cblas_sgemm / cblas_dgemm), when ember was built with it (EMBER_HAVE_OPENBLAS);
//   - Eigen's own GEMM, compiled into ember for this CPU (-march=native).
// Views cost no copy: a matrix whose rows or columns are contiguous is handed to the engine as-is
// or as a transpose, with a leading dimension; a broadcast batch (stride 0) reuses one pointer.
// Only a matrix with no unit stride at all (e.g. sliced with a step in both dims) is copied.
//
// Which engine (measured; tables in bench/RESULTS.md). float32 goes to oneDNN whenever it is built
// in, but for one shape class on one kind of CPU (below); GemmEngine::Measured, opt-in, also times
// the engines on each small product's shape (section "GemmEngine::Measured" below). Where oneDNN
// runs AVX-512 kernels (the Zen 5 machine this project started on and runs on again), it runs at
// about twice OpenBLAS 0.3.21's speed (which does not know Zen 5 and, with the machine's
// OPENBLAS_CORETYPE=Haswell, runs AVX2), and Eigen's threading splits wide products badly: every
// float32 product goes to oneDNN. Where oneDNN too runs AVX2 (the Zen 3 of two earlier sessions), the two have the same
// peak, and one shape class runs faster on OpenBLAS inside a training step: large products whose
// B is read as stored (the linear layers' input and weight gradients). GemmEngine::Auto, the
// default, sends that class to OpenBLAS on such a CPU only (blas_runs_faster below says how both
// were measured). Tiny products run on one thread (kOneThreadGemm). float64 (gradient
// checks, not training) keeps the older rule: OpenBLAS, unless it runs narrower vector kernels than
// the ones Eigen was compiled with (then Eigen).
#include "core/cpu/cpu_matmul.h"

// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when it inlines
// Eigen's packet transposes into the GEMM; silence it for this file only.
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning and would warn about the name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/onednn_matmul.h"
#include "core/cpu/parallel.h"
#include "core/cpu/simd_loops.h"

#if EMBER_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

#if EMBER_HAVE_OPENBLAS
#include <cblas.h>
// OpenBLAS extensions (declared here too, in case cblas.h is another vendor's).
extern "C" {
char* openblas_get_config(void);
char* openblas_get_corename(void);
int openblas_get_parallel(void);  // 0: sequential build, 1: pthreads, 2: OpenMP
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
}
#endif

namespace ember {

// ---------------- engine choice ----------------

#if EMBER_HAVE_OPENBLAS
static constexpr bool kHaveBlas = true;
#else
static constexpr bool kHaveBlas = false;
#endif
#if EMBER_HAVE_ONEDNN
static constexpr bool kHaveOneDnn = true;
#else
static constexpr bool kHaveOneDnn = false;
#endif

namespace {

// The engine a build without oneDNN uses (and float64 always): OpenBLAS when its kernels are at
// least as wide as Eigen's, else Eigen (see the note at the top).
GemmEngine blas_or_eigen() {
#if EMBER_HAVE_OPENBLAS
#ifdef EIGEN_VECTORIZE_AVX512
  const std::string core = openblas_get_corename();
  const bool wide = core == "SkylakeX" || core == "Cooperlake" || core == "SapphireRapids";
  return wide ? GemmEngine::Blas : GemmEngine::Eigen;
#else
  return GemmEngine::Blas;
#endif
#else
  return GemmEngine::Eigen;
#endif
}

GemmEngine initial_engine() {
  if (const char* env = std::getenv("EMBER_GEMM")) {
    const std::string e = env;
    if (e == "eigen") return GemmEngine::Eigen;
    if (e == "measured") return GemmEngine::Measured;
    if (e == "onednn" || e == "auto") {
      EMBER_CHECK(cpu_onednn_available(), "EMBER_GEMM=", e, ": ember was built without oneDNN");
      return e == "auto" ? GemmEngine::Auto : GemmEngine::OneDnn;
    }
    EMBER_CHECK(e == "blas", "EMBER_GEMM: expected 'auto', 'measured', 'onednn', 'blas' or 'eigen', got '", e, "'");
    EMBER_CHECK(cpu_blas_available(), "EMBER_GEMM=blas: ember was built without OpenBLAS");
    return GemmEngine::Blas;
  }
  return kHaveOneDnn ? GemmEngine::Auto : blas_or_eigen();
}

std::atomic<GemmEngine>& engine_slot() {
  static std::atomic<GemmEngine> engine{initial_engine()};
  return engine;
}

// GemmEngine::Auto's one exception to oneDNN: a float32 product C[M,N] = op(A) · B with B read as
// stored (not transposed) and M >= 64, N >= 256, K >= 64, which in the benchmark networks is exactly
// the linear layers' weight gradient (g^T · x) and input gradient (g · W) of the mlp and of the
// cnn's 9216-wide layer, and none of their convolutions' GEMMs or small layers' products. Measured
// inside the real training step (bench/step_profile --engines: one process, blocks of steps
// alternating between engines; bench/RESULTS.md has the tables), on the AVX2 Zen 3: Auto ran the
// mlp step 7-9% faster than all-oneDNN at 2 threads and 9% at 1, and the cnn's 2-4% faster in four
// runs of five (1.5% slower in the fifth); sending the forward products (x · W^T, B transposed) to
// OpenBLAS as well made the mlp step 3% slower, and all-OpenBLAS made LeNet's and the cnn's steps
// 19% and 23% slower. The warm-cache GEMM sweep (bench/gemm_sweep: each shape called over and
// over) disagrees on some of these products (oneDNN 1.13-1.17x ahead on the input gradients);
// the step is what training runs, so the step decides. Only where oneDNN runs AVX2 too: on the
// AVX-512 Zen 5 (2026-12-07, same comparison) the class on OpenBLAS made the mlp step 47% slower
// (1.66 vs 1.13 ms at 2 threads) and the cnn's 7% slower, so there every product goes to oneDNN.
bool blas_runs_faster(int64_t M, int64_t N, int64_t K, bool b_transposed) {
  return kHaveBlas && !cpu_onednn_runs_avx512() && !b_transposed && M >= 64 && N >= 256 && K >= 64;
}

}  // namespace

bool cpu_blas_available() { return kHaveBlas; }
// oneDNN's effective ISA, read once (ONEDNN_MAX_CPU_ISA can lower it).
bool cpu_onednn_runs_avx512() {
#if EMBER_HAVE_ONEDNN
  static const bool wide = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
  return wide;
#else
  return false;
#endif
}
bool cpu_onednn_available() { return kHaveOneDnn; }
std::vector<GemmEngine> available_gemm_engines() {
  std::vector<GemmEngine> engines{GemmEngine::Eigen};
  if (kHaveBlas) engines.push_back(GemmEngine::Blas);
  if (kHaveOneDnn) engines.push_back(GemmEngine::OneDnn);
  if (kHaveOneDnn) engines.push_back(GemmEngine::Auto);
  engines.push_back(GemmEngine::Measured);
  return engines;
}
GemmEngine cpu_gemm_engine() { return engine_slot().load(std::memory_order_relaxed); }
bool cpu_gemm_uses_onednn() {
  const GemmEngine e = cpu_gemm_engine();
  return kHaveOneDnn && (e == GemmEngine::OneDnn || e == GemmEngine::Auto || e == GemmEngine::Measured);
}
void set_cpu_gemm_engine(GemmEngine engine) {
  EMBER_CHECK(engine != GemmEngine::Blas || cpu_blas_available(),
              "set_cpu_gemm_engine: ember was built without OpenBLAS; the Eigen engine is always available");
  EMBER_CHECK((engine != GemmEngine::OneDnn && engine != GemmEngine::Auto) || cpu_onednn_available(),
              "set_cpu_gemm_engine: ember was built without oneDNN; the Eigen engine is always available");
  engine_slot().store(engine, std::memory_order_relaxed);
}
namespace {

ConvEngine initial_conv_engine() {
  const char* env = std::getenv("EMBER_CONV");
  if (!env) return ConvEngine::Auto;
  const std::string e = env;
  if (e == "onednn" || e == "winograd") {
    EMBER_CHECK(cpu_onednn_available(), "EMBER_CONV=", e, ": ember was built without oneDNN");
    return e == "onednn" ? ConvEngine::OneDnn : ConvEngine::Winograd;
  }
  if (e == "im2col") return ConvEngine::Im2col;
  EMBER_CHECK(e == "auto", "EMBER_CONV: expected 'auto', 'onednn', 'winograd' or 'im2col', got '", e, "'");
  return ConvEngine::Auto;
}

std::atomic<ConvEngine>& conv_engine_slot() {
  static std::atomic<ConvEngine> engine{initial_conv_engine()};
  return engine;
}

}  // namespace

ConvEngine cpu_conv_engine() { return conv_engine_slot().load(std::memory_order_relaxed); }
void set_cpu_conv_engine(ConvEngine engine) {
  EMBER_CHECK((engine != ConvEngine::OneDnn && engine != ConvEngine::Winograd) || cpu_onednn_available(),
              "set_cpu_conv_engine: ember was built without oneDNN; im2col is always available");
  conv_engine_slot().store(engine, std::memory_order_relaxed);
}
const char* conv_engine_name(ConvEngine engine) {
  switch (engine) {
    case ConvEngine::OneDnn: return "oneDNN";
    case ConvEngine::Winograd: return "winograd";
    case ConvEngine::Im2col: return "im2col";
    default: return "auto";
  }
}

const char* gemm_engine_name(GemmEngine engine) {
  switch (engine) {
    case GemmEngine::Blas: return "OpenBLAS";
    case GemmEngine::OneDnn: return "oneDNN";
    case GemmEngine::Auto: return "auto";
    case GemmEngine::Measured: return "measured";
    default: return "Eigen";
  }
}

std::string cpu_gemm_info() {
  const GemmEngine engine = cpu_gemm_engine();
  const bool mixed = engine == GemmEngine::Auto && kHaveBlas && !cpu_onednn_runs_avx512();
  std::string s = std::string("matmul engine: ") + gemm_engine_name(engine) +
                  (mixed ? " (oneDNN; OpenBLAS for large products with B as stored)" : "") +
                  (engine == GemmEngine::Measured ? " (small products: the engine timed fastest on each shape)" : "") +
                  "; conv engine: " + conv_engine_name(cpu_conv_engine());
#if EMBER_HAVE_ONEDNN
  const dnnl_version_t* v = dnnl_version();
  s += "; oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
       " (" + (v->cpu_runtime == DNNL_RUNTIME_OMP ? "openmp" : "other") + " threading, " +
       (cpu_onednn_runs_avx512() ? "AVX-512" : "no AVX-512") + " kernels)";
#endif
#if EMBER_HAVE_OPENBLAS
  static const char* kThreading[] = {"sequential", "pthreads", "openmp"};
  const int p = openblas_get_parallel();
  s += std::string("; linked ") + openblas_get_config() + " (core " + openblas_get_corename() + ", " +
       (p >= 0 && p <= 2 ? kThreading[p] : "?") + " threading)";
#else
  s += "; built without OpenBLAS";
#endif
  return s;
}

// ---------------- the kernel ----------------

namespace {

// How a GEMM engine reads one [rows, cols] matrix with element strides (rs, cs): as stored
// (row-major, leading dimension ld = rs) or as the transpose of a row-major [cols, rows] matrix
// (ld = cs). `ok` is false when neither works and the matrix must be copied.
struct Layout {
  bool ok = false;
  bool trans = false;
  int64_t ld = 0;
};

Layout gemm_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  // The stride of a size-1 dim is never used: pick whichever value makes a valid layout.
  if (cols == 1) cs = 1;
  if (rows == 1) rs = cs == 1 ? cols : 1;
  if (cs == 1 && rs >= cols) return {true, false, rs};
  if (rs == 1 && cs >= rows) return {true, true, cs};
  return {};
}

// Whether op(A) [M, K] and op(B) [K, N] are both packed: each row (or, transposed, each column) as
// long as the matrix's leading dimension, with no gap between them.
bool packed(int64_t M, int64_t N, int64_t K, Layout la, Layout lb) {
  return la.ld == (la.trans ? M : K) && lb.ld == (lb.trans ? K : N);
}

// One operand of the batched product: where matrix i starts and how to read it.
template <typename T>
struct Operand {
  const T* base = nullptr;
  int64_t batch_stride = 0;  // elements; 0 when the batch is broadcast
  Layout layout;
  Tensor keep_alive;  // the contiguous copy, in the rare case one was needed
  const T* matrix(int64_t i) const { return base + i * batch_stride; }
};

// t is [B, rows, cols]. Copies (one matrix if the batch is broadcast) only when no layout fits.
template <typename T>
Operand<T> make_operand(const Tensor& t) {
  // Shape and strides read once: the checked size(d) / stride(d) cost more than a tiny product's
  // arithmetic would suggest (a [32, 10] x [10, 64] product is half a microsecond).
  const Shape &shape = t.shape(), &strides = t.strides();
  const int64_t rows = shape[1], cols = shape[2];
  Operand<T> op;
  op.layout = gemm_layout(rows, cols, strides[1], strides[2]);
  if (op.layout.ok) {
    op.base = t.data<T>();
    op.batch_stride = strides[0];
    return op;
  }
  const bool broadcast = strides[0] == 0 || shape[0] == 1;
  Tensor copy = broadcast ? t.select(0, 0).contiguous() : t.contiguous();
  op.base = copy.data<T>();
  op.keep_alive = copy;
  op.batch_stride = broadcast ? 0 : rows * cols;
  op.layout = {true, false, cols};
  return op;
}

// C[M, N] (row-major, ld N) = A[M, K] · B[K, N] with Eigen, or C += A · B when `accumulate`. Maps
// view the memory in place: a transposed operand is the same memory seen as a column-major matrix.
// Stride: Eigen::OuterStride<> (each map's leading dimension, set at run time) or Eigen::Stride<0, 0>
// (rows packed: the leading dimension is the row length).
template <typename T, typename Stride>
void eigen_gemm_maps(int64_t M, int64_t N, int64_t K, const T* A, Layout la, const T* B, Layout lb, T* C,
                     bool accumulate) {
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  auto stride = [](int64_t ld) {
    if constexpr (std::is_same_v<Stride, Eigen::OuterStride<>>) return Stride(ld);
    else return Stride();
  };
  Eigen::Map<RowMat, 0, Stride> c(C, M, N, stride(N));
  auto times_b = [&](const auto& a) {
    auto assign = [&](const auto& b) {
      if (accumulate) c.noalias() += a * b;
      else c.noalias() = a * b;
    };
    if (lb.trans)
      assign(Eigen::Map<const ColMat, 0, Stride>(B, K, N, stride(lb.ld)));
    else
      assign(Eigen::Map<const RowMat, 0, Stride>(B, K, N, stride(lb.ld)));
  };
  if (la.trans)
    times_b(Eigen::Map<const ColMat, 0, Stride>(A, M, K, stride(la.ld)));
  else
    times_b(Eigen::Map<const RowMat, 0, Stride>(A, M, K, stride(la.ld)));
}

// Operands whose rows are packed (the usual case) get maps that say so: Eigen then runs small
// products up to 15% faster (measured on the Zen 5: ResNet-20's 32x10x64 classifier forward 0.73 vs
// 0.87 µs, the cnn's 64x10x128 2.76 vs 3.03 µs; the same maps with a run-time stride lose it).
template <typename T>
void eigen_gemm(int64_t M, int64_t N, int64_t K, const T* A, Layout la, const T* B, Layout lb, T* C, bool accumulate) {
  if (packed(M, N, K, la, lb)) eigen_gemm_maps<T, Eigen::Stride<0, 0>>(M, N, K, A, la, B, lb, C, accumulate);
  else eigen_gemm_maps<T, Eigen::OuterStride<>>(M, N, K, A, la, B, lb, C, accumulate);
}

#if EMBER_HAVE_ONEDNN
// oneDNN's sgemm is row-major like ember's tensors, with the same transpose and leading-dimension
// conventions as cblas; it threads with OpenMP itself and runs single-threaded inside our regions.
// beta is 0 (C = A·B) or 1 (C += A·B), as for blas_gemm.
void onednn_gemm(int64_t M, int64_t N, int64_t K, const float* A, Layout la, const float* B, Layout lb, float* C,
                 float beta) {
  const dnnl_status_t st = dnnl_sgemm(la.trans ? 'T' : 'N', lb.trans ? 'T' : 'N', M, N, K, 1.0f, A, la.ld, B, lb.ld,
                                      beta, C, N);
  EMBER_CHECK(st == dnnl_success, "matmul: oneDNN sgemm failed (status ", static_cast<int>(st), ") for [", M, ", ",
              K, "] x [", K, ", ", N, "]");
}
#endif

#if EMBER_HAVE_OPENBLAS
void blas_gemm(int M, int N, int K, const float* A, Layout la, const float* B, Layout lb, float* C, float beta) {
  cblas_sgemm(CblasRowMajor, la.trans ? CblasTrans : CblasNoTrans, lb.trans ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
              A, static_cast<int>(la.ld), B, static_cast<int>(lb.ld), beta, C, N);
}
void blas_gemm(int M, int N, int K, const double* A, Layout la, const double* B, Layout lb, double* C, double beta) {
  cblas_dgemm(CblasRowMajor, la.trans ? CblasTrans : CblasNoTrans, lb.trans ? CblasTrans : CblasNoTrans, M, N, K, 1.0,
              A, static_cast<int>(la.ld), B, static_cast<int>(lb.ld), beta, C, N);
}
#endif

// One product on a named engine (never Auto): c (= or +=, by beta) a · b. The kernel and the
// measured choice below both call it, so a measurement times exactly what the kernel runs.
template <typename T>
void run_gemm(GemmEngine engine, int64_t M, int64_t N, int64_t K, const T* A, Layout la, const T* B, Layout lb, T* C,
              T beta) {
#if EMBER_HAVE_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    if (engine == GemmEngine::OneDnn) {
      // B read transposed: oneDNN's matmul primitive where it has a brgemm kernel (onednn_matmul.cpp
      // says why; oneDNN 2.6 has them for AVX-512 only, so elsewhere no plan is even looked up);
      // inside a parallel region it runs on the calling thread alone, like dnnl_sgemm.
      if (lb.trans && cpu_onednn_runs_avx512() &&
          onednn_matmul(M, N, K, A, la.trans, la.ld, B, lb.trans, lb.ld, C, beta != 0.0f))
        return;
      return onednn_gemm(M, N, K, A, la, B, lb, C, beta);
    }
  }
#endif
#if EMBER_HAVE_OPENBLAS
  if (engine == GemmEngine::Blas)
    return blas_gemm(static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), A, la, B, lb, C, beta);
#endif
  eigen_gemm<T>(M, N, K, A, la, B, lb, C, beta != T(0));
}

// ---------------- GemmEngine::Measured: small products timed per shape ----------------
//
// From kMeasuredGemm multiply-adds up, every sweep agrees: oneDNN is fastest or within 1.1x, so
// the static rule (Auto) holds. Below it (the classifier layers: 20k-1M multiply-adds, under a few
// microseconds) the winner changes from shape to shape with no class to write a rule for. Three
// committed sweeps on the Zen 5 (bench/results_gemm_sweep_zen5*.csv) show raw Eigen 1.2-1.5x ahead
// of oneDNN on ResNet-20's batch-32 classifier forward (32x10x64) and weight gradient (10x64x32) and
// on LeNet's fc1 forward at one thread (64x50x320), while oneDNN or OpenBLAS win their neighbours
// (64x10x50, 10x50x64, 64x10x128, 128x10x64). So Measured times the engines on each such shape once,
// the first time the process meets it, on operands of its own (no user data is touched), with the
// thread count the product will run on, and keeps the answer. The measurement takes well under a
// millisecond. oneDNN stays unless another engine is at least kSwitchMargin faster, so a near tie
// rarely flips between runs. Rarely is not never: on a busy machine two processes can time a shape
// differently, and the resume tests (a run continued from a checkpoint must match an uninterrupted
// one bit for bit) failed when this was the default; so Auto stays the default and deterministic,
// and Measured is opt-in, as PyTorch's cudnn.benchmark is.
constexpr int64_t kMeasuredGemm = 1 << 20;
constexpr double kSwitchMargin = 1.05;
// At most this many shapes are measured per process (a model with many distinct small products
// would otherwise keep paying the measurement); later ones take the static rule.
constexpr size_t kMaxMeasuredShapes = 256;

struct GemmShape {
  int64_t M, N, K;
  bool a_trans, b_trans;
  int threads;
  bool operator==(const GemmShape&) const = default;
};

// Times each float32 engine on this shape: a warm-up call each, then kRounds rounds in which every
// engine runs `reps` calls back to back (enough for ~20 µs, so the clock's resolution does not
// matter), engines interleaved so a slow moment of the machine hits all of them; median per engine.
GemmEngine measure_fastest_engine(const GemmShape& s) {
  constexpr int kRounds = 7;
  // 0.5 and 0.25: no denormals, no overflow, the same work as real data.
  std::vector<float> a(static_cast<size_t>(s.M * s.K), 0.5f), b(static_cast<size_t>(s.K * s.N), 0.25f),
      c(static_cast<size_t>(s.M * s.N));
  const Layout la{true, s.a_trans, s.a_trans ? s.M : s.K}, lb{true, s.b_trans, s.b_trans ? s.K : s.N};
  std::vector<GemmEngine> engines;
  for (GemmEngine e : available_gemm_engines())
    if (e != GemmEngine::Auto && e != GemmEngine::Measured) engines.push_back(e);
  const int saved_threads = omp_get_max_threads();
  if (saved_threads != s.threads) omp_set_num_threads(s.threads);
  using Clock = std::chrono::steady_clock;
  auto time_calls = [&](GemmEngine e, int reps) {
    const auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) run_gemm<float>(e, s.M, s.N, s.K, a.data(), la, b.data(), lb, c.data(), 0.0f);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  for (GemmEngine e : engines) time_calls(e, 1);  // warm-up: oneDNN's JIT, the caches
  const double one_call = std::max(1e-8, time_calls(engines.back(), 1));
  const int reps = static_cast<int>(std::clamp(20e-6 / one_call, 1.0, 1000.0));
  std::vector<std::vector<double>> samples(engines.size());
  for (int round = 0; round < kRounds; ++round)
    for (size_t i = 0; i < engines.size(); ++i) samples[i].push_back(time_calls(engines[i], reps));
  if (saved_threads != s.threads) omp_set_num_threads(saved_threads);
  std::vector<std::pair<GemmEngine, double>> medians;
  for (size_t i = 0; i < engines.size(); ++i) {
    std::nth_element(samples[i].begin(), samples[i].begin() + kRounds / 2, samples[i].end());
    medians.emplace_back(engines[i], samples[i][kRounds / 2]);
  }
  return gemm_engine_from_timings(medians);
}

// Every shape measured so far in this process, with its answer.
struct MeasuredShapes {
  std::mutex mutex;
  std::vector<std::pair<GemmShape, GemmEngine>> table;
};
MeasuredShapes& measured_shapes() {
  static MeasuredShapes shapes;
  return shapes;
}

// The measured engine for a shape: a per-thread copy of recent answers in front of the shared
// table, so the kernel's hot path (a sub-microsecond product) costs a short scan, not a lock.
GemmEngine measured_engine(const GemmShape& s, GemmEngine unmeasured) {
  thread_local std::vector<std::pair<GemmShape, GemmEngine>> recent;
  for (const auto& [shape, engine] : recent)
    if (shape == s) return engine;
  MeasuredShapes& shapes = measured_shapes();
  GemmEngine engine = unmeasured;
  {
    const std::lock_guard<std::mutex> lock(shapes.mutex);
    auto it = std::find_if(shapes.table.begin(), shapes.table.end(), [&](const auto& e) { return e.first == s; });
    if (it != shapes.table.end()) {
      engine = it->second;
    } else if (shapes.table.size() < kMaxMeasuredShapes) {
      engine = measure_fastest_engine(s);
      shapes.table.emplace_back(s, engine);
    } else {
      return engine;  // past the budget: Auto's rule, and nothing cached
    }
  }
  if (recent.size() >= 32) recent.clear();
  recent.emplace_back(s, engine);
  return engine;
}

}  // namespace

size_t measured_gemm_shape_count() {
  MeasuredShapes& shapes = measured_shapes();
  const std::lock_guard<std::mutex> lock(shapes.mutex);
  return shapes.table.size();
}

GemmEngine gemm_engine_from_timings(const std::vector<std::pair<GemmEngine, double>>& seconds) {
  GemmEngine best = GemmEngine::OneDnn;
  double best_s = 0, onednn_s = 0;
  for (const auto& [engine, s] : seconds) {
    if (engine == GemmEngine::OneDnn) onednn_s = s;
    if (engine != GemmEngine::OneDnn && (best == GemmEngine::OneDnn || s < best_s)) {
      best = engine;
      best_s = s;
    }
  }
  if (onednn_s <= 0) return best;  // no oneDNN timing: the fastest of the others
  return best != GemmEngine::OneDnn && best_s * kSwitchMargin <= onednn_s ? best : GemmEngine::OneDnn;
}

// The engine one product runs on: the chosen one (Auto resolved by shape, and under Measured small
// float32 products by timing), except that oneDNN has no float64 GEMM and OpenBLAS takes 32-bit
// sizes (Eigen does the rare larger products).
GemmEngine gemm_engine_for(DType dtype, int64_t M, int64_t N, int64_t K, bool a_transposed, bool b_transposed,
                           int threads) {
  GemmEngine e = cpu_gemm_engine();
  if (e == GemmEngine::Auto || e == GemmEngine::Measured) {
    const bool measure = e == GemmEngine::Measured && dtype == kFloat32 && M <= kMeasuredGemm && N <= kMeasuredGemm &&
                         K <= kMeasuredGemm && M * N * K < kMeasuredGemm;  // factors bounded first: no overflow
    e = kHaveOneDnn ? GemmEngine::OneDnn : blas_or_eigen();
    if (dtype == kFloat32 && blas_runs_faster(M, N, K, b_transposed)) e = GemmEngine::Blas;
    if (measure) e = measured_engine({M, N, K, a_transposed, b_transposed, std::max(1, threads)}, e);
  }
  if (e == GemmEngine::OneDnn && dtype != kFloat32) e = blas_or_eigen();
  if (e == GemmEngine::Blas && std::max({M, N, K}) > INT_MAX) e = GemmEngine::Eigen;
  return e;
}

namespace {

// Below this many multiply-adds per matrix, threads split the batch instead of each product:
// a small GEMM has too little work to share, and whole matrices per thread need no syncing.
constexpr int64_t kSmallGemm = 128 * 128 * 128;
// Aim for at least this many multiply-adds per thread (a parallel region costs a few microseconds).
constexpr int64_t kGemmGrain = 1 << 18;

// A product with a small output and a long sum: a linear layer's forward with few outputs (the
// cnn's 9216 -> 128 layer: [64, 9216] x [9216, 128]), the weight gradient of a 1x1 or im2col
// convolution ([32, 32768] x [32768, 16]). The engines share out the output among threads, and this
// output is too small to share: on the Zen 5, dnnl_sgemm, OpenBLAS and Eigen all ran the cnn's layer
// at 140-150 GFLOP/s on 2 threads, below one core's peak. Such a product is split along K instead:
// each thread sums its own slice on one thread, and the slices' results are added at the end.
bool splits_k(int64_t M, int64_t N, int64_t K, int threads) {
  return threads > 1 && M * N <= 64 * 1024 && K >= 8 * std::max(M, N) && M * N * K >= kSmallGemm;
}

// Whether oneDNN's matmul primitive (brgemm kernels, B read transposed) shares such a product among
// `threads` threads as evenly as ember's split along K would: it deals out the output's columns in
// blocks of 64, so a count of blocks the threads divide evenly, or one block (it then splits the
// sum itself), with at least 16 rows. Measured on the Zen 5, 2 threads, ember's kernel with and
// without its own split (primitive / split, µs; weight gradients as one product over the batch):
// LeNet conv2's 20x250x4096 (4 blocks) 196 / 356-370, the cnn's fc1 forward 64x128x9216 (2)
// 490-530 / 565-680, cnn conv1's 32x9x43264 (1) 237 / 319-326, a ResNet shortcut's 32x16x32768 (1)
// 168-195 / 247-359; but with 3
// blocks (N = 144) 467-488 / 383-392 for 32x144x8192, 1261-1284 / 1183-1227 for 16x144x32768, 5
// blocks (64x288x8192) 1265 / 1222, and 10 rows (LeNet conv1's 10x25x36864) 326-333 / 194-196.
bool primitive_splits_evenly(int64_t M, int64_t N, int threads) {
  const int64_t blocks = (N + 63) / 64;
  return M >= 16 && (blocks == 1 || blocks % threads == 0);
}

// At most this many multiply-adds (all matrices of the call together), a product runs on one
// thread whatever the engine: the engines' own splitting costs more than it saves there. Measured
// on the Zen 5 (bench/gemm_sweep, 2 threads against 1): dnnl_sgemm ran the cnn's last layer
// ([64, 128] x [128, 10], 82k multiply-adds) at 18.6 GFLOP/s on 2 threads and 48 on one, LeNet's
// ([64, 50] x [50, 10]) at 9.0 and 37.4; the gradients of those layers tie. From the mlp's last
// layer up (655k) the two thread counts tie or two threads win (LeNet's fc1 forward, 1M: 108 vs 88).
// (Auto used to send the tiny forward products to Eigen for this; on one thread oneDNN runs LeNet's
// 1.4x faster than ember's Eigen path, and ResNet-20's at batch 32 within 1.1x.)
constexpr int64_t kOneThreadGemm = 1 << 18;

}  // namespace

bool gemm_runs_on_one_thread(int64_t batch, int64_t M, int64_t N, int64_t K) {
  // Each factor is bounded first, so the product of the other three cannot overflow.
  for (int64_t f : {batch, M, N, K})
    if (f > kOneThreadGemm) return false;
  return M * N * K <= kOneThreadGemm / std::max<int64_t>(1, batch);
}

namespace {

// Where op(X)'s slice starting at k0 begins: op(A) is [M, K], op(B) [K, N]; a matrix stored
// transposed keeps K along its rows (A) or columns (B).
template <typename T>
const T* a_from_k(const T* A, Layout la, int64_t k0) { return la.trans ? A + k0 * la.ld : A + k0; }
template <typename T>
const T* b_from_k(const T* B, Layout lb, int64_t k0) { return lb.trans ? B + k0 : B + k0 * lb.ld; }

}  // namespace

void CpuBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out) { matmul(a, b, out, /*accumulate=*/false); }

void CpuBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h); f.out starts
  // with out's values, so accumulating works there too.
  if (has_reduced_floating({&a, &b, &out})) {
    Float32Operands f;
    matmul(f.in(a), f.in(b), f.out(out), accumulate);
    return f.finish();
  }
  const Shape& out_shape = out.shape();
  const int64_t batch = out_shape[0], M = out_shape[1], N = out_shape[2], K = a.shape()[2];
  if (out.numel() == 0) return;
  if (K == 0) {  // an empty sum: zeros, or nothing to add
    if (!accumulate) fill(out, 0.0);
    return;
  }
  EMBER_DISPATCH_FLOAT(out.dtype(), "matmul", [&]<typename T>() {
    const Operand<T> A = make_operand<T>(a), B = make_operand<T>(b);
    T* C = out.data<T>();
    const int threads = get_num_threads();
    const int64_t mnk = M * N * K;
    const bool one_thread = threads > 1 && gemm_runs_on_one_thread(batch, M, N, K);
    const bool over_batch = !one_thread && batch > 1 && threads > 1 && (mnk <= kSmallGemm || batch % threads == 0);
    bool split_k = !one_thread && !over_batch && splits_k(M, N, K, threads);
    // Each product runs on one thread when ember shares out the work itself (or it is tiny, or we
    // are inside someone's parallel region already); the engine choice may depend on it.
    const bool single = threads == 1 || one_thread || over_batch || split_k || omp_in_parallel();
    GemmEngine engine = gemm_engine_for(out.dtype(), M, N, K, A.layout.trans, B.layout.trans, single ? 1 : threads);
    if (engine == GemmEngine::Blas && std::max(A.layout.ld, B.layout.ld) > INT_MAX) engine = GemmEngine::Eigen;
    // oneDNN's matmul primitive (B transposed, AVX-512, dense operands: the only ones it has brgemm
    // kernels for) splits a long sum across threads itself, and ran faster than ember's split where
    // its own split is balanced (primitive_splits_evenly).
    if (split_k && engine == GemmEngine::OneDnn && B.layout.trans && packed(M, N, K, A.layout, B.layout) &&
        cpu_onednn_runs_avx512() &&
        primitive_splits_evenly(M, N, threads))
      split_k = false;
#if EMBER_HAVE_OPENBLAS
    // OpenBLAS's OpenMP build follows ember's thread count by itself (and runs one thread inside
    // our parallel regions). A pthread build (someone else's libopenblas.so.0 found first) keeps
    // its own pool: size it to match, or to one thread when ember splits the batch or K itself.
    if (engine == GemmEngine::Blas && openblas_get_parallel() == 1) {
      const int want = one_thread || over_batch || split_k ? 1 : threads;
      if (openblas_get_num_threads() != want) openblas_set_num_threads(want);
    }
#endif
    // c (= or +=, by beta) a · b, with k terms in each sum, on the chosen engine.
    auto gemm = [&](const T* a_, const T* b_, T* c, int64_t k, T beta) {
      run_gemm<T>(engine, M, N, k, a_, A.layout, b_, B.layout, c, beta);
    };
    const T beta = accumulate ? T(1) : T(0);
    auto one = [&](int64_t i) { gemm(A.matrix(i), B.matrix(i), C + i * M * N, K, beta); };
    if (over_batch) {
      // Each thread runs whole products; inside a parallel region every engine stays single-threaded.
      parallel_for(batch, std::max<int64_t>(1, kGemmGrain / mnk), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) one(i);
      });
    } else if (split_k) {
      // Thread 0 sums its slice of K straight into C (with the caller's beta), thread t > 0 into
      // its own block of `partial`; the blocks are then added into C. The split depends only on the
      // thread count, so a run repeats its rounding exactly.
      const int64_t MN = M * N;
      Tensor partial = empty({(threads - 1) * MN}, TensorOptions(out.dtype()));
      T* P = partial.data<T>();
      const int64_t slice = (K + threads - 1) / threads;
      for (int64_t i = 0; i < batch; ++i) {
        const T *a_i = A.matrix(i), *b_i = B.matrix(i);
        T* c = C + i * MN;
        parallel_for(threads, 1, [&](int64_t first, int64_t end) {  // one slice per thread
          for (int64_t t = first; t < end; ++t) {
            const int64_t k0 = std::min<int64_t>(K, t * slice), k1 = std::min<int64_t>(K, k0 + slice);
            T* dst = t == 0 ? c : P + (t - 1) * MN;
            if (k1 > k0)
              gemm(a_from_k(a_i, A.layout, k0), b_from_k(b_i, B.layout, k0), dst, k1 - k0, t == 0 ? beta : T(0));
            else if (t > 0)
              std::fill(dst, dst + MN, T(0));
          }
        });
        parallel_for(MN, grain_size(Grain::Elementwise), [&](int64_t lo, int64_t hi) {
          for (int t = 1; t < threads; ++t) simd::add_into(c + lo, P + (t - 1) * MN + lo, hi - lo);
        });
      }
    } else {
      const OneThread guard(one_thread);
      for (int64_t i = 0; i < batch; ++i) one(i);  // each product uses all threads (but a tiny one)
    }
  });
}

}  // namespace ember
