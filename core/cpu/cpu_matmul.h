// Which GEMM engine the CPU matmul kernel (cpu_matmul.cpp) runs on. Ordinary code never needs
// this: the engine is chosen once, automatically. Tests use it to check every engine, benchmarks
// to compare them, and EMBER_GEMM=auto|onednn|blas|eigen overrides the choice from the environment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace ember {

enum class GemmEngine {
  Eigen,   // Eigen's own GEMM, compiled into ember for this CPU (always available)
  Blas,    // OpenBLAS cblas_sgemm / cblas_dgemm (when ember was built with OpenBLAS)
  OneDnn,  // oneDNN dnnl_sgemm, float32 only (when ember was built with oneDNN); float64 products
           // then run on OpenBLAS or Eigen by the rule a build without oneDNN uses
  Auto,    // the default when oneDNN is built in: oneDNN, except (where oneDNN runs no AVX-512
           // kernels) the float32 shape class that ran faster on OpenBLAS inside a training step
           // (gemm_engine_for says which)
};

bool cpu_blas_available();
bool cpu_onednn_available();
// Whether oneDNN runs AVX-512 kernels on this CPU (false without oneDNN). Where it does, Auto sends
// every float32 product to oneDNN; where it runs AVX2 like OpenBLAS, one shape class goes to OpenBLAS.
bool cpu_onednn_runs_avx512();
std::vector<GemmEngine> available_gemm_engines();  // Eigen, then OpenBLAS and oneDNN where built in
GemmEngine cpu_gemm_engine();
// Throws if Blas is asked for without OpenBLAS built in, or OneDnn / Auto without oneDNN.
void set_cpu_gemm_engine(GemmEngine engine);
const char* gemm_engine_name(GemmEngine engine);
// The engine that runs one product C[M,N] = op(A)[M,K] · op(B)[K,N] of this dtype under the current
// setting (never Auto): what the kernel itself calls, exposed so tests and tools can see the rule.
GemmEngine gemm_engine_for(DType dtype, int64_t M, int64_t N, int64_t K, bool b_transposed);
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

// One line for logs and benchmark reports: the engine in use and, when linked, OpenBLAS's build,
// kernel set ("core") and threading model, and oneDNN's version and the CPU ISA its kernels use.
std::string cpu_gemm_info();

}  // namespace ember
