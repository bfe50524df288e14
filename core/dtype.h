// Element types. BFloat16 and Float16 are storage types (core/half.h): kernels widen them to
// float32, compute, and round the result back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>

#include "core/error.h"
#include "core/half.h"

namespace ember {

enum class DType : uint8_t { Float32, Float64, Int64, UInt8, BFloat16, Float16 };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kUInt8 = DType::UInt8;
inline constexpr DType kBFloat16 = DType::BFloat16;
inline constexpr DType kFloat16 = DType::Float16;
inline constexpr DType kHalf = DType::Float16;  // PyTorch's other name for float16

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
    case DType::BFloat16: return 2;
    case DType::Float16: return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64 || t == DType::BFloat16 || t == DType::Float16; }
// The 16-bit floating types, which kernels compute on in float32 (PyTorch's reduced floating types).
inline bool is_reduced_floating(DType t) { return t == DType::BFloat16 || t == DType::Float16; }

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// The floating dtype that integer inputs of float math (exp, true division, a float scalar) become:
// PyTorch's default dtype.
inline constexpr DType kDefaultFloat = DType::Float32;

// PyTorch's type promotion: uint8 < int64 < {bfloat16, float16} < float32 < float64. A float beats
// any integer (int64 + float16 is float16); bfloat16 and float16 are not ordered, so together they
// give float32. The one function every binary op uses to pick its computation dtype.
inline DType promote_types(DType a, DType b) {
  if (a == b) return a;
  if (is_floating(a) != is_floating(b)) return is_floating(a) ? a : b;
  if (!is_floating(a)) return (a == DType::Int64 || b == DType::Int64) ? DType::Int64 : DType::UInt8;
  if (is_reduced_floating(a) && is_reduced_floating(b)) return DType::Float32;
  auto rank = [](DType t) { return t == DType::Float64 ? 2 : t == DType::Float32 ? 1 : 0; };
  return rank(a) >= rank(b) ? a : b;
}

// Whether a result of dtype `from` may be written into a tensor of dtype `to` in place (PyTorch's
// can_cast: never a float into an integer tensor).
inline bool can_cast(DType from, DType to) { return is_floating(to) || !is_floating(from); }

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::UInt8; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::BFloat16; };
template <> struct dtype_of<float16> { static constexpr DType value = DType::Float16; };

}  // namespace ember

// EMBER_DISPATCH(dtype, op_name, [&]<typename T>() { ... }) calls the lambda with T bound to the
// C++ type of `dtype`. One place maps DType -> C++ type; kernels never switch by hand.
#define EMBER_DISPATCH_ALL(dtype, op_name, ...)                                                   \
  [&] {                                                                                           \
    auto&& f_ = __VA_ARGS__;                                                                      \
    switch (dtype) {                                                                              \
      case ::ember::DType::Float32: return f_.template operator()<float>();                       \
      case ::ember::DType::Float64: return f_.template operator()<double>();                      \
      case ::ember::DType::Int64: return f_.template operator()<int64_t>();                       \
      case ::ember::DType::UInt8: return f_.template operator()<uint8_t>();                       \
      default: EMBER_FAIL(op_name, ": dtype ", ::ember::dtype_name(dtype), " is not supported"); \
    }                                                                                             \
  }()

// EMBER_DISPATCH_ALL and the two 16-bit float types, for kernels that only move or convert values
// (copy, fill, where, ...) or that compute in opmath_t<T> (core/half.h) and round the result back.
#define EMBER_DISPATCH_ALL_AND_HALF(dtype, op_name, ...)                                          \
  [&] {                                                                                           \
    auto&& f_ = __VA_ARGS__;                                                                      \
    switch (dtype) {                                                                              \
      case ::ember::DType::Float32: return f_.template operator()<float>();                       \
      case ::ember::DType::Float64: return f_.template operator()<double>();                      \
      case ::ember::DType::Int64: return f_.template operator()<int64_t>();                       \
      case ::ember::DType::UInt8: return f_.template operator()<uint8_t>();                       \
      case ::ember::DType::BFloat16: return f_.template operator()<::ember::bfloat16>();          \
      case ::ember::DType::Float16: return f_.template operator()<::ember::float16>();            \
    }                                                                                             \
    EMBER_FAIL(op_name, ": dtype ", ::ember::dtype_name(dtype), " is not supported");            \
  }()

#define EMBER_DISPATCH_FLOAT(dtype, op_name, ...)                                                          \
  [&] {                                                                                                    \
    auto&& f_ = __VA_ARGS__;                                                                               \
    switch (dtype) {                                                                                       \
      case ::ember::DType::Float32: return f_.template operator()<float>();                                \
      case ::ember::DType::Float64: return f_.template operator()<double>();                               \
      case ::ember::DType::BFloat16:                                                                     \
      case ::ember::DType::Float16:                                                                       \
        EMBER_FAIL(op_name, ": dtype ", ::ember::dtype_name(dtype), " is not supported by this kernel");  \
      default: EMBER_FAIL(op_name, ": expected a floating-point tensor, got ", ::ember::dtype_name(dtype)); \
    }                                                                                                      \
  }()
