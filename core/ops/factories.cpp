// Tensor factories: allocate through the device's allocator, then fill with a backend kernel.
#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/checked_math.h"
#include "core/ops.h"

namespace ember {

namespace {
Tensor finish(Tensor t, const TensorOptions& o) {
  if (o.requires_grad_) t.set_requires_grad(true);
  return t;
}

// A fresh contiguous tensor for factory `op`. The byte size is checked before anything is
// allocated, so a shape whose element or byte count overflows int64 is an error naming `op` and
// the shape, never a wrapped size, a tiny buffer and a crash in the fill.
Tensor allocate(const char* op, const Shape& shape, const TensorOptions& o,
                MemoryFormat format = MemoryFormat::Contiguous) {
  const int64_t nbytes = checked_nbytes(shape, static_cast<int64_t>(dtype_size(o.dtype_)), op);
  auto storage = std::make_shared<Storage>(static_cast<size_t>(nbytes), backend(o.device_).allocator());
  return make_tensor(std::move(storage), shape, strides_for(shape, format), 0, o.dtype_);
}

Tensor filled(const char* op, const Shape& shape, double value, const TensorOptions& o) {
  Tensor t = allocate(op, shape, o);
  backend(o.device_).fill(t, value);
  return finish(t, o);
}
}  // namespace

Tensor empty(const Shape& shape, TensorOptions o) { return finish(allocate("empty", shape, o), o); }
Tensor empty(const Shape& shape, TensorOptions o, MemoryFormat format) {
  return finish(allocate("empty", shape, o, format), o);
}
Tensor full(const Shape& shape, double value, TensorOptions o) { return filled("full", shape, value, o); }
Tensor zeros(const Shape& shape, TensorOptions o) { return filled("zeros", shape, 0.0, o); }
Tensor ones(const Shape& shape, TensorOptions o) { return filled("ones", shape, 1.0, o); }
Tensor scalar_tensor(double value, TensorOptions o) { return filled("scalar_tensor", Shape{}, value, o); }

Tensor arange(double end, TensorOptions o) { return arange(0, end, 1, o); }
Tensor arange(double start, double end, double step, TensorOptions o) {
  EMBER_CHECK(step != 0, "arange: step must be nonzero");
  const double count = std::ceil((end - start) / step);
  EMBER_CHECK(count >= 0, "arange: range [", start, ", ", end, ") is empty or reversed for step ", step);
  // 2^63 is exactly representable; anything at or above it (or inf/NaN, which fail `<`) cannot be a count.
  EMBER_CHECK(count < 9223372036854775808.0, "arange: range [", start, ", ", end, ") with step ", step, " has ", count,
              " elements, more than 2^63-1");
  Tensor t = allocate("arange", Shape{static_cast<int64_t>(count)}, o);
  backend(o.device_).arange(t, start, step);
  return finish(t, o);
}

namespace {
Tensor random_tensor(RandomOp op, const char* name, const Shape& shape, double a, double b, TensorOptions o,
                     Generator* gen) {
  Tensor t = allocate(name, shape, o);
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
  return random_tensor(RandomOp::Uniform, "uniform", s, lo, hi, o, g);
}
Tensor normal(const Shape& s, double mean, double std, TensorOptions o, Generator* g) {
  EMBER_CHECK(is_floating(o.dtype_), "normal: expected a floating-point dtype, got ", dtype_name(o.dtype_));
  EMBER_CHECK(std >= 0, "normal: std must be non-negative, got ", std);
  return random_tensor(RandomOp::Normal, "normal", s, mean, std, o, g);
}
Tensor randint(int64_t low, int64_t high, const Shape& s, TensorOptions o, Generator* g) {
  EMBER_CHECK(low < high, "randint: empty range [", low, ", ", high, ")");
  return random_tensor(RandomOp::RandInt, "randint", s, static_cast<double>(low), static_cast<double>(high), o, g);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions o) {
  const int64_t numel = checked_numel(shape, "from_vector");
  EMBER_CHECK(static_cast<int64_t>(values.size()) == numel, "from_vector: ", values.size(), " values do not fill shape ",
              shape, " (", numel, " elements)");
  Tensor host = allocate("from_vector", shape, TensorOptions(dtype_of<T>::value));
  std::copy(values.begin(), values.end(), host.data<T>());
  Tensor t = host.to(o.dtype_).to(o.device_);
  return finish(t, o);
}
template Tensor from_vector(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<uint8_t>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<bfloat16>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<float16>&, const Shape&, TensorOptions);

Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device, std::function<void(void*)> deleter) {
  const int64_t nbytes = checked_nbytes(shape, static_cast<int64_t>(dtype_size(dtype)), "from_blob");
  EMBER_CHECK(data != nullptr || nbytes == 0, "from_blob: null pointer for shape ", shape);
  auto storage = std::make_shared<Storage>(data, static_cast<size_t>(nbytes), device, std::move(deleter));
  return make_tensor(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

Tensor empty_like(const Tensor& t) { return empty(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, TensorOptions(t.dtype()).device(t.device())); }

}  // namespace ember
