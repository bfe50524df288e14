// Error checks for every NVIDIA library ember calls: the CUDA runtime, cuBLAS, cuDNN and NCCL.
//
//   EMBER_CUDA_CHECK(cudaMalloc(&p, n));          // any of the four libraries' status types
//   EMBER_CUDA_CHECK(cublasSgemm(handle, ...));
//   my_kernel<<<blocks, threads>>>(...);
//   EMBER_CUDA_CHECK_LAUNCH();                    // a bad launch is only reported by cudaGetLastError
//
// A failure throws ember::Error naming the library, the call as written, the library's own message
// and file:line, e.g.
//   "CUDA runtime error in cudaMalloc(&p, n): out of memory (cudaErrorMemoryAllocation) (cuda/x.cu:42)".
// One macro serves all four libraries: the status type picks the overloads below at compile time.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <string>

#include "core/error.h"
#include "cuda/cublas_library.h"
#include "cuda/runtime.h"

namespace ember::cuda {

// Per library: is the status a success, the library's name, and its own text for the status.
inline bool is_success(cudaError_t s) { return s == cudaSuccess; }
inline bool is_success(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
inline bool is_success(cudnnStatus_t s) { return s == CUDNN_STATUS_SUCCESS; }
inline bool is_success(ncclResult_t s) { return s == ncclSuccess; }

inline const char* library_name(cudaError_t) { return "CUDA runtime"; }
inline const char* library_name(cublasStatus_t) { return "cuBLAS"; }
inline const char* library_name(cudnnStatus_t) { return "cuDNN"; }
inline const char* library_name(ncclResult_t) { return "NCCL"; }

inline std::string error_text(cudaError_t s) {
  // A failed runtime call also becomes the thread's "last error"; clear it so the next
  // EMBER_CUDA_CHECK_LAUNCH does not report this same failure a second time.
  (void)cudaGetLastError();
  return std::string(cudaGetErrorString(s)) + " (" + cudaGetErrorName(s) + ")";
}
// A cuBLAS status only comes from a cuBLAS call, so the library is open by then
// (cuda/cublas_library.h: it is loaded on first use, not linked).
inline std::string error_text(cublasStatus_t s) {
  return std::string(cublas().status_string(s)) + " (" + cublas().status_name(s) + ")";
}
inline std::string error_text(cudnnStatus_t s) { return cudnnGetErrorString(s); }
inline std::string error_text(ncclResult_t s) { return ncclGetErrorString(s); }

// Builds the message and throws; kept out of line of the check so the success path stays small.
template <typename Status>
[[noreturn]] void throw_error(Status s, const char* call, const char* file, int line) {
  ::ember::detail::throw_error(file, line,
                               ::ember::detail::str_cat(library_name(s), " error in ", call, ": ", error_text(s)));
}

}  // namespace ember::cuda

// EMBER_CUDA_CHECK(call): runs `call` (a CUDA runtime, cuBLAS, cuDNN or NCCL function) and throws
// ember::Error with the library's message when it does not return success.
#define EMBER_CUDA_CHECK(call)                                                             \
  do {                                                                                     \
    const auto ember_status_ = (call);                                                     \
    if (!::ember::cuda::is_success(ember_status_)) [[unlikely]]                            \
      ::ember::cuda::throw_error(ember_status_, #call, __FILE__, __LINE__);                \
  } while (0)

// EMBER_CUDA_CHECK_LAUNCH(): call right after a <<<...>>> launch. A launch returns nothing; a bad
// configuration (too many threads, too much shared memory, no kernel image for this GPU) is only
// reported by cudaGetLastError. Errors inside the kernel surface at the next synchronising call.
// Each use also counts one launch (cuda/runtime.h), which Backend::kernel_launches() reports.
#define EMBER_CUDA_CHECK_LAUNCH()        \
  do {                                   \
    ::ember::cuda::count_launch();       \
    EMBER_CUDA_CHECK(cudaGetLastError()); \
  } while (0)
