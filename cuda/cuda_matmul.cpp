// CUDA matmul on cuBLAS: out[i] = a[i] · b[i] for every batch entry i, same contract and the same
// "views cost no copy" rule as the CPU kernel (core/cpu/cpu_matmul.cpp).
//
// cuBLAS is column-major, ember row-major. A row-major [R, C] matrix with leading dimension ld is,
// byte for byte, a column-major [C, R] matrix with the same ld: its transpose. So instead of
// out = a · b we ask cuBLAS for
//   outᵀ [N, M] = bᵀ [N, K] · aᵀ [K, M]        (column-major, ldc = N)
// which it writes straight into out's row-major memory. Each operand is read as stored (CUBLAS_OP_N)
// or transposed (CUBLAS_OP_T) with a leading dimension, so a transposed view costs nothing. Only a
// matrix with no unit stride at all is copied first. A broadcast batch is batch stride 0, which
// cublasGemmStridedBatchedEx accepts as is.
//
// TF32: with ember::allow_tf32() float32 products may round their inputs to TF32 on tensor cores
// (CUBLAS_COMPUTE_32F_FAST_TF32); otherwise they compute in full float32 (CUBLAS_COMPUTE_32F) and
// agree with the CPU to float32 tolerances. bfloat16 and float16 operands (CUDA_R_16BF /
// CUDA_R_16F) always multiply on tensor cores with float32 accumulation (CUBLAS_COMPUTE_32F) and
// round the result to the narrow type once, as PyTorch does; the CPU computes the same products in
// float32 from the same narrow inputs, so the two agree to the narrow type's rounding (summation
// order aside). The _64 entry points take 64-bit sizes and leading dimensions, so no size limit
// needs checking here.
#include <cublas_v2.h>

#include "cuda/cublas_library.h"

#include "core/backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/runtime.h"

namespace ember::cuda {

namespace {

// One [B, rows, cols] operand as cuBLAS reads it in the identity above: the column-major matrix
// at `ptr` (one per batch entry, `batch_stride` elements apart) is either this operand's
// transpose (op N) or the operand itself (op T), with leading dimension ld.
struct GemmOperand {
  const void* ptr = nullptr;
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t ld = 0;
  int64_t batch_stride = 0;
  Tensor keep_alive;  // the contiguous copy, in the rare case one was needed
};

// The cuBLAS element type of a matmul's operands and result (all three share one dtype).
cudaDataType gemm_data_type(DType t) {
  switch (t) {
    case DType::Float32: return CUDA_R_32F;
    case DType::Float64: return CUDA_R_64F;
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float16: return CUDA_R_16F;
    default: EMBER_FAIL("matmul: expected a floating-point tensor on CUDA, got ", dtype_name(t));
  }
}

GemmOperand gemm_operand(const Tensor& t) {
  const int64_t rows = t.size(1), cols = t.size(2);
  int64_t rs = t.stride(1), cs = t.stride(2);
  // The stride of a size-1 dim is never used: pick whichever value makes a valid layout.
  if (cols == 1) cs = 1;
  if (rows == 1) rs = cs == 1 ? cols : 1;
  GemmOperand g;
  if (cs == 1 && rs >= cols) {  // rows contiguous: row-major [rows, cols] = column-major transpose
    g.ptr = t.data_ptr();
    g.op = CUBLAS_OP_N;
    g.ld = rs;
    g.batch_stride = t.stride(0);
  } else if (rs == 1 && cs >= rows) {  // columns contiguous (a transposed view): column-major as is
    g.ptr = t.data_ptr();
    g.op = CUBLAS_OP_T;
    g.ld = cs;
    g.batch_stride = t.stride(0);
  } else {
    // No unit stride in either matrix dim (e.g. sliced with a step in both): cuBLAS cannot read
    // it, so copy it to a contiguous matrix first — just one when the batch is broadcast.
    const bool broadcast = t.stride(0) == 0 || t.size(0) == 1;
    g.keep_alive = broadcast ? t.select(0, 0).contiguous() : t.contiguous();
    g.ptr = g.keep_alive.data_ptr();
    g.op = CUBLAS_OP_N;
    g.ld = cols;
    g.batch_stride = broadcast ? 0 : rows * cols;
  }
  return g;
}

}  // namespace

void CudaBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  if (out.numel() == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  if (K == 0) {  // an empty sum: zeros (out is contiguous, and +0.0 is all-zero bytes)
    EMBER_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), stream));
    return;
  }
  const DType dtype = out.dtype();
  const GemmOperand A = gemm_operand(a), B = gemm_operand(b);
  const cudaDataType type = gemm_data_type(dtype);
  const cublasComputeType_t compute = dtype == kFloat64                     ? CUBLAS_COMPUTE_64F
                                      : dtype == kFloat32 && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                          : CUBLAS_COMPUTE_32F;
  // alpha and beta have the compute type's scalar type: double for double, float for the others
  // (the 16-bit types too: they compute in float32).
  const double alpha64 = 1, beta64 = 0;
  const float alpha32 = 1, beta32 = 0;
  const void* alpha = dtype == kFloat64 ? static_cast<const void*>(&alpha64) : &alpha32;
  const void* beta = dtype == kFloat64 ? static_cast<const void*>(&beta64) : &beta32;
  cublasHandle_t handle = cublas_handle(index_);
  // outᵀ [N, M] = bᵀ [N, K] · aᵀ [K, M]: b is cuBLAS's first operand, a its second.
  if (batch == 1) {
    EMBER_CUDA_CHECK(cublas().gemm_ex(handle, B.op, A.op, N, M, K, alpha, B.ptr, type, B.ld, A.ptr, type, A.ld, beta,
                                      out.data_ptr(), type, N, compute, CUBLAS_GEMM_DEFAULT));
  } else {
    EMBER_CUDA_CHECK(cublas().gemm_strided_batched_ex(handle, B.op, A.op, N, M, K, alpha, B.ptr, type, B.ld,
                                                      B.batch_stride, A.ptr, type, A.ld, A.batch_stride, beta,
                                                      out.data_ptr(), type, N, M * N, batch, compute,
                                                      CUBLAS_GEMM_DEFAULT));
  }
  count_launch();
}

}  // namespace ember::cuda
