// CUDA batch norm over in [N, C, S] (core/backend.h has the contract, core/cpu/cpu_norm.cpp the
// CPU version) on cuDNN's batch-norm API, with three small kernels for what cuDNN does not do.
//
// cuDNN sees [N, C, S] as an NCHW tensor with H = S, W = 1 and normalises per channel over
// (N, H, W): CUDNN_BATCHNORM_SPATIAL. Its conventions happen to be ember's (and PyTorch's, which
// runs on it):
//   - resultSaveInvVariance is, despite the name, 1 / sqrt(var + eps) of the batch: our invstd;
//   - the running variance is updated with the unbiased batch variance (n / (n - 1) times the one
//     that normalises), and exponentialAverageFactor is our momentum:
//     running = (1 - momentum) * running + momentum * batch;
//   - the running statistics may be null (both at once): then they are not updated.
// The scale, bias, mean and variance tensors have the data's dtype for float and double.
// float16 forward: cuDNN's half configuration, 16-bit x and y with float32 scale, bias and
// statistics (only those C-value tensors are widened). bfloat16, whose support in cuDNN's legacy
// batch-norm API varies by version, and every 16-bit backward run the float32 path on widened
// copies (core/cpu/float32_operands.h), as on the CPU. Under autocast batch norm gets float32
// inputs anyway (core/autocast.h).
//
// What needs our own kernels:
//   - inference: cuDNN normalises with the running statistics but writes no save_mean /
//     save_invstd, which the contract asks for (the backward reads them);
//   - affine=false: cuDNN always takes a scale and a bias, so we pass ones and zeros;
//   - the backward with constant statistics (training=false): cuDNN's backward always
//     differentiates through the batch statistics. There dx = weight * invstd * grad_out, and the
//     parameter gradients are two per-channel sums; the same sums serve the training case when
//     only parameter gradients are wanted (they do not depend on how dx is computed).
// Per-channel sums accumulate in double, as on the CPU.
#include <algorithm>
#include <cmath>

#include "core/cpu/float32_operands.h"
#include "core/ops.h"
#include "cuda/cuda_backend.h"
#include "cuda/cudnn_descriptors.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

namespace {

constexpr cudnnBatchNormMode_t kSpatial = CUDNN_BATCHNORM_SPATIAL;

// The input as cuDNN's NCHW [N, C, S, 1], and the per-channel parameter shape cuDNN derives from it.
struct BatchNormDescriptors {
  TensorDescriptor data;
  TensorDescriptor param;
  BatchNormDescriptors(const Tensor& in, const char* op)
      : data(in.dtype(), in.size(0), in.size(1), in.size(2), 1, op) {
    EMBER_CUDA_CHECK(cudnnDeriveBNTensorDescriptor(param.get(), data.get(), kSpatial));
  }
};

template <typename T>
__global__ void ones_then_zeros_kernel(int64_t C, T* p) {
  grid_stride(2 * C, [&](int64_t i) { p[i] = i < C ? T(1) : T(0); });
}

// cuDNN always takes a scale and a bias: [2, C] with ones in row 0 and zeros in row 1 stand in
// for missing ones (the identity transform of affine=false).
template <typename T>
Tensor identity_affine(int64_t C, int device, cudaStream_t stream) {
  Tensor t = empty({2, C}, TensorOptions(dtype_of<T>::value).device(Device(DeviceType::CUDA, device)));
  ones_then_zeros_kernel<<<num_blocks(2 * C), kThreads, 0, stream>>>(C, t.data<T>());
  EMBER_CUDA_CHECK_LAUNCH();
  return t;
}

// save_mean = running_mean, save_invstd = 1 / sqrt(running_var + eps) (in double, as the CPU).
template <typename T>
__global__ void running_stats_kernel(int64_t C, const T* running_mean, const T* running_var, double eps,
                                     T* save_mean, T* save_invstd) {
  grid_stride(C, [&](int64_t c) {
    save_mean[c] = running_mean[c];
    save_invstd[c] = static_cast<T>(1.0 / ::sqrt(static_cast<double>(running_var[c]) + eps));
  });
}

}  // namespace

namespace {

// The forward on cuDNN for float32/float64 data, and for float16 data with float32 per-channel
// tensors (weight, bias, running and saved statistics: the parameter type cuDNN derives for half
// data). T is the per-channel tensors' type, which also types cuDNN's alpha / beta.
void batch_norm_forward(int device, const Tensor& in, const Tensor& weight, const Tensor& bias,
                        const Tensor& running_mean, const Tensor& running_var, const Tensor& out,
                        const Tensor& save_mean, const Tensor& save_invstd, bool training, double momentum,
                        double eps) {
  const int64_t N = in.size(0), C = in.size(1), S = in.size(2);
  if (in.numel() == 0) return;
  // As the op checks: the unbiased variance of a single value is undefined.
  EMBER_CHECK(!training || N * S > 1, "batch_norm: expected more than 1 value per channel when training, got input ",
              in.shape());
  EMBER_CHECK(training || (running_mean.defined() && running_var.defined()),
              "batch_norm: normalising with running statistics needs running_mean and running_var");
  DeviceGuard guard(device);
  cudaStream_t stream = compute_stream(device);
  cudnnHandle_t handle = cudnn_handle(device);
  const DType param_dtype = in.dtype() == kFloat16 ? kFloat32 : in.dtype();
  EMBER_DISPATCH_FLOAT(param_dtype, "batch_norm", [&]<typename T>() {
    const BatchNormDescriptors d(in, "batch_norm");
    const Tensor identity = weight.defined() && bias.defined() ? Tensor() : identity_affine<T>(C, device, stream);
    const void* scale = weight.defined() ? weight.data_ptr() : identity.data<T>();
    const void* shift = bias.defined() ? bias.data_ptr() : identity.data<T>() + C;
    const T one = 1, zero = 0;  // cuDNN's alpha/beta: float for float and half data, double for double
    if (training) {
      void* rm = running_mean.defined() ? running_mean.data_ptr() : nullptr;
      void* rv = running_var.defined() ? running_var.data_ptr() : nullptr;
      EMBER_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(
          handle, kSpatial, &one, &zero, d.data.get(), in.data_ptr(), d.data.get(), out.data_ptr(), d.param.get(),
          scale, shift, momentum, rm, rv, eps, save_mean.data_ptr(), save_invstd.data_ptr()));
      count_launch();
    } else {
      EMBER_CUDA_CHECK(cudnnBatchNormalizationForwardInference(
          handle, kSpatial, &one, &zero, d.data.get(), in.data_ptr(), d.data.get(), out.data_ptr(), d.param.get(),
          scale, shift, running_mean.data_ptr(), running_var.data_ptr(), eps));
      count_launch();
      running_stats_kernel<<<num_blocks(C), kThreads, 0, stream>>>(C, running_mean.data<T>(), running_var.data<T>(),
                                                                   eps, save_mean.data<T>(), save_invstd.data<T>());
      EMBER_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace

void CudaBackend::batch_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                             const Tensor& running_var, const Tensor& out, const Tensor& save_mean,
                             const Tensor& save_invstd, bool training, double momentum, double eps) {
  // float16 data goes to cuDNN as it is; only the per-channel tensors are widened to float32 (C
  // values each), and rounded back into 16-bit ones afterwards.
  if (in.dtype() == kFloat16 && out.dtype() == kFloat16) {
    Float32Operands f;
    batch_norm_forward(index_, in, f.in(weight), f.in(bias), f.out(running_mean), f.out(running_var), out,
                       f.out(save_mean), f.out(save_invstd), training, momentum, eps);
    return f.finish();
  }
  // bfloat16: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &weight, &bias, &running_mean, &running_var, &out, &save_mean, &save_invstd})) {
    Float32Operands f;
    batch_norm(f.in(in), f.in(weight), f.in(bias), f.out(running_mean), f.out(running_var), f.out(out), f.out(save_mean),
               f.out(save_invstd), training, momentum, eps);
    return f.finish();
  }
  batch_norm_forward(index_, in, weight, bias, running_mean, running_var, out, save_mean, save_invstd, training,
                     momentum, eps);
}

namespace {

// Per channel c (one block each, looping over channels past the grid):
//   grad_bias[c] = sum(g),  grad_weight[c] = sum(g * (x - mean)) * invstd
// over the N*S values of the channel, accumulated in double. Either output may be null. by_S
// divides by S (32-bit when N * S fits).
template <typename T>
__global__ void batch_norm_param_grads_kernel(int64_t N, int64_t C, int64_t S, IndexDivider by_S, const T* g,
                                              const T* x, const T* mean, const T* invstd, T* grad_weight,
                                              T* grad_bias) {
  __shared__ double sum_g[kThreads], sum_gd[kThreads];
  const int64_t count = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const double m = mean[c];
    double sg = 0, sgd = 0;
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
      const int64_t n = by_S.div(j);
      const int64_t at = (n * C + c) * S + (j - n * S);
      const double gv = g[at];
      sg += gv;
      sgd += gv * (static_cast<double>(x[at]) - m);
    }
    sum_g[threadIdx.x] = sg;
    sum_gd[threadIdx.x] = sgd;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {  // tree sum; blockDim.x is a power of two
      if (threadIdx.x < half) {
        sum_g[threadIdx.x] += sum_g[threadIdx.x + half];
        sum_gd[threadIdx.x] += sum_gd[threadIdx.x + half];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      if (grad_bias) grad_bias[c] = static_cast<T>(sum_g[0]);
      if (grad_weight) grad_weight[c] = static_cast<T>(sum_gd[0] * static_cast<double>(invstd[c]));
    }
    __syncthreads();  // the shared sums are reused for the next channel
  }
}

// dx = weight * invstd * g with the statistics held constant. by_S and by_C divide by S and C
// (32-bit when n fits).
template <typename T>
__global__ void batch_norm_constant_stats_grad_kernel(int64_t n, int64_t C, IndexDivider by_S, IndexDivider by_C,
                                                      const T* g, const T* weight, const T* invstd, T* grad_in) {
  grid_stride(n, [&](int64_t i) {
    const int64_t nc = by_S.div(i), c = nc - by_C.div(nc) * C;
    const double k = static_cast<double>(invstd[c]) * (weight ? static_cast<double>(weight[c]) : 1.0);
    grad_in[i] = static_cast<T>(k) * g[i];
  });
}

template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

void CudaBackend::batch_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                      const Tensor& save_mean, const Tensor& save_invstd, const Tensor& grad_in,
                                      const Tensor& grad_weight, const Tensor& grad_bias, bool training,
                                      double eps) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &in, &weight, &save_mean, &save_invstd, &grad_in, &grad_weight, &grad_bias})) {
    Float32Operands f;
    batch_norm_backward(f.in(grad_out), f.in(in), f.in(weight), f.in(save_mean), f.in(save_invstd), f.out(grad_in),
                        f.out(grad_weight), f.out(grad_bias), training, eps);
    return f.finish();
  }
  const int64_t N = in.size(0), C = in.size(1), S = in.size(2);
  if (in.numel() == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  cudnnHandle_t handle = cudnn_handle(index_);
  EMBER_DISPATCH_FLOAT(in.dtype(), "batch_norm_backward", [&]<typename T>() {
    if (training && grad_in.defined()) {
      // cuDNN computes all three gradients; it always writes the parameter gradients, so missing
      // ones go to scratch tensors.
      const TensorOptions opts = TensorOptions(in.dtype()).device(in.device());
      const Tensor gw = grad_weight.defined() ? grad_weight : empty({C}, opts);
      const Tensor gb = grad_bias.defined() ? grad_bias : empty({C}, opts);
      const BatchNormDescriptors d(in, "batch_norm_backward");
      const Tensor identity = weight.defined() ? Tensor() : identity_affine<T>(C, index_, stream);
      const void* scale = weight.defined() ? weight.data_ptr() : identity.data<T>();
      const T one = 1, zero = 0;
      // cuDNN asks for the forward's epsilon here too ("the same epsilon value should be used in
      // forward and backward functions"), even with saved statistics; before, 1e-5 was passed
      // whatever the forward used (issue 19 item 6).
      EMBER_CUDA_CHECK(cudnnBatchNormalizationBackward(
          handle, kSpatial, &one, &zero, &one, &zero, d.data.get(), in.data_ptr(), d.data.get(), grad_out.data_ptr(),
          d.data.get(), grad_in.data_ptr(), d.param.get(), scale, gw.data_ptr(), gb.data_ptr(), eps,
          save_mean.data_ptr(), save_invstd.data_ptr()));
      count_launch();
      return;
    }
    if (grad_weight.defined() || grad_bias.defined()) {
      const int blocks = static_cast<int>(std::min<int64_t>(C, kMaxBlocks));
      batch_norm_param_grads_kernel<<<blocks, kThreads, 0, stream>>>(
          N, C, S, IndexDivider(S, N * S), grad_out.data<T>(), in.data<T>(), save_mean.data<T>(), save_invstd.data<T>(),
          data_or_null<T>(grad_weight), data_or_null<T>(grad_bias));
      EMBER_CUDA_CHECK_LAUNCH();
    }
    if (grad_in.defined()) {  // here the statistics are constants (training is false)
      const int64_t n = in.numel();
      batch_norm_constant_stats_grad_kernel<<<num_blocks(n), kThreads, 0, stream>>>(
          n, C, IndexDivider(S, n), IndexDivider(C, n), grad_out.data<T>(), data_or_null<T>(weight),
          save_invstd.data<T>(), grad_in.data<T>());
      EMBER_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace ember::cuda
