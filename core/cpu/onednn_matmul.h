// Float32 products whose B is read transposed, C = op(A) · Bᵀ (a linear layer's forward x · Wᵀ, the
// im2col weight gradient g · colsᵀ), on oneDNN's matmul primitive instead of its dnnl_sgemm
// (onednn_matmul.cpp says why and by how much). The CPU matmul kernel (cpu_matmul.cpp) calls it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ember {

// C[M, N] (row-major, leading dimension N) = op(A) · op(B), or C += op(A) · op(B) when
// `accumulate`. op(A) is [M, K]: A stored row-major with leading dimension lda, or (a_trans) its
// transpose stored [K, M]; likewise op(B) [K, N] from B stored [K, N] or (b_trans) [N, K].
// Runs on the calling thread's OpenMP team (inside a parallel region: on the calling thread alone)
// and returns true;
// returns false, doing nothing, where oneDNN has no brgemm kernel for the product on this CPU
// (it then runs no faster than dnnl_sgemm) or ember was built without oneDNN.
bool onednn_matmul(int64_t M, int64_t N, int64_t K, const float* A, bool a_trans, int64_t lda, const float* B,
                   bool b_trans, int64_t ldb, float* C, bool accumulate);

// For tests and tools: oneDNN's name for the kernel that product gets on the current thread count
// ("brg:avx512_core", ...; "" without oneDNN), and how many products this thread has plans for.
std::string onednn_matmul_kernel(int64_t M, int64_t N, int64_t K, bool a_trans, bool b_trans);
size_t onednn_matmul_plan_count();

}  // namespace ember
