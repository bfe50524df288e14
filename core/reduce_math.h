// Reductions (sum, mean, max, min, argmax, argmin), the parts decided once for every device: the
// CPU loops (core/cpu/cpu_reduce.cpp) and the CUDA kernels (cuda/cuda_reduce.cu) both use them.
//  * dtype rules: what a sum accumulates in, and the output dtype of each op;
//  * the layout plan: how a reduction over any dims of any strided tensor becomes M outputs of N
//    elements each, walked over a few merged dims (plan);
//  * the per-element rules of the extrema: how NaNs and ties decide a max and an argmax.
// How the devices then walk the plan (vectorised loops and pairwise sums on the CPU, lanes and
// splits on the GPU) stays with each device. Everything a kernel calls is EMBER_HD.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "core/dtype.h"
#include "core/host_device.h"
#include "core/reduce_op.h"
#include "core/tensor.h"

namespace ember::reduction {

// ---------------------------------------------------------------- dtype rules

// Sums accumulate in the input type, except integers, which accumulate in int64 (so uint8 sums
// cannot wrap).
template <typename T>
using SumAcc = std::conditional_t<std::is_integral_v<T>, int64_t, T>;

// The output type of a sum of T: int64 for uint8 (PyTorch promotes bool/uint8 sums), T otherwise.
template <typename T>
using SumOut = std::conditional_t<std::is_same_v<T, uint8_t>, int64_t, T>;

// The output dtype of `op` over an `in` tensor: argmax/argmin give int64 indices, a uint8 sum
// gives int64 (SumOut), and everything else (a mean of integers included) keeps the input dtype.
inline DType output_dtype(ReduceOp op, DType in) {
  switch (op) {
    case ReduceOp::ArgMax:
    case ReduceOp::ArgMin: return DType::Int64;
    case ReduceOp::Sum: return in == DType::UInt8 ? DType::Int64 : in;
    default: return in;
  }
}

// The mean of `count` elements whose sum is `acc` (an integer mean divides in integers).
template <typename O, typename A>
EMBER_HD O mean(A acc, int64_t count) {
  return static_cast<O>(acc / static_cast<A>(count));
}

// ---------------------------------------------------------------- extrema

template <typename T>
EMBER_HD bool is_nan(T x) {
  if constexpr (std::is_floating_point_v<T>) return x != x;
  else return false;
}

// The running extremum of a max (kMax) or min after seeing x: x if it is further out, or if it is a
// NaN (a NaN, once seen, stays: PyTorch propagates it). Written with `|`, not `||`, so that the
// CPU's loops over it stay branch-free and vectorise.
template <bool kMax, typename T>
EMBER_HD T pick(T x, T m) {
  return (kMax ? x > m : x < m) | is_nan(x) ? x : m;
}

// Whether x replaces the running best m of an argmax (kMax) or argmin: strictly better, or a NaN
// over a number (argmax points at the first NaN, as in PyTorch). Ties keep the earlier element.
template <bool kMax, typename T>
EMBER_HD bool beats(T x, T m) {
  return (kMax ? x > m : x < m) | (is_nan(x) & !is_nan(m));
}

// The value a max (min) starts from when it has seen nothing: below (above) every element.
template <bool kMax, typename T>
EMBER_HD constexpr T identity() {
  if constexpr (std::is_floating_point_v<T>)
    return kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  else return kMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
}

// ---------------------------------------------------------------- the layout plan
//
// The input's dims are put in memory order (largest stride outermost; broadcast dims, stride 0,
// outermost of all), size-1 dims are dropped, and neighbours of the same kind (both reduced or
// both kept) that are contiguous for input and output are merged. What remains is
//   kept[0..nkept)  the dims that index the M outputs, outer -> inner
//   red[0..nred)    the dims reduced into each output (N elements), outer -> inner
// and one question for the walk: is the innermost dim in memory reduced (`rows`: the rows of a
// matrix, a full reduction) or kept (columns: an [N, C] gradient summed over N)?

struct Dim {
  int64_t size;
  int64_t in, out;  // strides in elements; `out` is 0 for a reduced dim
};

// Both lists are never empty: a placeholder dim of size 1 stands in for "none". Trivially
// copyable, so a CUDA kernel takes it by value.
struct Layout {
  Dim kept[kMaxDims];
  Dim red[kMaxDims];
  int nkept = 0, nred = 0;
  int64_t M = 1;     // number of outputs
  int64_t N = 1;     // input elements reduced into each output
  bool rows = true;  // innermost dim reduced (row reduction) or kept (column reduction)
};

// The plan of reducing the dims in bit mask `mask` of `in` into `out` (in's shape, reduced dims 1).
inline Layout plan(const Tensor& in, const Tensor& out, uint32_t mask) {
  struct D {
    Dim d;
    bool reduced;
  };
  D dims[kMaxDims];
  int n = 0;
  Layout L;
  for (int i = 0; i < in.dim(); ++i) {
    const bool reduced = (mask >> i) & 1u;
    if (reduced) L.N *= in.size(i);
    else L.M *= in.size(i);
    if (in.size(i) == 1) continue;
    dims[n++] = {{in.size(i), in.stride(i), reduced ? 0 : out.stride(i)}, reduced};
  }
  // Memory order: walking the input with its smallest stride innermost. Ties keep logical order.
  auto key = [](const D& x) { return x.d.in == 0 ? std::numeric_limits<int64_t>::max() : std::abs(x.d.in); };
  std::stable_sort(dims, dims + n, [&](const D& a, const D& b) { return key(a) > key(b); });
  for (int i = 0; i < n; ++i) {
    Dim* list = dims[i].reduced ? L.red : L.kept;
    int& len = dims[i].reduced ? L.nred : L.nkept;
    const Dim& d = dims[i].d;
    // Merge into the previous dim of the list only when it is the previous dim overall, too.
    const bool adjacent = i > 0 && dims[i - 1].reduced == dims[i].reduced;
    if (adjacent && list[len - 1].in == d.in * d.size && list[len - 1].out == d.out * d.size) {
      list[len - 1] = {list[len - 1].size * d.size, d.in, d.out};
    } else {
      list[len++] = d;
    }
  }
  L.rows = n == 0 || dims[n - 1].reduced;
  if (L.nkept == 0) L.kept[L.nkept++] = {1, 0, 0};
  if (L.nred == 0) L.red[L.nred++] = {1, 0, 0};
  return L;
}

// Input and output offsets of flat index i of dims[0..nd) (outer -> inner).
EMBER_HD void offsets_of(const Dim* dims, int nd, int64_t i, int64_t& in_off, int64_t& out_off) {
  in_off = out_off = 0;
  for (int d = nd - 1; d >= 0; --d) {
    const int64_t k = i % dims[d].size;
    i /= dims[d].size;
    in_off += k * dims[d].in;
    out_off += k * dims[d].out;
  }
}

}  // namespace ember::reduction
