// The one dispatch point per device. Ops (core/ops/*.cpp) validate inputs, allocate outputs and
// call backend(device).<kernel>(...); the CPU backend implements these in core/cpu/, the CUDA
// backend in cuda/. When ember is built without CUDA, backend(cuda) is a stub that throws a clear
// "built without CUDA" error — no #ifdef anywhere in core.
//
// Kernel contracts: tensors passed in are already on this backend's device and already checked.
// `out` is written; inputs may be arbitrary strided views (stride 0 for broadcast dims). Elementwise
// inputs are pre-broadcast to out's shape. None of these record autograd.
#pragma once

#include <cstdint>
#include <vector>

#include "core/allocator.h"
#include "core/elementwise.h"
#include "core/generator.h"
#include "core/reduce_op.h"
#include "core/tensor.h"

namespace ember {

enum class RandomOp : uint8_t { Uniform, Normal, RandInt, Bernoulli };

// A 2-D sliding window (convolution or pooling) over NCHW tensors: kernel size, stride, zero
// padding on each side, and dilation, for the height (h) and width (w) dims. The ops compute the
// output size; kernels read it from the output tensor's shape.
struct Window2d {
  int64_t kh = 1, kw = 1;  // kernel
  int64_t sh = 1, sw = 1;  // stride
  int64_t ph = 0, pw = 0;  // padding
  int64_t dh = 1, dw = 1;  // dilation
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Allocator& allocator() = 0;

  // Waits until all work queued on this device has finished (a no-op on the CPU, whose kernels
  // return when done). Only item(), host reads and explicit calls synchronise; kernels never do.
  virtual void synchronize() {}
  // Kernels (and library calls: cuBLAS, cuDNN) launched on this device since start; benchmarks
  // and tests read it to bound the launches of a training step. The CPU backend reports 0.
  virtual uint64_t kernel_launches() const { return 0; }

  // --- memory ---
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;  // same shape, any strides, casts dtype
  virtual void copy_from_host(const void* host, const Tensor& dst) = 0;  // dst contiguous, nbytes of host
  virtual void copy_to_host(const Tensor& src, void* host) = 0;          // src contiguous
  virtual void fill(const Tensor& out, double value) = 0;
  virtual void arange(const Tensor& out, double start, double step) = 0;  // out contiguous 1-D
  // Uniform [a, b), Normal(mean a, std b), RandInt [a, b), Bernoulli(keep prob a) -> 1/0 in out's dtype.
  virtual void random(RandomOp op, const Tensor& out, PhiloxState state, double a, double b) = 0;

  // --- elementwise (core/elementwise.h defines each op once for every device) ---
  virtual void unary(UnaryOp op, const Tensor& in, const Tensor& out, Scalars s) = 0;
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // --- reductions --- `out` has in's shape with the reduced dims set to 1 (keepdim form).
  // `dims` is a bit mask of reduced dims. ArgMax/ArgMin reduce exactly one dim into int64.
  virtual void reduce(ReduceOp op, const Tensor& in, const Tensor& out, uint32_t dims) = 0;

  // --- softmax over `dim`, fused (max-subtracted, one pass for the sum) ---
  virtual void softmax(const Tensor& in, const Tensor& out, int dim, bool log) = 0;
  // grad_in = y * (g - sum(g*y))  or, for log, g - exp(y) * sum(g)
  virtual void softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in, int dim, bool log) = 0;

  // --- linear algebra --- a [B, M, K], b [B, K, N] -> out [B, M, N] (out contiguous). a and b
  // may be transposed views or have batch stride 0 (broadcast).
  virtual void matmul(const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // --- indexing --- index tensors are int64 and already bounds-checked by the op.
  virtual void index_select(const Tensor& in, int dim, const Tensor& index, const Tensor& out) = 0;
  virtual void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) = 0;  // out[.., index[i], ..] += src[.., i, ..]
  virtual void gather(const Tensor& in, int dim, const Tensor& index, const Tensor& out) = 0;
  virtual void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) = 0;

  // --- neural-network kernels (core/ops/{conv,pool,norm,loss}.cpp) --- All tensors are contiguous NCHW (or
  // [rows, cols] for the row-wise ones); optional tensors may be undefined. A backward kernel
  // writes (never accumulates into) each gradient that is defined and skips the undefined ones.
  // Each has a default body that throws, so a backend can implement them one at a time.

  // Convolution. weight [Cout, Cin/groups, kh, kw], bias [Cout] (optional). The backward reads
  // `in` only for grad_weight: it may be undefined otherwise (the input's shape is grad_in's).
  virtual void conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                      int64_t groups) {
    EMBER_FAIL("conv2d: not implemented on this device (", in.device(), ")");
  }
  virtual void conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& grad_in,
                               const Tensor& grad_weight, const Tensor& grad_bias, Window2d w, int64_t groups) {
    EMBER_FAIL("conv2d_backward: not implemented on this device (", grad_out.device(), ")");
  }

  // Pooling. max_pool2d also writes `indices` (int64, same shape as out): the flat position h*W + w
  // of each maximum inside its input plane, which is all its backward needs (like PyTorch's).
  virtual void max_pool2d(const Tensor& in, const Tensor& out, const Tensor& indices, Window2d w) {
    EMBER_FAIL("max_pool2d: not implemented on this device (", in.device(), ")");
  }
  virtual void max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Tensor& grad_in) {
    EMBER_FAIL("max_pool2d_backward: not implemented on this device (", grad_out.device(), ")");
  }
  // Window average; padded positions count in the divisor when count_include_pad.
  virtual void avg_pool2d(const Tensor& in, const Tensor& out, Window2d w, bool count_include_pad) {
    EMBER_FAIL("avg_pool2d: not implemented on this device (", in.device(), ")");
  }
  virtual void avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in, Window2d w, bool count_include_pad) {
    EMBER_FAIL("avg_pool2d_backward: not implemented on this device (", grad_out.device(), ")");
  }
  // Output cell (i, j) averages input rows [floor(i*H/OH), ceil((i+1)*H/OH)) and likewise columns.
  virtual void adaptive_avg_pool2d(const Tensor& in, const Tensor& out) {
    EMBER_FAIL("adaptive_avg_pool2d: not implemented on this device (", in.device(), ")");
  }
  virtual void adaptive_avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in) {
    EMBER_FAIL("adaptive_avg_pool2d_backward: not implemented on this device (", grad_out.device(), ")");
  }

  // Batch norm over in [N, C, S] per channel C. training: normalise with the batch statistics,
  // write them to save_mean / save_invstd [C] (invstd = 1/sqrt(var + eps), biased var), and, when
  // running_mean / running_var are defined, update them in place with `momentum` (the unbiased
  // variance goes into running_var, as in PyTorch). Not training: normalise with the running
  // statistics, and write them to save_mean / save_invstd in the same form for the backward.
  // weight / bias [C] are optional (affine=false).
  virtual void batch_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                          const Tensor& running_var, const Tensor& out, const Tensor& save_mean,
                          const Tensor& save_invstd, bool training, double momentum, double eps) {
    EMBER_FAIL("batch_norm: not implemented on this device (", in.device(), ")");
  }
  // training selects the full gradient through the batch statistics; otherwise they are constants.
  // eps is the forward's (cuDNN wants the same value in both passes).
  virtual void batch_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                   const Tensor& save_mean, const Tensor& save_invstd, const Tensor& grad_in,
                                   const Tensor& grad_weight, const Tensor& grad_bias, bool training, double eps) {
    EMBER_FAIL("batch_norm_backward: not implemented on this device (", in.device(), ")");
  }

  // Layer norm of each row of in [M, N]; writes mean / rstd [M]. weight / bias [N] are optional.
  virtual void layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out,
                          const Tensor& mean, const Tensor& rstd, double eps) {
    EMBER_FAIL("layer_norm: not implemented on this device (", in.device(), ")");
  }
  virtual void layer_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& grad_in, const Tensor& grad_weight,
                                   const Tensor& grad_bias) {
    EMBER_FAIL("layer_norm_backward: not implemented on this device (", in.device(), ")");
  }

  // Fused log_softmax + negative log likelihood per row of logits [N, C] with int64 class targets
  // [N]: loss[i] = (1 - s) * (lse_i - x[i, t_i]) + s * (lse_i - mean_c x[i, c]) with s the label
  // smoothing, and 0 where t_i == ignore_index. Writes loss [N] and row_stats [N, 2]: each row's
  // max m and log(sum(exp(x - m))), kept for the backward (core/cross_entropy_row.h says why the
  // two are kept apart rather than summed into a logsumexp). A target outside [0, C) other than ignore_index is an error on
  // the CPU; on CUDA, where reporting it would need a host read of the targets every step, that
  // row's loss and gradient are NaN instead (cuda/cuda_loss.cu) and memory is never indexed by it.
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& row_stats,
                             int64_t ignore_index, double label_smoothing) {
    EMBER_FAIL("cross_entropy: not implemented on this device (", logits.device(), ")");
  }
  // grad_logits[i, c] = grad_loss[i] * (softmax[i, c] - (1 - s) * [c == t_i] - s / C); 0 on ignored rows.
  // grad_loss [N] may have stride 0 (the gradient of a mean or sum, broadcast).
  virtual void cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                                      const Tensor& row_stats, const Tensor& grad_logits, int64_t ignore_index,
                                      double label_smoothing) {
    EMBER_FAIL("cross_entropy_backward: not implemented on this device (", logits.device(), ")");
  }

  // --- fused optimizer steps (optim/) --- Multi-tensor: one call updates a whole list of
  // parameters, so a device backend can cover them with one or a few kernel launches instead of
  // one per parameter per operation. Tensor i of every list has the same shape and dtype
  // (float32 or float64), all contiguous, all on this device. The arithmetic is PyTorch's
  // (_single_tensor_sgd / _single_tensor_adam), in the parameters' dtype.
  struct SGDStep {
    double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
    bool nesterov = false;
    bool first = false;  // the momentum buffers were just created: they take d instead of decaying
  };
  // momentum_buffers is empty when momentum == 0.
  virtual void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                        const std::vector<Tensor>& momentum_buffers, const SGDStep& s) {
    EMBER_FAIL("sgd_step: not implemented on this device");
  }
  struct AdamStep {
    double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
    bool amsgrad = false, decoupled = false;  // decoupled: AdamW's weight decay
    double step_size = 0;        // lr / (1 - beta1^t)
    double bias_corr2_sqrt = 0;  // sqrt(1 - beta2^t)
  };
  // max_exp_avg_sqs is empty unless amsgrad. All parameters in one call share the step count t.
  virtual void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                         const std::vector<Tensor>& max_exp_avg_sqs, const AdamStep& s) {
    EMBER_FAIL("adam_step: not implemented on this device");
  }
};

Backend& backend(Device d);
inline Backend& backend_of(const Tensor& t) { return backend(t.device()); }

// Registration hook used by the CUDA backend (cuda/) at static-initialisation time.
void register_cuda_backend(Backend* (*get)(int index), int (*device_count)());
// Number of usable CUDA devices: 0 when built without CUDA or when no driver/GPU is present.
int cuda_device_count();
bool cuda_is_available();

// Numerics switches, process-wide, read by the CUDA backend (the CPU backend is unaffected).
// allow_tf32: float32 matmuls and convolutions may use TF32 tensor cores (10-bit mantissa inputs,
// float32 accumulation), like torch.backends.cuda.matmul.allow_tf32. Default off: float32 results
// then match the CPU to float32 tolerances.
void set_allow_tf32(bool allow);
bool allow_tf32();
// deterministic: only algorithms whose results are bitwise reproducible run to run (no atomics
// with order-dependent sums in cuDNN's algorithm choice), like torch.use_deterministic_algorithms.
void set_deterministic(bool on);
bool deterministic();
// cudnn_benchmark: the first convolution of each shape and dtype times cuDNN's candidate
// algorithms and keeps the fastest, like torch.backends.cudnn.benchmark; default off (cuDNN's
// heuristic ranking, no timing run). The first step of each new shape is slower when on.
void set_cudnn_benchmark(bool on);
bool cudnn_benchmark();

// Intra-op threads for CPU kernels (default: all cores).
void set_num_threads(int n);
int get_num_threads();

}  // namespace ember
