// The CUDA backend: one CudaBackend per visible GPU, registered with core at static-initialisation
// time (cuda_backend.cpp), so core never needs an #ifdef. Kernels are split by family like the CPU
// backend's: cuda_elementwise.cu (copy, fill, arange, random, unary/binary/where), cuda_reduce.cu,
// and so on.
//
// Streams: every kernel and copy runs on the device's compute stream (cuda/runtime.h), so work is
// ordered without the host waiting. The host waits only where it must read results: copy_to_host,
// synchronize(), and uploads from pageable memory. Uploads from pinned memory run on the copy
// stream and overlap queued kernels (see copy_from_host in cuda_backend.cpp).
// Memory comes from the caching allocator (cuda/caching_allocator.h).
#pragma once

#include "core/backend.h"
#include "core/kernels/conv_kernels.h"
#include "core/kernels/loss_kernels.h"
#include "core/kernels/norm_kernels.h"
#include "core/kernels/optim_kernels.h"
#include "core/kernels/pool_kernels.h"

namespace ember::cuda {

// Number of usable GPUs. Any cudaGetDeviceCount failure (no driver, no device, a driver older than
// the runtime) counts as zero devices: a CUDA build must run its CPU work on machines without a GPU.
int device_count();

// Makes `index` the current device for the guard's lifetime (CUDA's current device is per thread).
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  int index_ = 0;
};

// The device primitives (Backend) and every kernel table (core/kernels/), registered for CUDA in
// cuda_backend.cpp.
class CudaBackend final : public Backend,
                          public ConvKernels,
                          public PoolKernels,
                          public NormKernels,
                          public LossKernels,
                          public OptimKernels {
 public:
  explicit CudaBackend(int index);  // cuda_backend.cpp
  Allocator& allocator() override { return allocator_; }

  // cuda_backend.cpp
  void copy_from_host(const void* host, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* host) override;

  // cuda_elementwise.cu
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& out, double value) override;
  void arange(const Tensor& out, double start, double step) override;
  void random(RandomOp op, const Tensor& out, PhiloxState state, double a, double b) override;
  void unary(UnaryOp op, const Tensor& in, const Tensor& out, Scalars s) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;

  void synchronize() override;                                  // cuda_backend.cpp
  uint64_t kernel_launches() const override;                   // cuda_backend.cpp

  // cuda_reduce.cu
  void reduce(ReduceOp op, const Tensor& in, const Tensor& out, uint32_t dims) override;
  // cuda_softmax.cu
  void softmax(const Tensor& in, const Tensor& out, int dim, bool log) override;
  void softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in, int dim, bool log) override;
  // cuda_loss.cu
  void cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& row_stats,
                     int64_t ignore_index, double label_smoothing) override;
  void cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target, const Tensor& row_stats,
                              const Tensor& grad_logits, int64_t ignore_index, double label_smoothing) override;
  // cuda_layer_norm.cu
  void layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, const Tensor& mean,
                  const Tensor& rstd, double eps) override;
  void layer_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& mean,
                           const Tensor& rstd, const Tensor& grad_in, const Tensor& grad_weight,
                           const Tensor& grad_bias) override;
  // cuda_matmul.cpp (cuBLAS)
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override;
  // cuda_conv.cpp (cuDNN)
  void conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
              int64_t groups) override;
  void conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& grad_in,
                       const Tensor& grad_weight, const Tensor& grad_bias, Window2d w, int64_t groups) override;
  // cuda_batch_norm.cpp (cuDNN)
  void batch_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                  bool training, double momentum, double eps) override;
  void batch_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& save_mean,
                           const Tensor& save_invstd, const Tensor& grad_in, const Tensor& grad_weight,
                           const Tensor& grad_bias, bool training, double eps) override;
  // cuda_pool.cu
  void max_pool2d(const Tensor& in, const Tensor& out, const Tensor& indices, Window2d w) override;
  void max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Tensor& grad_in) override;
  void avg_pool2d(const Tensor& in, const Tensor& out, Window2d w, bool count_include_pad) override;
  void avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in, Window2d w, bool count_include_pad) override;
  void adaptive_avg_pool2d(const Tensor& in, const Tensor& out) override;
  void adaptive_avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in) override;
  // cuda_index.cu
  void index_select(const Tensor& in, int dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& in, int dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;
  // cuda_optim.cu (multi-tensor fused steps)
  void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                const std::vector<Tensor>& momentum_buffers, const SGDStep& s) override;
  void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                 const std::vector<Tensor>& max_exp_avg_sqs, const AdamStep& s) override;

 private:
  int index_;
  Allocator& allocator_;  // cuda/caching_allocator.h: device_allocator(index_)
};

}  // namespace ember::cuda
