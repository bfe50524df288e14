// CUDA softmax and log_softmax, forward and backward, over one dim of any strided tensor. The
// formulas are the CPU's (core/cpu/cpu_softmax.cpp):
//   forward   m = max(x) (a NaN makes its row NaN), s = sum(exp(x - m)),
//             y = exp(x - m) / s   or, for log,   y = (x - m) - log(s)
//   backward  gi = y * (g - sum(g * y))   or, for log,   gi = g - exp(y) * sum(g)
// with every sum accumulated in double, as the CPU accumulates its chunk sums. The formulas
// themselves are the CPU's own definitions (core/softmax_math.h).
//
// The softmax dim is a "row"; every index of the other dims picks one row (an OffsetCalc over the
// other dims gives each operand's row start). A group of lanes works on each row (row groups,
// cuda/block_reduce.cuh): few lanes for short rows, up to a whole block for long ones. When the
// softmax dim is strided but the innermost other dim is contiguous (softmax over the channels of
// [N, C, H, W], or over dim 0 of a matrix), a row gets at most kColumnLanes lanes, so that a warp
// reads several neighbouring rows at each position: contiguous runs of memory instead of one
// element per 32-byte sector.
#include <array>
#include <limits>

#include "core/cpu/float32_operands.h"
#include "core/softmax_math.h"
#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

namespace {

constexpr int64_t kPerLane = 8;  // elements per lane before a row gets more lanes
constexpr int kColumnLanes = 4;  // lanes per row when neighbouring rows are neighbours in memory

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return ::exp(x); }  // ::exp: core/ops.h declares ember::exp

// NaN-propagating max: a NaN anywhere in a row makes the whole row NaN, as in PyTorch.
struct MaxNanOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return softmax_math::max_nan(a, b); }
};

// K operands of one shape: the softmax dim (length n, stride ds[k] in operand k) and the other
// dims, whose flat index is the row number.
template <size_t K>
struct Rows {
  int64_t n = 1, rows = 1;
  int64_t ds[K] = {};
  OffsetCalc<K> other;  // row -> each operand's offset of the row's first element
};

template <size_t K>
Rows<K> make_rows(const std::array<const Tensor*, K>& ops, int dim) {
  Rows<K> r;
  const Shape& shape = ops[0]->shape();
  r.n = shape[dim];
  for (size_t k = 0; k < K; ++k) r.ds[k] = ops[k]->stride(dim);
  OffsetCalc<K>& oc = r.other;
  for (int d = 0; d < shape.size(); ++d) {  // as make_offset_calc, skipping the softmax dim
    if (d == dim || shape[d] == 1) continue;
    r.rows *= shape[d];
    bool mergeable = oc.ndim > 0;
    for (size_t k = 0; k < K && mergeable; ++k) mergeable = oc.stride[oc.ndim - 1][k] == ops[k]->stride(d) * shape[d];
    if (mergeable) {
      oc.size[oc.ndim - 1] *= shape[d];
      for (size_t k = 0; k < K; ++k) oc.stride[oc.ndim - 1][k] = ops[k]->stride(d);
    } else {
      oc.size[oc.ndim] = shape[d];
      for (size_t k = 0; k < K; ++k) oc.stride[oc.ndim][k] = ops[k]->stride(d);
      ++oc.ndim;
    }
  }
  use_32bit_if_it_fits(oc);
  return r;
}

// Launch shape for rows r, choosing lanes by operand p's layout (the input forward, the saved
// output backward, like the CPU).
template <size_t K>
void launch_shape(const Rows<K>& r, size_t p, dim3& grid, dim3& block) {
  int lanes = lanes_for(r.n, kPerLane);
  const OffsetCalc<K>& oc = r.other;
  if (r.ds[p] != 1 && oc.ndim > 0 && oc.stride[oc.ndim - 1][p] == 1) lanes = std::min(lanes, kColumnLanes);
  block = dim3(lanes, kThreads / lanes);
  grid = dim3(blocks_for_rows(r.rows, kThreads / lanes));
}

template <bool kLog, typename T>
__global__ void __launch_bounds__(kThreads) softmax_kernel(const T* x, T* y, Rows<2> r) {
  __shared__ T smem_max[kThreads / kWarp];
  __shared__ double smem_sum[kThreads / kWarp];
  const int lane = threadIdx.x, lanes = blockDim.x;
  const int64_t xs = r.ds[0], ys = r.ds[1];
  // Every thread runs the same iterations (group_allreduce synchronises the block); threads past
  // the last row take part with empty rows.
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.y; first < r.rows;
       first += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t row = first + threadIdx.y;
    int64_t off[2] = {0, 0};
    if (row < r.rows) r.other.get(row, off);
    const int64_t n = row < r.rows ? r.n : 0;
    const T* xr = x + off[0];
    T* yr = y + off[1];

    T m = -std::numeric_limits<T>::infinity();
    for (int64_t i = lane; i < n; i += lanes) m = MaxNanOp{}(xr[i * xs], m);
    m = group_allreduce(m, MaxNanOp{}, smem_max);

    double s = 0;
    for (int64_t i = lane; i < n; i += lanes) {
      const T e = exp_(xr[i * xs] - m);
      if constexpr (!kLog) yr[i * ys] = e;  // kept: the output is e / s (this lane rereads it below)
      s += e;
    }
    s = group_allreduce(s, SumOp{}, smem_sum);

    if constexpr (kLog) {
      const T log_s = softmax_math::log_sum<T>(s);
      for (int64_t i = lane; i < n; i += lanes) yr[i * ys] = softmax_math::log_softmax(xr[i * xs], m, log_s);
    } else {
      const T inv = softmax_math::inverse_sum<T>(s);
      for (int64_t i = lane; i < n; i += lanes) yr[i * ys] *= inv;
    }
  }
}

}  // namespace

void CudaBackend::softmax(const Tensor& in, const Tensor& out, int dim, bool log) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    softmax(f.in(in), f.out(out), dim, log);
    return f.finish();
  }
  if (out.numel() == 0) return;
  DeviceGuard guard(index_);
  const Rows<2> r = make_rows<2>({&in, &out}, dim);
  dim3 grid, block;
  launch_shape(r, 0, grid, block);
  const cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_FLOAT(in.dtype(), log ? "log_softmax" : "softmax", [&]<typename T>() {
    if (log) softmax_kernel<true><<<grid, block, 0, stream>>>(in.data<T>(), out.data<T>(), r);
    else softmax_kernel<false><<<grid, block, 0, stream>>>(in.data<T>(), out.data<T>(), r);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

namespace {

// Operands: g (any strides, e.g. an expanded gradient with stride 0), y (the saved output), gi.
template <bool kLog, typename T>
__global__ void __launch_bounds__(kThreads) softmax_backward_kernel(const T* g, const T* y, T* gi, Rows<3> r) {
  __shared__ double smem_sum[kThreads / kWarp];
  const int lane = threadIdx.x, lanes = blockDim.x;
  const int64_t gs = r.ds[0], ys = r.ds[1], is = r.ds[2];
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.y; first < r.rows;
       first += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t row = first + threadIdx.y;
    int64_t off[3] = {0, 0, 0};
    if (row < r.rows) r.other.get(row, off);
    const int64_t n = row < r.rows ? r.n : 0;
    const T *gr = g + off[0], *yr = y + off[1];
    T* ir = gi + off[2];

    double s = 0;  // sum(g) for log_softmax, sum(g * y) for softmax (each product in T, as on the CPU)
    for (int64_t i = lane; i < n; i += lanes) s += kLog ? gr[i * gs] : gr[i * gs] * yr[i * ys];
    const T st = static_cast<T>(group_allreduce(s, SumOp{}, smem_sum));

    for (int64_t i = lane; i < n; i += lanes) {
      const T gv = gr[i * gs], yv = yr[i * ys];
      ir[i * is] = kLog ? softmax_math::log_softmax_grad(gv, exp_(yv), st) : softmax_math::softmax_grad(gv, yv, st);
    }
  }
}

}  // namespace

void CudaBackend::softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in, int dim, bool log) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad, &out, &grad_in})) {
    Float32Operands f;
    softmax_backward(f.in(grad), f.in(out), f.out(grad_in), dim, log);
    return f.finish();
  }
  if (grad_in.numel() == 0) return;
  DeviceGuard guard(index_);
  const Rows<3> r = make_rows<3>({&grad, &out, &grad_in}, dim);
  dim3 grid, block;
  launch_shape(r, 1, grid, block);
  const cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_FLOAT(out.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&]<typename T>() {
    const T *g = grad.data<T>(), *y = out.data<T>();
    T* gi = grad_in.data<T>();
    if (log) softmax_backward_kernel<true><<<grid, block, 0, stream>>>(g, y, gi, r);
    else softmax_backward_kernel<false><<<grid, block, 0, stream>>>(g, y, gi, r);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ember::cuda
