// CPU 2-D convolution (NCHW). float32 runs on oneDNN's convolution primitives when ember is built
// with oneDNN (onednn_conv.cpp says why); float64, and every build without oneDNN, runs here as
// im2col + GEMM, the classic CPU formulation:
//
//   forward        out[n, g] [Mg, P]  = W[g] [Mg, K] · col(in[n, g]) [K, P]
//   grad weight    gW[g]     [Mg, K] += gout[n, g] [Mg, P] · col(in[n, g])ᵀ [P, K]
//   grad input     in[n, g]         += col2im( W[g]ᵀ [K, Mg] · gout[n, g] [Mg, P] )
//
// with P = OH*OW output positions, K = Cg*kh*kw (input channels of the group times the window)
// and Mg the group's output channels. col(x) ("im2col") lays out, for every kernel tap (c, ki, kj),
// the row of input values that tap reads at each output position (0 where it falls in the
// padding); col2im is its adjoint and adds each column entry back where it was read from.
// A 1x1 convolution with stride 1 and no padding needs no column matrix: the input plane is one.
//
// Threads split the batch: each image's products are independent, and a small single-threaded
// GEMM per image beats one parallel GEMM for the layer sizes of small CNNs (no synchronisation,
// the column buffer stays in the thread's cache). Each thread has its own column buffer for the
// whole call, and its own weight-gradient accumulator that is summed at the end. With fewer
// images than threads the images run one after another and each GEMM uses every thread instead.
// The GEMMs go through this backend's matmul kernel on views, so they use the same engine
// (Eigen or OpenBLAS) as every other product; inside our parallel region it runs single-threaded.
#include <omp.h>

#include <algorithm>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/onednn_conv.h"
#include "core/cpu/parallel.h"
#include "core/cpu/simd_loops.h"
#include "core/ops.h"

namespace ember {

namespace {

struct ConvGeometry {
  int64_t N, C, H, W;  // input
  int64_t M, OH, OW;   // output channels and size
  int64_t groups, Cg, Mg;
  int64_t K, P;  // GEMM sizes (see the top of the file)
  Window2d w;
  bool direct;  // 1x1, stride 1, no padding: the input plane is the column matrix
};

ConvGeometry geometry(const Shape& in, const Tensor& out, Window2d w, int64_t groups) {
  ConvGeometry g;
  g.N = in[0], g.C = in[1], g.H = in[2], g.W = in[3];
  g.M = out.size(1), g.OH = out.size(2), g.OW = out.size(3);
  g.groups = groups, g.Cg = g.C / groups, g.Mg = g.M / groups;
  g.K = g.Cg * w.kh * w.kw, g.P = g.OH * g.OW;
  g.w = w;
  g.direct = w.kh == 1 && w.kw == 1 && w.sh == 1 && w.sw == 1 && w.ph == 0 && w.pw == 0;
  return g;
}

// A [1, rows, cols] matrix over t's storage starting `offset` elements after t's first element,
// rows `ld` apart — the 3-D form the matmul kernel takes. `transposed` reads the memory as the
// transpose of a row-major [cols, rows] matrix instead (no copy: the GEMM reads it transposed).
Tensor matrix(const Tensor& t, int64_t offset, int64_t rows, int64_t cols, int64_t ld, bool transposed = false) {
  const Shape strides = transposed ? Shape{0, 1, ld} : Shape{0, ld, 1};
  return make_tensor(t.storage(), Shape{1, rows, cols}, strides, t.offset() + offset, t.dtype());
}

// The output positions ow in [lo, hi) whose input column ow*stride + off lies inside [0, W).
inline void valid_range(int64_t off, int64_t stride, int64_t W, int64_t OW, int64_t& lo, int64_t& hi) {
  lo = off < 0 ? (-off + stride - 1) / stride : 0;
  hi = off >= W ? 0 : std::min(OW, (W - 1 - off) / stride + 1);
  lo = std::min(lo, hi);
}

// col [K, P] from one image's group of input channels x [Cg, H, W].
template <typename T>
void im2col(const T* x, const ConvGeometry& g, T* col) {
  const Window2d& w = g.w;
  for (int64_t c = 0; c < g.Cg; ++c) {
    const T* plane = x + c * g.H * g.W;
    for (int64_t ki = 0; ki < w.kh; ++ki) {
      for (int64_t kj = 0; kj < w.kw; ++kj) {
        T* row = col + ((c * w.kh + ki) * w.kw + kj) * g.P;
        const int64_t off = kj * w.dw - w.pw;  // input column of output column ow: ow*sw + off
        int64_t lo, hi;
        valid_range(off, w.sw, g.W, g.OW, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          T* dst = row + oh * g.OW;
          const int64_t ih = oh * w.sh - w.ph + ki * w.dh;
          if (ih < 0 || ih >= g.H) {
            std::fill(dst, dst + g.OW, T(0));
            continue;
          }
          const T* src = plane + ih * g.W + off;
          std::fill(dst, dst + lo, T(0));
          if (w.sw == 1) {  // rows are short (the output width): an inline vector loop beats a memcpy call
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * w.sw];
          }
          std::fill(dst + hi, dst + g.OW, T(0));
        }
      }
    }
  }
}

// The adjoint of im2col: dx [Cg, H, W] += every entry of col [K, P] at the place it was read from.
template <typename T>
void col2im(const T* col, const ConvGeometry& g, T* dx) {
  const Window2d& w = g.w;
  for (int64_t c = 0; c < g.Cg; ++c) {
    T* plane = dx + c * g.H * g.W;
    for (int64_t ki = 0; ki < w.kh; ++ki) {
      for (int64_t kj = 0; kj < w.kw; ++kj) {
        const T* row = col + ((c * w.kh + ki) * w.kw + kj) * g.P;
        const int64_t off = kj * w.dw - w.pw;
        int64_t lo, hi;
        valid_range(off, w.sw, g.W, g.OW, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * w.sh - w.ph + ki * w.dh;
          if (ih < 0 || ih >= g.H) continue;
          const T* src = row + oh * g.OW;
          T* dst = plane + ih * g.W + off;
          if (w.sw == 1) {
            simd::add_into(dst + lo, src + lo, hi - lo);  // omp simd: src (columns) never aliases dst
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow * w.sw] += src[ow];
          }
        }
      }
    }
  }
}

// Runs body(n, thread) for every image n: threads split the batch when there are enough images,
// otherwise the images run in order on thread 0 (and each GEMM inside uses all the threads).
template <typename F>
void for_each_image(int64_t N, int threads, F&& body) {
  if (threads > 1) {
    parallel_for(N, 1, [&](int64_t b, int64_t e) {
      const int t = omp_get_thread_num();
      for (int64_t n = b; n < e; ++n) body(n, t);
    });
  } else {
    for (int64_t n = 0; n < N; ++n) body(n, 0);
  }
}

// Threads that split the batch (1 = images in order, each GEMM parallel).
int batch_threads(int64_t N) {
  const int t = get_num_threads();
  return N >= t ? t : 1;
}

}  // namespace

void CpuBackend::conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                        int64_t groups) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &weight, &bias, &out})) {
    Float32Operands f;
    conv2d(f.in(in), f.in(weight), f.in(bias), f.out(out), w, groups);
    return f.finish();
  }
  const ConvGeometry g = geometry(in.shape(), out, w, groups);
  if (out.numel() == 0) return;
  if (onednn_conv2d(in, weight, bias, out, w, groups)) return;  // float32 with oneDNN built in
  EMBER_DISPATCH_FLOAT(in.dtype(), "conv2d", [&]<typename T>() {
    const int threads = batch_threads(g.N);
    // One [K, P] column buffer per thread, allocated once per call.
    const Tensor col = g.direct ? Tensor() : empty({threads, g.K, g.P}, TensorOptions(in.dtype()));
    const T* x = in.data<T>();
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    T* y = out.data<T>();
    for_each_image(g.N, threads, [&](int64_t n, int t) {
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const int64_t x_off = (n * g.C + gr * g.Cg) * g.H * g.W;
        Tensor cols;
        if (g.direct) {
          cols = matrix(in, x_off, g.K, g.P, g.P);
        } else {
          im2col(x + x_off, g, col.data<T>() + t * g.K * g.P);
          cols = matrix(col, t * g.K * g.P, g.K, g.P, g.P);
        }
        matmul(matrix(weight, gr * g.Mg * g.K, g.Mg, g.K, g.K), cols,
               matrix(out, (n * g.M + gr * g.Mg) * g.P, g.Mg, g.P, g.P));
      }
      if (b) {  // bias, added while the image's output is still in cache
        for (int64_t m = 0; m < g.M; ++m) {
          T* row = y + (n * g.M + m) * g.P;
          const T bm = b[m];
          for (int64_t p = 0; p < g.P; ++p) row[p] += bm;
        }
      }
    });
  });
}

void CpuBackend::conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& grad_in,
                                 const Tensor& grad_weight, const Tensor& grad_bias, Window2d w, int64_t groups) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &in, &weight, &grad_in, &grad_weight, &grad_bias})) {
    Float32Operands f;
    conv2d_backward(f.in(grad_out), f.in(in), f.in(weight), f.out(grad_in), f.out(grad_weight), f.out(grad_bias), w, groups);
    return f.finish();
  }
  // `in` is only there for the weight gradient; the input's shape may come from grad_in instead
  // (with neither, only the bias gradient is asked for, which needs no input geometry).
  const Shape in_shape = in.defined()        ? in.shape()
                         : grad_in.defined() ? grad_in.shape()
                                             : Shape{grad_out.size(0), weight.size(1) * groups, 0, 0};
  const ConvGeometry g = geometry(in_shape, grad_out, w, groups);
  const bool empty_input = g.P == 0 || g.N == 0 || g.C == 0 || grad_out.numel() == 0;
  // oneDNN's primitives take the passes they are faster at (float32, oneDNN built in); this
  // im2col path does whatever they left.
  const OneDnnBackwardDone done =
      empty_input ? OneDnnBackwardDone{}
                  : onednn_conv2d_backward(grad_out, in, weight, grad_in, grad_weight, grad_bias, w, groups);
  const bool need_in = grad_in.defined() && !done.grad_in;
  const bool need_w = grad_weight.defined() && !done.grad_weight;
  const bool need_b = grad_bias.defined() && !done.grad_weight;
  if (!need_in && !need_w && !need_b) return;
  EMBER_DISPATCH_FLOAT(grad_out.dtype(), "conv2d_backward", [&]<typename T>() {
    const int threads = batch_threads(g.N);
    const TensorOptions opts(grad_out.dtype());
    // Per thread: a [K, P] column buffer (im2col of the input for gW, then W^T·gout for the input
    // gradient), a weight-gradient accumulator [M, K] plus one group's product [Mg, K], and a
    // bias-gradient accumulator [M]. The thread-private sums are combined after the loop.
    const bool need_cols = !g.direct && (need_in || need_w);
    const Tensor col = need_cols ? empty({threads, g.K, g.P}, opts) : Tensor();
    const Tensor w_acc = need_w ? zeros({threads, g.M, g.K}, opts) : Tensor();
    const Tensor w_tmp = need_w ? empty({threads, g.Mg, g.K}, opts) : Tensor();
    const Tensor b_acc = need_b ? zeros({threads, g.M}, opts) : Tensor();
    const T* x = need_w ? in.data<T>() : nullptr;
    const T* gy = grad_out.data<T>();
    if (g.P == 0 || g.N == 0) {
      if (need_in) fill(grad_in, 0.0);
      if (need_w) fill(grad_weight, 0.0);
      if (need_b) fill(grad_bias, 0.0);
      return;
    }

    for_each_image(g.N, threads, [&](int64_t n, int t) {
      T* cbuf = need_cols ? col.data<T>() + t * g.K * g.P : nullptr;
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const int64_t x_off = (n * g.C + gr * g.Cg) * g.H * g.W;
        const int64_t y_off = (n * g.M + gr * g.Mg) * g.P;
        const Tensor gout = matrix(grad_out, y_off, g.Mg, g.P, g.P);
        if (need_w) {
          Tensor cols_t;  // col(x)ᵀ [P, K]
          if (g.direct) {
            cols_t = matrix(in, x_off, g.P, g.K, g.P, /*transposed=*/true);
          } else {
            im2col(x + x_off, g, cbuf);
            cols_t = matrix(col, t * g.K * g.P, g.P, g.K, g.P, /*transposed=*/true);
          }
          matmul(gout, cols_t, matrix(w_tmp, t * g.Mg * g.K, g.Mg, g.K, g.K));
          simd::add_into(w_acc.data<T>() + (t * g.M + gr * g.Mg) * g.K, w_tmp.data<T>() + t * g.Mg * g.K, g.Mg * g.K);
        }
        if (need_in) {
          const Tensor w_t = matrix(weight, gr * g.Mg * g.K, g.K, g.Mg, g.K, /*transposed=*/true);  // [K, Mg]
          if (g.direct) {  // the column gradient is the input gradient
            matmul(w_t, gout, matrix(grad_in, x_off, g.K, g.P, g.P));
          } else {
            matmul(w_t, gout, matrix(col, t * g.K * g.P, g.K, g.P, g.P));
            T* dx = grad_in.data<T>() + x_off;
            std::fill(dx, dx + g.Cg * g.H * g.W, T(0));  // col2im accumulates; zeroed here while in cache
            col2im(cbuf, g, dx);
          }
        }
      }
      if (need_b) {
        T* acc = b_acc.data<T>() + t * g.M;
        for (int64_t m = 0; m < g.M; ++m) acc[m] += simd::sum(gy + (n * g.M + m) * g.P, g.P);
      }
    });

    // Combine the per-thread sums.
    auto reduce_threads = [&](const Tensor& acc, const Tensor& dst) {
      const int64_t n = dst.numel();
      const T* a = acc.data<T>();
      T* d = dst.data<T>();
      std::copy(a, a + n, d);
      for (int t = 1; t < threads; ++t) simd::add_into(d, a + t * n, n);
    };
    if (need_w) reduce_threads(w_acc, grad_weight);
    if (need_b) reduce_threads(b_acc, grad_bias);
  });
}

}  // namespace ember
