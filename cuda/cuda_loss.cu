// CUDA cross entropy: log_softmax and the negative log likelihood fused, one kernel forward and
// one backward, with the CPU's per-row formulas (core/cross_entropy_row.h, shared with
// core/cpu/cpu_loss.cpp). For each row of logits [N, C] the forward keeps m = max(x) (NaNs skipped)
// and log_sum = log(sum(exp(x - m))) for the backward, and both go through the stable log-softmax
// (x - m) - log_sum. Rows whose target is ignore_index give loss 0 and gradient 0. The sums
// accumulate in the logits' type, as on the CPU.
//
// A target outside [0, C) (other than ignore_index) cannot be reported as an error here: the
// targets live in device memory, and reading them back would synchronise the host with the GPU
// on every loss. Like PyTorch, which checks them with a device-side assert, the kernel does not
// trust them: it never indexes with a bad target, writes a NaN loss for its row instead (so a
// mean or sum of the losses is NaN), and the backward writes NaN gradients for that row.
#include <limits>

#include "core/cpu/float32_operands.h"
#include "core/cross_entropy_row.h"
#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

namespace {

constexpr int64_t kPerLane = 8;  // logits per lane before a row gets more lanes

// ::exp, ::log: core/ops.h (included for the 16-bit path) declares ember::exp/log on tensors, which
// would hide the global math functions from an unqualified call here.
__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return ::exp(x); }
__device__ __forceinline__ float log_(float x) { return logf(x); }
__device__ __forceinline__ double log_(double x) { return ::log(x); }

// The CPU's running max of a row (xent::row_max, m starting at -inf): a NaN logit is skipped (it
// reaches the loss through the sum of exps instead). The partial maxima the lanes combine are
// never NaN, so combining them with the same rule is the max of the whole row.
struct MaxSkipNanOp {
  template <typename T>
  __device__ T operator()(T m, T x) const { return xent::row_max(m, x); }
};

// One row group (cuda/block_reduce.cuh) per row of logits.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(const T* x, const int64_t* target, T* loss, T* row_stats, int64_t N, int64_t C,
                         int64_t ignore_index, double smoothing) {
  __shared__ T smem[kThreads / kWarp];
  const int lane = threadIdx.x, lanes = blockDim.x;
  // Every thread runs the same iterations (group_allreduce synchronises the block); threads past
  // the last row take part with empty rows.
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.y; first < N;
       first += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t r = first + threadIdx.y;
    const int64_t n = r < N ? C : 0;
    const T* xr = x + (r < N ? r : 0) * C;

    T m = -std::numeric_limits<T>::infinity();
    for (int64_t c = lane; c < n; c += lanes) m = MaxSkipNanOp{}(m, xr[c]);
    m = group_allreduce(m, MaxSkipNanOp{}, smem);
    m = xent::shift(m);  // 0 when all -inf (or a +inf present), so that x - m stays defined

    T sum_exp = 0, sum_x = 0;
    for (int64_t c = lane; c < n; c += lanes) {
      sum_exp += exp_(xr[c] - m);
      sum_x += xr[c];
    }
    sum_exp = group_allreduce(sum_exp, SumOp{}, smem);
    sum_x = group_allreduce(sum_x, SumOp{}, smem);

    if (lane != 0 || r >= N) continue;
    const T log_sum = log_(sum_exp);
    row_stats[2 * r] = m;
    row_stats[2 * r + 1] = log_sum;
    const int64_t t = target[r];
    if (t == ignore_index) {
      loss[r] = 0;
    } else if (t < 0 || t >= C) {
      loss[r] = std::numeric_limits<T>::quiet_NaN();  // a bad target (see the top of the file)
    } else {
      loss[r] = xent::loss(xr[t], sum_x / static_cast<T>(C), m, log_sum, smoothing);
    }
  }
}

}  // namespace

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& row_stats,
                                int64_t ignore_index, double label_smoothing) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&logits, &loss, &row_stats})) {
    Float32Operands f;
    cross_entropy(f.in(logits), target, f.out(loss), f.out(row_stats), ignore_index, label_smoothing);
    return f.finish();
  }
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  DeviceGuard guard(index_);
  const int lanes = lanes_for(C, kPerLane);
  const dim3 block(lanes, kThreads / lanes), grid(blocks_for_rows(N, kThreads / lanes));
  EMBER_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&]<typename T>() {
    cross_entropy_kernel<<<grid, block, 0, compute_stream(index_)>>>(
        logits.data<T>(), target.data<int64_t>(), loss.data<T>(), row_stats.data<T>(), N, C, ignore_index,
        label_smoothing);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

namespace {

// One thread per logit: grad_logits[r, c] from the row's saved max and log-sum. grad_loss has stride gl_stride
// (0 when it is the broadcast gradient of a mean or sum). by_C divides by C (32-bit when N * C fits).
template <typename T>
__global__ void cross_entropy_backward_kernel(const T* grad_loss, int64_t gl_stride, const T* x, const int64_t* target,
                                              const T* row_stats, T* gx, int64_t N, int64_t C, IndexDivider by_C,
                                              int64_t ignore_index, T keep, T smooth) {
  grid_stride(N * C, [&](int64_t i) {
    const int64_t r = by_C.div(i), c = i - r * C;
    const int64_t t = target[r];
    if (t == ignore_index) {
      gx[i] = 0;
    } else if (t < 0 || t >= C) {
      gx[i] = std::numeric_limits<T>::quiet_NaN();  // a bad target (see the top of the file)
    } else {
      gx[i] = xent::logit_grad(grad_loss[r * gl_stride], x[i], row_stats[2 * r], row_stats[2 * r + 1], c == t, keep,
                               smooth);
    }
  });
}

}  // namespace

void CudaBackend::cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                                         const Tensor& row_stats, const Tensor& grad_logits, int64_t ignore_index,
                                         double label_smoothing) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_loss, &logits, &row_stats, &grad_logits})) {
    Float32Operands f;
    cross_entropy_backward(f.in(grad_loss), f.in(logits), target, f.in(row_stats), f.out(grad_logits), ignore_index, label_smoothing);
    return f.finish();
  }
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N * C == 0) return;
  DeviceGuard guard(index_);
  EMBER_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&]<typename T>() {
    const T keep = static_cast<T>(1 - label_smoothing), smooth = static_cast<T>(label_smoothing / C);
    cross_entropy_backward_kernel<<<num_blocks(N * C), kThreads, 0, compute_stream(index_)>>>(
        grad_loss.data<T>(), grad_loss.stride(0), logits.data<T>(), target.data<int64_t>(), row_stats.data<T>(),
        grad_logits.data<T>(), N, C, IndexDivider(C, N * C), ignore_index, keep, smooth);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ember::cuda
