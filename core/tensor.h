// Tensor: a cheap, copyable handle to a TensorImpl (shape, strides, offset, dtype over shared
// Storage, plus autograd state). Copying a Tensor copies the handle, never the data — like libtorch.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/checked_math.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace ember {

class Node;
struct TensorImpl;
class Tensor;

// Called with a gradient once it is final: for a leaf, after it has been accumulated into .grad();
// for any other tensor, with the total gradient flowing into it, before its own backward runs.
using Hook = std::function<void(const Tensor& grad)>;

// What a factory makes: dtype, device, requires_grad, with fluent setters (`TensorOptions().dtype(kFloat64)`).
struct TensorOptions {
  DType dtype_ = kFloat32;
  Device device_ = kCPU;
  bool requires_grad_ = false;

  TensorOptions() = default;
  TensorOptions(DType t) : dtype_(t) {}          // NOLINT: implicit so `zeros({2}, kFloat64)` reads well
  TensorOptions(Device d) : device_(d) {}        // NOLINT
  TensorOptions dtype(DType t) const { auto o = *this; o.dtype_ = t; return o; }
  TensorOptions device(Device d) const { auto o = *this; o.device_ = d; return o; }
  TensorOptions requires_grad(bool r = true) const { auto o = *this; o.requires_grad_ = r; return o; }
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (like an empty optional)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- metadata ----
  const Shape& shape() const;
  const Shape& sizes() const { return shape(); }
  int64_t size(int64_t dim) const;
  const Shape& strides() const;
  int64_t stride(int64_t dim) const;
  int64_t offset() const;  // in elements, into storage
  int dim() const { return shape().size(); }
  int64_t numel() const { return shape().numel(); }
  DType dtype() const;
  Device device() const;
  size_t element_size() const { return dtype_size(dtype()); }
  // Checked: an expanded view can count more elements than fit in memory, let alone in bytes.
  size_t nbytes() const {
    return static_cast<size_t>(checked_mul(numel(), static_cast<int64_t>(element_size()), "nbytes"));
  }
  bool is_contiguous() const;
  // Whether the elements lie densely in `format`'s order (a 4-D tensor with one channel, or one
  // pixel, can be both contiguous and channels-last).
  bool is_contiguous(MemoryFormat format) const;
  const std::shared_ptr<Storage>& storage() const;
  void* data_ptr() const;  // address of element 0 (storage base + offset)
  template <typename T>
  T* data() const {
    check_dtype(dtype_of<T>::value, "data<T>()");
    return static_cast<T*>(data_ptr());
  }

  // ---- conversion and copies ----
  Tensor to(DType t) const;          // same tensor if already that dtype
  Tensor to(Device d) const;         // same tensor if already there
  Tensor contiguous() const;         // same tensor if already contiguous
  Tensor contiguous(MemoryFormat format) const;  // same tensor if already laid out so (differentiable)
  Tensor clone() const;              // always a fresh contiguous copy (differentiable)
  Tensor clone(MemoryFormat format) const;  // always a fresh copy laid out as `format` (differentiable)
  // Fresh tensors of this tensor's dtype and device (libtorch's new_zeros / new_ones); not in any graph.
  Tensor new_zeros(const Shape& shape) const;
  Tensor new_ones(const Shape& shape) const;
  Tensor detach() const;             // shares storage, cut from the graph
  double item() const;               // value of a one-element tensor (synchronises on devices)
  template <typename T>
  T item() const { return static_cast<T>(item()); }
  template <typename T>
  std::vector<T> to_vector() const;  // copies to host; checks dtype

  // ---- views (share storage; differentiable) ----
  Tensor view(const Shape& shape) const;     // needs compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;  // view when possible, else copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // 2-D transpose
  Tensor permute(const Shape& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes `dim`
  Tensor expand(const Shape& shape) const;          // -1 keeps a dim; new leading dims allowed
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }
  // The reverse of expand: sums the dims that broadcasting to this shape would have expanded, so
  // the result has `shape` (differentiable; the engine uses it on broadcast gradients).
  Tensor sum_to_size(const Shape& shape) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;

  // ---- math (see core/ops.h for the free-function forms and docs) ----
  Tensor add(const Tensor& o) const;
  Tensor sub(const Tensor& o) const;
  Tensor mul(const Tensor& o) const;
  Tensor div(const Tensor& o) const;
  Tensor neg() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor pow(double e) const;
  Tensor pow(const Tensor& e) const;
  Tensor sqrt() const;
  Tensor sin() const;
  Tensor cos() const;
  Tensor abs() const;
  Tensor tanh() const;
  Tensor sigmoid() const;
  Tensor relu() const;
  Tensor gelu() const;
  Tensor clamp(double lo, double hi) const;
  Tensor matmul(const Tensor& o) const;
  Tensor sum() const;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor min() const;
  Tensor min(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor var(const std::vector<int64_t>& dims, bool unbiased = true, bool keepdim = false) const;
  Tensor std(const std::vector<int64_t>& dims, bool unbiased = true, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor argmin(int64_t dim, bool keepdim = false) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor logsumexp(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor index_select(int64_t dim, const Tensor& index) const;
  Tensor gather(int64_t dim, const Tensor& index) const;
  Tensor masked_fill(const Tensor& mask, double value) const;
  Tensor eq(const Tensor& o) const;

  // ---- in-place (bump the storage version; refused on tensors that require grad while grad mode is on) ----
  Tensor& add_(const Tensor& o, double alpha = 1.0);
  Tensor& add_(double s);
  Tensor& sub_(const Tensor& o);
  Tensor& mul_(const Tensor& o);
  Tensor& mul_(double s);
  Tensor& div_(const Tensor& o);
  Tensor& div_(double s);
  Tensor& fill_(double v);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // broadcasts src, casts dtype
  Tensor& clamp_(double lo, double hi);

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool r);
  Tensor& requires_grad_(bool r = true) { return set_requires_grad(r); }
  bool is_leaf() const;  // no grad_fn
  const std::shared_ptr<Node>& grad_fn() const;
  Tensor grad() const;            // undefined until a backward reaches this leaf
  Tensor& mutable_grad() const;   // the .grad slot itself (optimizers, DDP)
  void set_grad(const Tensor& g) const;
  void zero_grad() const;         // sets .grad to undefined (PyTorch's set_to_none)
  // Accumulates the gradient of this tensor into every leaf's .grad (core/autograd.cpp). gradient:
  // the upstream gradient (ones for a one-element tensor when left undefined). retain_graph keeps
  // the graph for another backward (default: create_graph). create_graph records the backward
  // itself, so the accumulated .grad can be differentiated again.
  void backward(const Tensor& gradient = Tensor(), std::optional<bool> retain_graph = std::nullopt,
                bool create_graph = false) const;
  void register_hook(Hook hook) const;

  std::string str() const;  // values, shape and dtype (like PyTorch's repr)
  std::string shape_str() const { return shape().str(); }
  void check_dtype(DType t, const char* op) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = kFloat32;
  // autograd
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  std::vector<Hook> leaf_hooks;
};

// The metadata accessors every op and kernel calls, several times per call, are inline: out of
// line they were a third of ember's own time in a sub-microsecond matmul (perf, bench/RESULTS.md).
// An undefined tensor is still an error that names the accessor, thrown out of line.
namespace detail {
[[noreturn]] void undefined_tensor(const char* accessor);
[[noreturn]] void wrong_dtype(const Tensor& t, DType want, const char* op);
inline const TensorImpl& checked_impl(const Tensor& t, const char* accessor) {
  if (!t.defined()) [[unlikely]] undefined_tensor(accessor);
  return *t.impl();
}
}  // namespace detail

inline const Shape& Tensor::shape() const { return detail::checked_impl(*this, "shape").shape; }
inline const Shape& Tensor::strides() const { return detail::checked_impl(*this, "strides").strides; }
inline int64_t Tensor::offset() const { return detail::checked_impl(*this, "offset").offset; }
inline DType Tensor::dtype() const { return detail::checked_impl(*this, "dtype").dtype; }
inline void* Tensor::data_ptr() const {
  const TensorImpl& i = detail::checked_impl(*this, "data_ptr");
  return static_cast<char*>(i.storage->data()) + i.offset * static_cast<int64_t>(dtype_size(i.dtype));
}
inline void Tensor::check_dtype(DType t, const char* op) const {
  if (dtype() != t) [[unlikely]] detail::wrong_dtype(*this, t, op);
}

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Makes a tensor header over `storage` (no data copied).
Tensor make_tensor(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides, int64_t offset,
                   DType dtype);

// The layout an op should give a result computed from `t`: ChannelsLast when t is a 4-D
// channels-last tensor that is not also plainly contiguous, else Contiguous (libtorch's
// suggest_memory_format). Ops that keep channels-last data channels-last use it.
MemoryFormat suggest_memory_format(const Tensor& t);
MemoryFormat suggest_memory_format(const Shape& shape, const Shape& strides);

// Operators forward to the differentiable ops.
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);
Tensor operator-(const Tensor& a);

}  // namespace ember
