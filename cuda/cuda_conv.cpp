// CUDA 2-D convolution (NCHW) on cuDNN's convolution API: forward, backward-data (input
// gradient), backward-filter (weight gradient) and the bias terms.
//
// Choosing an algorithm: cuDNN implements each pass with several algorithms (implicit GEMM, FFT,
// Winograd, ...) whose speed, workspace and determinism depend on the shapes. We ask cuDNN's
// heuristics (cudnnGet*Algorithm_v7: a ranked list, no benchmarking, so no synchronisation) once
// per distinct problem — pass, shapes, window, groups, dtype, TF32 switch, deterministic switch,
// device — and cache the answer, so a training loop pays for the choice only on its first step.
// From the ranked list we take the first algorithm that is supported and, when
// ember::deterministic() is on, marked CUDNN_DETERMINISTIC (the others sum with atomics in an
// order that changes run to run).
//
// TF32: for float32, the convolution's math type is CUDNN_FMA_MATH unless ember::allow_tf32() —
// cuDNN's default math would otherwise let tensor cores round inputs to TF32 — and
// CUDNN_DEFAULT_MATH when TF32 is allowed (PyTorch's rule). cuDNN reports the math type each
// algorithm runs with; we set the one it reports for the algorithm we picked, and never accept a
// TF32-capable one for float32 when TF32 is off.
//
// Workspace: scratch memory some algorithms need, taken from ember's device allocator as a uint8
// tensor for the duration of the call. Everything runs on the compute stream, to which the cuDNN
// handle is bound (cuda/runtime.h).
#include <array>
#include <map>
#include <mutex>
#include <vector>

#include "core/ops.h"
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
  int64_t groups;
  std::array<int64_t, 4> in, weight, out;
  std::array<int64_t, 8> window;  // kh, kw, sh, sw, ph, pw, dh, dw
  auto operator<=>(const AlgorithmKey&) const = default;
};

// What we remember per key: cuDNN's algorithm enum (stored as int for all three passes), the math
// type it runs with, and the workspace it needs.
struct Algorithm {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace_bytes = 0;
};

// The algorithm cache, shared by all threads and devices.
class AlgorithmCache {
 public:
  template <typename Choose>
  Algorithm get(const AlgorithmKey& key, Choose&& choose) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it != entries_.end()) return it->second;
    const Algorithm a = choose();  // under the lock: two threads never choose for the same key
    entries_.emplace(key, a);
    return a;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  std::mutex mutex_;
  std::map<AlgorithmKey, Algorithm> entries_;
};

AlgorithmCache& algorithm_cache() {
  static AlgorithmCache cache;  // never destroyed before its last user: it is a plain host map
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

// The first of cuDNN's ranked candidates that runs here, is deterministic when asked, and does not
// use TF32 for float32 when TF32 is off.
template <typename Perf>
Algorithm pick(const std::vector<Perf>& ranked, int count, const AlgorithmKey& key, const char* op) {
  for (int i = 0; i < count; ++i) {
    const Perf& p = ranked[i];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    if (key.deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
    if (key.dtype == kFloat32 && !key.tf32 && p.mathType != CUDNN_FMA_MATH) continue;
    return {static_cast<int>(p.algo), p.mathType, 0};
  }
  EMBER_FAIL(op, ": cuDNN offers no ", key.deterministic ? "deterministic " : "", "algorithm for input [",
             key.in[0], ", ", key.in[1], ", ", key.in[2], ", ", key.in[3], "], weight [", key.weight[0], ", ",
             key.weight[1], ", ", key.weight[2], ", ", key.weight[3], "], groups ", key.groups, " (",
             dtype_name(key.dtype), key.dtype == kFloat32 ? (key.tf32 ? ", TF32 on" : ", TF32 off") : "", ")");
}

// Asks cuDNN's heuristics for `key`'s pass and measures the chosen algorithm's workspace. Leaves
// d.conv set to the chosen math type.
Algorithm choose_algorithm(cudnnHandle_t handle, ConvDescriptors& d, const AlgorithmKey& key, const char* op) {
  int max_count = 0, count = 0;
  Algorithm a;
  switch (key.pass) {
    case ConvPass::Forward: {
      EMBER_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> ranked(max_count);
      EMBER_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                              max_count, &count, ranked.data()));
      a = pick(ranked, count, key, op);
      d.conv.set_math_type(a.math);
      EMBER_CUDA_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                               static_cast<cudnnConvolutionFwdAlgo_t>(a.algo),
                                                               &a.workspace_bytes));
      break;
    }
    case ConvPass::BackwardData: {
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> ranked(max_count);
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, d.w.get(), d.y.get(), d.conv.get(),
                                                                   d.x.get(), max_count, &count, ranked.data()));
      a = pick(ranked, count, key, op);
      d.conv.set_math_type(a.math);
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
          handle, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo),
          &a.workspace_bytes));
      break;
    }
    case ConvPass::BackwardFilter: {
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> ranked(max_count);
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, d.x.get(), d.y.get(), d.conv.get(),
                                                                     d.w.get(), max_count, &count, ranked.data()));
      a = pick(ranked, count, key, op);
      d.conv.set_math_type(a.math);
      EMBER_CUDA_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
          handle, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo),
          &a.workspace_bytes));
      break;
    }
  }
  return a;
}

// The cached algorithm for this pass and problem (choosing it on first use), with d.conv set to
// its math type.
Algorithm algorithm_for(ConvPass pass, int device, cudnnHandle_t handle, ConvDescriptors& d, DType dtype,
                        const Shape& in, const Shape& weight, const Shape& out, const Window2d& w, int64_t groups,
                        const char* op) {
  const AlgorithmKey key{.pass = pass,
                         .device = device,
                         .dtype = dtype,
                         .tf32 = allow_tf32(),
                         .deterministic = deterministic(),
                         .groups = groups,
                         .in = dims4(in),
                         .weight = dims4(weight),
                         .out = dims4(out),
                         .window = {w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.dh, w.dw}};
  d.conv.set_math_type(requested_math(dtype, key.tf32));
  const Algorithm a = algorithm_cache().get(key, [&] { return choose_algorithm(handle, d, key, op); });
  d.conv.set_math_type(a.math);
  return a;
}

// Scratch memory for one cuDNN call, from the caching allocator; stays alive until the call has
// been queued (later work on the same stream reuses the memory only after this call has run).
Tensor workspace(size_t bytes, int device) {
  if (bytes == 0) return Tensor();
  return empty({static_cast<int64_t>(bytes)}, TensorOptions(kUInt8).device(Device(DeviceType::CUDA, device)));
}
void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// Writes zeros into a defined, contiguous tensor (+0.0 is all-zero bytes in float and double).
void zero(const Tensor& t, cudaStream_t stream) {
  if (t.defined() && t.nbytes() > 0) EMBER_CUDA_CHECK(cudaMemsetAsync(t.data_ptr(), 0, t.nbytes(), stream));
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
  EMBER_DISPATCH_FLOAT(dtype, "conv2d", [&]<typename T>() {
    const T one = 1, zero_scale = 0;  // cuDNN's alpha/beta: float for float data, double for double
    if (in.numel() == 0 || weight.numel() == 0) {
      // No input channels, or an input that is all padding: every output is an empty sum.
      zero(out, stream);
    } else {
      ConvDescriptors d(dtype, in.shape(), weight.shape(), out.shape(), w, groups, "conv2d");
      const Algorithm a = algorithm_for(ConvPass::Forward, index_, handle, d, dtype, in.shape(), weight.shape(),
                                        out.shape(), w, groups, "conv2d");
      const Tensor ws = workspace(a.workspace_bytes, index_);
      EMBER_CUDA_CHECK(cudnnConvolutionForward(handle, &one, d.x.get(), in.data_ptr(), d.w.get(), weight.data_ptr(),
                                               d.conv.get(), static_cast<cudnnConvolutionFwdAlgo_t>(a.algo),
                                               ptr_or_null(ws), a.workspace_bytes, &zero_scale, d.y.get(),
                                               out.data_ptr()));
      count_launch();
    }
    if (bias.defined()) {  // out += bias [1, M, 1, 1], broadcast over batch and positions
      const TensorDescriptor b(dtype, 1, out.size(1), 1, 1, "conv2d"),
          y(dtype, out.size(0), out.size(1), out.size(2), out.size(3), "conv2d");
      EMBER_CUDA_CHECK(cudnnAddTensor(handle, &one, b.get(), bias.data_ptr(), &one, y.get(), out.data_ptr()));
      count_launch();
    }
  });
}

void CudaBackend::conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                  const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                  Window2d w, int64_t groups) {
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  cudnnHandle_t handle = cudnn_handle(index_);
  const DType dtype = grad_out.dtype();
  const char* op = "conv2d_backward";
  EMBER_DISPATCH_FLOAT(dtype, op, [&]<typename T>() {
    const T one = 1, zero_scale = 0;
    if (grad_bias.defined()) {  // sum of grad_out over batch and positions, per output channel
      if (grad_out.numel() == 0) {
        zero(grad_bias, stream);
      } else {
        const TensorDescriptor dy(dtype, grad_out.size(0), grad_out.size(1), grad_out.size(2), grad_out.size(3), op),
            db(dtype, 1, grad_out.size(1), 1, 1, op);
        EMBER_CUDA_CHECK(
            cudnnConvolutionBackwardBias(handle, &one, dy.get(), grad_out.data_ptr(), &zero_scale, db.get(),
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
      const Algorithm a = algorithm_for(ConvPass::BackwardData, index_, handle, d, dtype, in_shape, weight.shape(),
                                        grad_out.shape(), w, groups, op);
      const Tensor ws = workspace(a.workspace_bytes, index_);
      EMBER_CUDA_CHECK(cudnnConvolutionBackwardData(handle, &one, d.w.get(), weight.data_ptr(), d.y.get(),
                                                    grad_out.data_ptr(), d.conv.get(),
                                                    static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo),
                                                    ptr_or_null(ws), a.workspace_bytes, &zero_scale, d.x.get(),
                                                    grad_in.data_ptr()));
      count_launch();
    }
    if (grad_weight.defined()) {
      const Algorithm a = algorithm_for(ConvPass::BackwardFilter, index_, handle, d, dtype, in_shape,
                                        weight.shape(), grad_out.shape(), w, groups, op);
      const Tensor ws = workspace(a.workspace_bytes, index_);
      EMBER_CUDA_CHECK(cudnnConvolutionBackwardFilter(handle, &one, d.x.get(), in.data_ptr(), d.y.get(),
                                                      grad_out.data_ptr(), d.conv.get(),
                                                      static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo),
                                                      ptr_or_null(ws), a.workspace_bytes, &zero_scale, d.w.get(),
                                                      grad_weight.data_ptr()));
      count_launch();
    }
  });
}

}  // namespace ember::cuda
