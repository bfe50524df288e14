// The index math of one reduction pass (cuda/cuda_reduce.cu), as host/device code so that it is
// tested on the CPU (tests/test_index_math.cpp).
//
// A reduction pass walks the layout plan (core/reduce_math.h): output m -> its input and output
// offsets over the kept dims, once per output; reduced index j -> its input offset over the
// reduced dims, once per element. With several reduced dims that do not merge (a reduction over
// dims 0 and 2 of a 3-D tensor, a permuted view) the second is a `/` and a `%` per dim per
// element, the hot loop of the kernel. As for the elementwise kernels (cuda/index_math.h), the
// host decides once per launch whether everything fits in 32 bits and the kernel is instantiated
// for that path (kNarrow): IntDivider math on uint32_t indices, or the 64-bit path otherwise.
//
// Why a template and not the OffsetCalc's runtime flag: the argmax/argmin kernels carry a
// (value, index) pair per lane; holding both paths in one kernel body would count the registers of
// both, so each kernel holds one.
//
// Status: the narrow path is tested here on the CPU against the 64-bit one and against
// reduction::offsets_of; like all of cuda/ it has not run on a GPU yet.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/host_device.h"
#include "core/reduce_math.h"
#include "cuda/index_math.h"

namespace ember::cuda {

struct ReduceIndex {
  OffsetCalc<2> kept;  // flat output index m -> {input offset, output offset}
  OffsetCalc<1> red;   // flat reduced index j -> input offset (relative to the output's)
  bool narrow = false;  // every count and offset of both fits in 32 bits: the kernel's uint32_t path
};

// The index math of layout L. Narrow when the outputs (M), the reduced elements (N) and the
// offsets of each side stay within kMax32BitIndex: then an input offset, the sum of the two
// sides, is below 2^32 and is formed in uint32_t without wrapping.
inline ReduceIndex make_reduce_index(const reduction::Layout& L) {
  ReduceIndex ix;
  ix.kept.ndim = L.nkept;
  for (int d = 0; d < L.nkept; ++d) {
    ix.kept.size[d] = L.kept[d].size;
    ix.kept.stride[d][0] = L.kept[d].in;
    ix.kept.stride[d][1] = L.kept[d].out;
  }
  ix.red.ndim = L.nred;
  for (int d = 0; d < L.nred; ++d) {
    ix.red.size[d] = L.red[d].size;
    ix.red.stride[d][0] = L.red[d].in;
  }
  use_32bit_if_it_fits(ix.kept);  // checks M (the product of the sizes) and both operands' offsets
  use_32bit_if_it_fits(ix.red);   // checks N and the reduced offsets
  ix.narrow = ix.kept.narrow && ix.red.narrow;
  return ix;
}

// The layout that combines the partial results of a pass of L split `splits` ways:
// partials[m * splits + k] for output m (m the flat index over L's kept dims) and split k, reduced
// in row mode into the same outputs. Its offsets reach M * splits - 1, so it may need the 64-bit
// path where L did not.
inline reduction::Layout partials_layout(const reduction::Layout& L, int64_t splits) {
  reduction::Layout q = L;
  int64_t stride = splits;  // the partials are [kept..., splits], contiguous
  for (int d = L.nkept - 1; d >= 0; --d) {
    q.kept[d].in = stride;
    stride *= L.kept[d].size;
  }
  q.nred = 1;
  q.red[0] = {splits, 1, 0};
  q.N = splits;
  q.rows = true;
  return q;
}

// The index type a kernel walks reduced elements with.
template <bool kNarrow>
using ReduceIndexType = std::conditional_t<kNarrow, uint32_t, int64_t>;

// Input and output offsets of output m (m < M).
template <bool kNarrow>
EMBER_HD void output_offsets(const ReduceIndex& ix, int64_t m, int64_t& in_off, int64_t& out_off) {
  int64_t off[2];
  if constexpr (kNarrow) ix.kept.get_narrow(static_cast<uint32_t>(m), off);
  else ix.kept.get_wide(m, off);
  in_off = off[0];
  out_off = off[1];
}

// Input offset of reduced element j (j < N), relative to the output's input offset.
template <bool kNarrow>
EMBER_HD ReduceIndexType<kNarrow> reduced_offset(const ReduceIndex& ix, ReduceIndexType<kNarrow> j) {
  using I = ReduceIndexType<kNarrow>;
  if (ix.red.ndim == 1) return j * static_cast<I>(ix.red.stride[0][0]);  // the common case: no division
  int64_t off[1];
  if constexpr (kNarrow) ix.red.get_narrow(j, off);
  else ix.red.get_wide(j, off);
  return static_cast<I>(off[0]);
}

}  // namespace ember::cuda
