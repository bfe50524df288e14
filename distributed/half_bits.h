// float32 <-> bfloat16 / float16 by bit manipulation, rounding to nearest, ties to even (what a
// hardware conversion does). The compression hooks (distributed/comm_hooks.h) store the narrow
// values as raw 16-bit patterns because core has no bf16/fp16 kernels yet.
//
//   float32  s eeeeeeee mmmmmmmmmmmmmmmmmmmmmmm   (8 exponent bits, bias 127, 23 mantissa bits)
//   bfloat16 s eeeeeeee mmmmmmm                    (the top half of a float32: same exponent range)
//   float16  s eeeee mmmmmmmmmm                    (5 exponent bits, bias 15: max 65504, min normal 2^-14)
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace ember::distributed {

inline uint16_t float_to_bf16_bits(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // NaN stays a quiet NaN
  // Add just under half of the dropped 16 bits, plus 1 when the kept part is odd: a tie then
  // rounds up only from an odd value, i.e. to even. A carry ripples into the exponent (up to inf).
  const uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;
  return static_cast<uint16_t>(x >> 16);
}

inline float bf16_bits_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_fp16_bits(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t x = bits & 0x7fffffffu;  // |f|
  if (x > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 (halfway past 65504, ties to even): inf
  if (x < 0x33000000u) return sign;             // < 2^-25 (half the smallest subnormal): zero
  const uint32_t exp = x >> 23;                 // biased float32 exponent
  if (x < 0x38800000u) {
    // Below 2^-14: a float16 subnormal, a count of 2^-24 units. |f| = mant * 2^(exp-150), so the
    // count is mant >> (126 - exp), rounded to nearest even on the bits shifted out.
    const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14..24
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;  // r == 0x400 is the smallest normal: still right
    return sign | static_cast<uint16_t>(r);
  }
  // Normal: rebias the exponent (127 -> 15) and keep the top 10 mantissa bits, rounding on the
  // 13 dropped ones. A carry out of the mantissa increments the exponent, as it should.
  uint32_t h = ((exp - 112u) << 10) | ((x & 0x7fffffu) >> 13);
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

inline float fp16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float32
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf or NaN
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

}  // namespace ember::distributed
