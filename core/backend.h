// The one dispatch point per device, for the device primitives every op is built from: memory,
// elementwise, reductions, softmax, matmul and indexing. Ops (core/ops/*.cpp) validate inputs,
// allocate outputs and call backend(device).<kernel>(...); the CPU backend implements these in
// core/cpu/, the CUDA backend in cuda/. Layer and optimizer kernels live in per-family tables
// (core/kernels/registry.h). When ember is built without CUDA, backend(cuda) is a stub that
// throws a clear "built without CUDA" error — no #ifdef anywhere in core.
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

  // The layer and optimizer kernels (convolution, pooling, normalisation, losses, fused optimizer
  // steps) are not here: each family is its own table beside its ops (core/kernels/), so that a
  // new layer adds a family without editing this interface.
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
