// CUDA 2-D convolution (NCHW) on cuDNN's convolution API: forward, backward-data (input
// gradient), backward-filter (weight gradient) and the bias terms. Unverified on a GPU (see the
// README's CUDA section).
//
// Choosing an algorithm: cuDNN implements each pass with several algorithms (implicit GEMM, FFT,
// Winograd, ...) whose speed, workspace and determinism depend on the shapes. Once per distinct
// problem — pass, shapes, window, groups, dtype, TF32 / deterministic / benchmark switches, device
// — we ask cuDNN's heuristics (cudnnGet*Algorithm_v7: a ranked list, no timing, so no
// synchronisation) and keep, in rank order, the candidates that run here, are marked
// CUDNN_DETERMINISTIC when ember::deterministic() is on (the others sum with atomics in an order
// that changes run to run), and need at most kMaxWorkspaceBytes of workspace. With
// ember::cudnn_benchmark() on, each candidate is then timed once and the order becomes fastest
// first (PyTorch's cudnn.benchmark). Each call runs the first candidate whose workspace can be
// allocated, falling back down the order on out-of-memory and remembering where it got to. The
// policy is host code in cuda/algorithm_search.h, tested on the CPU.
//
// bfloat16 and float16: 16-bit tensor and filter descriptors with float32 accumulation (the
// convolution descriptor's compute type, cuda/cudnn_descriptors.h) and cuDNN's default math, so
// tensor cores run them; alpha / beta are float. Their bias add and bias gradient use ember's
// elementwise and reduction kernels (add_bias_16bit, bias_grad_16bit below).
//
// TF32: for float32, the convolution's math type is CUDNN_FMA_MATH unless ember::allow_tf32() —
// cuDNN's default math would otherwise let tensor cores round inputs to TF32 — and
// CUDNN_DEFAULT_MATH when TF32 is allowed (PyTorch's rule). cuDNN reports the math type each
// algorithm runs with; we set the one it reports for the algorithm we run, and never accept a
// TF32-capable one for float32 when TF32 is off.
//
// Workspace: scratch memory some algorithms need, taken from ember's device allocator as a uint8
// tensor for the duration of the call. Everything runs on the compute stream, to which the cuDNN
// handle is bound (cuda/runtime.h).
#include <array>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "cuda/algorithm_search.h"
#include "cuda/cuda_backend.h"
#include "cuda/cudnn_descriptors.h"
#include "cuda/error.h"
#include "cuda/runtime.h"

namespace ember::cuda {

namespace {

enum class ConvPass : uint8_t { Forward, BackwardData, BackwardFilter };

// Everything that can change cuDNN's choice of algorithm.
struct AlgorithmKey {
  ConvPass pass;
  int device;
  DType dtype;
  bool tf32;
  bool deterministic;
  bool benchmark;
  int64_t groups;
  std::array<int64_t, 4> in, weight, out;
  std::array<int64_t, 8> window;  // kh, kw, sh, sw, ph, pw, dh, dw
  auto operator<=>(const AlgorithmKey&) const = default;
};

// Workspaces above this are not considered: one convolution must not take most of the GPU's
// memory for scratch (and evict the caching allocator's blocks to get it).
constexpr size_t kMaxWorkspaceBytes = size_t{1} << 30;

ConvChoiceCache<AlgorithmKey>& algorithm_cache() {
  static ConvChoiceCache<AlgorithmKey> cache;  // never destroyed before its last user: a plain host map
  return cache;
}

std::array<int64_t, 4> dims4(const Shape& s) { return {s[0], s[1], s[2], s[3]}; }

// The four descriptors of one convolution problem: input x, weight w, output y and the geometry.
struct ConvDescriptors {
  TensorDescriptor x;
  FilterDescriptor w;
  TensorDescriptor y;
  ConvolutionDescriptor conv;
  ConvDescriptors(DType t, const Shape& in, const Shape& weight, const Shape& out, const Window2d& win,
                  int64_t groups, const char* op)
      : x(t, in[0], in[1], in[2], in[3], op),
        w(t, weight[0], weight[1], weight[2], weight[3], op),
        y(t, out[0], out[1], out[2], out[3], op),
        conv(t, win, groups, op) {}
};

// The math type requested before asking the heuristics (see the top of the file).
cudnnMathType_t requested_math(DType t, bool tf32) {
  return t == kFloat32 && !tf32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
}

std::string problem_text(const AlgorithmKey& key) {
  return detail::str_cat("input [", key.in[0], ", ", key.in[1], ", ", key.in[2], ", ", key.in[3], "], weight [",
                         key.weight[0], ", ", key.weight[1], ", ", key.weight[2], ", ", key.weight[3], "], groups ",
                         key.groups, " (", dtype_name(key.dtype),
                         key.dtype == kFloat32 ? (key.tf32 ? ", TF32 on" : ", TF32 off") : "", ")");
}

// cuDNN's ranked candidates that run here, are deterministic when asked, and do not use TF32 for
// float32 when TF32 is off; workspace sizes are filled in later.
template <typename Perf>
std::vector<ConvCandidate> usable(const std::vector<Perf>& ranked, int count, const AlgorithmKey& key) {
  std::vector<ConvCandidate> out;
  for (int i = 0; i < count; ++i) {
    const Perf& p = ranked[i];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    if (key.deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
    if (key.dtype == kFloat32 && !key.tf32 && p.mathType != CUDNN_FMA_MATH) continue;
    out.push_back({.algo = static_cast<int>(p.algo), .math = static_cast<int>(p.mathType), .workspace_bytes = 0});
  }
  return out;
}

// The usable candidates for `key`'s pass in cuDNN's rank order, each with the workspace it needs
// under its own math type.
std::vector<ConvCandidate> ranked_candidates(cudnnHandle_t handle, ConvDescriptors& d, const AlgorithmKey& key) {
  int max_count = 0, count = 0;
  std::vector<ConvCandidate> c;
  switch (key.pass) {
    case ConvPass::Forward: {
      EMBER_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> ranked(max_count);
      EMBER_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                              max_count, &count, ranked.data()));
      c = usable(ranked, count, key);
      for (ConvCandidate& a : c) {
        d.conv.set_math_type(static_cast<cudnnMathType_t>(a.math));
        EMBER_CUDA_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                                 static_cast<cudnnConvolutionFwdAlgo_t>(a.algo),
                                                                 &a.workspace_bytes));
      }
      break;
    }
    case ConvPass::BackwardData: {
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> ranked(max_count);
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, d.w.get(), d.y.get(), d.conv.get(),
                                                                   d.x.get(), max_count, &count, ranked.data()));
      c = usable(ranked, count, key);
      for (ConvCandidate& a : c) {
        d.conv.set_math_type(static_cast<cudnnMathType_t>(a.math));
        EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
            handle, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo),
            &a.workspace_bytes));
      }
      break;
    }
    case ConvPass::BackwardFilter: {
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> ranked(max_count);
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, d.x.get(), d.y.get(), d.conv.get(),
                                                                     d.w.get(), max_count, &count, ranked.data()));
      c = usable(ranked, count, key);
      for (ConvCandidate& a : c) {
        d.conv.set_math_type(static_cast<cudnnMathType_t>(a.math));
        EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
            handle, d.x.get(), d.y.get(), d.conv.get(), d.w.get(),
            static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), &a.workspace_bytes));
      }
      break;
    }
  }
  return c;
}

// Scratch memory for one cuDNN call, from the caching allocator (throws OutOfMemoryError); stays
// alive until the call has been queued (later work on the same stream reuses the memory only
// after this call has run).
Tensor workspace(size_t bytes, int device) {
  if (bytes == 0) return Tensor();
  return empty({static_cast<int64_t>(bytes)}, TensorOptions(kUInt8).device(Device(DeviceType::CUDA, device)));
}
void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// The data of one pass: forward reads x, w and writes y; backward-data reads w, dy and writes dx;
// backward-filter reads x, dy and writes dw. alpha / beta are double for double data, float for
// the others (ScalingFactors, cuda/cudnn_descriptors.h).
struct ConvOperands {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* y = nullptr;  // dy in the backward passes
  void* result = nullptr;
  const void* alpha = nullptr;
  const void* beta = nullptr;
};

// Queues one pass with candidate c on the handle's stream.
void launch(ConvPass pass, cudnnHandle_t handle, ConvDescriptors& d, const ConvCandidate& c, const Tensor& ws,
            const ConvOperands& o) {
  d.conv.set_math_type(static_cast<cudnnMathType_t>(c.math));
  switch (pass) {
    case ConvPass::Forward:
      EMBER_CUDA_CHECK(cudnnConvolutionForward(handle, o.alpha, d.x.get(), o.x, d.w.get(), o.w, d.conv.get(),
                                               static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ptr_or_null(ws),
                                               c.workspace_bytes, o.beta, d.y.get(), o.result));
      break;
    case ConvPass::BackwardData:
      EMBER_CUDA_CHECK(cudnnConvolutionBackwardData(handle, o.alpha, d.w.get(), o.w, d.y.get(), o.y, d.conv.get(),
                                                    static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo),
                                                    ptr_or_null(ws), c.workspace_bytes, o.beta, d.x.get(), o.result));
      break;
    case ConvPass::BackwardFilter:
      EMBER_CUDA_CHECK(cudnnConvolutionBackwardFilter(handle, o.alpha, d.x.get(), o.x, d.y.get(), o.y, d.conv.get(),
                                                      static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo),
                                                      ptr_or_null(ws), c.workspace_bytes, o.beta, d.w.get(),
                                                      o.result));
      break;
  }
  count_launch();
}

// An event that records time (runtime.h's Event does not, to stay cheap), for the measured search.
struct TimingEvent {
  cudaEvent_t event = nullptr;
  TimingEvent() { EMBER_CUDA_CHECK(cudaEventCreate(&event)); }
  ~TimingEvent() { (void)cudaEventDestroy(event); }
  TimingEvent(const TimingEvent&) = delete;
  TimingEvent& operator=(const TimingEvent&) = delete;
};

// Milliseconds of one run of `run` on `stream`, after one untimed run (first-call setup).
template <typename Run>
double time_ms(cudaStream_t stream, Run&& run) {
  run();
  TimingEvent start, stop;
  EMBER_CUDA_CHECK(cudaEventRecord(start.event, stream));
  run();
  EMBER_CUDA_CHECK(cudaEventRecord(stop.event, stream));
  EMBER_CUDA_CHECK(cudaEventSynchronize(stop.event));
  float ms = 0;
  EMBER_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event, stop.event));
  return ms;
}

// Runs one pass of the problem described by d with the cached choice of algorithm (searching on
// first use), falling back down the candidates when a workspace cannot be allocated.
void run_pass(ConvPass pass, int device, cudnnHandle_t handle, ConvDescriptors& d, DType dtype, const Shape& in,
              const Shape& weight, const Shape& out, const Window2d& w, int64_t groups, const ConvOperands& o,
              const char* op) {
  const AlgorithmKey key{.pass = pass,
                         .device = device,
                         .dtype = dtype,
                         .tf32 = allow_tf32(),
                         .deterministic = deterministic(),
                         .benchmark = cudnn_benchmark(),
                         .groups = groups,
                         .in = dims4(in),
                         .weight = dims4(weight),
                         .out = dims4(out),
                         .window = {w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.dh, w.dw}};
  auto allocate = [&](size_t bytes) { return workspace(bytes, device); };
  auto run = [&](const ConvCandidate& c, const Tensor& ws) { launch(pass, handle, d, c, ws, o); };
  const ConvChoice choice = algorithm_cache().get(key, [&] {
    d.conv.set_math_type(requested_math(dtype, key.tf32));
    std::vector<ConvCandidate> order = within_workspace_cap(ranked_candidates(handle, d, key), kMaxWorkspaceBytes);
    EMBER_CHECK(!order.empty(), op, ": cuDNN offers no ", key.deterministic ? "deterministic " : "",
                "algorithm needing at most ", kMaxWorkspaceBytes >> 20, " MiB of workspace for ", problem_text(key));
    if (key.benchmark) {
      const cudaStream_t stream = compute_stream(device);
      order = order_by_measured_time(order, allocate, [&](const ConvCandidate& c, const Tensor& ws) {
        return time_ms(stream, [&] { run(c, ws); });
      });
      EMBER_CHECK(!order.empty(), op, ": no cuDNN algorithm could run (out of memory for every workspace?) for ",
                  problem_text(key));
    }
    return order;
  });
  const size_t used = run_first_that_fits(choice, allocate, run);
  if (used != choice.current) algorithm_cache().use(key, used);
}

// Writes zeros into a defined, contiguous tensor (+0.0 is all-zero bytes in float and double).
void zero(const Tensor& t, cudaStream_t stream) {
  if (t.defined() && t.nbytes() > 0) EMBER_CUDA_CHECK(cudaMemsetAsync(t.data_ptr(), 0, t.nbytes(), stream));
}

// The bias terms of bfloat16/float16 convolutions, with ember's own kernels rather than
// cudnnAddTensor / cudnnConvolutionBackwardBias, whose 16-bit support differs between cuDNN
// versions: out += bias broadcast over batch and positions (an elementwise add in float32 math),
// and grad_bias = sum of grad_out over batch and positions (a reduction accumulating in float32).
// Views only, no autograd: these run inside the kernel.
void add_bias_16bit(const Tensor& out, const Tensor& bias) {
  NoGradGuard no_grad;
  const Tensor b = bias.view({1, out.size(1), 1, 1}).expand(out.shape());
  backend_of(out).binary(BinaryOp::Add, out, b, out);
}
void bias_grad_16bit(const Tensor& grad_out, const Tensor& grad_bias) {
  NoGradGuard no_grad;
  constexpr uint32_t kBatchAndPositions = (1u << 0) | (1u << 2) | (1u << 3);  // dims N, H, W of NCHW
  backend_of(grad_out).reduce(ReduceOp::Sum, grad_out, grad_bias.view({1, grad_out.size(1), 1, 1}), kBatchAndPositions);
}

}  // namespace

size_t conv_algorithm_cache_size() { return algorithm_cache().size(); }

void CudaBackend::conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                         int64_t groups) {
  if (out.numel() == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  cudnnHandle_t handle = cudnn_handle(index_);
  const DType dtype = in.dtype();
  EMBER_CHECK(is_floating(dtype), "conv2d: expected a floating-point tensor on CUDA, got ", dtype_name(dtype));
  const ScalingFactors scale(dtype);  // cuDNN's alpha / beta
  if (in.numel() == 0 || weight.numel() == 0) {
    // No input channels, or an input that is all padding: every output is an empty sum.
    zero(out, stream);
  } else {
    ConvDescriptors d(dtype, in.shape(), weight.shape(), out.shape(), w, groups, "conv2d");
    const ConvOperands o{.x = in.data_ptr(), .w = weight.data_ptr(), .result = out.data_ptr(), .alpha = scale.one(),
                         .beta = scale.zero()};
    run_pass(ConvPass::Forward, index_, handle, d, dtype, in.shape(), weight.shape(), out.shape(), w, groups, o,
             "conv2d");
  }
  if (bias.defined() && is_reduced_floating(dtype)) {
    add_bias_16bit(out, bias);
  } else if (bias.defined()) {  // out += bias [1, M, 1, 1], broadcast over batch and positions
    const TensorDescriptor b(dtype, 1, out.size(1), 1, 1, "conv2d"),
        y(dtype, out.size(0), out.size(1), out.size(2), out.size(3), "conv2d");
    EMBER_CUDA_CHECK(cudnnAddTensor(handle, scale.one(), b.get(), bias.data_ptr(), scale.one(), y.get(), out.data_ptr()));
    count_launch();
  }
}

void CudaBackend::conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                  const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                  Window2d w, int64_t groups) {
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  cudnnHandle_t handle = cudnn_handle(index_);
  const DType dtype = grad_out.dtype();
  const char* op = "conv2d_backward";
  EMBER_CHECK(is_floating(dtype), op, ": expected a floating-point tensor on CUDA, got ", dtype_name(dtype));
  const ScalingFactors scale(dtype);  // cuDNN's alpha / beta
  if (grad_bias.defined() && is_reduced_floating(dtype)) {
    bias_grad_16bit(grad_out, grad_bias);
  } else if (grad_bias.defined()) {  // sum of grad_out over batch and positions, per output channel
    if (grad_out.numel() == 0) {
      zero(grad_bias, stream);
    } else {
      const TensorDescriptor dy(dtype, grad_out.size(0), grad_out.size(1), grad_out.size(2), grad_out.size(3), op),
          db(dtype, 1, grad_out.size(1), 1, 1, op);
      EMBER_CUDA_CHECK(
          cudnnConvolutionBackwardBias(handle, scale.one(), dy.get(), grad_out.data_ptr(), scale.zero(), db.get(),
                                       grad_bias.data_ptr()));
      count_launch();
    }
  }
  if (!grad_in.defined() && !grad_weight.defined()) return;

  // `in` is only passed when the weight gradient is wanted; otherwise grad_in has its shape.
  EMBER_CHECK(in.defined() || !grad_weight.defined(), op, ": the weight gradient needs the input");
  const Shape in_shape = in.defined() ? in.shape() : grad_in.shape();
  if (grad_out.numel() == 0 || in_shape.numel() == 0 || weight.numel() == 0) {
    // Some sum is empty (no images, no positions, no channels): those gradients are zero.
    zero(grad_in, stream);
    zero(grad_weight, stream);
    return;
  }
  ConvDescriptors d(dtype, in_shape, weight.shape(), grad_out.shape(), w, groups, op);
  if (grad_in.defined()) {
    const ConvOperands o{.w = weight.data_ptr(), .y = grad_out.data_ptr(), .result = grad_in.data_ptr(),
                         .alpha = scale.one(), .beta = scale.zero()};
    run_pass(ConvPass::BackwardData, index_, handle, d, dtype, in_shape, weight.shape(), grad_out.shape(), w,
             groups, o, op);
  }
  if (grad_weight.defined()) {
    const ConvOperands o{.x = in.data_ptr(), .y = grad_out.data_ptr(), .result = grad_weight.data_ptr(),
                         .alpha = scale.one(), .beta = scale.zero()};
    run_pass(ConvPass::BackwardFilter, index_, handle, d, dtype, in_shape, weight.shape(), grad_out.shape(), w,
             groups, o, op);
  }
}

}  // namespace ember::cuda
