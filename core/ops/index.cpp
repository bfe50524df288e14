// Indexing ops (index_select, gather, embedding, one_hot) and dropout: forward kernel call and
// backward formula side by side.
//
// The backward of a "read at indexed positions" op is "add at the same positions" into zeros of the
// input's shape: index_select/embedding -> index_add, gather -> scatter_add. Repeated indices read
// the same input element several times, so their gradients must accumulate — the kernels do that
// deterministically (see core/cpu/cpu_index.cpp).
#include <algorithm>
#include <limits>
#include <utility>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

namespace {

void check_input(const char* op, const Tensor& a) {
  EMBER_CHECK(a.defined(), op, ": undefined input tensor");
  EMBER_CHECK(a.dim() >= 1, op, ": expects an input with at least 1 dim, got a 0-d tensor");
}

void check_index_tensor(const char* op, const Tensor& index, const Tensor& a) {
  EMBER_CHECK(index.defined(), op, ": undefined index tensor");
  EMBER_CHECK(index.dtype() == kInt64, op, ": index must be an int64 tensor, got ", dtype_name(index.dtype()),
              " of shape ", index.shape());
  EMBER_CHECK(index.device() == a.device(), op, ": index is on ", index.device(), " but the input is on ", a.device());
}

// Smallest and largest value of an int64 tensor (host-side; the loop vectorises).
std::pair<int64_t, int64_t> host_min_max(const Tensor& index) {
  const Tensor c = index.contiguous();
  const int64_t* p = c.data<int64_t>();
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
  for (int64_t i = 0; i < c.numel(); ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  return {lo, hi};
}

// Every index must lie in [0, size): "index_select: index 12 is out of range for dim 0 of size 10".
// Negative indices are rejected rather than wrapped, as PyTorch does for these ops.
// Only the extremes are needed to decide, and they are also the values worth reporting.
void check_bounds(const char* op, const Tensor& index, int dim, int64_t size) {
  if (index.numel() == 0) return;
  if (!index.device().is_cpu()) {
    // Reading the index back here would synchronise the stream on every lookup, so the CUDA
    // kernels (cuda/cuda_index.cu) validate indices on the device instead, with a device-side
    // assert naming the op, as PyTorch does.
    return;
  }
  auto [lo, hi] = host_min_max(index);
  EMBER_CHECK(lo >= 0, op, ": index ", lo, " is negative (dim ", dim, " of size ", size,
              "); negative indices are not supported");
  EMBER_CHECK(hi < size, op, ": index ", hi, " is out of range for dim ", dim, " of size ", size);
}

}  // namespace

// ---------------- index_select ----------------

Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) {
  EMBER_OP_SCOPE("index_select", a, index);
  check_input("index_select", a);
  check_index_tensor("index_select", index, a);
  EMBER_CHECK(index.dim() == 1, "index_select: index must be 1-D, got shape ", index.shape());
  const int d = wrap_dim("index_select", dim, a.dim());
  check_bounds("index_select", index, d, a.size(d));

  Shape shape = a.shape();
  shape[d] = index.numel();
  Tensor out = empty(shape, TensorOptions(a.dtype()).device(a.device()));
  backend_of(a).index_select(a, d, index, out);

  if (grad_needed(a)) {
    Shape in_shape = a.shape();
    // d in / d a: every selected slice adds its gradient back where it was read from.
    record("index_select", out, {a}, [si = SavedTensor(index), d, in_shape](const Tensor& g, NeedsGrad) -> Grads {
      return {index_select_backward(g, in_shape, d, si.get())};
    });
  }
  return out;
}

// ---------------- gather ----------------

Tensor gather(const Tensor& a, int64_t dim, const Tensor& index) {
  EMBER_OP_SCOPE("gather", a, index);
  check_input("gather", a);
  check_index_tensor("gather", index, a);
  EMBER_CHECK(index.dim() == a.dim(), "gather: index must have as many dims as the input: index ", index.shape(),
              " vs input ", a.shape());
  const int d = wrap_dim("gather", dim, a.dim());
  for (int e = 0; e < a.dim(); ++e)
    EMBER_CHECK(e == d || index.size(e) <= a.size(e), "gather: index ", index.shape(), " is larger than input ",
                a.shape(), " in dim ", e, " (only dim ", d, " may be larger)");
  check_bounds("gather", index, d, a.size(d));

  Tensor out = empty(index.shape(), TensorOptions(a.dtype()).device(a.device()));
  backend_of(a).gather(a, d, index, out);

  if (grad_needed(a)) {
    Shape in_shape = a.shape();
    // Each output element came from one input element: send its gradient back there (summing repeats).
    record("gather", out, {a}, [si = SavedTensor(index), d, in_shape](const Tensor& g, NeedsGrad) -> Grads {
      return {gather_backward(g, in_shape, d, si.get())};
    });
  }
  return out;
}

// ---------------- the backward ops of index_select and gather ----------------
// Zeros of the input's shape with each gradient slice added back where it was read from (repeated
// indices sum). Both are linear in grad, and their gradient is the forward op again: reading gg
// back at the same places.

Tensor index_select_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, const Tensor& index) {
  check_input("index_select_backward", grad);
  Tensor out = zeros(input_shape, TensorOptions(grad.dtype()).device(grad.device()));
  backend_of(grad).index_add(out, static_cast<int>(dim), index, grad.detach());
  if (grad_needed(grad))
    record("index_select_backward", out, {grad}, [si = SavedTensor(index), dim](const Tensor& gg, NeedsGrad) -> Grads {
      return {index_select(gg, dim, si.get())};
    });
  return out;
}

Tensor gather_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, const Tensor& index) {
  check_input("gather_backward", grad);
  Tensor out = zeros(input_shape, TensorOptions(grad.dtype()).device(grad.device()));
  backend_of(grad).scatter_add(out, static_cast<int>(dim), index, grad.detach());
  if (grad_needed(grad))
    record("gather_backward", out, {grad}, [si = SavedTensor(index), dim](const Tensor& gg, NeedsGrad) -> Grads {
      return {gather(gg, dim, si.get())};
    });
  return out;
}

// ---------------- embedding ----------------

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  EMBER_OP_SCOPE("embedding", weight, indices);
  EMBER_CHECK(weight.defined(), "embedding: undefined weight tensor");
  EMBER_CHECK(weight.dim() == 2, "embedding: weight must be 2-D [num_embeddings, embedding_dim], got ", weight.shape());
  check_index_tensor("embedding", indices, weight);
  check_bounds("embedding", indices, 0, weight.size(0));

  // A lookup is index_select on rows with the indices flattened; the result takes indices' shape
  // plus the embedding dim. Flattening copies only a non-contiguous index tensor (small).
  const int64_t n = indices.numel(), dim = weight.size(1);
  const Tensor flat = indices.reshape({n});
  Shape shape = indices.shape();
  shape.push_back(dim);
  Tensor out = empty(shape, TensorOptions(weight.dtype()).device(weight.device()));
  backend_of(weight).index_select(weight, 0, flat, out.view({n, dim}));

  if (grad_needed(weight)) {
    Shape w_shape = weight.shape();
    // Rows that were looked up several times (repeated tokens) accumulate their gradients.
    record("embedding", out, {weight}, [sf = SavedTensor(flat), w_shape, n, dim](const Tensor& g, NeedsGrad) -> Grads {
      return {index_select_backward(g.reshape({n, dim}), w_shape, 0, sf.get())};
    });
  }
  return out;
}

// ---------------- one_hot ----------------

Tensor one_hot(const Tensor& indices, int64_t num_classes) {
  EMBER_OP_SCOPE("one_hot", indices);
  EMBER_CHECK(indices.defined(), "one_hot: undefined indices tensor");
  EMBER_CHECK(indices.dtype() == kInt64, "one_hot: indices must be an int64 tensor, got ", dtype_name(indices.dtype()),
              " of shape ", indices.shape());
  EMBER_CHECK(num_classes == -1 || num_classes > 0, "one_hot: num_classes must be positive or -1 (infer), got ",
              num_classes);
  const int64_t n = indices.numel();
  // The value range decides both the inferred class count and the bounds check. CUDA tensors are
  // only read back when the count must be inferred (PyTorch syncs there too); otherwise the CUDA
  // scatter_add kernel validates the indices on the device, as in check_bounds.
  std::pair<int64_t, int64_t> range{0, 0};
  const bool read_values = n > 0 && (indices.device().is_cpu() || num_classes == -1);
  if (read_values) range = host_min_max(indices.to(kCPU));
  if (num_classes == -1) {
    EMBER_CHECK(n > 0, "one_hot: cannot infer num_classes from an empty tensor; pass num_classes");
    num_classes = std::max<int64_t>(range.second + 1, 1);
  }
  if (read_values) {
    EMBER_CHECK(range.first >= 0, "one_hot: class index ", range.first,
                " is negative; negative indices are not supported");
    EMBER_CHECK(range.second < num_classes, "one_hot: class index ", range.second, " is out of range for num_classes ",
                num_classes);
  }

  // out[i, indices[i]] = 1, written by scatter_add of ones into zeros (each row gets exactly one add).
  Shape shape = indices.shape();
  shape.push_back(num_classes);
  TensorOptions opts = TensorOptions(kInt64).device(indices.device());
  Tensor out = zeros(shape, opts);
  if (n > 0)
    backend_of(out).scatter_add(out.view({n, num_classes}), 1, indices.reshape({n, 1}),
                                ones({1, 1}, opts).expand({n, 1}));
  return out;
}

// ---------------- dropout ----------------

Tensor dropout(const Tensor& a, double p, bool train, Generator* gen) {
  EMBER_OP_SCOPE("dropout", a);
  EMBER_CHECK(a.defined(), "dropout: undefined input tensor");
  EMBER_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability p must be in [0, 1], got ", p);  // also rejects NaN
  EMBER_CHECK(is_floating(a.dtype()), "dropout: expected a floating-point tensor, got ", dtype_name(a.dtype()),
              " of shape ", a.shape());
  if (!train || p == 0.0) return a;

  if (p == 1.0) {  // everything dropped (and no 1/(1-p) to divide by): zeros with a zero gradient
    Tensor out = zeros_like(a);
    if (grad_needed(a))
      record("dropout", out, {a}, [](const Tensor& g, NeedsGrad) -> Grads { return {zeros_like(g)}; });
    return out;
  }

  // mask = Bernoulli(1-p) / (1-p): kept elements are scaled so the expected value is unchanged.
  // The scale is folded into the mask once, so forward and backward are each a single multiply.
  Generator& g = gen ? *gen : default_generator();
  Backend& be = backend_of(a);
  Tensor mask = empty(a.shape(), TensorOptions(a.dtype()).device(a.device()));
  be.random(RandomOp::Bernoulli, mask, g.reserve(static_cast<uint64_t>(mask.numel())), 1.0 - p, 0.0);
  be.unary(UnaryOp::MulScalar, mask, mask, {1.0 / (1.0 - p), 0.0});
  Tensor out = empty(a.shape(), TensorOptions(a.dtype()).device(a.device()));
  be.binary(BinaryOp::Mul, a, mask, out);

  if (grad_needed(a))
    record("dropout", out, {a}, [sm = SavedTensor(mask)](const Tensor& grad, NeedsGrad) -> Grads {
      return {grad * sm.get()};  // d out / d a = mask / (1-p)
    });
  return out;
}

}  // namespace ember
