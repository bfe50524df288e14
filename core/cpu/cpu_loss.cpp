// CPU cross entropy: log_softmax and the negative log likelihood fused, one pass over each row of
// logits [N, C] forward and one backward. log_softmax is never materialised: each row keeps its
// max and the log of its max-shifted sum of exps, and the per-row formulas (core/cross_entropy_row.h,
// shared with CUDA) go through the stable log-softmax (x - m) - log_sum.
// Rows whose target is ignore_index give loss 0 and gradient 0. Threads split the rows; within a row
// every loop over the classes is an `omp simd` loop (simd::exp vectorises where glibc's expf does
// not: forward and backward over [256, 1000] went from 1.9x to 0.4x PyTorch's time, bench/RESULTS.md).
#include <atomic>
#include <cmath>
#include <limits>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/parallel.h"
#include "core/cpu/simd_math.h"
#include "core/cross_entropy_row.h"

namespace ember {

namespace {

// The loops over one row's C classes, as plain function templates (core/cpu/simd_loops.h says why).

// m = the row's max (NaNs skipped, xent::row_max), shifted (xent::shift); s = sum of exp(x - m);
// sx = sum of x.
template <typename T>
void row_summary(const T* x, int64_t C, T& m_out, T& s_out, T& sx_out) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < C; ++c) m = xent::row_max(m, x[c]);
  m = xent::shift(m);  // 0 when infinite, so that x - m stays defined
  T s = 0, sx = 0;
#pragma omp simd reduction(+ : s, sx)
  for (int64_t c = 0; c < C; ++c) {
    s += simd::exp(x[c] - m);
    sx += x[c];
  }
  m_out = m, s_out = s, sx_out = sx;
}

// grad[c] = g * (softmax[c] - smooth) for every class (the target's extra part is the caller's).
template <typename T>
void row_grad(const T* x, int64_t C, T g, T m, T log_sum, T smooth, T* grad) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c)
    grad[c] = xent::logit_grad_common(g, simd::exp(xent::log_softmax(x[c], m, log_sum)), smooth);
}

}  // namespace

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& row_stats,
                               int64_t ignore_index, double label_smoothing) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&logits, &loss, &row_stats})) {
    Float32Operands f;
    cross_entropy(f.in(logits), target, f.out(loss), f.out(row_stats), ignore_index, label_smoothing);
    return f.finish();
  }
  const int64_t N = logits.size(0), C = logits.size(1);
  // A bad target is reported after the parallel loop (an exception must not leave an OpenMP region).
  std::atomic<int64_t> bad_row{-1};
  EMBER_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&]<typename T>() {
    const T* x = logits.data<T>();
    const int64_t* t = target.data<int64_t>();
    T *l = loss.data<T>(), *stats = row_stats.data<T>();
    const double s = label_smoothing;
    parallel_for(N, items_per_grain(Grain::RowWise, C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * C;
        T m, sum_exp, sum_x;
        row_summary(xr, C, m, sum_exp, sum_x);
        const T log_sum = std::log(sum_exp);
        stats[2 * r] = m;
        stats[2 * r + 1] = log_sum;
        const int64_t tr = t[r];
        if (tr == ignore_index) {
          l[r] = 0;
          continue;
        }
        if (tr < 0 || tr >= C) {
          bad_row.store(r);
          l[r] = 0;
          continue;
        }
        l[r] = xent::loss(xr[tr], sum_x / static_cast<T>(C), m, log_sum, s);
      }
    });
  });
  const int64_t r = bad_row.load();
  EMBER_CHECK(r < 0, "cross_entropy: target ", target.data<int64_t>()[r], " at position ", r, " is out of bounds for ",
              C, " classes (valid: 0..", C - 1, ", or ignore_index ", ignore_index, ")");
}

void CpuBackend::cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                                        const Tensor& row_stats, const Tensor& grad_logits, int64_t ignore_index,
                                        double label_smoothing) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_loss, &logits, &row_stats, &grad_logits})) {
    Float32Operands f;
    cross_entropy_backward(f.in(grad_loss), f.in(logits), target, f.in(row_stats), f.out(grad_logits), ignore_index, label_smoothing);
    return f.finish();
  }
  const int64_t N = logits.size(0), C = logits.size(1);
  // Targets are checked here too: the op may be called with the caller's own row_stats, skipping
  // the forward's check, and an out-of-range target would index past the row.
  std::atomic<int64_t> bad_row{-1};
  EMBER_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&]<typename T>() {
    const T *x = logits.data<T>(), *stats = row_stats.data<T>();
    const int64_t* t = target.data<int64_t>();
    // grad_loss may be a broadcast scalar (a mean or sum reduction): stride 0.
    const T* gl = grad_loss.data<T>();
    const int64_t gl_stride = grad_loss.stride(0);
    T* gx = grad_logits.data<T>();
    const T keep = static_cast<T>(1 - label_smoothing), smooth = static_cast<T>(label_smoothing / C);
    parallel_for(N, items_per_grain(Grain::RowWise, C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        T* gr = gx + r * C;
        const int64_t tr = t[r];
        if (tr == ignore_index || tr < 0 || tr >= C) {
          if (tr != ignore_index) bad_row.store(r);
          std::fill(gr, gr + C, T(0));
          continue;
        }
        const T* xr = x + r * C;
        const T g = gl[r * gl_stride], m = stats[2 * r], log_sum = stats[2 * r + 1];
        row_grad(xr, C, g, m, log_sum, smooth, gr);
        gr[tr] -= xent::logit_grad_target(g, keep);
      }
    });
  });
  const int64_t r = bad_row.load();
  EMBER_CHECK(r < 0, "cross_entropy_backward: target ", target.data<int64_t>()[r], " at position ", r,
              " is out of bounds for ", C, " classes (valid: 0..", C - 1, ", or ignore_index ", ignore_index, ")");
}

}  // namespace ember
