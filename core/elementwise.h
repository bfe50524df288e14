// Every elementwise op, defined once. Each functor is a plain __host__ __device__ function of
// scalars: the CPU backend runs it in vectorisable loops (core/cpu/cpu_elementwise.cpp), the CUDA
// backend instantiates it in one templated kernel. Adding an op = one enum value + one functor +
// one case in visit_unary / visit_binary at the bottom of this file.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/host_device.h"

namespace ember {

// Parameters of the scalar forms (add 2.0, clamp to [lo, hi], ...).
struct Scalars {
  double a = 0, b = 0;
};

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt, Abs, Tanh, Sigmoid, Relu, Gelu, Sign, Sin, Cos,
  AddScalar, MulScalar, RSubScalar, RDivScalar, PowScalar, Clamp,
  EqScalar, NeScalar, LtScalar, LeScalar, GtScalar, GeScalar,  // output uint8
};

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum, FloorDiv,
  AddRelu,  // relu(a + b): the end of a residual block in one pass (add_relu)
  Eq, Ne, Lt, Le, Gt, Ge,  // output uint8
  // Fused first-order backward formulas (a = incoming gradient, b = saved input or output):
  ReluBackward,     // a where y = relu(x) is not <= 0 (so a NaN input passes the gradient, as in PyTorch)
  GeluBackward,     // a * gelu'(x)
  SigmoidBackward,  // a * y * (1 - y)   (b = y = sigmoid(x))
  TanhBackward,     // a * (1 - y^2)     (b = y = tanh(x))
};

inline bool unary_is_comparison(UnaryOp op) { return op >= UnaryOp::EqScalar; }
inline bool binary_is_comparison(BinaryOp op) { return op >= BinaryOp::Eq && op <= BinaryOp::Ge; }

namespace ew {

template <typename T> EMBER_HD T gelu(T x) { return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440))); }
template <typename T> EMBER_HD T gelu_grad(T x) {
  T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
  T pdf = std::exp(T(-0.5) * x * x) * T(0.39894228040143267794);
  return cdf + x * pdf;
}
// relu(a + b), NaN passing through as relu's does.
template <typename T> EMBER_HD T add_relu(T a, T b) {
  const T s = T(a + b);
  return s <= T(0) ? T(0) : s;
}
template <typename T> EMBER_HD T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

// x != x only for a NaN; false for every integer, so the NaN-propagating ops below serve all dtypes.
template <typename T> EMBER_HD bool is_nan(T x) { return x != x; }
// PyTorch's maximum/minimum: a NaN in either operand wins.
template <typename T> EMBER_HD T maximum(T a, T b) { return is_nan(a) ? a : (is_nan(b) ? b : (a > b ? a : b)); }
template <typename T> EMBER_HD T minimum(T a, T b) { return is_nan(a) ? a : (is_nan(b) ? b : (a < b ? a : b)); }

// Division rounding toward -inf (PyTorch's floor_divide). Integers: C++ truncates toward zero, so
// a quotient with a remainder of the other sign is one too large. Floats: PyTorch's formula from
// fmod, so the result is exact where floor(a / b) would round a / b first; b == 0 gives a / b (+-inf, NaN).
template <typename T> EMBER_HD T floor_divide(T a, T b) {
  if constexpr (std::is_unsigned_v<T>) {
    return a / b;  // no negative operands: truncation is the floor
  } else if constexpr (std::is_integral_v<T>) {
    const T q = a / b;  // callers refuse b == 0 for integers
    return (a % b != 0 && ((a < 0) != (b < 0))) ? T(q - 1) : q;
  } else {
    if (b == T(0)) return a / b;
    const T mod = std::fmod(a, b);
    T div = (a - mod) / b;
    if (mod != T(0) && ((b < T(0)) != (mod < T(0)))) div -= T(1);
    if (div == T(0)) return std::copysign(T(0), a / b);
    T floored = std::floor(div);
    if (div - floored > T(0.5)) floored += T(1);
    return floored;
  }
}

// One functor per op. Unary functors take (x, a, b) with a, b the op's scalars.
#define EMBER_UNARY(Name, expr) \
  struct Name { template <typename T> EMBER_HD auto operator()(T x, T a, T b) const { (void)a; (void)b; return expr; } };
EMBER_UNARY(Neg, -x)
EMBER_UNARY(Exp, std::exp(x))
EMBER_UNARY(Log, std::log(x))
EMBER_UNARY(Sqrt, std::sqrt(x))
EMBER_UNARY(Abs, x < T(0) ? T(-x) : x)
EMBER_UNARY(Tanh, std::tanh(x))
EMBER_UNARY(Sigmoid, sigmoid(x))
EMBER_UNARY(Relu, x <= T(0) ? T(0) : x)  // NaN stays NaN, as in PyTorch
EMBER_UNARY(Gelu, gelu(x))
EMBER_UNARY(Sign, T((x > T(0)) - (x < T(0))))
EMBER_UNARY(Sin, std::sin(x))
EMBER_UNARY(Cos, std::cos(x))
EMBER_UNARY(AddScalar, T(x + a))
EMBER_UNARY(MulScalar, T(x * a))
EMBER_UNARY(RSubScalar, T(a - x))
EMBER_UNARY(RDivScalar, T(a / x))
EMBER_UNARY(PowScalar, std::pow(x, a))
EMBER_UNARY(Clamp, x < a ? a : (x > b ? b : x))
EMBER_UNARY(EqScalar, x == a)
EMBER_UNARY(NeScalar, x != a)
EMBER_UNARY(LtScalar, x < a)
EMBER_UNARY(LeScalar, x <= a)
EMBER_UNARY(GtScalar, x > a)
EMBER_UNARY(GeScalar, x >= a)
#undef EMBER_UNARY

#define EMBER_BINARY(Name, expr) \
  struct Name { template <typename T> EMBER_HD auto operator()(T a, T b) const { return expr; } };
EMBER_BINARY(Add, T(a + b))
EMBER_BINARY(Sub, T(a - b))
EMBER_BINARY(Mul, T(a * b))
EMBER_BINARY(Div, T(a / b))
EMBER_BINARY(Pow, std::pow(a, b))
EMBER_BINARY(Maximum, maximum(a, b))
EMBER_BINARY(Minimum, minimum(a, b))
EMBER_BINARY(FloorDiv, floor_divide(a, b))
EMBER_BINARY(AddRelu, add_relu(a, b))
EMBER_BINARY(Eq, a == b)
EMBER_BINARY(Ne, a != b)
EMBER_BINARY(Lt, a < b)
EMBER_BINARY(Le, a <= b)
EMBER_BINARY(Gt, a > b)
EMBER_BINARY(Ge, a >= b)
EMBER_BINARY(ReluBackward, b <= T(0) ? T(0) : a)
EMBER_BINARY(GeluBackward, T(a * gelu_grad(b)))
EMBER_BINARY(SigmoidBackward, T(a * b * (T(1) - b)))
EMBER_BINARY(TanhBackward, T(a * (T(1) - b * b)))
#undef EMBER_BINARY

}  // namespace ew
}  // namespace ember

namespace ember {
// visit_unary(op, f) calls f(ew::<Op>{}) — the switch runs once per kernel call, never per element.
template <typename F>
decltype(auto) visit_unary(UnaryOp op, F&& f) {
  switch (op) {
#define EMBER_CASE(Name) case UnaryOp::Name: return f(ew::Name{});
    EMBER_CASE(Neg) EMBER_CASE(Exp) EMBER_CASE(Log) EMBER_CASE(Sqrt) EMBER_CASE(Abs) EMBER_CASE(Tanh)
    EMBER_CASE(Sigmoid) EMBER_CASE(Relu) EMBER_CASE(Gelu) EMBER_CASE(Sign) EMBER_CASE(Sin) EMBER_CASE(Cos)
    EMBER_CASE(AddScalar)
    EMBER_CASE(MulScalar) EMBER_CASE(RSubScalar) EMBER_CASE(RDivScalar) EMBER_CASE(PowScalar) EMBER_CASE(Clamp)
    EMBER_CASE(EqScalar) EMBER_CASE(NeScalar) EMBER_CASE(LtScalar) EMBER_CASE(LeScalar) EMBER_CASE(GtScalar)
    EMBER_CASE(GeScalar)
#undef EMBER_CASE
  }
  return f(ew::Neg{});
}

template <typename F>
decltype(auto) visit_binary(BinaryOp op, F&& f) {
  switch (op) {
#define EMBER_CASE(Name) case BinaryOp::Name: return f(ew::Name{});
    EMBER_CASE(Add) EMBER_CASE(Sub) EMBER_CASE(Mul) EMBER_CASE(Div) EMBER_CASE(Pow) EMBER_CASE(Maximum)
    EMBER_CASE(Minimum) EMBER_CASE(FloorDiv) EMBER_CASE(AddRelu) EMBER_CASE(Eq) EMBER_CASE(Ne) EMBER_CASE(Lt) EMBER_CASE(Le) EMBER_CASE(Gt) EMBER_CASE(Ge)
    EMBER_CASE(ReluBackward) EMBER_CASE(GeluBackward) EMBER_CASE(SigmoidBackward) EMBER_CASE(TanhBackward)
#undef EMBER_CASE
  }
  return f(ew::Add{});
}
}  // namespace ember
