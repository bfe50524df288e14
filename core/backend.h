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

#include "core/allocator.h"
#include "core/elementwise.h"
#include "core/generator.h"
#include "core/tensor.h"

namespace ember {

enum class ReduceOp : uint8_t { Sum, Mean, Max, Min, ArgMax, ArgMin };
enum class RandomOp : uint8_t { Uniform, Normal, RandInt, Bernoulli };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Allocator& allocator() = 0;

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
};

Backend& backend(Device d);
inline Backend& backend_of(const Tensor& t) { return backend(t.device()); }

// Registration hook used by the CUDA backend (cuda/) at static-initialisation time.
void register_cuda_backend(Backend* (*get)(int index), int (*device_count)());
// Number of usable CUDA devices: 0 when built without CUDA or when no driver/GPU is present.
int cuda_device_count();
bool cuda_is_available();

// Intra-op threads for CPU kernels (default: all cores).
void set_num_threads(int n);
int get_num_threads();

}  // namespace ember
