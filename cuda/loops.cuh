// Building blocks shared by the CUDA elementwise kernels: launch sizes, the grid-stride loop,
// make_offset_calc, which builds an OffsetCalc (cuda/index_math.h: a flat element index to each
// operand's offset for strided and broadcast (stride 0) tensors, in 32-bit math when everything
// fits), and Vec for 16-byte vector loads and stores.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "core/tensor.h"
#include "cuda/index_math.h"

namespace ember::cuda {

constexpr int kThreads = 256;  // threads per block: a good default for memory-bound kernels
// With a grid-stride loop any grid covers any n; beyond a few waves of blocks more adds nothing.
constexpr int64_t kMaxBlocks = 65536;

inline int num_blocks(int64_t n) { return static_cast<int>(std::min((n + kThreads - 1) / kThreads, kMaxBlocks)); }

// Calls body(i) for each i in [0, n) that belongs to this thread.
template <typename Body>
__device__ __forceinline__ void grid_stride(int64_t n, Body body) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) body(i);
}

// Drops size-1 dims and merges neighbouring dims that are contiguous with each other in every
// operand, so most views cost one or two divisions per element instead of one per dim; those
// divisions are 32-bit fast ones when every size and offset fits.
template <size_t N>
OffsetCalc<N> make_offset_calc(const std::array<const Tensor*, N>& ops) {
  OffsetCalc<N> oc;
  const Shape& shape = ops[0]->shape();
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool mergeable = oc.ndim > 0;
    for (size_t k = 0; k < N && mergeable; ++k) mergeable = oc.stride[oc.ndim - 1][k] == ops[k]->stride(d) * shape[d];
    if (mergeable) {  // the previous (outer) dim steps exactly over this one: fold them together
      oc.size[oc.ndim - 1] *= shape[d];
      for (size_t k = 0; k < N; ++k) oc.stride[oc.ndim - 1][k] = ops[k]->stride(d);
    } else {
      oc.size[oc.ndim] = shape[d];
      for (size_t k = 0; k < N; ++k) oc.stride[oc.ndim][k] = ops[k]->stride(d);
      ++oc.ndim;
    }
  }
  use_32bit_if_it_fits(oc);
  return oc;  // ndim == 0 (a single element) gives offset 0 for every operand
}

// True when every operand is contiguous: the kernels then index all of them with the flat index.
template <size_t N>
bool all_contiguous(const std::array<const Tensor*, N>& ops) {
  return std::all_of(ops.begin(), ops.end(), [](const Tensor* t) { return t->is_contiguous(); });
}

// ---------------- vector loads and stores ----------------
// A memory-bound kernel moves data fastest in 16-byte transactions per thread (one LDG.128 /
// STG.128 instead of four 4-byte ones): fewer instructions per byte and full use of each request.
// Vec<T, N> is N values of T with the alignment of their total size, so that loading one from a
// suitably aligned pointer compiles to a single vector instruction (float4-style).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// Elements of T per 16-byte vector: 4 floats, 2 doubles.
template <typename T>
constexpr int kVecWidth = static_cast<int>(16 / sizeof(T));

// Vectorising pays off once there are many elements; below this the launch dominates anyway.
constexpr int64_t kVectorizeMinElements = 4096;

// True when `p` may be read or written as Vec<T, N> (the caching allocator's blocks are 512-byte
// aligned; views that start at an offset may not be).
template <typename V>
inline bool is_aligned_for(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % alignof(V) == 0;
}

}  // namespace ember::cuda
