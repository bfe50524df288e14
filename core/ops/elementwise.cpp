// Elementwise ops: forward kernel call and backward formula side by side.
// Broadcast gradients are summed back to each input's shape by the engine (autograd.cpp), so the
// formulas below are written as if no broadcasting happened.
#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

namespace {

void check_binary_args(const char* op, const Tensor& a, const Tensor& b) {
  EMBER_CHECK(a.defined() && b.defined(), op, ": undefined tensor argument");
  EMBER_CHECK(a.device() == b.device(), op, ": device mismatch: ", a.device(), " and ", b.device());
}

// The dtype a binary op computes in (PyTorch's result_type): promote_types of the two, except that
// a 0-d tensor beside a tensor with dims only counts when it is of a higher category (float over
// integer), so x_float32 * scalar_tensor(2, kFloat64) stays float32 while int64 + a 0-d float64 is float64.
DType result_type(const Tensor& a, const Tensor& b) {
  const bool a0 = a.dim() == 0, b0 = b.dim() == 0;
  if (a0 == b0) return promote_types(a.dtype(), b.dtype());
  const DType dims = a0 ? b.dtype() : a.dtype(), zero_dim = a0 ? a.dtype() : b.dtype();
  return is_floating(zero_dim) && !is_floating(dims) ? zero_dim : dims;
}

struct Operands {
  Tensor a, b;
};

// Both operands cast to their common dtype. The casts are differentiable (Tensor::to), so each
// input's gradient comes back in its own dtype; equal dtypes cost nothing.
Operands promote(const char* op, const Tensor& a, const Tensor& b) {
  check_binary_args(op, a, b);
  const DType t = result_type(a, b);
  return {a.to(t), b.to(t)};
}

// The input of float math (exp, sin, true division, ...): integer tensors become the default float dtype.
Tensor to_float(const char* op, const Tensor& a) {
  EMBER_CHECK(a.defined(), op, ": undefined tensor argument");
  return is_floating(a.dtype()) ? a : a.to(kDefaultFloat);
}

// PyTorch's rule for a Python scalar beside a tensor: it never widens the tensor's dtype, except
// that a float scalar beside an integer tensor gives the default float dtype. ember's scalars are
// doubles, so an integral value that an int64 holds exactly counts as an integer: int64 + 2.5 is
// float32, int64 + 2.0 stays int64.
Tensor with_scalar(const Tensor& a, double s) {
  constexpr double kTwo63 = 9223372036854775808.0;
  const bool integral = std::isfinite(s) && s == std::trunc(s) && std::abs(s) < kTwo63;
  return is_floating(a.dtype()) || integral ? a : a.to(kDefaultFloat);
}

// A fresh result of `shape` for an elementwise op on `operands`: on the CPU it is channels-last
// when an operand of that very shape is (a channels-last activation gives a channels-last
// result, so a network stays in the layout its convolutions read), else contiguous. The CPU's
// strided loop walks any such layout as one flat run. Other devices' kernels write contiguous
// results.
Tensor elementwise_result(const Shape& shape, DType dtype, std::initializer_list<const Tensor*> operands) {
  const Device device = (*operands.begin())->device();
  MemoryFormat format = MemoryFormat::Contiguous;
  if (device.is_cpu() && shape.size() == 4)
    for (const Tensor* t : operands)
      if (t->shape() == shape && suggest_memory_format(*t) == MemoryFormat::ChannelsLast)
        format = MemoryFormat::ChannelsLast;
  return empty(shape, TensorOptions(dtype).device(device), format);
}

// Runs a binary kernel on broadcast views of a and b (already promoted to one dtype);
// comparisons produce uint8.
Tensor binary_kernel(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  EMBER_CHECK(a.dtype() == b.dtype(), name, ": internal error: operands not promoted (", dtype_name(a.dtype()), ", ",
              dtype_name(b.dtype()), ")");
  Shape shape = broadcast_shapes(name, a.shape(), b.shape());
  DType out_dtype = binary_is_comparison(op) ? kUInt8 : a.dtype();
  Tensor out = elementwise_result(shape, out_dtype, {&a, &b});
  backend_of(a).binary(op, a.detach().expand(shape), b.detach().expand(shape), out);
  return out;
}

Tensor compare(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE(name, a, b);
  const Operands p = promote(name, a, b);
  return binary_kernel(op, name, p.a, p.b);
}

Tensor unary_kernel(UnaryOp op, const Tensor& a, Scalars s = {}) {
  DType out_dtype = unary_is_comparison(op) ? kUInt8 : a.dtype();
  Tensor out = elementwise_result(a.shape(), out_dtype, {&a});
  backend_of(a).unary(op, a, out, s);
  return out;
}

void require_float(const char* op, const Tensor& a) {
  EMBER_CHECK(a.defined(), op, ": undefined tensor argument");
  EMBER_CHECK(is_floating(a.dtype()), op, ": expected a floating-point tensor, got ", dtype_name(a.dtype()), " of shape ",
              a.shape());
}

// Integer division by zero has no value (floats give inf or NaN); refuse it before the kernel runs.
void check_no_zero_divisor(const char* op, const Tensor& divisor) {
  if (is_floating(divisor.dtype()) || divisor.numel() == 0) return;
  NoGradGuard no_grad;
  const bool any_zero = sum(eq(divisor, 0.0).to(kFloat64)).item() > 0;
  EMBER_CHECK(!any_zero, op, ": integer division by zero (divisor of shape ", divisor.shape(), ", dtype ",
              dtype_name(divisor.dtype()), ")");
}

}  // namespace

// ---------------- binary arithmetic ----------------

Tensor add(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("add", a, b);
  const auto [x, y] = promote("add", a, b);
  Tensor out = binary_kernel(BinaryOp::Add, "add", x, y);
  if (grad_needed({x, y})) record("add", out, {x, y}, [](const Tensor& g, NeedsGrad) -> Grads { return {g, g}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("sub", a, b);
  const auto [x, y] = promote("sub", a, b);
  Tensor out = binary_kernel(BinaryOp::Sub, "sub", x, y);
  if (grad_needed({x, y}))
    record("sub", out, {x, y}, [](const Tensor& g, NeedsGrad n) -> Grads { return {g, n[1] ? neg(g) : Tensor()}; });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("mul", a, b);
  const auto [x, y] = promote("mul", a, b);
  Tensor out = binary_kernel(BinaryOp::Mul, "mul", x, y);
  if (grad_needed({x, y}))
    record("mul", out, {x, y}, [sa = SavedTensor(x), sb = SavedTensor(y)](const Tensor& g, NeedsGrad n) -> Grads {
      return {n[0] ? g * sb.get() : Tensor(), n[1] ? g * sa.get() : Tensor()};
    });
  return out;
}

// True division, as PyTorch's `/`: integer operands are divided as the default float dtype.
Tensor div(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("div", a, b);
  const Operands p = promote("div", a, b);
  const Tensor x = to_float("div", p.a), y = to_float("div", p.b);
  Tensor out = binary_kernel(BinaryOp::Div, "div", x, y);
  if (grad_needed({x, y}))
    record("div", out, {x, y}, [sa = SavedTensor(x), sb = SavedTensor(y)](const Tensor& g, NeedsGrad n) -> Grads {
      const Tensor& bv = sb.get();
      // d(a/b)/da = 1/b ; d(a/b)/db = -a/b^2
      return {n[0] ? g / bv : Tensor(), n[1] ? neg(g * sa.get() / (bv * bv)) : Tensor()};
    });
  return out;
}

// Not differentiable (its gradient is zero almost everywhere), like sign.
Tensor floor_divide(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("floor_divide", a, b);
  const auto [x, y] = promote("floor_divide", a, b);
  check_no_zero_divisor("floor_divide", y);
  return binary_kernel(BinaryOp::FloorDiv, "floor_divide", x.detach(), y.detach());
}

Tensor pow(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("pow", a, b);
  const auto [x, y] = promote("pow", a, b);
  require_float("pow", x);
  Tensor out = binary_kernel(BinaryOp::Pow, "pow", x, y);
  if (grad_needed({x, y}))
    record("pow", out, {x, y},
           [sa = SavedTensor(x), sb = SavedTensor(y), so = SavedTensor::output(out)](const Tensor& g, NeedsGrad n) -> Grads {
             const Tensor &base = sa.get(), &e = sb.get();
             // d(x^e)/dx = e * x^(e-1), taken as 0 where e == 0 (x^0 is constant; at x = 0 the
             // formula would be 0 * inf = NaN), as PyTorch ; d(x^e)/de = x^e * log(x), 0 where x == 0
             Tensor gx = n[0] ? where(eq(e, 0.0), zeros_like(g), g * e * pow(base, e - 1.0)) : Tensor();
             Tensor ge = n[1] ? g * where(eq(base, 0.0), zeros_like(base), so.get() * log(base)) : Tensor();
             return {gx, ge};
           });
  return out;
}

// NaN propagates (ew::maximum), and so does the gradient: where a and b are not ordered (a NaN),
// or tie, both get it — PyTorch gives the full gradient to both at a NaN and half to each at a tie.
Tensor maximum(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("maximum", a, b);
  const auto [x, y] = promote("maximum", a, b);
  Tensor out = binary_kernel(BinaryOp::Maximum, "maximum", x, y);
  if (grad_needed({x, y}))
    record("maximum", out, {x, y}, [sa = SavedTensor(x), sb = SavedTensor(y)](const Tensor& g, NeedsGrad) -> Grads {
      const Tensor &av = sa.get(), &bv = sb.get();
      Tensor shared = where(eq(av, bv), g * 0.5, g);  // the gradient of an operand that is not smaller
      Tensor z = zeros_like(g);
      return {where(lt(av, bv), z, shared), where(gt(av, bv), z, shared)};
    });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("minimum", a, b);
  const auto [x, y] = promote("minimum", a, b);
  Tensor out = binary_kernel(BinaryOp::Minimum, "minimum", x, y);
  if (grad_needed({x, y}))
    record("minimum", out, {x, y}, [sa = SavedTensor(x), sb = SavedTensor(y)](const Tensor& g, NeedsGrad) -> Grads {
      const Tensor &av = sa.get(), &bv = sb.get();
      Tensor shared = where(eq(av, bv), g * 0.5, g);
      Tensor z = zeros_like(g);
      return {where(gt(av, bv), z, shared), where(lt(av, bv), z, shared)};
    });
  return out;
}

// ---------------- scalar forms ----------------

Tensor add(const Tensor& a, double s) {
  EMBER_OP_SCOPE("add", a);
  const Tensor x = with_scalar(a, s);
  Tensor out = unary_kernel(UnaryOp::AddScalar, x, {s, 0});
  if (grad_needed(x)) record("add", out, {x}, [](const Tensor& g, NeedsGrad) -> Grads { return {g}; });
  return out;
}
Tensor sub(const Tensor& a, double s) { return add(a, -s); }
Tensor rsub(const Tensor& a, double s) {
  EMBER_OP_SCOPE("rsub", a);
  const Tensor x = with_scalar(a, s);
  Tensor out = unary_kernel(UnaryOp::RSubScalar, x, {s, 0});
  if (grad_needed(x)) record("rsub", out, {x}, [](const Tensor& g, NeedsGrad) -> Grads { return {neg(g)}; });
  return out;
}
Tensor mul(const Tensor& a, double s) {
  EMBER_OP_SCOPE("mul", a);
  const Tensor x = with_scalar(a, s);
  Tensor out = unary_kernel(UnaryOp::MulScalar, x, {s, 0});
  if (grad_needed(x)) record("mul", out, {x}, [s](const Tensor& g, NeedsGrad) -> Grads { return {g * s}; });
  return out;
}
Tensor div(const Tensor& a, double s) {
  EMBER_OP_SCOPE("div", a);
  const Tensor x = to_float("div", a);  // true division
  Tensor out = unary_kernel(UnaryOp::MulScalar, x, {1.0 / s, 0});
  if (grad_needed(x)) record("div", out, {x}, [s](const Tensor& g, NeedsGrad) -> Grads { return {g / s}; });
  return out;
}
Tensor rdiv(const Tensor& a, double s) {
  EMBER_OP_SCOPE("rdiv", a);
  const Tensor x = to_float("rdiv", a);
  Tensor out = unary_kernel(UnaryOp::RDivScalar, x, {s, 0});
  if (grad_needed(x))
    record("rdiv", out, {x}, [sa = SavedTensor(x), s](const Tensor& g, NeedsGrad) -> Grads {
      const Tensor& v = sa.get();
      return {g * (-s) / (v * v)};  // d(s/x)/dx = -s/x^2
    });
  return out;
}
Tensor pow(const Tensor& a, double e) {
  EMBER_OP_SCOPE("pow", a);
  EMBER_CHECK(a.defined(), "pow: undefined tensor argument");
  const Tensor x = with_scalar(a, e);
  require_float("pow", x);
  Tensor out = unary_kernel(UnaryOp::PowScalar, x, {e, 0});
  if (grad_needed(x))
    record("pow", out, {x}, [sa = SavedTensor(x), e](const Tensor& g, NeedsGrad) -> Grads {
      if (e == 0.0) return {zeros_like(g)};
      return {g * e * pow(sa.get(), e - 1.0)};
    });
  return out;
}

// ---------------- unary math ----------------

Tensor neg(const Tensor& a) {
  EMBER_OP_SCOPE("neg", a);
  Tensor out = unary_kernel(UnaryOp::Neg, a);
  if (grad_needed(a)) record("neg", out, {a}, [](const Tensor& g, NeedsGrad) -> Grads { return {neg(g)}; });
  return out;
}

Tensor exp(const Tensor& a) {
  EMBER_OP_SCOPE("exp", a);
  const Tensor x = to_float("exp", a);
  Tensor out = unary_kernel(UnaryOp::Exp, x);
  if (grad_needed(x))
    record("exp", out, {x}, [so = SavedTensor::output(out)](const Tensor& g, NeedsGrad) -> Grads { return {g * so.get()}; });
  return out;
}

Tensor log(const Tensor& a) {
  EMBER_OP_SCOPE("log", a);
  const Tensor x = to_float("log", a);
  Tensor out = unary_kernel(UnaryOp::Log, x);
  if (grad_needed(x))
    record("log", out, {x}, [sa = SavedTensor(x)](const Tensor& g, NeedsGrad) -> Grads { return {g / sa.get()}; });
  return out;
}

Tensor sqrt(const Tensor& a) {
  EMBER_OP_SCOPE("sqrt", a);
  const Tensor x = to_float("sqrt", a);
  Tensor out = unary_kernel(UnaryOp::Sqrt, x);
  if (grad_needed(x))
    record("sqrt", out, {x}, [so = SavedTensor::output(out)](const Tensor& g, NeedsGrad) -> Grads {
      return {g / (so.get() * 2.0)};  // d sqrt(x) = 1 / (2 sqrt(x))
    });
  return out;
}

Tensor abs(const Tensor& a) {
  EMBER_OP_SCOPE("abs", a);
  Tensor out = unary_kernel(UnaryOp::Abs, a);
  if (grad_needed(a))
    record("abs", out, {a}, [sa = SavedTensor(a)](const Tensor& g, NeedsGrad) -> Grads { return {g * sign(sa.get())}; });
  return out;
}

Tensor sign(const Tensor& a) { return unary_kernel(UnaryOp::Sign, a); }

Tensor tanh(const Tensor& a) {
  EMBER_OP_SCOPE("tanh", a);
  const Tensor x = to_float("tanh", a);
  Tensor out = unary_kernel(UnaryOp::Tanh, x);
  if (grad_needed(x))
    record("tanh", out, {x}, [so = SavedTensor::output(out)](const Tensor& g, NeedsGrad) -> Grads {
      return {tanh_backward(g, so.get())};
    });
  return out;
}

Tensor sigmoid(const Tensor& a) {
  EMBER_OP_SCOPE("sigmoid", a);
  const Tensor x = to_float("sigmoid", a);
  Tensor out = unary_kernel(UnaryOp::Sigmoid, x);
  if (grad_needed(x))
    record("sigmoid", out, {x}, [so = SavedTensor::output(out)](const Tensor& g, NeedsGrad) -> Grads {
      return {sigmoid_backward(g, so.get())};
    });
  return out;
}

Tensor sin(const Tensor& a) {
  EMBER_OP_SCOPE("sin", a);
  const Tensor x = to_float("sin", a);
  Tensor out = unary_kernel(UnaryOp::Sin, x);
  if (grad_needed(x))
    record("sin", out, {x}, [sa = SavedTensor(x)](const Tensor& g, NeedsGrad) -> Grads { return {g * cos(sa.get())}; });
  return out;
}

Tensor cos(const Tensor& a) {
  EMBER_OP_SCOPE("cos", a);
  const Tensor x = to_float("cos", a);
  Tensor out = unary_kernel(UnaryOp::Cos, x);
  if (grad_needed(x))
    record("cos", out, {x}, [sa = SavedTensor(x)](const Tensor& g, NeedsGrad) -> Grads {
      return {neg(g * sin(sa.get()))};  // d cos(x) = -sin(x)
    });
  return out;
}

// relu(NaN) is NaN and its gradient there is 1, as in PyTorch (ew::Relu, ew::ReluBackward).
Tensor relu(const Tensor& a) {
  EMBER_OP_SCOPE("relu", a);
  Tensor out = unary_kernel(UnaryOp::Relu, a);
  if (grad_needed(a))
    record("relu", out, {a}, [so = SavedTensor::output(out)](const Tensor& g, NeedsGrad) -> Grads {
      return {relu_backward(g, so.get())};
    });
  return out;
}

Tensor add_relu(const Tensor& a, const Tensor& b) {
  EMBER_OP_SCOPE("add_relu", a, b);
  const auto [x, y] = promote("add_relu", a, b);
  Tensor out = binary_kernel(BinaryOp::AddRelu, "add_relu", x, y);
  if (grad_needed({x, y}))
    record("add_relu", out, {x, y}, [so = SavedTensor::output(out)](const Tensor& g, NeedsGrad) -> Grads {
      const Tensor masked = relu_backward(g, so.get());  // one mask for both operands
      return {masked, masked};
    });
  return out;
}

Tensor gelu(const Tensor& a) {
  EMBER_OP_SCOPE("gelu", a);
  const Tensor x = to_float("gelu", a);
  Tensor out = unary_kernel(UnaryOp::Gelu, x);
  if (grad_needed(x))
    record("gelu", out, {x}, [sa = SavedTensor(x)](const Tensor& g, NeedsGrad) -> Grads {
      return {gelu_backward(g, sa.get())};
    });
  return out;
}

Tensor clamp(const Tensor& a, double lo, double hi) {
  EMBER_OP_SCOPE("clamp", a);
  EMBER_CHECK(lo <= hi, "clamp: min ", lo, " is greater than max ", hi);
  Tensor out = unary_kernel(UnaryOp::Clamp, a, {lo, hi});
  if (grad_needed(a))
    record("clamp", out, {a}, [sa = SavedTensor(a), lo, hi](const Tensor& g, NeedsGrad) -> Grads {
      // gradient passes where lo <= x <= hi (PyTorch's convention at the bounds)
      const Tensor& x = sa.get();
      Tensor inside = empty(x.shape(), TensorOptions(kUInt8).device(x.device()));
      backend_of(x).binary(BinaryOp::Mul, ge(x, lo), le(x, hi), inside);
      return {where(inside, g, zeros_like(g))};
    });
  return out;
}

// ---------------- backward ops ----------------
// The backward formulas of tanh, sigmoid, relu and gelu, each one fused kernel (one pass over
// memory instead of three or four), made ops of their own so that they record their own backward:
// a gradient computed with create_graph can be differentiated again. Each is linear in the
// incoming gradient g, so its gradient with respect to g is the same op applied to gg.

namespace {
// Runs a fused backward kernel on (g, saved) of one shape and dtype.
Tensor fused_backward(BinaryOp op, const char* name, const Tensor& g, const Tensor& saved) {
  check_binary_args(name, g, saved);
  EMBER_CHECK(g.shape() == saved.shape(), name, ": gradient of shape ", g.shape(), " and saved tensor of shape ",
              saved.shape(), " differ");
  EMBER_CHECK(g.dtype() == saved.dtype(), name, ": gradient dtype ", dtype_name(g.dtype()),
              " and saved tensor dtype ", dtype_name(saved.dtype()), " differ");
  require_float(name, g);
  Tensor out = elementwise_result(g.shape(), g.dtype(), {&g, &saved});
  backend_of(g).binary(op, g.detach(), saved.detach(), out);
  return out;
}
}  // namespace

Tensor tanh_backward(const Tensor& grad, const Tensor& output) {
  Tensor out = fused_backward(BinaryOp::TanhBackward, "tanh_backward", grad, output);  // g * (1 - y^2)
  if (grad_needed({grad, output}))
    record("tanh_backward", out, {grad, output},
           [sg = SavedTensor(grad), sy = SavedTensor(output)](const Tensor& gg, NeedsGrad n) -> Grads {
             const Tensor y = sy.get();
             // d/dg = 1 - y^2 ; d/dy = -2 y g
             return {n[0] ? tanh_backward(gg, y) : Tensor(), n[1] ? gg * sg.get() * y * -2.0 : Tensor()};
           });
  return out;
}

Tensor sigmoid_backward(const Tensor& grad, const Tensor& output) {
  Tensor out = fused_backward(BinaryOp::SigmoidBackward, "sigmoid_backward", grad, output);  // g * y * (1 - y)
  if (grad_needed({grad, output}))
    record("sigmoid_backward", out, {grad, output},
           [sg = SavedTensor(grad), sy = SavedTensor(output)](const Tensor& gg, NeedsGrad n) -> Grads {
             const Tensor y = sy.get();
             // d/dg = y (1 - y) ; d/dy = g (1 - 2 y)
             return {n[0] ? sigmoid_backward(gg, y) : Tensor(), n[1] ? gg * sg.get() * rsub(y * 2.0, 1.0) : Tensor()};
           });
  return out;
}

// g where y > 0 (y = relu(x) > 0 exactly when x > 0), NaN passing through as in PyTorch.
// Piecewise constant in y: its gradient with respect to y is zero (as PyTorch's threshold_backward).
Tensor relu_backward(const Tensor& grad, const Tensor& output) {
  Tensor out = fused_backward(BinaryOp::ReluBackward, "relu_backward", grad, output);
  if (grad_needed({grad, output}))
    record("relu_backward", out, {grad, output}, [sy = SavedTensor(output)](const Tensor& gg, NeedsGrad n) -> Grads {
      return {n[0] ? relu_backward(gg, sy.get()) : Tensor(), n[1] ? zeros_like(gg) : Tensor()};
    });
  return out;
}

// g * (Phi(x) + x phi(x)), with Phi and phi the standard normal CDF and density.
Tensor gelu_backward(const Tensor& grad, const Tensor& input) {
  Tensor out = fused_backward(BinaryOp::GeluBackward, "gelu_backward", grad, input);
  if (grad_needed({grad, input}))
    record("gelu_backward", out, {grad, input},
           [sg = SavedTensor(grad), sx = SavedTensor(input)](const Tensor& gg, NeedsGrad n) -> Grads {
             const Tensor x = sx.get();
             // d/dx (Phi(x) + x phi(x)) = 2 phi(x) - x^2 phi(x) = phi(x) (2 - x^2)
             Tensor gx;
             if (n[1]) {
               const double inv_sqrt_2pi = 0.3989422804014327;
               Tensor phi = exp(x * x * -0.5) * inv_sqrt_2pi;
               gx = gg * sg.get() * phi * rsub(x * x, 2.0);
             }
             return {n[0] ? gelu_backward(gg, x) : Tensor(), gx};
           });
  return out;
}

// ---------------- selection ----------------

Tensor where(const Tensor& cond, const Tensor& a_in, const Tensor& b_in) {
  EMBER_OP_SCOPE("where", cond, a_in, b_in);
  const auto [a, b] = promote("where", a_in, b_in);
  EMBER_CHECK(cond.dtype() == kUInt8, "where: condition must be uint8 (a comparison result), got ",
              dtype_name(cond.dtype()));
  EMBER_CHECK(cond.device() == a.device(), "where: device mismatch: condition on ", cond.device(), ", values on ",
              a.device());
  Shape shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  Tensor out = empty(shape, TensorOptions(a.dtype()).device(a.device()));
  backend_of(a).where(cond.detach().expand(shape), a.detach().expand(shape), b.detach().expand(shape), out);
  if (grad_needed({a, b}))
    record("where", out, {a, b}, [sc = SavedTensor(cond)](const Tensor& g, NeedsGrad n) -> Grads {
      Tensor z = zeros(Shape{}, TensorOptions(g.dtype()).device(g.device()));
      return {n[0] ? where(sc.get(), g, z) : Tensor(), n[1] ? where(sc.get(), z, g) : Tensor()};
    });
  return out;
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  EMBER_OP_SCOPE("masked_fill", a, mask);
  EMBER_CHECK(mask.dtype() == kUInt8, "masked_fill: mask must be uint8, got ", dtype_name(mask.dtype()));
  EMBER_CHECK(broadcast_shapes("masked_fill", a.shape(), mask.shape()) == a.shape(), "masked_fill: mask of shape ",
              mask.shape(), " does not broadcast to the tensor's shape ", a.shape());
  Tensor fill = full(Shape{}, value, TensorOptions(a.dtype()).device(a.device()));
  return where(mask, fill, a);
}

// ---------------- comparisons (not differentiable) ----------------

Tensor eq(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Ge, "ge", a, b); }
Tensor eq(const Tensor& a, double s) { return unary_kernel(UnaryOp::EqScalar, with_scalar(a, s), {s, 0}); }
Tensor ne(const Tensor& a, double s) { return unary_kernel(UnaryOp::NeScalar, with_scalar(a, s), {s, 0}); }
Tensor lt(const Tensor& a, double s) { return unary_kernel(UnaryOp::LtScalar, with_scalar(a, s), {s, 0}); }
Tensor le(const Tensor& a, double s) { return unary_kernel(UnaryOp::LeScalar, with_scalar(a, s), {s, 0}); }
Tensor gt(const Tensor& a, double s) { return unary_kernel(UnaryOp::GtScalar, with_scalar(a, s), {s, 0}); }
Tensor ge(const Tensor& a, double s) { return unary_kernel(UnaryOp::GeScalar, with_scalar(a, s), {s, 0}); }

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  EMBER_CHECK(a.shape() == b.shape(), "allclose: shapes ", a.shape(), " and ", b.shape(), " differ");
  NoGradGuard ng;
  auto va = a.to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  auto vb = b.to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i) {
    if (std::isnan(va[i]) || std::isnan(vb[i])) return false;
    if (std::abs(va[i] - vb[i]) > atol + rtol * std::abs(vb[i])) return false;
  }
  return true;
}

}  // namespace ember
