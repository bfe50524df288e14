// CUDA fused optimizer steps (Backend::sgd_step / adam_step), multi-tensor style (PyTorch's
// multi_tensor_apply): a model has many parameters, most of them small (biases, norms), and one
// kernel per parameter per operation would spend more time launching than computing. Instead the
// host packs up to K tensors' pointers and sizes into a struct passed to the kernel by value (no
// device memory, no copy), cuts each tensor into chunks of kChunk elements, and launches one
// kernel over all their chunks: block b finds its (tensor, chunk) from the chunk counts in the
// struct. A step over any number of parameters costs ceil(count / K) launches.
//
// The per-element arithmetic is the CPU's (core/cpu/cpu_optim.cpp), in the same order and in the
// parameters' dtype; keep the two in step. nvcc contracts a * b + c into one FMA where the CPU
// build may not (or elsewhere), so results agree to the last bit or so, not bit for bit.
#include <algorithm>
#include <array>
#include <cmath>

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
  T lr, mom, wd, keep;
  bool nesterov, first;

  __device__ void operator()(T* const (&x)[kDepth], int64_t i) const {
    T* p = x[0];
    const T* g = x[1];
    T d = g[i];
    if (wd != 0) d = d + wd * p[i];
    if constexpr (kMomentum) {
      T* buf = x[2];
      T b = first ? d : buf[i] * mom + keep * d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    p[i] = p[i] - lr * d;
  }
};

}  // namespace

void CudaBackend::sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                           const std::vector<Tensor>& momentum_buffers, const SGDStep& s) {
  if (params.empty()) return;
  DeviceGuard guard(index_);
  const cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_FLOAT(params[0].dtype(), "sgd_step", [&]<typename T>() {
    const T lr = s.lr, mom = s.momentum, wd = s.weight_decay, keep = 1 - s.dampening;
    if (momentum_buffers.empty()) {
      multi_tensor_apply<T>({&params, &grads}, SGDUpdate<T, false>{lr, mom, wd, keep, s.nesterov, s.first}, stream);
    } else {
      multi_tensor_apply<T>({&params, &grads, &momentum_buffers},
                            SGDUpdate<T, true>{lr, mom, wd, keep, s.nesterov, s.first}, stream);
    }
  });
}

namespace {

// ---------------- Adam / AdamW ----------------
// x = {p, g, m, v} or, with amsgrad, {p, g, m, v, vmax}.

template <typename T, bool kAmsgrad>
struct AdamUpdate {
  static constexpr int kDepth = kAmsgrad ? 5 : 4;
  T b1, b2, one_b1, one_b2, eps, wd, decay, bc2, neg_step;
  bool l2, decoupled;

  __device__ void operator()(T* const (&x)[kDepth], int64_t i) const {
    T *p = x[0], *m = x[2], *v = x[3];
    const T* g = x[1];
    T grad = g[i];
    T param = p[i];
    if (l2) grad = grad + wd * param;
    if (decoupled) param = param * decay;
    T mi = m[i] * b1 + one_b1 * grad;
    T vi = v[i] * b2 + one_b2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    if constexpr (kAmsgrad) {
      T* vmax = x[4];
      vi = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vi;
    }
    const T denom = std::sqrt(vi) / bc2 + eps;
    p[i] = param + neg_step * (mi / denom);
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
    // The CPU's constants, converted to T the same way.
    const T b1 = s.beta1, b2 = s.beta2, one_b1 = 1 - s.beta1, one_b2 = 1 - s.beta2, eps = s.eps;
    const T wd = s.weight_decay, decay = 1 - s.lr * s.weight_decay, bc2 = s.bias_corr2_sqrt, neg_step = -s.step_size;
    const bool l2 = !s.decoupled && s.weight_decay != 0, decoupled = s.decoupled && s.weight_decay != 0;
    if (max_exp_avg_sqs.empty()) {
      multi_tensor_apply<T>({&params, &grads, &exp_avgs, &exp_avg_sqs},
                            AdamUpdate<T, false>{b1, b2, one_b1, one_b2, eps, wd, decay, bc2, neg_step, l2, decoupled},
                            stream);
    } else {
      multi_tensor_apply<T>({&params, &grads, &exp_avgs, &exp_avg_sqs, &max_exp_avg_sqs},
                            AdamUpdate<T, true>{b1, b2, one_b1, one_b2, eps, wd, decay, bc2, neg_step, l2, decoupled},
                            stream);
    }
  });
}

}  // namespace ember::cuda
