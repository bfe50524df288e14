// Cooperative reductions inside a thread block, shared by the row-wise kernels: reductions
// (cuda_reduce.cu), softmax, cross entropy and layer norm.
//
// Row groups. A block of kThreads threads is laid out as blockDim.y groups of blockDim.x lanes;
// each group works on one row (one output), its lanes striding along the row, so neighbouring
// lanes read neighbouring elements. blockDim.x is a power of two: a group of up to 32 lanes lies
// inside one warp and combines with shuffles; a wider group combines its warps' results through
// shared memory. Short rows get few lanes (many rows per block), long rows up to kThreads lanes.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;

// __shfl_xor_sync for every type a kernel combines (the intrinsic has no 8-bit overload, and
// int64_t is `long`, which its overload set does not name on every platform).
__device__ __forceinline__ float shfl_xor(float v, int mask) { return __shfl_xor_sync(kFullMask, v, mask); }
__device__ __forceinline__ double shfl_xor(double v, int mask) { return __shfl_xor_sync(kFullMask, v, mask); }
__device__ __forceinline__ int64_t shfl_xor(int64_t v, int mask) {
  return static_cast<int64_t>(__shfl_xor_sync(kFullMask, static_cast<long long>(v), mask));
}
__device__ __forceinline__ uint8_t shfl_xor(uint8_t v, int mask) {
  return static_cast<uint8_t>(__shfl_xor_sync(kFullMask, static_cast<unsigned>(v), mask));
}

// Combines v over the lanes of each row group with `op` (commutative) and returns the result to
// every lane of the group, bit-identical in all of them: the butterfly pairs a + b with b + a,
// and the warps' results are then read back in the same fixed order by every lane.
// Requirements: blockDim.x * blockDim.y == kThreads, and every thread of the block calls it the
// same number of times (it uses full-warp shuffles and __syncthreads). smem: kThreads / kWarp Ts.
template <typename T, typename Op>
__device__ T group_allreduce(T v, Op op, T* smem) {
  const int lanes = blockDim.x;
  for (int m = (lanes < kWarp ? lanes : kWarp) / 2; m > 0; m /= 2) v = op(v, shfl_xor(v, m));
  if (lanes <= kWarp) return v;
  const int warps = lanes / kWarp;  // warps per group; the group's results go to smem[y * warps ..]
  T* mine = smem + threadIdx.y * warps;
  if (threadIdx.x % kWarp == 0) mine[threadIdx.x / kWarp] = v;
  __syncthreads();
  v = mine[0];
  for (int w = 1; w < warps; ++w) v = op(v, mine[w]);
  __syncthreads();  // smem is free again for the caller's next reduction
  return v;
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// ---------------- host side: launch shapes ----------------

// Lanes for rows of n elements: the smallest power of two (at most kThreads) that leaves each
// lane at most `per_lane` elements.
inline int lanes_for(int64_t n, int64_t per_lane) {
  int lanes = 1;
  while (lanes < kThreads && lanes * per_lane < n) lanes *= 2;
  return lanes;
}

// Blocks for `rows` rows at `rows_per_block` each; kernels loop over row groups past the grid.
inline int blocks_for_rows(int64_t rows, int rows_per_block) {
  return static_cast<int>(std::min<int64_t>((rows + rows_per_block - 1) / rows_per_block, kMaxBlocks));
}

// Blocks that keep every SM of `device` busy (a few resident per SM); below this a kernel should
// split its rows' work across more blocks.
inline int64_t busy_blocks(int device) {
  int sms = 0;
  EMBER_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return 4 * static_cast<int64_t>(std::max(sms, 1));
}

}  // namespace ember::cuda
