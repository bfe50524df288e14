// The CPU backend. Its kernels are split by family: cpu_elementwise.cpp (copy, fill, random,
// unary/binary/where), cpu_reduce.cpp, cpu_softmax.cpp, cpu_matmul.cpp, cpu_index.cpp, and the
// neural-network kernels cpu_conv.cpp, cpu_pool.cpp, cpu_norm.cpp, cpu_loss.cpp, and the fused
// optimizer steps cpu_optim.cpp.
#pragma once

#include "core/backend.h"
#include "core/kernels/conv_kernels.h"
#include "core/kernels/loss_kernels.h"
#include "core/kernels/norm_kernels.h"
#include "core/kernels/optim_kernels.h"
#include "core/kernels/pool_kernels.h"

namespace ember {

// The device primitives (Backend) and every kernel table (core/kernels/), registered for the CPU
// in core/backend.cpp.
class CpuBackend final : public Backend,
                         public ConvKernels,
                         public PoolKernels,
                         public NormKernels,
                         public LossKernels,
                         public OptimKernels {
 public:
  Allocator& allocator() override { return cpu_allocator(); }
  void copy(const Tensor& src, const Tensor& dst) override;
  void copy_from_host(const void* host, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* host) override;
  void fill(const Tensor& out, double value) override;
  void arange(const Tensor& out, double start, double step) override;
  void random(RandomOp op, const Tensor& out, PhiloxState state, double a, double b) override;
  void unary(UnaryOp op, const Tensor& in, const Tensor& out, Scalars s) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void reduce(ReduceOp op, const Tensor& in, const Tensor& out, uint32_t dims) override;
  void softmax(const Tensor& in, const Tensor& out, int dim, bool log) override;
  void softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in, int dim, bool log) override;
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override;
  // The same product accumulated when `accumulate` (out += a · b, GEMM beta = 1; out is read, so it
  // must hold values): the one engine dispatch point both forms go through (cpu_matmul.cpp).
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate);
  void index_select(const Tensor& in, int dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& in, int dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;

  // cpu_conv.cpp
  void conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
              int64_t groups) override;
  bool fuses_conv2d_relu() const override { return true; }
  bool takes_channels_last() const override { return true; }  // convolution and batch norm both
  void conv2d_relu(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                   int64_t groups) override;
  void conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& grad_in,
                       const Tensor& grad_weight, const Tensor& grad_bias, Window2d w, int64_t groups) override;
  Tensor conv2d_keeping_columns(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out,
                                Window2d w, int64_t groups, bool relu) override;
  void conv2d_backward_with_columns(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                    const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                    Window2d w, int64_t groups, const Tensor& columns) override;
  // cpu_pool.cpp
  void max_pool2d(const Tensor& in, const Tensor& out, const Tensor& indices, Window2d w) override;
  void max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Tensor& grad_in) override;
  void avg_pool2d(const Tensor& in, const Tensor& out, Window2d w, bool count_include_pad) override;
  void avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in, Window2d w, bool count_include_pad) override;
  void adaptive_avg_pool2d(const Tensor& in, const Tensor& out) override;
  void adaptive_avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in) override;
  // cpu_norm.cpp
  void batch_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                  bool training, double momentum, double eps) override;
  void batch_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& save_mean,
                           const Tensor& save_invstd, const Tensor& grad_in, const Tensor& grad_weight,
                           const Tensor& grad_bias, bool training, double eps) override;
  bool fuses_batch_norm_relu() const override { return true; }
  void batch_norm_relu(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                       const Tensor& running_var, const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                       bool training, double momentum, double eps) override;
  void batch_norm_relu_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& bias,
                                const Tensor& save_mean, const Tensor& save_invstd, const Tensor& grad_in,
                                const Tensor& grad_weight, const Tensor& grad_bias, bool training, double eps) override;
  void layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, const Tensor& mean,
                  const Tensor& rstd, double eps) override;
  void layer_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& mean,
                           const Tensor& rstd, const Tensor& grad_in, const Tensor& grad_weight,
                           const Tensor& grad_bias) override;
  // cpu_loss.cpp
  void cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& row_stats,
                     int64_t ignore_index, double label_smoothing) override;
  void cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target, const Tensor& row_stats,
                              const Tensor& grad_logits, int64_t ignore_index, double label_smoothing) override;
  // cpu_optim.cpp
  void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                const std::vector<Tensor>& momentum_buffers, const SGDStep& s) override;
  void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                 const std::vector<Tensor>& max_exp_avg_sqs, const AdamStep& s) override;
};

}  // namespace ember
