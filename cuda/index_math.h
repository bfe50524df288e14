// 32-bit index math for the CUDA kernels, as host/device code (EMBER_HD) so that it is tested on
// the CPU (tests/test_index_math.cpp).
//
// Why: turning a flat element index into coordinates costs a `/` and a `%` per dim per element.
// In 64 bits that is a software routine of dozens of instructions on the GPU (sm_90 has no 64-bit
// divide); in 32 bits by a divisor fixed at launch it is a multiply-high, an add and a shift
// (IntDivider, after PyTorch's at::cuda::detail::IntDivider). So the host checks once per launch
// whether every size and every offset fits in 32 bits (PyTorch's can_use_32bit_indexing) and, if
// so, tells the kernel to take the narrow path; otherwise it keeps the 64-bit one. The branch is
// uniform across the launch, so it costs no divergence.
//
// Status: the narrow path is tested here on the CPU against `/` and `%`; like all of cuda/ it has
// not run on a GPU yet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "core/host_device.h"
#include "core/shape.h"      // kMaxDims

namespace ember::cuda {

// The narrow path keeps every flat index and offset at most this (as PyTorch: int32's maximum,
// which also leaves room for a grid-stride step past the end without wrapping in 32 bits).
inline constexpr int64_t kMax32BitIndex = std::numeric_limits<int32_t>::max();

// Division by a divisor d fixed at construction, exact for every 32-bit n and 1 <= d < 2^32
// (Granlund and Montgomery, "Division by invariant integers using multiplication", 1994): with
// s = ceil(log2 d) and m = floor(2^32 (2^s - d) / d) + 1, n / d = (umulhi(n, m) + n) >> s. The sum
// can need 33 bits, so it is formed in 64 (an add with carry). Made on the host, used anywhere.
struct IntDivider {
  uint32_t divisor = 1;
  uint32_t magic = 1;
  uint32_t shift = 0;

  IntDivider() = default;
  explicit IntDivider(uint32_t d) : divisor(d) {
    while (shift < 32 && (uint64_t{1} << shift) < d) ++shift;
    magic = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1);
  }

  EMBER_HD uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t high = __umulhi(n, magic);
#else
    const uint32_t high = static_cast<uint32_t>((static_cast<uint64_t>(n) * magic) >> 32);
#endif
    return static_cast<uint32_t>((static_cast<uint64_t>(high) + n) >> shift);
  }
  EMBER_HD uint32_t mod(uint32_t n) const { return n - div(n) * divisor; }
};

// Whether an operand's offsets fit: sum over dims of (size - 1) * stride stays within
// kMax32BitIndex. stride[d * step] is dim d's stride (step lets callers pass one column of a
// [dims][operands] table). Negative strides take the 64-bit path. Host only.
inline bool offsets_fit_32bit(int ndim, const int64_t* size, const int64_t* stride, size_t step = 1) {
  int64_t extent = 0;
  for (int d = 0; d < ndim; ++d) {
    const int64_t n = size[d], s = stride[d * step];
    if (n <= 0) return true;  // an empty operand reads nothing
    if (s < 0 || n > kMax32BitIndex + 1 || s > kMax32BitIndex) return false;
    extent += (n - 1) * s;  // < 2^62, so this cannot overflow before the check below
    if (extent > kMax32BitIndex) return false;
  }
  return true;
}

inline bool count_fits_32bit(int64_t n) { return n >= 0 && n <= kMax32BitIndex; }

// N operands sharing one shape (operand 0 is the output), each with its own strides in elements:
// get(i) turns flat element i (innermost dim fastest) into each operand's offset. Made on the host
// (cuda/loops.cuh: make_offset_calc) and passed to kernels by value, so no device memory is needed
// for the metadata. narrow (set by use_32bit_if_it_fits) selects IntDivider math.
template <size_t N>
struct OffsetCalc {
  int ndim = 0;
  bool narrow = false;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims][N] = {};
  IntDivider divider[kMaxDims] = {};

  EMBER_HD void get(int64_t i, int64_t (&off)[N]) const {
    if (narrow) get_narrow(static_cast<uint32_t>(i), off);
    else get_wide(i, off);
  }

  // The two paths, for kernels that choose one at compile time (cuda/reduce_index.h).
  EMBER_HD void get_wide(int64_t i, int64_t (&off)[N]) const {
    for (size_t k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t idx = i % size[d];
      i /= size[d];
      for (size_t k = 0; k < N; ++k) off[k] += idx * stride[d][k];
    }
  }

  EMBER_HD void get_narrow(uint32_t i, int64_t (&off)[N]) const {
    uint32_t o[N] = {};
    for (int d = ndim - 1; d >= 0; --d) {
      const uint32_t q = divider[d].div(i);
      const uint32_t idx = i - q * divider[d].divisor;
      i = q;
      for (size_t k = 0; k < N; ++k) o[k] += idx * static_cast<uint32_t>(stride[d][k]);
    }
    for (size_t k = 0; k < N; ++k) off[k] = o[k];
  }
};

// Turns on the narrow path of `oc` when its element count and every operand's offsets fit.
template <size_t N>
void use_32bit_if_it_fits(OffsetCalc<N>& oc) {
  int64_t numel = 1;
  for (int d = 0; d < oc.ndim; ++d) {
    if (!count_fits_32bit(oc.size[d])) return;
    numel *= oc.size[d];  // each factor <= 2^31 and the product checked at every step: no overflow
    if (!count_fits_32bit(numel)) return;
  }
  for (size_t k = 0; k < N; ++k)
    if (!offsets_fit_32bit(oc.ndim, oc.size, &oc.stride[0][k], N)) return;
  for (int d = 0; d < oc.ndim; ++d) oc.divider[d] = IntDivider(static_cast<uint32_t>(oc.size[d]));
  oc.narrow = true;
}

// i / d for the flat indices i < n of a kernel, by a divisor d > 0 fixed at launch: IntDivider
// math when n fits in 32 bits, 64-bit division otherwise (as OffsetCalc, one uniform branch).
// For kernels that split a flat index into (row, column) of an [n / d, d] view.
struct IndexDivider {
  bool narrow = false;
  int64_t divisor = 1;
  IntDivider divider;

  IndexDivider() = default;
  IndexDivider(int64_t d, int64_t n) : divisor(d) {
    narrow = d > 0 && count_fits_32bit(d) && count_fits_32bit(n);
    if (narrow) divider = IntDivider(static_cast<uint32_t>(d));
  }

  EMBER_HD int64_t div(int64_t i) const {
    return narrow ? static_cast<int64_t>(divider.div(static_cast<uint32_t>(i))) : i / divisor;
  }
};

// Coordinates (plane, row, column) of flat index i in contiguous [planes, rows, cols] maps, as the
// pooling kernels need them for their outputs and inputs.
struct PlaneIndexer {
  bool narrow = false;
  int64_t rows = 1, cols = 1;
  IntDivider row_divider, col_divider;

  PlaneIndexer() = default;
  PlaneIndexer(int64_t planes, int64_t rows_, int64_t cols_) : rows(rows_), cols(cols_) {
    const int64_t sizes[3] = {planes, rows, cols}, strides[3] = {rows * cols, cols, 1};
    narrow = rows > 0 && cols > 0 && count_fits_32bit(planes) && count_fits_32bit(rows * cols) &&
             count_fits_32bit(planes * rows * cols) && offsets_fit_32bit(3, sizes, strides);
    if (narrow) {
      row_divider = IntDivider(static_cast<uint32_t>(rows));
      col_divider = IntDivider(static_cast<uint32_t>(cols));
    }
  }

  EMBER_HD void split(int64_t i, int64_t& plane, int64_t& row, int64_t& col) const {
    if (narrow) {
      const uint32_t n = static_cast<uint32_t>(i);
      const uint32_t r = col_divider.div(n), p = row_divider.div(r);
      col = n - r * col_divider.divisor;
      row = r - p * row_divider.divisor;
      plane = p;
      return;
    }
    col = i % cols;
    row = (i / cols) % rows;
    plane = i / (cols * rows);
  }
};

}  // namespace ember::cuda
