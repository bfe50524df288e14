// Tensor handle: metadata accessors, conversions, printing, autograd accessors, in-place ops and
// the method/operator forms of the ops in core/ops.h.
#include "core/tensor.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/memory_overlap.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

namespace detail {
void undefined_tensor(const char* accessor) { EMBER_FAIL(accessor, ": called on an undefined tensor"); }
void wrong_dtype(const Tensor& t, DType want, const char* op) {
  EMBER_FAIL(op, ": expected dtype ", dtype_name(want), ", got ", dtype_name(t.dtype()));
}
}  // namespace detail

namespace {
const TensorImpl& get(const Tensor& t, const char* what) { return detail::checked_impl(t, what); }
}  // namespace

Tensor make_tensor(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides, int64_t offset,
                   DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim("size", d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim("stride", d, dim())]; }
Device Tensor::device() const { return get(*this, "device").storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { return get(*this, "storage").storage; }

bool Tensor::is_contiguous() const { return is_contiguous(MemoryFormat::Contiguous); }

bool Tensor::is_contiguous(MemoryFormat format) const {
  const auto& i = get(*this, "is_contiguous");
  return is_dense_in(i.shape, i.strides, format);
}

MemoryFormat suggest_memory_format(const Shape& shape, const Shape& strides) {
  return !is_dense_in(shape, strides, MemoryFormat::Contiguous) &&
                 is_dense_in(shape, strides, MemoryFormat::ChannelsLast)
             ? MemoryFormat::ChannelsLast
             : MemoryFormat::Contiguous;
}

MemoryFormat suggest_memory_format(const Tensor& t) { return suggest_memory_format(t.shape(), t.strides()); }

// ---------------- conversions ----------------

Tensor Tensor::to(DType t) const {
  if (dtype() == t) return *this;
  EMBER_OP_SCOPE("to", *this);
  Tensor out = empty(shape(), TensorOptions(t).device(device()));
  backend_of(*this).copy(*this, out);
  if (is_floating(t) && grad_needed(*this)) {
    DType from = dtype();
    record("to(dtype)", out, {*this}, [from](const Tensor& g, NeedsGrad) -> Grads { return {g.to(from)}; });
  }
  return out;
}

Tensor Tensor::to(Device d) const {
  if (device() == d) return *this;
  EMBER_OP_SCOPE("to", *this);
  Tensor src = contiguous();
  Tensor out = empty(shape(), TensorOptions(dtype()).device(d));
  if (d.is_cpu()) {
    backend(src.device()).copy_to_host(src, out.data_ptr());
  } else {
    EMBER_CHECK(src.device().is_cpu(), "to(", d, "): copies between two GPUs go through the host: call .to(kCPU) first");
    backend(d).copy_from_host(src.data_ptr(), out);
  }
  if (grad_needed(*this)) {
    Device from = device();
    record("to(device)", out, {*this}, [from](const Tensor& g, NeedsGrad) -> Grads { return {g.to(from)}; });
  }
  return out;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::contiguous(MemoryFormat format) const {
  if (is_contiguous(format)) return *this;
  return clone(format);
}

Tensor Tensor::clone() const { return clone(MemoryFormat::Contiguous); }

Tensor Tensor::clone(MemoryFormat format) const {
  EMBER_OP_SCOPE("clone", *this);
  Tensor out = empty(shape(), TensorOptions(dtype()).device(device()), format);
  backend_of(*this).copy(*this, out);
  if (grad_needed(*this)) record("clone", out, {*this}, [](const Tensor& g, NeedsGrad) -> Grads { return {g}; });
  return out;
}

Tensor Tensor::new_zeros(const Shape& shape) const { return zeros(shape, TensorOptions(dtype()).device(device())); }
Tensor Tensor::new_ones(const Shape& shape) const { return ones(shape, TensorOptions(dtype()).device(device())); }
Tensor Tensor::sum_to_size(const Shape& shape) const { return sum_to(*this, shape); }

Tensor Tensor::detach() const {
  const auto& i = get(*this, "detach");
  return make_tensor(i.storage, i.shape, i.strides, i.offset, i.dtype);
}

double Tensor::item() const {
  EMBER_CHECK(numel() == 1, "item: expected a tensor with one element, got shape ", shape());
  Tensor host = to(kCPU).detach();
  return EMBER_DISPATCH_ALL_AND_HALF(dtype(), "item", [&]<typename T>() { return static_cast<double>(*host.data<T>()); });
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  check_dtype(dtype_of<T>::value, "to_vector");
  Tensor host = to(kCPU).contiguous().detach();
  const T* p = host.data<T>();
  return std::vector<T>(p, p + numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bfloat16> Tensor::to_vector<bfloat16>() const;
template std::vector<float16> Tensor::to_vector<float16>() const;

// ---------------- printing ----------------

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  Tensor h = to(kCPU).contiguous().detach().to(kFloat64);
  const double* p = h.data<double>();
  const int64_t n = numel();
  constexpr int64_t kEdge = 3;  // long dims print their first and last 3 entries
  std::function<void(int, int64_t)> rec = [&](int d, int64_t base) {
    if (d == dim()) {
      if (is_floating(dtype())) os << std::setprecision(6) << p[base];
      else os << static_cast<int64_t>(p[base]);
      return;
    }
    os << '[';
    int64_t len = shape()[d], inner = 1;
    for (int k = d + 1; k < dim(); ++k) inner *= shape()[k];
    for (int64_t i = 0; i < len; ++i) {
      if (len > 2 * kEdge && i == kEdge) {
        os << "..., ";
        i = len - kEdge;
      }
      rec(d + 1, base + i * inner);
      if (i + 1 < len) os << (d + 1 == dim() ? ", " : ",\n" + std::string(d + 8, ' '));
    }
    os << ']';
  };
  os << "tensor(";
  if (n == 0) os << "[]";
  else rec(0, 0);
  os << ", shape=" << shape() << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device=" << device();
  if (requires_grad()) os << ", requires_grad=true";
  os << ')';
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

// ---------------- autograd accessors ----------------

bool Tensor::requires_grad() const { return defined() && impl()->requires_grad; }
Tensor& Tensor::set_requires_grad(bool r) {
  auto& i = const_cast<TensorImpl&>(get(*this, "requires_grad_"));
  EMBER_CHECK(r || i.grad_fn == nullptr, "requires_grad_(false): only leaf tensors can stop requiring grad; use detach()");
  EMBER_CHECK(!r || is_floating(i.dtype), "requires_grad_: only floating-point tensors can require grad, got ",
              dtype_name(i.dtype));
  i.requires_grad = r;
  return *this;
}
bool Tensor::is_leaf() const { return get(*this, "is_leaf").grad_fn == nullptr; }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return get(*this, "grad_fn").grad_fn; }
Tensor Tensor::grad() const { return get(*this, "grad").grad; }
Tensor& Tensor::mutable_grad() const { return const_cast<TensorImpl&>(get(*this, "grad")).grad; }
void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    EMBER_CHECK(g.shape() == shape() && g.dtype() == dtype(), "set_grad: gradient ", g.shape(), " ",
                dtype_name(g.dtype()), " does not match tensor ", shape(), " ", dtype_name(dtype()));
  mutable_grad() = g;
}
void Tensor::zero_grad() const { mutable_grad() = Tensor(); }
void Tensor::register_hook(Hook hook) const {
  auto& i = const_cast<TensorImpl&>(get(*this, "register_hook"));
  EMBER_CHECK(i.requires_grad, "register_hook: tensor ", i.shape, " does not require grad");
  if (i.grad_fn) i.grad_fn->add_hook(std::move(hook));
  else i.leaf_hooks.push_back(std::move(hook));
}

// ---------------- in-place ops ----------------

namespace {
// An in-place op computes in the promoted dtype and writes it back, so that dtype must cast to
// self's (PyTorch's can_cast): an int64 tensor cannot take a float result (int64.add_(2.5), or any
// true division), since the fraction would be silently dropped.
void check_result_fits(const Tensor& self, DType result, const char* name) {
  EMBER_CHECK(can_cast(result, self.dtype()), name, ": result type ", dtype_name(result),
              " can't be cast to the desired output type ", dtype_name(self.dtype()), " (tensor of shape ",
              self.shape(), ")");
}

// Whether a double scalar counts as an integer for promotion (see with_scalar in core/ops/elementwise.cpp).
DType scalar_result_type(const Tensor& self, double s) {
  const bool integral = std::isfinite(s) && s == std::trunc(s) && std::abs(s) < 9223372036854775808.0;
  return is_floating(self.dtype()) || integral ? self.dtype() : kDefaultFloat;
}

// Shared body of the in-place binary ops: broadcast `o` to self's shape and write through self.
Tensor& binary_inplace(Tensor& self, const Tensor& o, BinaryOp op, const char* name) {
  EMBER_CHECK(o.defined(), name, ": undefined tensor argument");
  EMBER_CHECK(o.device() == self.device(), name, ": device mismatch: ", self.device(), " and ", o.device());
  DType result = promote_types(self.dtype(), o.dtype());
  if (op == BinaryOp::Div && !is_floating(result)) result = kDefaultFloat;  // true division
  check_result_fits(self, result, name);
  EMBER_CHECK(broadcast_shapes(name, self.shape(), o.shape()) == self.shape(), name, ": cannot broadcast ", o.shape(),
              " into ", self.shape());
  check_no_internal_overlap(self, name);
  check_no_partial_overlap(self, o, name);  // the input as given, before it is broadcast
  check_inplace(self, name);                // last: it bumps the version, which a refused write must not
  backend_of(self).binary(op, self, o.detach().to(self.dtype()).expand(self.shape()), self);
  return self;
}
Tensor& unary_inplace(Tensor& self, UnaryOp op, Scalars s, const char* name, DType result) {
  check_result_fits(self, result, name);
  check_no_internal_overlap(self, name);
  check_inplace(self, name);
  backend_of(self).unary(op, self, self, s);
  return self;
}
}  // namespace

Tensor& Tensor::add_(const Tensor& o, double alpha) {
  if (alpha == 1.0) return binary_inplace(*this, o, BinaryOp::Add, "add_");
  NoGradGuard g;
  return binary_inplace(*this, ember::mul(o, alpha), BinaryOp::Add, "add_");
}
Tensor& Tensor::add_(double s) {
  return unary_inplace(*this, UnaryOp::AddScalar, {s, 0}, "add_", scalar_result_type(*this, s));
}
Tensor& Tensor::sub_(const Tensor& o) { return binary_inplace(*this, o, BinaryOp::Sub, "sub_"); }
Tensor& Tensor::mul_(const Tensor& o) { return binary_inplace(*this, o, BinaryOp::Mul, "mul_"); }
Tensor& Tensor::mul_(double s) {
  return unary_inplace(*this, UnaryOp::MulScalar, {s, 0}, "mul_", scalar_result_type(*this, s));
}
Tensor& Tensor::div_(const Tensor& o) { return binary_inplace(*this, o, BinaryOp::Div, "div_"); }
Tensor& Tensor::div_(double s) {
  const DType result = is_floating(dtype()) ? dtype() : kDefaultFloat;  // true division
  return unary_inplace(*this, UnaryOp::MulScalar, {1.0 / s, 0}, "div_", result);
}
Tensor& Tensor::clamp_(double lo, double hi) {
  return unary_inplace(*this, UnaryOp::Clamp, {lo, hi}, "clamp_", dtype());
}
// fill_ writes one value everywhere, so an expanded destination is fine (as in PyTorch).
Tensor& Tensor::fill_(double v) {
  check_inplace(*this, "fill_");
  backend_of(*this).fill(*this, v);
  return *this;
}
Tensor& Tensor::copy_(const Tensor& src) {
  EMBER_CHECK(defined(), "copy_: called on an undefined tensor");
  EMBER_CHECK(broadcast_shapes("copy_", shape(), src.shape()) == shape(), "copy_: cannot broadcast ", src.shape(),
              " into ", shape());
  check_no_internal_overlap(*this, "copy_");
  check_no_partial_overlap(*this, src, "copy_");
  check_inplace(*this, "copy_");
  Tensor s = src.detach();
  if (s.device() != device()) s = s.to(device());
  backend_of(*this).copy(s.expand(shape()), *this);
  return *this;
}

// ---------------- method and operator forms ----------------

Tensor Tensor::add(const Tensor& o) const { return ember::add(*this, o); }
Tensor Tensor::sub(const Tensor& o) const { return ember::sub(*this, o); }
Tensor Tensor::mul(const Tensor& o) const { return ember::mul(*this, o); }
Tensor Tensor::div(const Tensor& o) const { return ember::div(*this, o); }
Tensor Tensor::neg() const { return ember::neg(*this); }
Tensor Tensor::exp() const { return ember::exp(*this); }
Tensor Tensor::log() const { return ember::log(*this); }
Tensor Tensor::pow(double e) const { return ember::pow(*this, e); }
Tensor Tensor::pow(const Tensor& e) const { return ember::pow(*this, e); }
Tensor Tensor::sqrt() const { return ember::sqrt(*this); }
Tensor Tensor::sin() const { return ember::sin(*this); }
Tensor Tensor::cos() const { return ember::cos(*this); }
Tensor Tensor::abs() const { return ember::abs(*this); }
Tensor Tensor::tanh() const { return ember::tanh(*this); }
Tensor Tensor::sigmoid() const { return ember::sigmoid(*this); }
Tensor Tensor::relu() const { return ember::relu(*this); }
Tensor Tensor::gelu() const { return ember::gelu(*this); }
Tensor Tensor::clamp(double lo, double hi) const { return ember::clamp(*this, lo, hi); }
Tensor Tensor::matmul(const Tensor& o) const { return ember::matmul(*this, o); }
Tensor Tensor::sum() const { return ember::sum(*this); }
Tensor Tensor::sum(const std::vector<int64_t>& d, bool k) const { return ember::sum(*this, d, k); }
Tensor Tensor::mean() const { return ember::mean(*this); }
Tensor Tensor::mean(const std::vector<int64_t>& d, bool k) const { return ember::mean(*this, d, k); }
Tensor Tensor::max() const { return ember::max(*this); }
Tensor Tensor::max(const std::vector<int64_t>& d, bool k) const { return ember::max(*this, d, k); }
Tensor Tensor::min() const { return ember::min(*this); }
Tensor Tensor::min(const std::vector<int64_t>& d, bool k) const { return ember::min(*this, d, k); }
Tensor Tensor::var(const std::vector<int64_t>& d, bool u, bool k) const { return ember::var(*this, d, u, k); }
Tensor Tensor::std(const std::vector<int64_t>& d, bool u, bool k) const { return ember::std(*this, d, u, k); }
Tensor Tensor::argmax(int64_t d, bool k) const { return ember::argmax(*this, d, k); }
Tensor Tensor::argmin(int64_t d, bool k) const { return ember::argmin(*this, d, k); }
Tensor Tensor::softmax(int64_t d) const { return ember::softmax(*this, d); }
Tensor Tensor::log_softmax(int64_t d) const { return ember::log_softmax(*this, d); }
Tensor Tensor::logsumexp(const std::vector<int64_t>& d, bool k) const { return ember::logsumexp(*this, d, k); }
Tensor Tensor::index_select(int64_t d, const Tensor& i) const { return ember::index_select(*this, d, i); }
Tensor Tensor::gather(int64_t d, const Tensor& i) const { return ember::gather(*this, d, i); }
Tensor Tensor::masked_fill(const Tensor& m, double v) const { return ember::masked_fill(*this, m, v); }
Tensor Tensor::eq(const Tensor& o) const { return ember::eq(*this, o); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return div(a, s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(double s, const Tensor& a) { return rsub(a, s); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(double s, const Tensor& a) { return rdiv(a, s); }
Tensor operator-(const Tensor& a) { return neg(a); }

}  // namespace ember
