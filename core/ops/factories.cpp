// Tensor factories: allocate through the device's allocator, then fill with a backend kernel.
#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace ember {

namespace {
Tensor finish(Tensor t, const TensorOptions& o) {
  if (o.requires_grad_) t.set_requires_grad(true);
  return t;
}
}  // namespace

Tensor empty(const Shape& shape, TensorOptions o) {
  for (int64_t d : shape) EMBER_CHECK(d >= 0, "empty: negative dimension in shape ", shape);
  size_t nbytes = static_cast<size_t>(shape.numel()) * dtype_size(o.dtype_);
  auto storage = std::make_shared<Storage>(nbytes, backend(o.device_).allocator());
  return finish(make_tensor(std::move(storage), shape, contiguous_strides(shape), 0, o.dtype_), o);
}

Tensor full(const Shape& shape, double value, TensorOptions o) {
  Tensor t = empty(shape, o.requires_grad(false));
  backend(o.device_).fill(t, value);
  return finish(t, o);
}
Tensor zeros(const Shape& shape, TensorOptions o) { return full(shape, 0.0, o); }
Tensor ones(const Shape& shape, TensorOptions o) { return full(shape, 1.0, o); }
Tensor scalar_tensor(double value, TensorOptions o) { return full(Shape{}, value, o); }

Tensor arange(double end, TensorOptions o) { return arange(0, end, 1, o); }
Tensor arange(double start, double end, double step, TensorOptions o) {
  EMBER_CHECK(step != 0, "arange: step must be nonzero");
  EMBER_CHECK((end - start) / step >= 0, "arange: range [", start, ", ", end, ") is empty or reversed for step ", step);
  auto n = static_cast<int64_t>(std::ceil((end - start) / step));
  Tensor t = empty(Shape{n}, o.requires_grad(false));
  backend(o.device_).arange(t, start, step);
  return finish(t, o);
}

namespace {
Tensor random_tensor(RandomOp op, const Shape& shape, double a, double b, TensorOptions o, Generator* gen) {
  Tensor t = empty(shape, o.requires_grad(false));
  Generator& g = gen ? *gen : default_generator();
  backend(o.device_).random(op, t, g.reserve(static_cast<uint64_t>(t.numel())), a, b);
  return finish(t, o);
}
}  // namespace

Tensor rand(const Shape& s, TensorOptions o, Generator* g) { return uniform(s, 0.0, 1.0, o, g); }
Tensor randn(const Shape& s, TensorOptions o, Generator* g) { return normal(s, 0.0, 1.0, o, g); }
Tensor uniform(const Shape& s, double lo, double hi, TensorOptions o, Generator* g) {
  EMBER_CHECK(is_floating(o.dtype_), "uniform: expected a floating-point dtype, got ", dtype_name(o.dtype_));
  EMBER_CHECK(lo <= hi, "uniform: low ", lo, " is greater than high ", hi);
  return random_tensor(RandomOp::Uniform, s, lo, hi, o, g);
}
Tensor normal(const Shape& s, double mean, double std, TensorOptions o, Generator* g) {
  EMBER_CHECK(is_floating(o.dtype_), "normal: expected a floating-point dtype, got ", dtype_name(o.dtype_));
  EMBER_CHECK(std >= 0, "normal: std must be non-negative, got ", std);
  return random_tensor(RandomOp::Normal, s, mean, std, o, g);
}
Tensor randint(int64_t low, int64_t high, const Shape& s, TensorOptions o, Generator* g) {
  EMBER_CHECK(low < high, "randint: empty range [", low, ", ", high, ")");
  return random_tensor(RandomOp::RandInt, s, static_cast<double>(low), static_cast<double>(high), o, g);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions o) {
  EMBER_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "from_vector: ", values.size(),
              " values do not fill shape ", shape, " (", shape.numel(), " elements)");
  Tensor host = empty(shape, TensorOptions(dtype_of<T>::value));
  std::copy(values.begin(), values.end(), host.data<T>());
  Tensor t = host.to(o.dtype_).to(o.device_);
  return finish(t, o);
}
template Tensor from_vector(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<uint8_t>&, const Shape&, TensorOptions);

Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device, std::function<void(void*)> deleter) {
  EMBER_CHECK(data != nullptr || shape.numel() == 0, "from_blob: null pointer for shape ", shape);
  auto storage = std::make_shared<Storage>(data, shape.numel() * dtype_size(dtype), device, std::move(deleter));
  return make_tensor(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

Tensor empty_like(const Tensor& t) { return empty(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, TensorOptions(t.dtype()).device(t.device())); }

}  // namespace ember
