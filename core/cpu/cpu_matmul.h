// Which GEMM engine the CPU matmul kernel (cpu_matmul.cpp) runs on. Ordinary code never needs
// this: the engine is chosen once, automatically. Tests use it to check every engine, benchmarks
// to compare them, and EMBER_GEMM=auto|measured|onednn|blas|eigen overrides the choice from the environment.
#pragma once

#include <cstdint>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"

namespace ember {

enum class GemmEngine {
  Eigen,   // Eigen's own GEMM, compiled into ember for this CPU (always available)
  Blas,    // OpenBLAS cblas_sgemm / cblas_dgemm (when ember was built with OpenBLAS)
  OneDnn,  // oneDNN, float32 only (when ember was built with oneDNN): dnnl_sgemm, and its matmul
           // primitive for B read transposed where it has brgemm kernels; float64 products
           // then run on OpenBLAS or Eigen by the rule a build without oneDNN uses
  Auto,    // the default when oneDNN is built in: oneDNN, except (where oneDNN runs no AVX-512
           // kernels) the float32 shape class that ran faster on OpenBLAS inside a training step
           // (gemm_engine_for says which)
  Measured,  // Auto's rule, but each small float32 product (under 2^20 multiply-adds) runs on the
             // engine that timed fastest on its shape at its first call in this process (like
             // PyTorch's cudnn.benchmark): faster where the static rule is not, but two runs may
             // pick different engines and so differ in the last bits (a resumed run no longer
             // repeats an uninterrupted one exactly). Opt-in: EMBER_GEMM=measured.
};

bool cpu_blas_available();
bool cpu_onednn_available();
// Whether oneDNN runs AVX-512 kernels on this CPU (false without oneDNN). Where it does, Auto sends
// every float32 product to oneDNN; where it runs AVX2 like OpenBLAS, one shape class goes to OpenBLAS.
bool cpu_onednn_runs_avx512();
std::vector<GemmEngine> available_gemm_engines();  // Eigen, then OpenBLAS and oneDNN where built in
GemmEngine cpu_gemm_engine();
// Throws if Blas is asked for without OpenBLAS built in, or OneDnn / Auto without oneDNN.
// (Measured works in every build: without oneDNN it times Eigen and OpenBLAS.)
void set_cpu_gemm_engine(GemmEngine engine);
const char* gemm_engine_name(GemmEngine engine);
// The engine that runs one product C[M,N] = op(A)[M,K] · op(B)[K,N] of this dtype on `threads`
// threads under the current setting (never Auto): what the kernel itself calls, exposed so tests
// and tools can see the rule. Under Measured, a small float32 product's first call for its shape
// times the engines (well under a millisecond) and later calls reuse the answer.
GemmEngine gemm_engine_for(DType dtype, int64_t M, int64_t N, int64_t K, bool a_transposed, bool b_transposed,
                           int threads);
// Measured's rule for a shape, given each engine's time on it: oneDNN, unless another engine
// is at least 5% faster (then the fastest), so near ties do not flip from run to run.
GemmEngine gemm_engine_from_timings(const std::vector<std::pair<GemmEngine, double>>& seconds);
// How many shapes this process has measured (at most 256; later shapes take Auto's rule unmeasured).
size_t measured_gemm_shape_count();
// Whether a call of `batch` products [M,K]·[K,N] is small enough to run on one thread whatever the
// thread setting (the engines' own splitting costs more there than it saves).
bool gemm_runs_on_one_thread(int64_t batch, int64_t M, int64_t N, int64_t K);
// Whether float32 products run on oneDNN (OneDnn or Auto): the convolution paths ask this.
bool cpu_gemm_uses_onednn();
// Which path float32 convolutions take on the CPU (used when the GEMM engine is oneDNN or Auto;
// other engines always take im2col): oneDNN's convolution primitives (core/cpu/onednn_conv.cpp), or
// im2col + this backend's GEMM (core/cpu/cpu_conv.cpp). oneDNN has two algorithms: direct, and
// Winograd F(4x4, 3x3) (AVX-512 CPUs, 3x3 stride-1 convolutions only; fewer multiplications, a
// little more rounding). Auto takes, pass by pass, the path bench/conv_sweep measured fastest
// (onednn_conv.cpp says where and by how much). EMBER_CONV=auto|onednn|winograd|im2col sets it
// from the environment.
enum class ConvEngine {
  Auto,
  OneDnn,    // oneDNN's direct convolution, every pass
  Winograd,  // oneDNN's Winograd kernels wherever oneDNN has them, its direct ones elsewhere
  Im2col,    // im2col + GEMM, every pass
};
ConvEngine cpu_conv_engine();
void set_cpu_conv_engine(ConvEngine engine);
const char* conv_engine_name(ConvEngine engine);
// The im2col path can keep a forward's column matrices for the backward's weight gradient (when
// the weight needs one) while all kept columns together stay within this many bytes; past it, the
// backward computes them again. Default 0 (keep none: it measured slower on this project's CPU,
// core/cpu/cpu_conv.cpp says by how much); EMBER_CONV_KEEP_COLUMNS_MB sets it from the
// environment. cpu_conv_kept_column_bytes() is what graphs hold now.
int64_t cpu_conv_column_budget();
void set_cpu_conv_column_budget(int64_t bytes);
int64_t cpu_conv_kept_column_bytes();

// One line for logs and benchmark reports: the engine in use and, when linked, OpenBLAS's build,
// kernel set ("core") and threading model, and oneDNN's version and the CPU ISA its kernels use.
std::string cpu_gemm_info();

}  // namespace ember
