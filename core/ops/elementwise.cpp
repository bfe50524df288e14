// Elementwise ops: forward kernel call and backward formula side by side.
// Broadcast gradients are summed back to each input's shape by the engine (autograd.cpp), so the
// formulas below are written as if no broadcasting happened.
#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace ember {

namespace {

void check_same(const char* op, const Tensor& a, const Tensor& b) {
  EMBER_CHECK(a.defined() && b.defined(), op, ": undefined tensor argument");
  EMBER_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch: ", a.shape(), " ", dtype_name(a.dtype()), " and ",
              b.shape(), " ", dtype_name(b.dtype()));
  EMBER_CHECK(a.device() == b.device(), op, ": device mismatch: ", a.device(), " and ", b.device());
}

// Runs a binary kernel on broadcast views of a and b; comparisons produce uint8.
Tensor binary_kernel(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same(name, a, b);
  Shape shape = broadcast_shapes(name, a.shape(), b.shape());
  DType out_dtype = binary_is_comparison(op) ? kUInt8 : a.dtype();
  Tensor out = empty(shape, TensorOptions(out_dtype).device(a.device()));
  backend_of(a).binary(op, a.detach().expand(shape), b.detach().expand(shape), out);
  return out;
}

Tensor unary_kernel(UnaryOp op, const Tensor& a, Scalars s = {}) {
  DType out_dtype = unary_is_comparison(op) ? kUInt8 : a.dtype();
  Tensor out = empty(a.shape(), TensorOptions(out_dtype).device(a.device()));
  backend_of(a).unary(op, a, out, s);
  return out;
}

void require_float(const char* op, const Tensor& a) {
  EMBER_CHECK(a.defined(), op, ": undefined tensor argument");
  EMBER_CHECK(is_floating(a.dtype()), op, ": expected a floating-point tensor, got ", dtype_name(a.dtype()), " of shape ",
              a.shape());
}

}  // namespace

// ---------------- binary arithmetic ----------------

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Add, "add", a, b);
  if (grad_needed({a, b})) record("add", out, {a, b}, [](const Tensor& g, NeedsGrad) -> Grads { return {g, g}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Sub, "sub", a, b);
  if (grad_needed({a, b}))
    record("sub", out, {a, b}, [](const Tensor& g, NeedsGrad n) -> Grads { return {g, n[1] ? neg(g) : Tensor()}; });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Mul, "mul", a, b);
  if (grad_needed({a, b}))
    record("mul", out, {a, b}, [sa = SavedTensor(a), sb = SavedTensor(b)](const Tensor& g, NeedsGrad n) -> Grads {
      return {n[0] ? g * sb.get() : Tensor(), n[1] ? g * sa.get() : Tensor()};
    });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Div, "div", a, b);
  if (grad_needed({a, b}))
    record("div", out, {a, b}, [sa = SavedTensor(a), sb = SavedTensor(b)](const Tensor& g, NeedsGrad n) -> Grads {
      const Tensor& bv = sb.get();
      // d(a/b)/da = 1/b ; d(a/b)/db = -a/b^2
      return {n[0] ? g / bv : Tensor(), n[1] ? neg(g * sa.get() / (bv * bv)) : Tensor()};
    });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  require_float("pow", a);
  Tensor out = binary_kernel(BinaryOp::Pow, "pow", a, b);
  if (grad_needed({a, b}))
    record("pow", out, {a, b},
           [sa = SavedTensor(a), sb = SavedTensor(b), so = SavedTensor(out)](const Tensor& g, NeedsGrad n) -> Grads {
             const Tensor &x = sa.get(), &e = sb.get();
             // d(x^e)/dx = e * x^(e-1) ; d(x^e)/de = x^e * log(x)  (0 where x == 0, as PyTorch)
             Tensor gx = n[0] ? g * e * pow(x, e - 1.0) : Tensor();
             Tensor ge = n[1] ? g * where(eq(x, 0.0), zeros_like(x), so.get() * log(x)) : Tensor();
             return {gx, ge};
           });
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Maximum, "maximum", a, b);
  if (grad_needed({a, b}))
    record("maximum", out, {a, b}, [sa = SavedTensor(a), sb = SavedTensor(b)](const Tensor& g, NeedsGrad) -> Grads {
      // ties split the gradient evenly, like PyTorch
      Tensor ga = where(gt(sa.get(), sb.get()), g, where(eq(sa.get(), sb.get()), g * 0.5, zeros_like(g)));
      return {ga, g - ga};
    });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Minimum, "minimum", a, b);
  if (grad_needed({a, b}))
    record("minimum", out, {a, b}, [sa = SavedTensor(a), sb = SavedTensor(b)](const Tensor& g, NeedsGrad) -> Grads {
      Tensor ga = where(lt(sa.get(), sb.get()), g, where(eq(sa.get(), sb.get()), g * 0.5, zeros_like(g)));
      return {ga, g - ga};
    });
  return out;
}

// ---------------- scalar forms ----------------

Tensor add(const Tensor& a, double s) {
  Tensor out = unary_kernel(UnaryOp::AddScalar, a, {s, 0});
  if (grad_needed(a)) record("add", out, {a}, [](const Tensor& g, NeedsGrad) -> Grads { return {g}; });
  return out;
}
Tensor sub(const Tensor& a, double s) { return add(a, -s); }
Tensor rsub(const Tensor& a, double s) {
  Tensor out = unary_kernel(UnaryOp::RSubScalar, a, {s, 0});
  if (grad_needed(a)) record("rsub", out, {a}, [](const Tensor& g, NeedsGrad) -> Grads { return {neg(g)}; });
  return out;
}
Tensor mul(const Tensor& a, double s) {
  Tensor out = unary_kernel(UnaryOp::MulScalar, a, {s, 0});
  if (grad_needed(a)) record("mul", out, {a}, [s](const Tensor& g, NeedsGrad) -> Grads { return {g * s}; });
  return out;
}
Tensor div(const Tensor& a, double s) {
  Tensor out = unary_kernel(UnaryOp::MulScalar, a, {1.0 / s, 0});
  if (grad_needed(a)) record("div", out, {a}, [s](const Tensor& g, NeedsGrad) -> Grads { return {g / s}; });
  return out;
}
Tensor rdiv(const Tensor& a, double s) {
  Tensor out = unary_kernel(UnaryOp::RDivScalar, a, {s, 0});
  if (grad_needed(a))
    record("rdiv", out, {a}, [sa = SavedTensor(a), s](const Tensor& g, NeedsGrad) -> Grads {
      const Tensor& x = sa.get();
      return {g * (-s) / (x * x)};  // d(s/x)/dx = -s/x^2
    });
  return out;
}
Tensor pow(const Tensor& a, double e) {
  require_float("pow", a);
  Tensor out = unary_kernel(UnaryOp::PowScalar, a, {e, 0});
  if (grad_needed(a))
    record("pow", out, {a}, [sa = SavedTensor(a), e](const Tensor& g, NeedsGrad) -> Grads {
      if (e == 0.0) return {zeros_like(g)};
      return {g * e * pow(sa.get(), e - 1.0)};
    });
  return out;
}

// ---------------- unary math ----------------

Tensor neg(const Tensor& a) {
  Tensor out = unary_kernel(UnaryOp::Neg, a);
  if (grad_needed(a)) record("neg", out, {a}, [](const Tensor& g, NeedsGrad) -> Grads { return {neg(g)}; });
  return out;
}

Tensor exp(const Tensor& a) {
  require_float("exp", a);
  Tensor out = unary_kernel(UnaryOp::Exp, a);
  if (grad_needed(a))
    record("exp", out, {a}, [so = SavedTensor(out)](const Tensor& g, NeedsGrad) -> Grads { return {g * so.get()}; });
  return out;
}

Tensor log(const Tensor& a) {
  require_float("log", a);
  Tensor out = unary_kernel(UnaryOp::Log, a);
  if (grad_needed(a))
    record("log", out, {a}, [sa = SavedTensor(a)](const Tensor& g, NeedsGrad) -> Grads { return {g / sa.get()}; });
  return out;
}

Tensor sqrt(const Tensor& a) {
  require_float("sqrt", a);
  Tensor out = unary_kernel(UnaryOp::Sqrt, a);
  if (grad_needed(a))
    record("sqrt", out, {a}, [so = SavedTensor(out)](const Tensor& g, NeedsGrad) -> Grads {
      return {g / (so.get() * 2.0)};  // d sqrt(x) = 1 / (2 sqrt(x))
    });
  return out;
}

Tensor abs(const Tensor& a) {
  Tensor out = unary_kernel(UnaryOp::Abs, a);
  if (grad_needed(a))
    record("abs", out, {a}, [sa = SavedTensor(a)](const Tensor& g, NeedsGrad) -> Grads { return {g * sign(sa.get())}; });
  return out;
}

Tensor sign(const Tensor& a) { return unary_kernel(UnaryOp::Sign, a); }

Tensor tanh(const Tensor& a) {
  require_float("tanh", a);
  Tensor out = unary_kernel(UnaryOp::Tanh, a);
  if (grad_needed(a))
    record("tanh", out, {a}, [so = SavedTensor(out)](const Tensor& g, NeedsGrad) -> Grads {
      Tensor gi = empty_like(g);  // fused: g * (1 - y^2)
      backend_of(g).binary(BinaryOp::TanhBackward, g, so.get(), gi);
      return {gi};
    });
  return out;
}

Tensor sigmoid(const Tensor& a) {
  require_float("sigmoid", a);
  Tensor out = unary_kernel(UnaryOp::Sigmoid, a);
  if (grad_needed(a))
    record("sigmoid", out, {a}, [so = SavedTensor(out)](const Tensor& g, NeedsGrad) -> Grads {
      Tensor gi = empty_like(g);  // fused: g * y * (1 - y)
      backend_of(g).binary(BinaryOp::SigmoidBackward, g, so.get(), gi);
      return {gi};
    });
  return out;
}

Tensor relu(const Tensor& a) {
  Tensor out = unary_kernel(UnaryOp::Relu, a);
  if (grad_needed(a))
    record("relu", out, {a}, [so = SavedTensor(out)](const Tensor& g, NeedsGrad) -> Grads {
      Tensor gi = empty_like(g);  // fused: g where y > 0 (y > 0 exactly when x > 0)
      backend_of(g).binary(BinaryOp::ReluBackward, g, so.get(), gi);
      return {gi};
    });
  return out;
}

Tensor gelu(const Tensor& a) {
  require_float("gelu", a);
  Tensor out = unary_kernel(UnaryOp::Gelu, a);
  if (grad_needed(a))
    record("gelu", out, {a}, [sa = SavedTensor(a)](const Tensor& g, NeedsGrad) -> Grads {
      Tensor gi = empty_like(g);  // fused: g * (Phi(x) + x phi(x))
      backend_of(g).binary(BinaryOp::GeluBackward, g, sa.get(), gi);
      return {gi};
    });
  return out;
}

Tensor clamp(const Tensor& a, double lo, double hi) {
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

// ---------------- selection ----------------

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same("where", a, b);
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
  EMBER_CHECK(mask.dtype() == kUInt8, "masked_fill: mask must be uint8, got ", dtype_name(mask.dtype()));
  EMBER_CHECK(broadcast_shapes("masked_fill", a.shape(), mask.shape()) == a.shape(), "masked_fill: mask of shape ",
              mask.shape(), " does not broadcast to the tensor's shape ", a.shape());
  Tensor fill = full(Shape{}, value, TensorOptions(a.dtype()).device(a.device()));
  return where(mask, fill, a);
}

// ---------------- comparisons (not differentiable) ----------------

Tensor eq(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Ge, "ge", a, b); }
Tensor eq(const Tensor& a, double s) { return unary_kernel(UnaryOp::EqScalar, a, {s, 0}); }
Tensor ne(const Tensor& a, double s) { return unary_kernel(UnaryOp::NeScalar, a, {s, 0}); }
Tensor lt(const Tensor& a, double s) { return unary_kernel(UnaryOp::LtScalar, a, {s, 0}); }
Tensor le(const Tensor& a, double s) { return unary_kernel(UnaryOp::LeScalar, a, {s, 0}); }
Tensor gt(const Tensor& a, double s) { return unary_kernel(UnaryOp::GtScalar, a, {s, 0}); }
Tensor ge(const Tensor& a, double s) { return unary_kernel(UnaryOp::GeScalar, a, {s, 0}); }

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
