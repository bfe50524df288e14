// CUDA 2-D pooling (NCHW, contiguous): max pooling with indices, average pooling and adaptive
// average pooling, forward and backward. Each kernel sits right above the CudaBackend method that
// launches it.
//
// Why our own kernels and not cuDNN's pooling: cuDNN's max pooling returns no indices (its
// backward re-reads the input and output instead), while ember's contract keeps the flat h*W + w
// position of each maximum, as PyTorch does — and PyTorch also runs its own kernels here. They
// are simple, memory-bound loops.
//
// Every kernel follows the CPU's arithmetic (core/cpu/cpu_pool.cpp) exactly — the same window
// clipping and divisors (both take them from core/pool_math.h), taps visited in the same
// row-major order, sums in the tensor's dtype in the same order — so forward results equal the
// CPU's, ties and NaNs included.
//
// Backward: the average-pooling gradients are gathers — one thread per input element sums the
// outputs whose windows cover it, in the CPU's order — so they need no atomics, no zeroing first,
// and are deterministic. The max-pooling backward gets only the indices, not the window, so it
// cannot tell which outputs cover an input element; it scatters each output's gradient to its
// index instead. Windows may overlap, so several outputs can hit one input element: atomicAdd,
// into grad_in zeroed first (the contract says the backward writes, not accumulates). Float
// atomics add in whatever order threads arrive, so with ember::deterministic() a slower kernel
// runs instead: one thread per plane walks its outputs in order, as the CPU does.
#include <cmath>
#include <limits>

#include "core/cpu/float32_operands.h"
#include "core/backend.h"
#include "core/pool_math.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

namespace {

// Sizes shared by every pooling kernel: `planes` = N*C independent [H, W] -> [OH, OW] maps, and
// the (plane, row, column) of a flat output or input index (32-bit fast division when it fits).
struct PoolShape {
  int64_t planes, H, W, OH, OW;
  PlaneIndexer outputs, inputs;
};

PoolShape pool_shape(const Tensor& in, const Tensor& out) {
  const int64_t planes = in.size(0) * in.size(1);
  return {planes, in.size(2), in.size(3), out.size(2), out.size(3),
          PlaneIndexer(planes, out.size(2), out.size(3)), PlaneIndexer(planes, in.size(2), in.size(3))};
}

// The window arithmetic is the CPU's own (core/pool_math.h).
using pool::adaptive_end;
using pool::adaptive_start;
using pool::avg_divisor;
using pool::avg_window;
using pool::AvgWindow;

void zero(const Tensor& t, cudaStream_t stream) {
  if (t.nbytes() > 0) EMBER_CUDA_CHECK(cudaMemsetAsync(t.data_ptr(), 0, t.nbytes(), stream));
}

}  // namespace

// ---------------- max pooling ----------------

// One thread per output element: the window's maximum and its flat position in the input plane.
// "v replaces the best so far" when strictly greater (the first of equal maxima in row-major order
// is kept) or NaN (a NaN wins, and only a later NaN replaces it), as on the CPU and in PyTorch.
template <typename T>
__global__ void max_pool2d_kernel(int64_t n, const T* x, T* y, int64_t* indices, PoolShape p, Window2d w) {
  grid_stride(n, [&](int64_t i) {
    int64_t plane, oh, ow;
    p.outputs.split(i, plane, oh, ow);
    const T* xp = x + plane * p.H * p.W;
    const pool::Taps rows = pool::max_taps(oh, w.kh, w.sh, w.ph, w.dh, p.H);
    const pool::Taps cols = pool::max_taps(ow, w.kw, w.sw, w.pw, w.dw, p.W);
    T best = -std::numeric_limits<T>::infinity();
    int64_t best_at = rows.first * p.W + cols.first;
    for (int64_t ih = rows.first; ih < rows.end; ih += w.dh) {
      for (int64_t iw = cols.first; iw < cols.end; iw += w.dw) {
        const T v = xp[ih * p.W + iw];
        if (pool::max_replaces(v, best)) {
          best = v;
          best_at = ih * p.W + iw;
        }
      }
    }
    y[i] = best;
    indices[i] = best_at;
  });
}

void CudaBackend::max_pool2d(const Tensor& in, const Tensor& out, const Tensor& indices, Window2d w) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    max_pool2d(f.in(in), f.out(out), indices, w);
    return f.finish();
  }
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  const PoolShape p = pool_shape(in, out);
  EMBER_DISPATCH_FLOAT(in.dtype(), "max_pool2d", [&]<typename T>() {
    max_pool2d_kernel<<<num_blocks(n), kThreads, 0, compute_stream(index_)>>>(
        n, in.data<T>(), out.data<T>(), indices.data<int64_t>(), p, w);
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// One thread per output element adds its gradient at its index. An index outside the plane (which
// a well-formed forward never writes) is skipped rather than allowed to corrupt another plane.
template <typename T>
__global__ void max_pool2d_backward_kernel(int64_t n, const T* gy, const int64_t* indices, T* gx, PoolShape p) {
  grid_stride(n, [&](int64_t i) {
    int64_t plane, oh, ow;
    p.outputs.split(i, plane, oh, ow);
    const int64_t at = indices[i];
    if (at >= 0 && at < p.H * p.W) atomicAdd(gx + plane * p.H * p.W + at, gy[i]);
  });
}

// Deterministic form: one thread per plane adds its outputs' gradients in order (the CPU's order,
// so the sums equal the CPU's bit for bit).
template <typename T>
__global__ void max_pool2d_backward_ordered_kernel(const T* gy, const int64_t* indices, T* gx, PoolShape p) {
  grid_stride(p.planes, [&](int64_t plane) {
    const int64_t outputs = p.OH * p.OW;
    T* gp = gx + plane * p.H * p.W;
    for (int64_t o = plane * outputs; o < (plane + 1) * outputs; ++o) {
      const int64_t at = indices[o];
      if (at >= 0 && at < p.H * p.W) gp[at] += gy[o];
    }
  });
}

void CudaBackend::max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Tensor& grad_in) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &grad_in})) {
    Float32Operands f;
    max_pool2d_backward(f.in(grad_out), indices, f.out(grad_in));
    return f.finish();
  }
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  zero(grad_in, stream);
  const int64_t n = grad_out.numel();
  if (n == 0 || grad_in.numel() == 0) return;
  const PoolShape p = pool_shape(grad_in, grad_out);
  EMBER_DISPATCH_FLOAT(grad_in.dtype(), "max_pool2d_backward", [&]<typename T>() {
    if (deterministic()) {
      max_pool2d_backward_ordered_kernel<<<num_blocks(p.planes), kThreads, 0, stream>>>(
          grad_out.data<T>(), indices.data<int64_t>(), grad_in.data<T>(), p);
    } else {
      max_pool2d_backward_kernel<<<num_blocks(n), kThreads, 0, stream>>>(n, grad_out.data<T>(),
                                                                         indices.data<int64_t>(), grad_in.data<T>(), p);
    }
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// ---------------- average pooling ----------------

// One thread per output element: the window's sum over the real (unpadded) input, divided by the
// window's full span when padded positions count, else by the number of real positions.
template <typename T>
__global__ void avg_pool2d_kernel(int64_t n, const T* x, T* y, PoolShape p, Window2d w, bool count_include_pad) {
  grid_stride(n, [&](int64_t i) {
    int64_t plane, oh, ow;
    p.outputs.split(i, plane, oh, ow);
    const T* xp = x + plane * p.H * p.W;
    const AvgWindow hw = avg_window(oh, w.kh, w.sh, w.ph, p.H), ww = avg_window(ow, w.kw, w.sw, w.pw, p.W);
    T s = 0;
    for (int64_t ih = hw.start; ih < hw.end; ++ih)
      for (int64_t iw = ww.start; iw < ww.end; ++iw) s += xp[ih * p.W + iw];
    y[i] = s / static_cast<T>(avg_divisor(hw, ww, count_include_pad));
  });
}

void CudaBackend::avg_pool2d(const Tensor& in, const Tensor& out, Window2d w, bool count_include_pad) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    avg_pool2d(f.in(in), f.out(out), w, count_include_pad);
    return f.finish();
  }
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  const PoolShape p = pool_shape(in, out);
  EMBER_DISPATCH_FLOAT(in.dtype(), "avg_pool2d", [&]<typename T>() {
    avg_pool2d_kernel<<<num_blocks(n), kThreads, 0, compute_stream(index_)>>>(n, in.data<T>(), out.data<T>(), p, w,
                                                                               count_include_pad);
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// One thread per input element (ih, iw): the sum of grad_out / divisor over the windows that
// contain it (pool::avg_outputs_covering), in the CPU's order.
template <typename T>
__global__ void avg_pool2d_backward_kernel(int64_t n, const T* gy, T* gx, PoolShape p, Window2d w,
                                           bool count_include_pad) {
  grid_stride(n, [&](int64_t i) {
    int64_t plane, ih, iw;
    p.inputs.split(i, plane, ih, iw);
    const T* gp = gy + plane * p.OH * p.OW;
    const pool::Outputs rows = pool::avg_outputs_covering(ih, w.kh, w.sh, w.ph, p.OH);
    const pool::Outputs cols = pool::avg_outputs_covering(iw, w.kw, w.sw, w.pw, p.OW);
    T s = 0;
    for (int64_t oh = rows.first; oh < rows.end; ++oh) {
      const AvgWindow hw = avg_window(oh, w.kh, w.sh, w.ph, p.H);
      for (int64_t ow = cols.first; ow < cols.end; ++ow) {
        const AvgWindow ww = avg_window(ow, w.kw, w.sw, w.pw, p.W);
        s += gp[oh * p.OW + ow] / static_cast<T>(avg_divisor(hw, ww, count_include_pad));
      }
    }
    gx[i] = s;
  });
}

void CudaBackend::avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in, Window2d w,
                                      bool count_include_pad) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &grad_in})) {
    Float32Operands f;
    avg_pool2d_backward(f.in(grad_out), f.out(grad_in), w, count_include_pad);
    return f.finish();
  }
  const int64_t n = grad_in.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  const PoolShape p = pool_shape(grad_in, grad_out);
  EMBER_DISPATCH_FLOAT(grad_in.dtype(), "avg_pool2d_backward", [&]<typename T>() {
    avg_pool2d_backward_kernel<<<num_blocks(n), kThreads, 0, compute_stream(index_)>>>(
        n, grad_out.data<T>(), grad_in.data<T>(), p, w, count_include_pad);
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// ---------------- adaptive average pooling ----------------

template <typename T>
__global__ void adaptive_avg_pool2d_kernel(int64_t n, const T* x, T* y, PoolShape p) {
  grid_stride(n, [&](int64_t i) {
    int64_t plane, oh, ow;
    p.outputs.split(i, plane, oh, ow);
    const T* xp = x + plane * p.H * p.W;
    const int64_t h0 = adaptive_start(oh, p.OH, p.H), h1 = adaptive_end(oh, p.OH, p.H);
    const int64_t w0 = adaptive_start(ow, p.OW, p.W), w1 = adaptive_end(ow, p.OW, p.W);
    T s = 0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) s += xp[ih * p.W + iw];
    y[i] = s / static_cast<T>((h1 - h0) * (w1 - w0));
  });
}

void CudaBackend::adaptive_avg_pool2d(const Tensor& in, const Tensor& out) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    adaptive_avg_pool2d(f.in(in), f.out(out));
    return f.finish();
  }
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  const PoolShape p = pool_shape(in, out);
  EMBER_DISPATCH_FLOAT(in.dtype(), "adaptive_avg_pool2d", [&]<typename T>() {
    adaptive_avg_pool2d_kernel<<<num_blocks(n), kThreads, 0, compute_stream(index_)>>>(n, in.data<T>(),
                                                                                        out.data<T>(), p);
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// One thread per input element (ih, iw): the outputs covering it are
// pool::adaptive_outputs_covering (the window formulas with input and output swapped).
template <typename T>
__global__ void adaptive_avg_pool2d_backward_kernel(int64_t n, const T* gy, T* gx, PoolShape p) {
  grid_stride(n, [&](int64_t i) {
    int64_t plane, ih, iw;
    p.inputs.split(i, plane, ih, iw);
    const T* gp = gy + plane * p.OH * p.OW;
    const pool::Outputs out_rows = pool::adaptive_outputs_covering(ih, p.H, p.OH);
    const pool::Outputs out_cols = pool::adaptive_outputs_covering(iw, p.W, p.OW);
    T s = 0;
    for (int64_t oh = out_rows.first; oh < out_rows.end; ++oh) {
      const int64_t rows = adaptive_end(oh, p.OH, p.H) - adaptive_start(oh, p.OH, p.H);
      for (int64_t ow = out_cols.first; ow < out_cols.end; ++ow) {
        const int64_t cols = adaptive_end(ow, p.OW, p.W) - adaptive_start(ow, p.OW, p.W);
        s += gp[oh * p.OW + ow] / static_cast<T>(rows * cols);
      }
    }
    gx[i] = s;
  });
}

void CudaBackend::adaptive_avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &grad_in})) {
    Float32Operands f;
    adaptive_avg_pool2d_backward(f.in(grad_out), f.out(grad_in));
    return f.finish();
  }
  const int64_t n = grad_in.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  const PoolShape p = pool_shape(grad_in, grad_out);
  EMBER_DISPATCH_FLOAT(grad_in.dtype(), "adaptive_avg_pool2d_backward", [&]<typename T>() {
    adaptive_avg_pool2d_backward_kernel<<<num_blocks(n), kThreads, 0, compute_stream(index_)>>>(
        n, grad_out.data<T>(), grad_in.data<T>(), p);
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

}  // namespace ember::cuda
