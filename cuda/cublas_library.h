// cuBLAS, opened with dlopen on first use instead of linked.
//
// Why not link it: linking libcublas makes the dynamic loader map and relocate libcublas and
// libcublasLt before main(). On the CPU machine a do-nothing program linked with -lcublas peaks at
// 217 MB resident and needs 0.13 s to start (1 MB and ~0 s unlinked; -lcudart, -lcudnn and -lnccl
// cost 0.4–3 MB each), so every program of a CUDA build paid that, CPU-only runs and every test
// process included. Loading it when the first cuBLAS handle is made (cuda/runtime.cpp) moves the
// cost to the first matmul on a GPU.
//
// The table holds the few entry points ember calls; call sites read `cublas().gemm_ex(...)`.
#pragma once

#include <cublas_v2.h>

namespace ember::cuda {

struct CublasApi {
  decltype(&::cublasCreate_v2) create;
  decltype(&::cublasDestroy_v2) destroy;
  decltype(&::cublasSetStream_v2) set_stream;
  decltype(&::cublasGemmEx_64) gemm_ex;
  decltype(&::cublasGemmStridedBatchedEx_64) gemm_strided_batched_ex;
  decltype(&::cublasGetStatusString) status_string;
  decltype(&::cublasGetStatusName) status_name;
};

// Opens the library once (thread-safe) and resolves every entry. Throws ember::Error naming each
// file it tried with dlerror()'s text, or the missing symbol, if that fails; the next call tries
// again.
const CublasApi& cublas();

// Whether cuBLAS is mapped into this process (without loading it): tests check that CPU work
// never loads it.
bool cublas_is_loaded();

}  // namespace ember::cuda
