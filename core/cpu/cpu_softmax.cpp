// CPU softmax and log_softmax, forward and backward, over one dim of any strided tensor.
//
// The softmax dim is a "row"; every index of the other dims picks one row. Two loop orders:
//  * row order, when the softmax dim is contiguous (the usual [batch, classes] logits): each row
//    is processed in vectorised passes — its max, the sum of exp(x - max), then the output.
//  * column order, when it is not but another dim is (softmax over dim 1 of [B, C, H, W], over
//    dim 0 of a matrix, or of a transposed view), or when rows are very short: a tile of up to
//    kTile neighbouring rows is processed together, so the inner loop runs across rows and is
//    vectorised again.
// Strided and broadcast (stride 0) operands are walked in place, never copied. Rows run in parallel;
// each row is computed the same way whatever the thread count.
//
// The row formulas (the NaN-propagating max, y from exp(x - m) and the sum, the gradients) are
// shared with the CUDA kernels: core/softmax_math.h.
//
// Accuracy: the max is subtracted before exp (no overflow for any logits; the largest term is 1).
// Sums (of the exps, and the dot products of the backward) add chunks of kChunk elements in the
// tensor's type, with one vectorised loop, and accumulate the chunk sums in double.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/parallel.h"
#include "core/cpu/simd_math.h"
#include "core/softmax_math.h"

namespace ember {

namespace {

constexpr int64_t kTile = 256;   // rows processed together in column order
constexpr int64_t kChunk = 256;  // elements summed in T before the partial sum joins a double total
constexpr int64_t kShortRow = 16;  // rows shorter than this go in column order (see RowLayout::columns)

using softmax_math::inverse_sum;
using softmax_math::log_softmax;
using softmax_math::log_softmax_grad;
using softmax_math::log_sum;
using softmax_math::max_nan;  // NaN-propagating: a NaN anywhere in a row makes the whole row NaN
using softmax_math::softmax_grad;

// ---------------------------------------------------------------- layout

// K operands (same shape): the softmax dim (length n, stride ds[k] per operand) and the other dims,
// outer -> inner, size-1 dims dropped and neighbours that are contiguous for every operand merged.
template <int K>
struct RowLayout {
  int64_t n = 1;
  int64_t ds[K];
  int nd = 0;
  int64_t size[kMaxDims];
  int64_t st[kMaxDims][K];
  int64_t rows = 1;

  RowLayout(const std::array<const Tensor*, K>& ops, int dim) {
    const Tensor& t = *ops[0];
    n = t.size(dim);
    for (int k = 0; k < K; ++k) ds[k] = ops[k]->stride(dim);
    for (int d = 0; d < t.dim(); ++d) {
      if (d == dim || t.size(d) == 1) continue;
      bool merge = nd > 0;
      for (int k = 0; k < K && merge; ++k) merge = st[nd - 1][k] == ops[k]->stride(d) * t.size(d);
      if (merge) {
        size[nd - 1] *= t.size(d);
        for (int k = 0; k < K; ++k) st[nd - 1][k] = ops[k]->stride(d);
      } else {
        size[nd] = t.size(d);
        for (int k = 0; k < K; ++k) st[nd][k] = ops[k]->stride(d);
        ++nd;
      }
      rows *= t.size(d);
    }
    if (nd == 0) {  // a single row
      size[0] = 1;
      for (int k = 0; k < K; ++k) st[0][k] = 0;
      nd = 1;
    }
  }

  // Column order pays off when operand p runs along a non-contiguous softmax dim but its innermost
  // other dim is contiguous, and for rows too short to fill a SIMD register (10 classes).
  bool columns(int p) const { return size[nd - 1] > 1 && ((ds[p] != 1 && st[nd - 1][p] == 1) || n < kShortRow); }

  // Element offsets of index i of dims [0, upto), per operand.
  void offsets(int64_t i, int upto, int64_t* off) const {
    for (int k = 0; k < K; ++k) off[k] = 0;
    for (int d = upto - 1; d >= 0; --d) {
      const int64_t j = i % size[d];
      i /= size[d];
      for (int k = 0; k < K; ++k) off[k] += j * st[d][k];
    }
  }

  // Calls fn(offsets) for rows [b, e) in order (an odometer: one division per call, not per row).
  template <typename F>
  void for_rows(int64_t b, int64_t e, F&& fn) const {
    int64_t idx[kMaxDims], off[K];
    for (int k = 0; k < K; ++k) off[k] = 0;
    int64_t rem = b;
    for (int d = nd - 1; d >= 0; --d) {
      idx[d] = rem % size[d];
      rem /= size[d];
      for (int k = 0; k < K; ++k) off[k] += idx[d] * st[d][k];
    }
    for (int64_t r = b; r < e; ++r) {
      fn(static_cast<const int64_t*>(off));
      for (int d = nd - 1; d >= 0; --d) {  // increment the odometer
        for (int k = 0; k < K; ++k) off[k] += st[d][k];
        if (++idx[d] < size[d]) break;
        for (int k = 0; k < K; ++k) off[k] -= size[d] * st[d][k];
        idx[d] = 0;
      }
    }
  }

  // Runs fn(offsets, w) in parallel over tiles of up to kTile neighbouring rows along the innermost
  // other dim (column order).
  template <typename F>
  void for_tiles(F&& fn) const {
    const int64_t C = size[nd - 1], tiles = (C + kTile - 1) / kTile, groups = rows / C * tiles;
    parallel_for(groups, items_per_grain(Grain::RowWise, n * std::min(C, kTile)), [&](int64_t b, int64_t e) {
      for (int64_t g = b; g < e; ++g) {
        int64_t off[K];
        offsets(g / tiles, nd - 1, off);
        const int64_t c0 = (g % tiles) * kTile;
        for (int k = 0; k < K; ++k) off[k] += c0 * st[nd - 1][k];
        fn(static_cast<const int64_t*>(off), std::min(kTile, C - c0));
      }
    });
  }

  template <typename F>
  void parallel_rows(F&& fn) const {
    parallel_for(rows, items_per_grain(Grain::RowWise, n), [&](int64_t b, int64_t e) { for_rows(b, e, fn); });
  }
};

// ---------------------------------------------------------------- forward

// Max of x[0], x[s], ..., x[(n-1)s] (n >= 1): a vectorised max reduction, NaNs tracked on the side
// (SIMD max instructions drop them; a NaN makes the whole row NaN, as in PyTorch).
template <bool kContig, typename T>
T row_max(const T* x, int64_t s, int64_t n) {
  if (kContig) s = 1;
  T m = x[0];
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i * s];
    m = v > m ? v : m;
    nan |= v != v;
  }
  return nan ? std::numeric_limits<T>::quiet_NaN() : m;
}

// Sum of term(i) over i < n: each chunk of kChunk terms is one vectorised loop summing in T (one
// partial per SIMD lane; a double accumulator there would stop GCC vectorising exp_f32), and the
// chunk sums add up in double.
template <typename T, typename F>
double chunked_sum(int64_t n, F&& term) {
  double s = 0;
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t end = std::min(n, c + kChunk);
    T cs = 0;
#pragma omp simd reduction(+ : cs)
    for (int64_t i = c; i < end; ++i) cs += term(i);
    s += cs;
  }
  return s;
}

// One row: x[i * xs] -> y[i * ys], i < n. kContig (both strides 1) and kLog as template parameters
// give the compiler one straight loop per case to vectorise.
template <bool kContig, bool kLog, typename T>
void softmax_row(const T* x, int64_t xs, T* y, int64_t ys, int64_t n) {
  if (kContig) xs = ys = 1;
  const T m = row_max<kContig>(x, xs, n);
  double s;
  if constexpr (kLog) {
    s = chunked_sum<T>(n, [&](int64_t i) { return simd::exp(x[i * xs] - m); });
  } else {
    s = chunked_sum<T>(n, [&](int64_t i) {
      const T e = simd::exp(x[i * xs] - m);
      y[i * ys] = e;  // kept: the output is e / sum
      return e;
    });
  }
  if constexpr (kLog) {
    const T ls = log_sum<T>(s);
    for (int64_t i = 0; i < n; ++i) y[i * ys] = log_softmax(x[i * xs], m, ls);
  } else {
    const T inv = inverse_sum<T>(s);
    for (int64_t i = 0; i < n; ++i) y[i * ys] *= inv;
  }
}

// w neighbouring rows at once: element i of row j is x[i * xd + j * xc]. kContig: xc == yc == 1.
template <bool kContig, bool kLog, typename T>
void softmax_cols(const T* x, int64_t xd, int64_t xc, T* y, int64_t yd, int64_t yc, int64_t n, int64_t w) {
  if (kContig) xc = yc = 1;
  T m[kTile], cs[kTile], f[kTile];
  double s[kTile];
  for (int64_t j = 0; j < w; ++j) m[j] = x[j * xc];
  for (int64_t i = 1; i < n; ++i)
    for (int64_t j = 0; j < w; ++j) m[j] = max_nan(x[i * xd + j * xc], m[j]);
  // Sums of exp(x - m), as in softmax_row: in T over chunks of rows, chunk sums in double.
  for (int64_t j = 0; j < w; ++j) s[j] = 0;
  for (int64_t c = 0; c < n; c += kChunk) {
    for (int64_t j = 0; j < w; ++j) cs[j] = 0;
    for (int64_t i = c; i < std::min(n, c + kChunk); ++i) {
      if constexpr (kLog) {
        for (int64_t j = 0; j < w; ++j) cs[j] += simd::exp(x[i * xd + j * xc] - m[j]);
      } else {
        for (int64_t j = 0; j < w; ++j) {
          const T e = simd::exp(x[i * xd + j * xc] - m[j]);
          y[i * yd + j * yc] = e;
          cs[j] += e;
        }
      }
    }
    for (int64_t j = 0; j < w; ++j) s[j] += cs[j];
  }
  if constexpr (kLog) {
    for (int64_t j = 0; j < w; ++j) f[j] = log_sum<T>(s[j]);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < w; ++j) y[i * yd + j * yc] = log_softmax(x[i * xd + j * xc], m[j], f[j]);
  } else {
    for (int64_t j = 0; j < w; ++j) f[j] = inverse_sum<T>(s[j]);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < w; ++j) y[i * yd + j * yc] *= f[j];
  }
}

// ---------------------------------------------------------------- backward

// One row. softmax: gi = y * (g - sum(g * y)); log_softmax: gi = g - exp(y) * sum(g).
template <bool kContig, bool kLog, typename T>
void softmax_backward_row(const T* g, int64_t gs, const T* y, int64_t ys, T* gi, int64_t is, int64_t n) {
  if (kContig) gs = ys = is = 1;
  if constexpr (kLog) {
    const T st = static_cast<T>(chunked_sum<T>(n, [&](int64_t i) { return g[i * gs]; }));
    for (int64_t i = 0; i < n; ++i) gi[i * is] = log_softmax_grad(g[i * gs], simd::exp(y[i * ys]), st);
  } else {
    const T st = static_cast<T>(chunked_sum<T>(n, [&](int64_t i) { return g[i * gs] * y[i * ys]; }));
    for (int64_t i = 0; i < n; ++i) gi[i * is] = softmax_grad(g[i * gs], y[i * ys], st);
  }
}

template <bool kContig, bool kLog, typename T>
void softmax_backward_cols(const T* g, int64_t gd, int64_t gc, const T* y, int64_t yd, int64_t yc, T* gi, int64_t id,
                           int64_t ic, int64_t n, int64_t w) {
  if (kContig) gc = yc = ic = 1;
  double s[kTile];
  T cs[kTile], st[kTile];
  for (int64_t j = 0; j < w; ++j) s[j] = 0;
  for (int64_t c = 0; c < n; c += kChunk) {  // chunked sums, as in softmax_cols
    for (int64_t j = 0; j < w; ++j) cs[j] = 0;
    for (int64_t i = c; i < std::min(n, c + kChunk); ++i)
      for (int64_t j = 0; j < w; ++j) cs[j] += kLog ? g[i * gd + j * gc] : g[i * gd + j * gc] * y[i * yd + j * yc];
    for (int64_t j = 0; j < w; ++j) s[j] += cs[j];
  }
  for (int64_t j = 0; j < w; ++j) st[j] = static_cast<T>(s[j]);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < w; ++j) {
      const T gv = g[i * gd + j * gc], yv = y[i * yd + j * yc];
      gi[i * id + j * ic] = kLog ? log_softmax_grad(gv, simd::exp(yv), st[j]) : softmax_grad(gv, yv, st[j]);
    }
}

// Calls f.template operator()<kLog>() with the runtime flag as a compile-time one.
template <typename F>
void with_log(bool log, F&& f) {
  if (log) f.template operator()<true>();
  else f.template operator()<false>();
}

}  // namespace

void CpuBackend::softmax(const Tensor& in, const Tensor& out, int dim, bool log) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    softmax(f.in(in), f.out(out), dim, log);
    return f.finish();
  }
  const RowLayout<2> L({&in, &out}, dim);
  EMBER_DISPATCH_FLOAT(in.dtype(), log ? "log_softmax" : "softmax", [&]<typename T>() {
    const T* x = static_cast<const T*>(in.data_ptr());
    T* y = static_cast<T*>(out.data_ptr());
    const int64_t n = L.n, xd = L.ds[0], yd = L.ds[1];
    with_log(log, [&]<bool kLog>() {
      if (L.columns(0)) {
        const int64_t xc = L.st[L.nd - 1][0], yc = L.st[L.nd - 1][1];
        L.for_tiles([&](const int64_t* off, int64_t w) {
          if (xc == 1 && yc == 1) softmax_cols<true, kLog>(x + off[0], xd, xc, y + off[1], yd, yc, n, w);
          else softmax_cols<false, kLog>(x + off[0], xd, xc, y + off[1], yd, yc, n, w);
        });
      } else {
        L.parallel_rows([&](const int64_t* off) {
          if (xd == 1 && yd == 1) softmax_row<true, kLog>(x + off[0], xd, y + off[1], yd, n);
          else softmax_row<false, kLog>(x + off[0], xd, y + off[1], yd, n);
        });
      }
    });
  });
}

void CpuBackend::softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in, int dim, bool log) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad, &out, &grad_in})) {
    Float32Operands f;
    softmax_backward(f.in(grad), f.in(out), f.out(grad_in), dim, log);
    return f.finish();
  }
  // Operand order: g, y, gi. The layout choice follows y (the saved output, usually contiguous);
  // g may be anything, e.g. an expanded gradient with stride 0 from a sum.
  const RowLayout<3> L({&grad, &out, &grad_in}, dim);
  EMBER_DISPATCH_FLOAT(out.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&]<typename T>() {
    const T* g = static_cast<const T*>(grad.data_ptr());
    const T* y = static_cast<const T*>(out.data_ptr());
    T* gi = static_cast<T*>(grad_in.data_ptr());
    const int64_t n = L.n, gd = L.ds[0], yd = L.ds[1], id = L.ds[2];
    with_log(log, [&]<bool kLog>() {
      if (L.columns(1)) {
        const int64_t gc = L.st[L.nd - 1][0], yc = L.st[L.nd - 1][1], ic = L.st[L.nd - 1][2];
        L.for_tiles([&](const int64_t* off, int64_t w) {
          if (gc == 1 && yc == 1 && ic == 1)
            softmax_backward_cols<true, kLog>(g + off[0], gd, gc, y + off[1], yd, yc, gi + off[2], id, ic, n, w);
          else softmax_backward_cols<false, kLog>(g + off[0], gd, gc, y + off[1], yd, yc, gi + off[2], id, ic, n, w);
        });
      } else {
        L.parallel_rows([&](const int64_t* off) {
          if (gd == 1 && yd == 1 && id == 1)
            softmax_backward_row<true, kLog>(g + off[0], gd, y + off[1], yd, gi + off[2], id, n);
          else softmax_backward_row<false, kLog>(g + off[0], gd, y + off[1], yd, gi + off[2], id, n);
        });
      }
    });
  });
}

}  // namespace ember
