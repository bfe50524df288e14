// CUDA layer norm of each row of in [M, N], forward and backward, with the CPU's formulas
// (core/cpu/cpu_norm.cpp): statistics in double whatever the dtype, the variance from a second
// pass over (x - mean)^2 (no cancellation), and with xhat = (x - mean) * rstd
//   y  = xhat * w + b
//   dx = rstd * (d - mean(d) - xhat * mean(d * xhat)),   d = g * w
//   dw = sum over rows of g * xhat,   db = sum over rows of g
// The forward and dx give each row to a row group (cuda/block_reduce.cuh). dw and db are column
// sums over the M rows: neighbouring threads take neighbouring columns (coalesced reads of each
// row), lanes along threadIdx.y and, when the columns alone cannot fill the GPU, blocks along
// blockIdx.y split the rows; the partial sums of the blocks are added in a fixed order by a second
// kernel, so the result does not depend on timing.
#include <algorithm>

#include "core/cpu/float32_operands.h"
#include "core/ops.h"
#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

namespace {

constexpr int64_t kPerLane = 8;  // elements per lane before a row gets more lanes

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <typename T>
T* mutable_ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Launch shape: one row group per row of n elements.
void row_launch(int64_t rows, int64_t n, dim3& grid, dim3& block) {
  const int lanes = lanes_for(n, kPerLane);
  block = dim3(lanes, kThreads / lanes);
  grid = dim3(blocks_for_rows(rows, kThreads / lanes));
}

// w and b may be null (no affine weight or bias).
template <typename T>
__global__ void __launch_bounds__(kThreads) layer_norm_kernel(const T* x, const T* w, const T* b, T* y, T* mean,
                                                              T* rstd, int64_t M, int64_t N, double eps) {
  __shared__ double smem[kThreads / kWarp];
  const int lane = threadIdx.x, lanes = blockDim.x;
  // Every thread runs the same iterations (group_allreduce synchronises the block); threads past
  // the last row take part with empty rows.
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.y; first < M;
       first += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t r = first + threadIdx.y;
    const int64_t n = r < M ? N : 0;
    const T* xr = x + (r < M ? r : 0) * N;
    T* yr = y + (r < M ? r : 0) * N;

    double s = 0;
    for (int64_t j = lane; j < n; j += lanes) s += xr[j];
    const double m = group_allreduce(s, SumOp{}, smem) / static_cast<double>(N);
    double ss = 0;
    for (int64_t j = lane; j < n; j += lanes) ss += (xr[j] - m) * (xr[j] - m);
    const double r_std = 1.0 / ::sqrt(group_allreduce(ss, SumOp{}, smem) / static_cast<double>(N) + eps);

    if (r >= M) continue;
    if (lane == 0) {
      mean[r] = static_cast<T>(m);
      rstd[r] = static_cast<T>(r_std);
    }
    const T tm = static_cast<T>(m), tr = static_cast<T>(r_std);
    for (int64_t j = lane; j < n; j += lanes) {  // the CPU's expressions, for the same roundings
      if (w && b) yr[j] = (xr[j] - tm) * tr * w[j] + b[j];
      else if (w) yr[j] = (xr[j] - tm) * tr * w[j];
      else yr[j] = (xr[j] - tm) * tr + (b ? b[j] : T(0));
    }
  }
}

}  // namespace

void CudaBackend::layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out,
                             const Tensor& mean, const Tensor& rstd, double eps) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &weight, &bias, &out, &mean, &rstd})) {
    Float32Operands f;
    layer_norm(f.in(in), f.in(weight), f.in(bias), f.out(out), f.out(mean), f.out(rstd), eps);
    return f.finish();
  }
  const int64_t M = in.size(0), N = in.size(1);
  if (M == 0 || N == 0) return;
  DeviceGuard guard(index_);
  dim3 grid, block;
  row_launch(M, N, grid, block);
  EMBER_DISPATCH_FLOAT(in.dtype(), "layer_norm", [&]<typename T>() {
    layer_norm_kernel<<<grid, block, 0, compute_stream(index_)>>>(in.data<T>(), ptr_or_null<T>(weight),
                                                                  ptr_or_null<T>(bias), out.data<T>(),
                                                                  mean.data<T>(), rstd.data<T>(), M, N, eps);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

namespace {

// dx of each row (w may be null).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_in_kernel(const T* g, const T* x, const T* w, const T* mean, const T* rstd, T* gx, int64_t M,
                              int64_t N) {
  __shared__ double smem[kThreads / kWarp];
  const int lane = threadIdx.x, lanes = blockDim.x;
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.y; first < M;
       first += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t r = first + threadIdx.y;
    const int64_t n = r < M ? N : 0, row = r < M ? r : 0;
    const T *xr = x + row * N, *gr = g + row * N;
    T* out = gx + row * N;
    const double m = mean[row], r_std = rstd[row];

    double sum_d = 0, sum_dx = 0;
    for (int64_t j = lane; j < n; j += lanes) {
      const double d = gr[j] * (w ? w[j] : T(1));
      sum_d += d;
      sum_dx += d * (xr[j] - m) * r_std;
    }
    const double mean_d = group_allreduce(sum_d, SumOp{}, smem) / static_cast<double>(N);
    const double mean_dx = group_allreduce(sum_dx, SumOp{}, smem) / static_cast<double>(N);

    for (int64_t j = lane; j < n; j += lanes) {
      const double d = gr[j] * (w ? w[j] : T(1));
      out[j] = static_cast<T>(r_std * (d - mean_d - (xr[j] - m) * r_std * mean_dx));
    }
  }
}

constexpr int kColumns = 32;  // columns per block of the dw/db kernel (one warp's width)
constexpr int kRowLanes = kThreads / kColumns;
constexpr int64_t kRowsPerLane = 16;  // rows per lane we aim for before splitting rows across blocks

// Column sums of g * xhat (into dw) and g (into db) over the rows [split * chunk, ...) of block
// row blockIdx.y. With one split the sums are the gradients (T); otherwise they are double partials
// [splits, N] for weight_bias_finish_kernel. Null outputs are skipped.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    layer_norm_weight_bias_kernel(const T* g, const T* x, const T* mean, const T* rstd, T* gw, T* gb,
                                  double* part_w, double* part_b, int64_t M, int64_t N, int64_t chunk) {
  __shared__ double sw[kRowLanes][kColumns], sb[kRowLanes][kColumns];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColumns + threadIdx.x;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t end = begin + chunk < M ? begin + chunk : M;
  double aw = 0, ab = 0;
  if (j < N) {
    for (int64_t r = begin + threadIdx.y; r < end; r += kRowLanes) {
      const T gv = g[r * N + j];
      aw += gv * (x[r * N + j] - static_cast<double>(mean[r])) * static_cast<double>(rstd[r]);
      ab += gv;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y != 0 || j >= N) return;
  for (int k = 1; k < kRowLanes; ++k) {  // in lane order: a fixed summation order
    aw += sw[k][threadIdx.x];
    ab += sb[k][threadIdx.x];
  }
  if (gridDim.y == 1) {
    if (gw) gw[j] = static_cast<T>(aw);
    if (gb) gb[j] = static_cast<T>(ab);
  } else {
    part_w[blockIdx.y * N + j] = aw;
    part_b[blockIdx.y * N + j] = ab;
  }
}

// Adds the `splits` partial sums of each column, in split order.
template <typename T>
__global__ void weight_bias_finish_kernel(const double* part_w, const double* part_b, T* gw, T* gb, int64_t N,
                                          int64_t splits) {
  grid_stride(N, [&](int64_t j) {
    double aw = 0, ab = 0;
    for (int64_t k = 0; k < splits; ++k) {
      aw += part_w[k * N + j];
      ab += part_b[k * N + j];
    }
    if (gw) gw[j] = static_cast<T>(aw);
    if (gb) gb[j] = static_cast<T>(ab);
  });
}

}  // namespace

void CudaBackend::layer_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                      const Tensor& mean, const Tensor& rstd, const Tensor& grad_in,
                                      const Tensor& grad_weight, const Tensor& grad_bias) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &in, &weight, &mean, &rstd, &grad_in, &grad_weight, &grad_bias})) {
    Float32Operands f;
    layer_norm_backward(f.in(grad_out), f.in(in), f.in(weight), f.in(mean), f.in(rstd), f.out(grad_in), f.out(grad_weight),
                        f.out(grad_bias));
    return f.finish();
  }
  const int64_t M = in.size(0), N = in.size(1);
  if (N == 0) return;
  const bool weight_or_bias = grad_weight.defined() || grad_bias.defined();
  if (M == 0) {  // no rows: dw and db are empty sums
    if (grad_weight.defined()) fill(grad_weight, 0.0);
    if (grad_bias.defined()) fill(grad_bias, 0.0);
    return;
  }
  DeviceGuard guard(index_);
  const cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_FLOAT(in.dtype(), "layer_norm_backward", [&]<typename T>() {
    if (grad_in.defined()) {
      dim3 grid, block;
      row_launch(M, N, grid, block);
      layer_norm_grad_in_kernel<<<grid, block, 0, stream>>>(grad_out.data<T>(), in.data<T>(), ptr_or_null<T>(weight),
                                                            mean.data<T>(), rstd.data<T>(), grad_in.data<T>(), M, N);
      EMBER_CUDA_CHECK_LAUNCH();
    }
    if (!weight_or_bias) return;
    // Split the rows across blocks when the column blocks alone cannot fill the GPU.
    const int64_t column_blocks = (N + kColumns - 1) / kColumns;
    int64_t splits = 1;
    const int64_t busy = busy_blocks(index_);
    if (column_blocks < busy)
      splits = std::clamp<int64_t>(std::min((busy + column_blocks - 1) / column_blocks,
                                            (M + kRowLanes * kRowsPerLane - 1) / (kRowLanes * kRowsPerLane)),
                                   1, 65535);
    const int64_t chunk = (M + splits - 1) / splits;
    splits = (M + chunk - 1) / chunk;  // no empty split
    const dim3 grid(static_cast<unsigned>(column_blocks), static_cast<unsigned>(splits)), block(kColumns, kRowLanes);
    T* gw = mutable_ptr_or_null<T>(grad_weight);
    T* gb = mutable_ptr_or_null<T>(grad_bias);
    Tensor partials;  // [2, splits, N] doubles: the dw partials, then the db partials
    double *part_w = nullptr, *part_b = nullptr;
    if (splits > 1) {
      partials = empty({2, splits, N}, TensorOptions(kFloat64).device(in.device()));
      part_w = partials.data<double>();
      part_b = part_w + splits * N;
    }
    layer_norm_weight_bias_kernel<<<grid, block, 0, stream>>>(grad_out.data<T>(), in.data<T>(), mean.data<T>(),
                                                              rstd.data<T>(), gw, gb, part_w, part_b, M, N, chunk);
    EMBER_CUDA_CHECK_LAUNCH();
    if (splits > 1) {
      weight_bias_finish_kernel<<<num_blocks(N), kThreads, 0, stream>>>(part_w, part_b, gw, gb, N, splits);
      EMBER_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace ember::cuda
