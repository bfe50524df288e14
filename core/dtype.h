// Element types. The enum leaves room for half precision (BFloat16/Float16) without
// renumbering; kernels reject them until they are implemented.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>

#include "core/error.h"

namespace ember {

enum class DType : uint8_t { Float32, Float64, Int64, UInt8, BFloat16, Float16 };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kUInt8 = DType::UInt8;

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

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// The floating dtype that integer inputs of float math (exp, true division, a float scalar) become:
// PyTorch's default dtype.
inline constexpr DType kDefaultFloat = DType::Float32;

// PyTorch's type promotion for the dtypes ember computes with: uint8 < int64 < float32 < float64
// (the lattice is a chain, so the result is the larger of the two). The one function every binary
// op uses to pick its computation dtype; half types are refused until kernels support them.
inline DType promote_types(DType a, DType b) {
  auto rank = [](DType t) -> int {
    switch (t) {
      case DType::UInt8: return 0;
      case DType::Int64: return 1;
      case DType::Float32: return 2;
      case DType::Float64: return 3;
      default: EMBER_FAIL("type promotion: dtype ", dtype_name(t), " is not supported");
    }
  };
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

#define EMBER_DISPATCH_FLOAT(dtype, op_name, ...)                                                          \
  [&] {                                                                                                    \
    auto&& f_ = __VA_ARGS__;                                                                               \
    switch (dtype) {                                                                                       \
      case ::ember::DType::Float32: return f_.template operator()<float>();                                \
      case ::ember::DType::Float64: return f_.template operator()<double>();                               \
      default: EMBER_FAIL(op_name, ": expected a floating-point tensor, got ", ::ember::dtype_name(dtype)); \
    }                                                                                                      \
  }()
