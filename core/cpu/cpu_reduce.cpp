// CPU reductions: sum, mean, max, min, argmax, argmin over any set of dims of any strided input.
//
// How it works. The layout plan, the dtype rules and the NaN rules of the extrema are shared with
// the CUDA kernels (core/reduce_math.h): the input's dims are put in memory order, size-1 dims
// dropped and contiguous neighbours merged, which leaves M outputs of N elements each and two cases:
//
//  * row reduction: the innermost dim in memory is reduced (the rows of a matrix, a full
//    reduction). Each output reads its elements as runs along that dim; a contiguous run is one
//    vectorised loop (`#pragma omp simd reduction`: one partial result per SIMD lane).
//  * column reduction: the innermost dim is kept (an [N, C] gradient summed over N, as for a bias).
//    Whole input rows are folded into a tile of up to kTile outputs at a time, so the inner loop is
//    again contiguous and vectorised, and the input is read once, in memory order.
//
// Strided views (transposes, slices, expanded dims) are walked in place: nothing is copied.
//
// Parallelism and determinism: a long reduction is cut into pieces of a fixed size (kPiece input
// elements; it never depends on the thread count), the pieces run in parallel, and the partial
// results of one output are combined in piece order. Float sums are pairwise (a binary cascade,
// see Cascade), so the rounding error grows like log(n) instead of n, and every result is
// bit-identical whatever the number of threads.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/parallel.h"
#include "core/cpu/simd_loops.h"
#include "core/reduce_math.h"

namespace ember {

namespace {

constexpr int64_t kTile = 2048;             // outputs per tile in a column reduction
constexpr int64_t kPiece = 65536;           // input elements per parallel work item in a long reduction
constexpr int64_t kLeafRows = 32;           // rows added straight into a column tile before the cascade
constexpr int64_t kShortRow = 8;            // row reductions this short run column-wise (see run_reduction)

// ---------------------------------------------------------------- layout

using reduction::Dim;
using reduction::Layout;
using reduction::offsets_of;

// Walks the flat indices [b, e) of the index space dims[0..nd) (outer -> inner) in runs along the
// innermost dim: run(in_offset, out_offset, flat_index, length) for each run.
template <typename F>
inline void for_each_run(const Dim* dims, int nd, int64_t b, int64_t e, F&& run) {
  int64_t idx[kMaxDims];
  int64_t in_off = 0, out_off = 0, rem = b;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = rem % dims[d].size;
    rem /= dims[d].size;
    in_off += idx[d] * dims[d].in;
    out_off += idx[d] * dims[d].out;
  }
  const Dim& last = dims[nd - 1];
  while (b < e) {
    const int64_t len = std::min(last.size - idx[nd - 1], e - b);
    run(in_off, out_off, b, len);
    b += len;
    idx[nd - 1] += len;
    in_off += len * last.in;
    out_off += len * last.out;
    for (int d = nd - 1; d > 0 && idx[d] == dims[d].size; --d) {
      in_off += dims[d - 1].in - idx[d] * dims[d].in;
      out_off += dims[d - 1].out - idx[d] * dims[d].out;
      idx[d] = 0;
      ++idx[d - 1];
    }
  }
}

// ---------------------------------------------------------------- pairwise summation

// Pairwise summation of a stream of w-wide vectors, in the order they arrive: level k holds the sum
// of 2^k vectors, and push() carries like a binary counter increment. The result is the sum over
// a balanced tree, so float error grows like log2(count) instead of count.
template <typename A>
class Cascade {
 public:
  explicit Cascade(int64_t w) : w_(w), carry_(w) {}

  void push(const A* v) {
    std::copy(v, v + w_, carry_.begin());
    int k = 0;
    for (; (count_ >> k) & 1u; ++k) {  // levels 0..k-1 are full: fold them into the carry
      const A* l = &levels_[k * w_];
      for (int64_t j = 0; j < w_; ++j) carry_[j] = l[j] + carry_[j];
    }
    if (static_cast<int64_t>(levels_.size()) < (k + 1) * w_) levels_.resize((k + 1) * w_);
    std::copy(carry_.begin(), carry_.end(), levels_.begin() + k * w_);
    ++count_;
  }

  // Sum of everything pushed (at least one vector), smallest levels first.
  void result(A* out) const {
    bool first = true;
    for (int k = 0; (count_ >> k) != 0; ++k) {
      if (!((count_ >> k) & 1u)) continue;
      const A* l = &levels_[k * w_];
      for (int64_t j = 0; j < w_; ++j) out[j] = first ? l[j] : out[j] + l[j];
      first = false;
    }
  }

 private:
  int64_t w_;
  uint64_t count_ = 0;
  std::vector<A> carry_, levels_;
};

// Scalar form: the same binary counter on plain values (no allocation).
template <typename A>
class ScalarCascade {
 public:
  void push(A v) {
    int k = 0;
    for (; (count_ >> k) & 1u; ++k) v = levels_[k] + v;
    levels_[k] = v;
    ++count_;
  }
  A result() const {
    A s = 0;
    bool first = true;
    for (int k = 0; (count_ >> k) != 0; ++k)
      if ((count_ >> k) & 1u) {
        s = first ? levels_[k] : s + levels_[k];
        first = false;
      }
    return s;
  }

 private:
  uint64_t count_ = 0;
  A levels_[64];
};

// Runs are summed by simd::sum_run (core/cpu/simd_loops.h): SIMD lanes, pairwise above kBlock.
using simd::kShortRun;
using simd::sum_run;

// ---------------------------------------------------------------- extrema

// The NaN and tie rules of max/min (pick) and argmax/argmin (beats): core/reduce_math.h.
using reduction::beats;
using reduction::pick;

// Extremum of n >= 1 elements x[0], x[s], ...: a vectorised max/min reduction (a plain loop for short
// runs, as in sum_run), with NaNs tracked on the side: the loop body maps to the SIMD max/min
// instruction, which drops NaNs, and stays branch-free.
template <bool kMax, typename T>
inline void extremum_step(T v, T& m, int& nan) {
  m = (kMax ? v > m : v < m) ? v : m;
  nan |= v != v;
}

template <bool kContig, bool kMax, typename T>
T extremum_run(const T* x, int64_t s, int64_t n) {
  const int64_t st = kContig ? 1 : s;
  T m = x[0];
  int nan = 0;
  if (n < kShortRun) {
    for (int64_t i = 0; i < n; ++i) extremum_step<kMax>(x[i * st], m, nan);
  } else if constexpr (kMax) {
#pragma omp simd reduction(max : m) reduction(| : nan)
    for (int64_t i = 0; i < n; ++i) extremum_step<kMax>(x[i * st], m, nan);
  } else {
#pragma omp simd reduction(min : m) reduction(| : nan)
    for (int64_t i = 0; i < n; ++i) extremum_step<kMax>(x[i * st], m, nan);
  }
  if constexpr (std::is_floating_point_v<T>) return nan ? std::numeric_limits<T>::quiet_NaN() : m;
  else return m;
}

// ---------------------------------------------------------------- the reductions
//
// Each reduction is a struct with:
//   Acc                          the partial result of one output
//   kFoldable                    whether run_cols may fold narrow columns (see there)
//   rows(p, L, b, e)             row case: the partial over reduced flat indices [b, e) at p
//   cols(p, cs, w, L, b, e, acc) column case: partials of w outputs (column stride cs) over rows [b, e)
//   combine(parts, P, ps, w, out) folds P partials of w outputs each (part k at parts + k * ps), in order
//   finish(acc, N)               the output value

template <typename T, typename A, bool kMean>
struct SumReduction {
  using Acc = A;
  static constexpr bool kFoldable = true;

  static Acc rows(const T* p, const Layout& L, int64_t b, int64_t e) {
    const int64_t s = L.red[L.nred - 1].in;
    if (L.nred == 1) return s == 1 ? sum_run<true, A>(p + b, 1, e - b) : sum_run<false, A>(p + b * s, s, e - b);
    ScalarCascade<A> acc;
    for_each_run(L.red, L.nred, b, e, [&](int64_t off, int64_t, int64_t, int64_t len) {
      acc.push(s == 1 ? sum_run<true, A>(p + off, 1, len) : sum_run<false, A>(p + off, s, len));
    });
    return acc.result();
  }

  static void cols(const T* p, int64_t cs, int64_t w, const Layout& L, int64_t b, int64_t e, Acc* acc) {
    const int64_t rs = L.red[L.nred - 1].in;
    Acc leaf[kTile];
    int64_t in_leaf = 0;
    std::optional<Cascade<A>> cascade;  // only needed past kLeafRows rows
    for_each_run(L.red, L.nred, b, e, [&](int64_t off, int64_t, int64_t, int64_t len) {
      for (int64_t r = 0; r < len; ++r) {
        const T* row = p + off + r * rs;
        if (in_leaf == 0) {
          if (cs == 1) for (int64_t j = 0; j < w; ++j) leaf[j] = static_cast<A>(row[j]);
          else for (int64_t j = 0; j < w; ++j) leaf[j] = static_cast<A>(row[j * cs]);
        } else {
          if (cs == 1) for (int64_t j = 0; j < w; ++j) leaf[j] += static_cast<A>(row[j]);
          else for (int64_t j = 0; j < w; ++j) leaf[j] += static_cast<A>(row[j * cs]);
        }
        if (++in_leaf == kLeafRows) {
          if (!cascade) cascade.emplace(w);
          cascade->push(leaf);
          in_leaf = 0;
        }
      }
    });
    if (!cascade) {
      std::copy(leaf, leaf + w, acc);
      return;
    }
    if (in_leaf > 0) cascade->push(leaf);
    cascade->result(acc);
  }

  static void combine(const Acc* parts, int64_t P, int64_t ps, int64_t w, Acc* out) {
    Cascade<A> cascade(w);
    for (int64_t k = 0; k < P; ++k) cascade.push(parts + k * ps);
    cascade.result(out);
  }

  template <typename O>
  static O finish(Acc a, int64_t N) {
    if constexpr (kMean) return reduction::mean<O>(a, N);
    else return static_cast<O>(a);
  }
};

template <typename T, bool kMax>
struct ExtremumReduction {
  using Acc = T;
  static constexpr bool kFoldable = true;

  static Acc rows(const T* p, const Layout& L, int64_t b, int64_t e) {
    const int64_t s = L.red[L.nred - 1].in;
    if (L.nred == 1)
      return s == 1 ? extremum_run<true, kMax>(p + b, 1, e - b) : extremum_run<false, kMax>(p + b * s, s, e - b);
    bool first = true;
    T m{};
    for_each_run(L.red, L.nred, b, e, [&](int64_t off, int64_t, int64_t, int64_t len) {
      const T v = s == 1 ? extremum_run<true, kMax>(p + off, 1, len) : extremum_run<false, kMax>(p + off, s, len);
      m = first ? v : pick<kMax>(v, m);
      first = false;
    });
    return m;
  }

  static void cols(const T* p, int64_t cs, int64_t w, const Layout& L, int64_t b, int64_t e, Acc* acc) {
    const int64_t rs = L.red[L.nred - 1].in;
    bool first = true;
    for_each_run(L.red, L.nred, b, e, [&](int64_t off, int64_t, int64_t, int64_t len) {
      for (int64_t r = 0; r < len; ++r) {
        const T* row = p + off + r * rs;
        if (first) {
          for (int64_t j = 0; j < w; ++j) acc[j] = row[j * cs];
          first = false;
        } else if (cs == 1) {
          for (int64_t j = 0; j < w; ++j) acc[j] = pick<kMax>(row[j], acc[j]);
        } else {
          for (int64_t j = 0; j < w; ++j) acc[j] = pick<kMax>(row[j * cs], acc[j]);
        }
      }
    });
  }

  static void combine(const Acc* parts, int64_t P, int64_t ps, int64_t w, Acc* out) {
    std::copy(parts, parts + w, out);
    for (int64_t k = 1; k < P; ++k)
      for (int64_t j = 0; j < w; ++j) out[j] = pick<kMax>(parts[k * ps + j], out[j]);
  }

  template <typename O>
  static O finish(Acc a, int64_t) { return static_cast<O>(a); }
};

// argmax/argmin reduce exactly one dim, so a reduced flat index is the position along that dim.
template <typename T, bool kMax>
struct ArgReduction {
  struct Acc {
    T v;
    int64_t i;
  };
  static constexpr bool kFoldable = false;  // folding rows would lose their indices

  static Acc rows(const T* p, const Layout& L, int64_t b, int64_t e) {
    const int64_t s = L.red[L.nred - 1].in;
    Acc best{T{}, -1};  // i < 0: nothing seen yet
    for_each_run(L.red, L.nred, b, e, [&](int64_t off, int64_t, int64_t flat, int64_t len) {
      for (int64_t r = 0; r < len; ++r) {
        const T v = p[off + r * s];
        if (best.i < 0 || beats<kMax>(v, best.v)) best = {v, flat + r};
      }
    });
    return best;
  }

  static void cols(const T* p, int64_t cs, int64_t w, const Layout& L, int64_t b, int64_t e, Acc* acc) {
    const int64_t rs = L.red[L.nred - 1].in;
    T val[kTile];  // values and indices in separate arrays, so that the loop over j vectorises
    int64_t idx[kTile];
    bool first = true;
    for_each_run(L.red, L.nred, b, e, [&](int64_t off, int64_t, int64_t flat, int64_t len) {
      for (int64_t r = 0; r < len; ++r) {
        const T* row = p + off + r * rs;
        const int64_t i = flat + r;
        if (first) {
          for (int64_t j = 0; j < w; ++j) val[j] = row[j * cs], idx[j] = i;
          first = false;
          continue;
        }
        for (int64_t j = 0; j < w; ++j) {
          const T v = row[j * cs];
          const bool take = beats<kMax>(v, val[j]);
          val[j] = take ? v : val[j];
          idx[j] = take ? i : idx[j];
        }
      }
    });
    for (int64_t j = 0; j < w; ++j) acc[j] = {val[j], idx[j]};
  }

  static void combine(const Acc* parts, int64_t P, int64_t ps, int64_t w, Acc* out) {
    std::copy(parts, parts + w, out);
    for (int64_t k = 1; k < P; ++k)  // later pieces hold later indices: only a strictly better value wins
      for (int64_t j = 0; j < w; ++j)
        if (beats<kMax>(parts[k * ps + j].v, out[j].v)) out[j] = parts[k * ps + j];
  }

  template <typename O>
  static O finish(Acc a, int64_t) { return static_cast<O>(a.i); }
};

// ---------------------------------------------------------------- the driver

template <typename R, typename T, typename O>
void run_rows(const Layout& L, const T* in, O* out) {
  using Acc = typename R::Acc;
  const int64_t M = L.M, N = L.N;
  const Dim* kept = L.kept;
  const int nk = L.nkept;
  if (N <= kPiece) {  // one work item per output
    parallel_for(M, items_per_grain(Grain::Reduction, N), [&](int64_t b, int64_t e) {
      const int64_t ki = kept[nk - 1].in, ko = kept[nk - 1].out;
      for_each_run(kept, nk, b, e, [&](int64_t in_off, int64_t out_off, int64_t, int64_t len) {
        for (int64_t i = 0; i < len; ++i)
          out[out_off + i * ko] = R::template finish<O>(R::rows(in + in_off + i * ki, L, 0, N), N);
      });
    });
    return;
  }
  // Long reductions: P fixed pieces per output, computed in parallel, then combined in order.
  const int64_t P = (N + kPiece - 1) / kPiece;
  std::vector<Acc> parts(M * P);  // one Acc per (output, piece)
  parallel_for(M * P, items_per_grain(Grain::Reduction, kPiece), [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t m = item / P, k = item % P;
      int64_t in_off, out_off;
      offsets_of(kept, nk, m, in_off, out_off);
      parts[item] = R::rows(in + in_off, L, k * kPiece, std::min(N, (k + 1) * kPiece));
    }
  });
  parallel_for(M, items_per_grain(Grain::Reduction, P), [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m) {
      Acc r{};
      R::combine(&parts[m * P], P, 1, 1, &r);
      int64_t in_off, out_off;
      offsets_of(kept, nk, m, in_off, out_off);
      out[out_off] = R::template finish<O>(r, N);
    }
  });
}

template <typename R, typename T, typename O>
void run_cols(const Layout& L, const T* in, O* out) {
  using Acc = typename R::Acc;
  const int64_t N = L.N;
  const Dim& col = L.kept[L.nkept - 1];  // the innermost kept dim: tiles of it are vectorised
  const Dim& row = L.red[L.nred - 1];    // the innermost reduced dim: its index picks a row
  const Dim placeholder{1, 0, 0};
  const Dim* outer = L.nkept > 1 ? L.kept : &placeholder;
  const int no = L.nkept > 1 ? L.nkept - 1 : 1;
  const int64_t tiles = (col.size + kTile - 1) / kTile;
  const int64_t groups = L.M / col.size * tiles;

  // Narrow packed columns (an [N, C] tensor with a small C summed over N, as for a bias): m = kTile / C
  // consecutive rows are one contiguous span of m * C elements. They are reduced as m * C columns
  // (a full-width vectorised loop instead of a C-wide one) and folded back to C columns at the end.
  const int64_t m = R::kFoldable && L.nred == 1 && col.in == 1 && row.in == col.size && 2 * col.size <= kTile &&
                            row.size >= 2 * (kTile / col.size)
                        ? kTile / col.size
                        : 1;
  Layout wide = L;  // the reduction as seen with m rows per wide row
  wide.red[0] = {row.size / m, row.in * m, 0};
  const int64_t Q = m > 1 ? row.size / m : N;  // (wide) rows to reduce
  const int64_t rest = m > 1 ? row.size - Q * m : 0;  // rows left over after the wide ones
  Layout tail = L;
  tail.red[0] = {std::max<int64_t>(rest, 1), row.in, 0};
  const int64_t width = m > 1 ? m * col.size : std::min(col.size, kTile);
  const int64_t rows_per_piece = std::max<int64_t>(1, kPiece / width);
  const int64_t Pq = (Q + rows_per_piece - 1) / rows_per_piece;
  const int64_t P = Pq + (rest > 0 ? 1 : 0);  // pieces per tile-group; the leftover rows are the last

  // Input/output offset, first column and width of tile-group g.
  auto locate = [&](int64_t g, int64_t& in_off, int64_t& out_off, int64_t& w) {
    offsets_of(outer, no, g / tiles, in_off, out_off);
    const int64_t c0 = (g % tiles) * kTile;
    w = std::min(kTile, col.size - c0);
    in_off += c0 * col.in;
    out_off += c0 * col.out;
  };
  // Piece k of tile-group g into acc[0..w).
  auto piece = [&](int64_t g, int64_t k, Acc* acc) {
    int64_t in_off, out_off, w;
    locate(g, in_off, out_off, w);
    const int64_t b = k * rows_per_piece, e = std::min(Q, b + rows_per_piece);
    if (m == 1) {
      R::cols(in + in_off, col.in, w, L, b, e, acc);
    } else if constexpr (R::kFoldable) {
      if (k < Pq) {
        Acc wacc[kTile];
        R::cols(in + in_off, 1, width, wide, b, e, wacc);
        R::combine(wacc, m, col.size, col.size, acc);  // fold the m column blocks
      } else {
        R::cols(in + in_off + Q * m * row.in, 1, col.size, tail, 0, rest, acc);
      }
    }
  };
  auto store = [&](int64_t g, const Acc* acc) {
    int64_t in_off, out_off, w;
    locate(g, in_off, out_off, w);
    for (int64_t j = 0; j < w; ++j) out[out_off + j * col.out] = R::template finish<O>(acc[j], N);
  };

  if (P == 1) {  // one work item per tile
    parallel_for(groups, items_per_grain(Grain::Reduction, N * std::min(col.size, kTile)), [&](int64_t b, int64_t e) {
      std::vector<Acc> acc(kTile);
      for (int64_t g = b; g < e; ++g) {
        piece(g, 0, acc.data());
        store(g, acc.data());
      }
    });
    return;
  }
  std::vector<Acc> parts(groups * P * kTile);
  parallel_for(groups * P, 1, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) piece(item / P, item % P, &parts[item * kTile]);
  });
  parallel_for(groups, items_per_grain(Grain::Reduction, P * kTile), [&](int64_t b, int64_t e) {
    std::vector<Acc> acc(kTile);
    for (int64_t g = b; g < e; ++g) {
      const int64_t w = std::min(kTile, col.size - (g % tiles) * kTile);
      R::combine(&parts[g * P * kTile], P, kTile, w, acc.data());
      store(g, acc.data());
    }
  });
}

template <typename R, typename T, typename O>
void run_reduction(const Layout& L, const Tensor& in, const Tensor& out) {
  const T* x = static_cast<const T*>(in.data_ptr());
  O* y = static_cast<O*>(out.data_ptr());
  // Short rows (a [M, 8] tensor summed over its last dim) go column-wise too: a vectorised loop
  // across kTile outputs beats a short vectorised loop plus a horizontal sum for each one.
  const bool short_rows = L.N <= kShortRow && L.kept[L.nkept - 1].size > 1;
  if (L.rows && !short_rows) run_rows<R>(L, x, y);
  else run_cols<R>(L, x, y);
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& in, const Tensor& out, uint32_t dims) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    reduce(op, f.in(in), f.out(out), dims);
    return f.finish();
  }
  const Layout L = reduction::plan(in, out, dims);
  if (L.M == 0) return;
  if (L.N == 0) {  // an empty reduction: only sum (0) and mean (0/0) have a value; the ops reject the others
    EMBER_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean,
                "reduce: reduction over zero elements of a tensor of shape ", in.shape(), " has no identity");
    fill(out, op == ReduceOp::Sum ? 0.0 : std::numeric_limits<double>::quiet_NaN());
    return;
  }
  const DType want = reduction::output_dtype(op, in.dtype());
  EMBER_CHECK(out.dtype() == want, "reduce: output dtype ", dtype_name(out.dtype()), " for a ", dtype_name(in.dtype()),
              " input; expected ", dtype_name(want));
  EMBER_DISPATCH_ALL(in.dtype(), "reduce", [&]<typename T>() {
    using A = reduction::SumAcc<T>;  // core/reduce_math.h: integers accumulate in int64
    switch (op) {
      case ReduceOp::Sum:
        run_reduction<SumReduction<T, A, false>, T, reduction::SumOut<T>>(L, in, out);
        break;
      case ReduceOp::Mean:
        run_reduction<SumReduction<T, A, true>, T, T>(L, in, out);
        break;
      case ReduceOp::Max:
        run_reduction<ExtremumReduction<T, true>, T, T>(L, in, out);
        break;
      case ReduceOp::Min:
        run_reduction<ExtremumReduction<T, false>, T, T>(L, in, out);
        break;
      case ReduceOp::ArgMax:
      case ReduceOp::ArgMin:
        EMBER_CHECK(std::popcount(dims) <= 1, "reduce: argmax/argmin reduce exactly one dim, got dims mask ", dims);
        if (op == ReduceOp::ArgMax) run_reduction<ArgReduction<T, true>, T, int64_t>(L, in, out);
        else run_reduction<ArgReduction<T, false>, T, int64_t>(L, in, out);
        break;
    }
  });
}

}  // namespace ember
