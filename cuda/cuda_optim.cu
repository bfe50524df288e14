// CUDA fused optimizer steps (Backend::sgd_step / adam_step), multi-tensor style (PyTorch's
// multi_tensor_apply): a model has many parameters, most of them small (biases, norms), and one
// kernel per parameter per operation would spend more time launching than computing. Instead the
// host packs up to K tensors' pointers and sizes into a struct passed to the kernel by value (no
// device memory, no copy), cuts each tensor into chunks of kChunk elements, and launches one
// kernel over all their chunks: block b finds its (tensor, chunk) from the chunk counts in the
// struct. A step over any number of parameters costs ceil(count / K) launches.
//
// The per-element arithmetic is core/optim_math.h, the same functors the CPU loops call, in the
// parameters' dtype. nvcc contracts a * b + c into one FMA where the CPU
// build may not (or elsewhere), so results agree to the last bit or so, not bit for bit.
#include <algorithm>
#include <array>
#include <cmath>

#include "core/optim_math.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

namespace {

constexpr int64_t kChunk = 8192;  // elements per block: 32 per thread, and a 1M-element tensor still fills 128 SMs

// How many tensors one launch takes for a given number of lists (p, g and state): as many as fit
// in the 4 KiB of kernel parameters (PyTorch's depth_to_max_tensors).
constexpr int max_tensors(int depth) { return depth <= 2 ? 110 : depth == 3 ? 64 : depth == 4 ? 48 : 36; }

// Up to K tensors of each of kDepth lists. Tensor t has numel[t] elements in every list and covers
// blocks [first_chunk[t], first_chunk[t + 1]) of the launch.
template <typename T, int kDepth>
struct TensorLists {
  static constexpr int K = max_tensors(kDepth);
  T* ptrs[K][kDepth];
  int64_t numel[K];
  int64_t first_chunk[K + 1];
};

// Calls op(ptrs of tensor t, i) for every element i of this block's chunk.
template <typename T, typename Op>
__global__ void multi_tensor_kernel(TensorLists<T, Op::kDepth> lists, Op op) {
  const int64_t block = blockIdx.x;
  int t = 0;
  while (block >= lists.first_chunk[t + 1]) ++t;  // at most K steps, all threads in lockstep
  const int64_t begin = (block - lists.first_chunk[t]) * kChunk;
  const int64_t end = std::min(begin + kChunk, lists.numel[t]);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) op(lists.ptrs[t], i);
}

// Launches op over tensor i of every list, for all i, K tensors per launch. lists[0] are the
// parameters; tensor i has the same number of elements in every list.
template <typename T, typename Op>
void multi_tensor_apply(const std::array<const std::vector<Tensor>*, Op::kDepth>& lists, const Op& op,
                        cudaStream_t stream) {
  using Lists = TensorLists<T, Op::kDepth>;
  static_assert(sizeof(Lists) + sizeof(Op) <= 4000, "kernel parameters are limited to 4 KiB");
  Lists meta;
  int count = 0;       // tensors packed into meta
  int64_t chunks = 0;  // blocks they need
  const auto launch = [&] {
    if (chunks == 0) return;
    multi_tensor_kernel<T, Op><<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(meta, op);
    EMBER_CUDA_CHECK_LAUNCH();
    count = 0;
    chunks = 0;
  };
  meta.first_chunk[0] = 0;
  for (size_t i = 0; i < lists[0]->size(); ++i) {
    const int64_t n = (*lists[0])[i].numel();
    if (n == 0) continue;
    for (int d = 0; d < Op::kDepth; ++d) meta.ptrs[count][d] = (*lists[d])[i].template data<T>();
    meta.numel[count] = n;
    chunks += (n + kChunk - 1) / kChunk;
    meta.first_chunk[++count] = chunks;  // also the end mark the kernel's search stops at
    if (count == Lists::K) {
      launch();
      meta.first_chunk[0] = 0;
    }
  }
  launch();
}

// ---------------- SGD ----------------
// x = {p, g} or, with momentum, {p, g, buf}.

template <typename T, bool kMomentum>
struct SGDUpdate {
  static constexpr int kDepth = kMomentum ? 3 : 2;
  SGDMath<T> math;  // core/optim_math.h: the same arithmetic as the CPU loop

  __device__ void operator()(T* const (&x)[kDepth], int64_t i) const {
    T* buf = nullptr;
    if constexpr (kMomentum) buf = x[2] + i;
    math(x[0][i], x[1][i], buf);
  }
};

}  // namespace

void CudaBackend::sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                           const std::vector<Tensor>& momentum_buffers, const SGDStep& s) {
  if (params.empty()) return;
  DeviceGuard guard(index_);
  const cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_FLOAT(params[0].dtype(), "sgd_step", [&]<typename T>() {
    const SGDMath<T> math = SGDMath<T>::make(s);
    if (momentum_buffers.empty()) {
      multi_tensor_apply<T>({&params, &grads}, SGDUpdate<T, false>{math}, stream);
    } else {
      multi_tensor_apply<T>({&params, &grads, &momentum_buffers}, SGDUpdate<T, true>{math}, stream);
    }
  });
}

namespace {

// ---------------- Adam / AdamW ----------------
// x = {p, g, m, v} or, with amsgrad, {p, g, m, v, vmax}.

template <typename T, bool kAmsgrad>
struct AdamUpdate {
  static constexpr int kDepth = kAmsgrad ? 5 : 4;
  AdamMath<T> math;  // core/optim_math.h

  __device__ void operator()(T* const (&x)[kDepth], int64_t i) const {
    T* vmax = nullptr;
    if constexpr (kAmsgrad) vmax = x[4] + i;
    math(x[0][i], x[1][i], x[2][i], x[3][i], vmax);
  }
};

}  // namespace

void CudaBackend::adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                            const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                            const std::vector<Tensor>& max_exp_avg_sqs, const AdamStep& s) {
  if (params.empty()) return;
  DeviceGuard guard(index_);
  const cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_FLOAT(params[0].dtype(), "adam_step", [&]<typename T>() {
    const AdamMath<T> math = AdamMath<T>::make(s);
    if (max_exp_avg_sqs.empty()) {
      multi_tensor_apply<T>({&params, &grads, &exp_avgs, &exp_avg_sqs}, AdamUpdate<T, false>{math}, stream);
    } else {
      multi_tensor_apply<T>({&params, &grads, &exp_avgs, &exp_avg_sqs, &max_exp_avg_sqs}, AdamUpdate<T, true>{math},
                            stream);
    }
  });
}

}  // namespace ember::cuda
