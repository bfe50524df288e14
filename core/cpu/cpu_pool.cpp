// CPU 2-D pooling (NCHW, contiguous). Every (n, c) plane is independent: threads split the planes,
// so no two threads ever write the same element and the backward kernels need no atomics.
//
// Max pooling records, for each output, the flat position ih*W + iw of its maximum inside the
// input plane; the backward is then a scatter of the gradient to those positions. A NaN in a
// window wins (the maximum of anything with NaN is NaN), as in PyTorch.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/parallel.h"
#include "core/cpu/simd_loops.h"
#include "core/pool_math.h"

namespace ember {

namespace {

struct Planes {
  int64_t count, H, W, OH, OW;  // count = N*C planes
};

Planes planes(const Tensor& in, const Tensor& out) {
  return {in.size(0) * in.size(1), in.size(2), in.size(3), out.size(2), out.size(3)};
}

// Grain for splitting planes: about grain_size(Grain::Pooling) input elements per thread.
int64_t plane_grain(const Planes& p) { return items_per_grain(Grain::Pooling, p.H * p.W); }

// The window arithmetic (which positions an output reads, what an average divides by, which value
// wins a max) is shared with the CUDA kernels: core/pool_math.h.
using pool::adaptive_end;
using pool::adaptive_start;
using pool::avg_divisor;
using pool::avg_window;
using pool::AvgWindow;
using pool::max_replaces;

// Max pooling of one plane x [H, W] into y, idx [OH, OW].
//
// Data-dependent branches are the cost here (random inputs mispredict about half the compares),
// so the bulk is written without them: for each output row whose windows lie entirely inside the
// input, every tap (ki, kj) in turn is folded into the whole row with a select, a loop the compiler
// vectorises. Taps are visited in the same row-major order as the per-window loop, so ties and NaNs
// resolve identically. Windows that reach into the padding take the per-window loop.
template <typename T>
void max_pool_plane(const T* x, T* y, int64_t* idx, const Planes& p, const Window2d w) {
  const int64_t H = p.H, W = p.W, OH = p.OH, OW = p.OW;
  // Output columns whose window columns all lie in [0, W).
  const int64_t ow_lo = std::min(OW, (w.pw + w.sw - 1) / w.sw);
  const int64_t last_tap = (w.kw - 1) * w.dw - w.pw;  // input column of the last tap, minus ow*sw
  const int64_t ow_hi = std::max(ow_lo, std::min(OW, W - 1 - last_tap >= 0 ? (W - 1 - last_tap) / w.sw + 1 : 0));

  auto one_window = [&](int64_t oh, int64_t ow) {
    const pool::Taps rows = pool::max_taps(oh, w.kh, w.sh, w.ph, w.dh, H);
    const pool::Taps cols = pool::max_taps(ow, w.kw, w.sw, w.pw, w.dw, W);
    T best = -std::numeric_limits<T>::infinity();
    int64_t best_at = rows.first * W + cols.first;
    for (int64_t ih = rows.first; ih < rows.end; ih += w.dh)
      for (int64_t iw = cols.first; iw < cols.end; iw += w.dw) {
        const T v = x[ih * W + iw];
        const bool take = max_replaces(v, best);
        best = take ? v : best;
        best_at = take ? ih * W + iw : best_at;
      }
    y[oh * OW + ow] = best;
    idx[oh * OW + ow] = best_at;
  };

  for (int64_t oh = 0; oh < OH; ++oh) {
    const int64_t h0 = oh * w.sh - w.ph;
    const bool rows_inside = h0 >= 0 && h0 + (w.kh - 1) * w.dh < H;
    if (!rows_inside || ow_lo >= ow_hi) {
      for (int64_t ow = 0; ow < OW; ++ow) one_window(oh, ow);
      continue;
    }
    for (int64_t ow = 0; ow < ow_lo; ++ow) one_window(oh, ow);
    for (int64_t ow = ow_hi; ow < OW; ++ow) one_window(oh, ow);
    T* yr = y + oh * OW;
    int64_t* ir = idx + oh * OW;
    const int64_t sw = w.sw;
    for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
      yr[ow] = -std::numeric_limits<T>::infinity();
      ir[ow] = h0 * W + ow * sw - w.pw;
    }
    for (int64_t ki = 0; ki < w.kh; ++ki) {
      for (int64_t kj = 0; kj < w.kw; ++kj) {
        const int64_t base = (h0 + ki * w.dh) * W + kj * w.dw - w.pw;  // input position of ow = 0
        const T* src = x + base;
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
          const T v = src[ow * sw];
          const bool take = max_replaces(v, yr[ow]);
          yr[ow] = take ? v : yr[ow];
          ir[ow] = take ? base + ow * sw : ir[ow];
        }
      }
    }
  }
}

// ---- max pooling 2x2, stride 2, no padding or dilation (LeNet's and the MNIST CNN's pools) ----
//
// bench/prim_sweep measured the general kernel above at a fraction of memory speed on these shapes:
// it sweeps each output row four times (once per tap) with stride-2 loads. Here each output is one
// lane of a single `omp simd` loop over the row that reads its four taps and keeps the winner with
// selects, in the same row-major tap order and with the same max_replaces rule, so values, ties
// (the first maximum) and NaNs (the last NaN) come out identical. Plain function templates: see
// core/cpu/simd_loops.h for why not lambdas.
//
// simdlen(8): the MNIST nets' rows are short (OW = 12), and with AVX-512 the compiler's default of
// 16 lanes left every row to the scalar remainder loop, whose compares mispredict: 1.38 ms for the
// cnn's pool on the Zen 5, 3x oneDNN's. Eight lanes (one AVX2 register of floats) take 8 of the 12
// outputs in one vector step: 6x faster in a one-thread test of that shape (2.55 -> 0.42 ms).

// Whether the window is 2x2 stride 2 with no padding and no dilation, all windows inside the input.
bool is_2x2_stride2(const Window2d& w, const Planes& p) {
  return w.kh == 2 && w.kw == 2 && w.sh == 2 && w.sw == 2 && w.ph == 0 && w.pw == 0 && w.dh == 1 && w.dw == 1 &&
         2 * p.OH <= p.H && 2 * p.OW <= p.W;
}

// One output row: r0, r1 are input rows 2*oh and 2*oh + 1, `at` their plane offset (2*oh*W).
template <typename T>
void max_2x2_row(const T* r0, const T* r1, int64_t at, int64_t W, int64_t OW, T* y, int64_t* idx) {
#pragma omp simd simdlen(8)
  for (int64_t ow = 0; ow < OW; ++ow) {
    // The first tap always wins against the -inf start (or keeps it, at its own index).
    T best = r0[2 * ow];
    int64_t k = 0;  // 0, 1: row 0; 2, 3: row 1
    const T b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
    bool t = pool::max_replaces(b, best);
    best = t ? b : best;
    k = t ? 1 : k;
    t = pool::max_replaces(c, best);
    best = t ? c : best;
    k = t ? 2 : k;
    t = pool::max_replaces(d, best);
    best = t ? d : best;
    k = t ? 3 : k;
    y[ow] = best;
    idx[ow] = at + 2 * ow + (k >> 1) * W + (k & 1);
  }
}

template <typename T>
void max_pool_2x2_plane(const T* x, T* y, int64_t* idx, const Planes& p) {
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const T* r0 = x + 2 * oh * p.W;
    max_2x2_row(r0, r0 + p.W, 2 * oh * p.W, p.W, p.OW, y + oh * p.OW, idx + oh * p.OW);
  }
}

// ---- adaptive average pooling to 1x1 (ResNet's head): one mean per plane ----
// The general loop sums a plane with one serial chain of additions; simd::sum keeps one partial
// sum per SIMD lane (pairwise beyond 1024 elements), and the backward writes each plane once
// instead of a zero fill followed by additions (0 + g: the same value, -0 included).
template <typename T>
void fill_plane(T* x, int64_t n, T v) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = v;
}

}  // namespace

void CpuBackend::max_pool2d(const Tensor& in, const Tensor& out, const Tensor& indices, Window2d w) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    max_pool2d(f.in(in), f.out(out), indices, w);
    return f.finish();
  }
  const Planes p = planes(in, out);
  EMBER_DISPATCH_FLOAT(in.dtype(), "max_pool2d", [&]<typename T>() {
    const T* x = in.data<T>();
    T* y = out.data<T>();
    int64_t* idx = indices.data<int64_t>();
    const bool two_by_two = is_2x2_stride2(w, p);
    parallel_for(p.count, plane_grain(p), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        if (two_by_two) max_pool_2x2_plane(x + pl * p.H * p.W, y + pl * p.OH * p.OW, idx + pl * p.OH * p.OW, p);
        else max_pool_plane(x + pl * p.H * p.W, y + pl * p.OH * p.OW, idx + pl * p.OH * p.OW, p, w);
      }
    });
  });
}

void CpuBackend::max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Tensor& grad_in) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &grad_in})) {
    Float32Operands f;
    max_pool2d_backward(f.in(grad_out), indices, f.out(grad_in));
    return f.finish();
  }
  const Planes p = planes(grad_in, grad_out);
  // Each thread zeroes a plane and scatters into it while the plane is in cache, instead of a zero
  // fill of the whole tensor followed by the scatter (a second pass over grad_in).
  EMBER_DISPATCH_FLOAT(grad_in.dtype(), "max_pool2d_backward", [&]<typename T>() {
    const T* gy = grad_out.data<T>();
    const int64_t* idx = indices.data<int64_t>();
    T* gx = grad_in.data<T>();
    parallel_for(p.count, plane_grain(p), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        T* gp = gx + pl * p.H * p.W;
        const int64_t base = pl * p.OH * p.OW;
        std::fill(gp, gp + p.H * p.W, T(0));
        for (int64_t o = 0; o < p.OH * p.OW; ++o) gp[idx[base + o]] += gy[base + o];
      }
    });
  });
}

void CpuBackend::avg_pool2d(const Tensor& in, const Tensor& out, Window2d w, bool count_include_pad) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    avg_pool2d(f.in(in), f.out(out), w, count_include_pad);
    return f.finish();
  }
  const Planes p = planes(in, out);
  EMBER_DISPATCH_FLOAT(in.dtype(), "avg_pool2d", [&]<typename T>() {
    const T* x = in.data<T>();
    T* y = out.data<T>();
    parallel_for(p.count, plane_grain(p), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* xp = x + pl * p.H * p.W;
        T* yp = y + pl * p.OH * p.OW;
        for (int64_t oh = 0; oh < p.OH; ++oh) {
          const AvgWindow hw = avg_window(oh, w.kh, w.sh, w.ph, p.H);
          for (int64_t ow = 0; ow < p.OW; ++ow) {
            const AvgWindow ww = avg_window(ow, w.kw, w.sw, w.pw, p.W);
            T s = 0;
            for (int64_t ih = hw.start; ih < hw.end; ++ih)
              for (int64_t iw = ww.start; iw < ww.end; ++iw) s += xp[ih * p.W + iw];
            const int64_t divisor = avg_divisor(hw, ww, count_include_pad);
            yp[oh * p.OW + ow] = s / static_cast<T>(divisor);
          }
        }
      }
    });
  });
}

void CpuBackend::avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in, Window2d w,
                                     bool count_include_pad) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &grad_in})) {
    Float32Operands f;
    avg_pool2d_backward(f.in(grad_out), f.out(grad_in), w, count_include_pad);
    return f.finish();
  }
  const Planes p = planes(grad_in, grad_out);
  fill(grad_in, 0.0);
  EMBER_DISPATCH_FLOAT(grad_in.dtype(), "avg_pool2d_backward", [&]<typename T>() {
    const T* gy = grad_out.data<T>();
    T* gx = grad_in.data<T>();
    parallel_for(p.count, plane_grain(p), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        T* gp = gx + pl * p.H * p.W;
        const T* yp = gy + pl * p.OH * p.OW;
        for (int64_t oh = 0; oh < p.OH; ++oh) {
          const AvgWindow hw = avg_window(oh, w.kh, w.sh, w.ph, p.H);
          for (int64_t ow = 0; ow < p.OW; ++ow) {
            const AvgWindow ww = avg_window(ow, w.kw, w.sw, w.pw, p.W);
            const int64_t divisor = avg_divisor(hw, ww, count_include_pad);
            const T g = yp[oh * p.OW + ow] / static_cast<T>(divisor);
            for (int64_t ih = hw.start; ih < hw.end; ++ih)
              for (int64_t iw = ww.start; iw < ww.end; ++iw) gp[ih * p.W + iw] += g;
          }
        }
      }
    });
  });
}

void CpuBackend::adaptive_avg_pool2d(const Tensor& in, const Tensor& out) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    adaptive_avg_pool2d(f.in(in), f.out(out));
    return f.finish();
  }
  const Planes p = planes(in, out);
  EMBER_DISPATCH_FLOAT(in.dtype(), "adaptive_avg_pool2d", [&]<typename T>() {
    const T* x = in.data<T>();
    T* y = out.data<T>();
    if (p.OH == 1 && p.OW == 1) {  // the whole plane: one vectorised sum each
      const int64_t n = p.H * p.W;
      parallel_for(p.count, plane_grain(p), [&](int64_t b, int64_t e) {
        for (int64_t pl = b; pl < e; ++pl) y[pl] = simd::sum(x + pl * n, n) / static_cast<T>(n);
      });
      return;
    }
    parallel_for(p.count, plane_grain(p), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* xp = x + pl * p.H * p.W;
        T* yp = y + pl * p.OH * p.OW;
        for (int64_t oh = 0; oh < p.OH; ++oh) {
          const int64_t h0 = adaptive_start(oh, p.OH, p.H), h1 = adaptive_end(oh, p.OH, p.H);
          for (int64_t ow = 0; ow < p.OW; ++ow) {
            const int64_t w0 = adaptive_start(ow, p.OW, p.W), w1 = adaptive_end(ow, p.OW, p.W);
            T s = 0;
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) s += xp[ih * p.W + iw];
            yp[oh * p.OW + ow] = s / static_cast<T>((h1 - h0) * (w1 - w0));
          }
        }
      }
    });
  });
}

void CpuBackend::adaptive_avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &grad_in})) {
    Float32Operands f;
    adaptive_avg_pool2d_backward(f.in(grad_out), f.out(grad_in));
    return f.finish();
  }
  const Planes p = planes(grad_in, grad_out);
  const bool whole_plane = p.OH == 1 && p.OW == 1;
  if (!whole_plane) fill(grad_in, 0.0);
  EMBER_DISPATCH_FLOAT(grad_in.dtype(), "adaptive_avg_pool2d_backward", [&]<typename T>() {
    const T* gy = grad_out.data<T>();
    T* gx = grad_in.data<T>();
    if (whole_plane) {  // each plane is its mean's gradient spread evenly, written once
      const int64_t n = p.H * p.W;
      parallel_for(p.count, plane_grain(p), [&](int64_t b, int64_t e) {
        for (int64_t pl = b; pl < e; ++pl) fill_plane(gx + pl * n, n, T(0) + gy[pl] / static_cast<T>(n));
      });
      return;
    }
    parallel_for(p.count, plane_grain(p), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        T* gp = gx + pl * p.H * p.W;
        const T* yp = gy + pl * p.OH * p.OW;
        for (int64_t oh = 0; oh < p.OH; ++oh) {
          const int64_t h0 = adaptive_start(oh, p.OH, p.H), h1 = adaptive_end(oh, p.OH, p.H);
          for (int64_t ow = 0; ow < p.OW; ++ow) {
            const int64_t w0 = adaptive_start(ow, p.OW, p.W), w1 = adaptive_end(ow, p.OW, p.W);
            const T g = yp[oh * p.OW + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) gp[ih * p.W + iw] += g;
          }
        }
      }
    });
  });
}

}  // namespace ember
