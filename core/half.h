// The two 16-bit floating-point storage types, bfloat16 and float16 (IEEE half). They are storage
// formats only: every kernel widens them to float32, computes, and rounds the result back (PyTorch's
// "opmath" type), so a value type needs nothing but exact conversions to and from float.
//
//   bfloat16: 1 sign, 8 exponent, 7 mantissa bits — float32's range, ~3 decimal digits.
//   float16:  1 sign, 5 exponent, 10 mantissa bits — largest finite 65504, ~3.3 decimal digits,
//             subnormals down to 2^-24.
//
// Conversions from float round to nearest, ties to even (what the hardware and PyTorch do); NaN stays
// NaN (a quiet NaN, sign kept); float16 overflows to +-inf. The bit tricks are written out with
// integers, so the result is the same on the CPU and in a CUDA kernel and does not depend on the
// FPU's rounding or flush-to-zero mode.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/host_device.h"

namespace ember {

namespace half_bits {

EMBER_HD uint32_t float_to_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

EMBER_HD float bits_to_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// bfloat16 is the top half of a float32: round the low 16 bits away, to nearest even.
EMBER_HD uint16_t float_to_bfloat16(float f) {
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN: keep it quiet
  // Adding 0x7FFF rounds a remainder above half up; the extra low bit of the kept part breaks the
  // tie toward an even result. A carry out of the mantissa bumps the exponent (up to inf): correct.
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

EMBER_HD float bfloat16_to_float(uint16_t b) { return bits_to_float(static_cast<uint32_t>(b) << 16); }

EMBER_HD uint16_t float_to_float16(float f) {
  uint32_t x = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7FFFFFFFu;                                                       // |f|
  if (x > 0x7F800000u) return sign | 0x7E00u | ((x >> 13) & 0x3FFu);      // NaN: quiet, payload kept
  if (x >= 0x477FF000u) return sign | 0x7C00u;                            // >= 65520 (and inf) -> inf
  if (x >= 0x38800000u) {                                                 // |f| >= 2^-14: a normal half
    // Re-bias the exponent (127 -> 15, i.e. subtract 112 << 23), then round the 13 dropped bits to
    // nearest even as for bfloat16; a carry into the exponent is the correct rounding.
    const uint32_t rounding = 0xFFFu + ((x >> 13) & 1u);
    return sign | static_cast<uint16_t>((x - (112u << 23) + rounding) >> 13);
  }
  if (x <= 0x33000000u) return sign;  // |f| <= 2^-25, half the smallest subnormal: rounds to (signed) zero
  // A subnormal half counts units of 2^-24. The float is m * 2^(e - 150) with a 24-bit significand m,
  // so the count is m >> (126 - e), rounded to nearest even on the bits shifted out.
  const uint32_t e = x >> 23;
  const uint32_t m = (x & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t q = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (q & 1u))) ++q;  // q == 0x400 is the smallest normal: still right
  return sign | static_cast<uint16_t>(q);
}

EMBER_HD float float16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0x1Fu) return bits_to_float(sign | 0x7F800000u | (m << 13));  // inf or NaN
  if (e == 0) {  // zero or subnormal: m * 2^-24, exact in float
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((e + 112u) << 23) | (m << 13));
}

}  // namespace half_bits

// The two value types. Arithmetic on them goes through the implicit conversion to float; a result
// is stored back with an explicit conversion (static_cast<bfloat16>(x)), which rounds.
struct bfloat16 {
  uint16_t bits = 0;

  bfloat16() = default;
  EMBER_HD explicit bfloat16(float f) : bits(half_bits::float_to_bfloat16(f)) {}
  // From any other arithmetic type through float, as PyTorch converts (double -> float -> bfloat16).
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, float>>>
  EMBER_HD explicit bfloat16(T v) : bfloat16(static_cast<float>(v)) {}
  EMBER_HD operator float() const { return half_bits::bfloat16_to_float(bits); }  // NOLINT: widening is exact

  static EMBER_HD bfloat16 from_bits(uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
};

struct float16 {
  uint16_t bits = 0;

  float16() = default;
  EMBER_HD explicit float16(float f) : bits(half_bits::float_to_float16(f)) {}
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, float>>>
  EMBER_HD explicit float16(T v) : float16(static_cast<float>(v)) {}
  EMBER_HD operator float() const { return half_bits::float16_to_float(bits); }  // NOLINT: widening is exact

  static EMBER_HD float16 from_bits(uint16_t b) {
    float16 h;
    h.bits = b;
    return h;
  }
};

static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2, "16-bit storage types");

// The type a kernel computes in for storage type T: float for the 16-bit types, T itself otherwise.
template <typename T> struct opmath { using type = T; };
template <> struct opmath<bfloat16> { using type = float; };
template <> struct opmath<float16> { using type = float; };
template <typename T> using opmath_t = typename opmath<T>::type;

}  // namespace ember
