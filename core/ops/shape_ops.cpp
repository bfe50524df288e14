// Views and joins. A view shares storage and only changes (shape, strides, offset); its backward
// maps the gradient back to the input's layout. Broadcast (expand) needs no formula of its own:
// the engine sums every gradient back to its input's shape.
#include <algorithm>
#include <numeric>
#include <optional>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/checked_math.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

namespace {

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  return make_tensor(base.storage(), shape, strides, offset, base.dtype());
}

// Resolves a single -1 and checks the element count: "view: shape [3, 5] is invalid for 16 elements".
Shape infer_shape(const char* op, const Shape& requested, int64_t numel) {
  Shape s = requested;
  int infer = -1;
  int64_t known = 1;  // product of the given dims other than 0 (checked: it comes from the caller)
  bool has_zero = false;
  for (int i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      EMBER_CHECK(infer < 0, op, ": only one dimension can be inferred (-1) in ", requested);
      infer = i;
    } else {
      EMBER_CHECK(s[i] >= 0, op, ": invalid dimension ", s[i], " in ", requested);
      if (s[i] == 0) has_zero = true;
      else known = checked_mul(known, s[i], op);
    }
  }
  if (infer >= 0) {
    EMBER_CHECK(!has_zero && numel % known == 0, op, ": shape ", requested, " is invalid for input of size ", numel);
    s[infer] = numel / known;
  }
  // Checked, so a request whose product wraps around to the input's size is not mistaken for a match.
  EMBER_CHECK(checked_numel(s, op) == numel, op, ": shape ", requested, " is invalid for input of size ", numel);
  return s;
}

// Strides that let `shape` view memory laid out as (old_shape, old_strides), if any (PyTorch's rule).
std::optional<Shape> view_strides(const Shape& old_shape, const Shape& old_strides, const Shape& shape) {
  Shape out(shape.size(), 1);
  if (old_shape.numel() == 0 || old_shape.size() == 0) return contiguous_strides(shape);
  int view_d = shape.size() - 1;
  int64_t chunk_base = old_strides[old_shape.size() - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = old_shape.size() - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

void record_reshape_back(const char* name, Tensor& out, const Tensor& in) {
  if (!grad_needed(in)) return;
  Shape orig = in.shape();
  record(name, out, {in}, [orig](const Tensor& g, NeedsGrad) -> Grads { return {g.reshape(orig)}; });
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  EMBER_OP_SCOPE("view", *this);
  Shape shape = infer_shape("view", requested, numel());
  auto st = view_strides(this->shape(), strides(), shape);
  EMBER_CHECK(st.has_value(), "view: shape ", requested, " is not compatible with the input's size ", this->shape(),
              " and strides ", strides(), "; use reshape() (which copies) or call contiguous() first");
  Tensor out = make_view(*this, shape, *st, offset());
  record_reshape_back("view", out, *this);
  return out;
}

Tensor Tensor::reshape(const Shape& requested) const {
  EMBER_OP_SCOPE("reshape", *this);
  Shape shape = infer_shape("reshape", requested, numel());
  if (auto st = view_strides(this->shape(), strides(), shape)) {
    Tensor out = make_view(*this, shape, *st, offset());
    record_reshape_back("reshape", out, *this);
    return out;
  }
  return contiguous().view(shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  EMBER_OP_SCOPE("flatten", *this);
  if (dim() == 0) return reshape(Shape{1});
  int s = wrap_dim("flatten", start_dim, dim()), e = wrap_dim("flatten", end_dim, dim());
  EMBER_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape shape;
  for (int i = 0; i < s; ++i) shape.push_back(this->shape()[i]);
  int64_t p = 1;
  for (int i = s; i <= e; ++i) p *= this->shape()[i];
  shape.push_back(p);
  for (int i = e + 1; i < dim(); ++i) shape.push_back(this->shape()[i]);
  return reshape(shape);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  EMBER_OP_SCOPE("transpose", *this);
  int a = wrap_dim("transpose", d0, dim()), b = wrap_dim("transpose", d1, dim());
  if (dim() == 0) return *this;
  Shape shape = this->shape(), st = strides();
  std::swap(shape[a], shape[b]);
  std::swap(st[a], st[b]);
  Tensor out = make_view(*this, shape, st, offset());
  if (grad_needed(*this))
    record("transpose", out, {*this}, [a, b](const Tensor& g, NeedsGrad) -> Grads { return {g.transpose(a, b)}; });
  return out;
}

Tensor Tensor::t() const {
  EMBER_OP_SCOPE("t", *this);
  EMBER_CHECK(dim() <= 2, "t: expects a tensor with <= 2 dims, got ", shape());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::permute(const Shape& dims) const {
  EMBER_OP_SCOPE("permute", *this);
  EMBER_CHECK(dims.size() == dim(), "permute: got ", dims.size(), " dims ", dims, " for a tensor of shape ", shape());
  Shape shape, st, inverse(dim(), 0);
  std::vector<bool> seen(dim(), false);
  for (int i = 0; i < dims.size(); ++i) {
    int d = wrap_dim("permute", dims[i], dim());
    EMBER_CHECK(!seen[d], "permute: dim ", d, " repeats in ", dims);
    seen[d] = true;
    shape.push_back(this->shape()[d]);
    st.push_back(strides()[d]);
    inverse[d] = i;
  }
  Tensor out = make_view(*this, shape, st, offset());
  if (grad_needed(*this))
    record("permute", out, {*this}, [inverse](const Tensor& g, NeedsGrad) -> Grads { return {g.permute(inverse)}; });
  return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  EMBER_OP_SCOPE("slice", *this);
  int dd = wrap_dim("slice", d, dim());
  EMBER_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t n = shape()[dd];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = this->shape(), st = strides();
  shape[dd] = (end - start + step - 1) / step;
  st[dd] *= step;
  Tensor out = make_view(*this, shape, st, offset() + start * strides()[dd]);
  if (grad_needed(*this)) {
    Shape orig = this->shape();
    record("slice", out, {*this}, [orig, dd, start, end, step](const Tensor& g, NeedsGrad) -> Grads {
      return {slice_backward(g, orig, dd, start, end, step)};
    });
  }
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  EMBER_OP_SCOPE("narrow", *this);
  int dd = wrap_dim("narrow", d, dim());
  int64_t n = shape()[dd];
  if (start < 0) start += n;
  EMBER_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ", start + length,
              ") out of bounds for dim ", dd, " of size ", n, " (shape ", shape(), ")");
  return slice(dd, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  EMBER_OP_SCOPE("select", *this);
  int dd = wrap_dim("select", d, dim());
  int64_t n = shape()[dd];
  EMBER_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", dd, " of size ", n,
              " (shape ", shape(), ")");
  if (index < 0) index += n;
  Shape shape = this->shape(), st = strides();
  shape.erase(dd);
  st.erase(dd);
  Tensor out = make_view(*this, shape, st, offset() + index * strides()[dd]);
  if (grad_needed(*this)) {
    Shape orig = this->shape();
    record("select", out, {*this}, [orig, dd, index](const Tensor& g, NeedsGrad) -> Grads {
      return {select_backward(g, orig, dd, index)};
    });
  }
  return out;
}

Tensor Tensor::expand(const Shape& requested) const {
  EMBER_OP_SCOPE("expand", *this);
  EMBER_CHECK(requested.size() >= dim(), "expand: target ", requested, " has fewer dims than the tensor's shape ",
              shape());
  int lead = requested.size() - dim();
  Shape shape(requested.size(), 0), st(requested.size(), 0);
  for (int i = 0; i < requested.size(); ++i) {
    if (i < lead) {
      EMBER_CHECK(requested[i] >= 0, "expand: new leading dim ", i, " cannot be ", requested[i], " in ", requested);
      shape[i] = requested[i];
      st[i] = 0;
      continue;
    }
    int64_t have = this->shape()[i - lead];
    int64_t want = requested[i] == -1 ? have : requested[i];
    EMBER_CHECK(have == want || have == 1, "expand: cannot expand shape ", this->shape(), " to ", requested, " (dim ", i,
                ": ", have, " vs ", want, ")");
    shape[i] = want;
    st[i] = have == want ? strides()[i - lead] : 0;
  }
  if (shape == this->shape()) return *this;
  checked_numel(shape, "expand");  // a view may not have more elements than an int64 can count
  Tensor out = make_view(*this, shape, st, offset());
  // The engine sums the gradient back to this tensor's shape: identity here.
  if (grad_needed(*this)) record("expand", out, {*this}, [](const Tensor& g, NeedsGrad) -> Grads { return {g}; });
  return out;
}

Tensor Tensor::squeeze() const {
  EMBER_OP_SCOPE("squeeze", *this);
  Shape shape;
  for (int64_t d : this->shape())
    if (d != 1) shape.push_back(d);
  return shape == this->shape() ? *this : reshape(shape);
}

Tensor Tensor::squeeze(int64_t d) const {
  EMBER_OP_SCOPE("squeeze", *this);
  if (dim() == 0) return *this;
  int dd = wrap_dim("squeeze", d, dim());
  if (shape()[dd] != 1) return *this;
  Shape shape = this->shape();
  shape.erase(dd);
  return reshape(shape);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  EMBER_OP_SCOPE("unsqueeze", *this);
  int dd = wrap_dim("unsqueeze", d, dim() + 1);
  Shape shape = this->shape();
  shape.insert(dd, 1);
  return reshape(shape);
}

// ---------------- the backward ops of slice and select ----------------
// Zeros of the input's shape with grad written into the viewed region. Linear in grad; the
// gradient is the view again (gg sliced / selected the same way).

Tensor slice_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, int64_t start, int64_t end,
                      int64_t step) {
  EMBER_CHECK(grad.defined(), "slice_backward: undefined gradient");
  Tensor out = zeros(input_shape, TensorOptions(grad.dtype()).device(grad.device()));
  {
    NoGradGuard no_grad;  // the copy into the zeros is this op's forward, not part of any graph
    out.slice(dim, start, end, step).copy_(grad);
  }
  if (grad_needed(grad))
    record("slice_backward", out, {grad}, [dim, start, end, step](const Tensor& gg, NeedsGrad) -> Grads {
      return {gg.slice(dim, start, end, step)};
    });
  return out;
}

Tensor select_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, int64_t index) {
  EMBER_CHECK(grad.defined(), "select_backward: undefined gradient");
  const int d = wrap_dim("select_backward", dim, input_shape.size());
  if (index < 0) index += input_shape[d];
  return slice_backward(grad.unsqueeze(d), input_shape, d, index, index + 1, 1);
}

// ---------------- joins ----------------

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  EMBER_OP_SCOPE("cat", tensors);
  EMBER_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& first = tensors[0];
  int d = wrap_dim("cat", dim, first.dim());
  Shape shape = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    EMBER_CHECK(t.dim() == first.dim(), "cat: tensor ", i, " has shape ", t.shape(), ", expected ", first.dim(),
                " dims like tensor 0 ", first.shape());
    EMBER_CHECK(t.dtype() == first.dtype(), "cat: tensor ", i, " has dtype ", dtype_name(t.dtype()), ", tensor 0 has ",
                dtype_name(first.dtype()));
    EMBER_CHECK(t.device() == first.device(), "cat: tensor ", i, " is on ", t.device(), ", tensor 0 on ", first.device());
    for (int k = 0; k < t.dim(); ++k)
      EMBER_CHECK(k == d || t.shape()[k] == shape[k], "cat: tensor ", i, " has shape ", t.shape(),
                  ", which differs from tensor 0 ", first.shape(), " outside dim ", d);
    total += t.shape()[d];
  }
  shape[d] = total;
  Tensor out = empty(shape, TensorOptions(first.dtype()).device(first.device()));
  int64_t at = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& t : tensors) {
    backend_of(out).copy(t, out.detach().narrow(d, at, t.shape()[d]));
    sizes.push_back(t.shape()[d]);
    at += t.shape()[d];
  }
  bool any = false;
  for (const Tensor& t : tensors) any = any || grad_needed(t);
  if (any) {
    auto fn = [sizes, d](const Tensor& g, NeedsGrad n) -> Grads {
      Grads gs;
      int64_t off = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        gs.push_back(n[i] ? g.narrow(d, off, sizes[i]) : Tensor());
        off += sizes[i];
      }
      return gs;
    };
    record_many("cat", out, tensors, fn);
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  EMBER_OP_SCOPE("stack", tensors);
  EMBER_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  int d = wrap_dim("stack", dim, tensors[0].dim() + 1);
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EMBER_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: tensor ", i, " has shape ", tensors[i].shape(),
                ", tensor 0 has ", tensors[0].shape(), "; all must be equal");
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

}  // namespace ember
