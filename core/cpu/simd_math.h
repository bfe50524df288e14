// Elementary functions written in plain arithmetic, so that a loop calling them vectorises under
// `omp simd`: glibc's expf is an opaque scalar call, and it dominated softmax and cross entropy
// (one call per logit). Used by core/cpu/cpu_softmax.cpp and core/cpu/cpu_loss.cpp.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace ember::simd {

// e^x for float32. Cephes' expf: x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2, e^r from a
// degree-6 polynomial, 2^n put into the exponent bits in two halves so that results down to the
// denormals (x ~ -103) and up to FLT_MAX are right. About 1 ulp from the exact value
// (tests/test_kernel_math.cpp checks it against the correctly rounded value over the float range).
inline float exp_f32(float x) {
  constexpr float kLo = -103.972084f, kHi = 88.7228394f;  // e^kLo is the smallest denormal, e^kHi ~ FLT_MAX
  float xc = x > kLo ? x : kLo;                            // also maps NaN to kLo (fixed up below)
  xc = xc < kHi ? xc : kHi;
  const float n = std::nearbyint(xc * 1.44269504088896341f);  // (std::floor would not vectorise)
  float r = xc - n * 0.693359375f;  // ln2 in two parts: n * 0.693359375 is exact
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t k = static_cast<int32_t>(n), k1 = k / 2, k2 = k - k1;  // 2^n = 2^k1 * 2^k2, each a normal float
  const float y = p * std::bit_cast<float>((k1 + 127) << 23) * std::bit_cast<float>((k2 + 127) << 23);
  return x != x ? x : x > kHi ? std::numeric_limits<float>::infinity() : x <= kLo ? 0.0f : y;
}

// e^x: the vectorisable exp_f32 for float32; for float64 the accurate libm exp (float64 is for
// checking, not speed).
template <typename T>
inline T exp(T x) {
  if constexpr (std::is_same_v<T, float>) return exp_f32(x);
  else return std::exp(x);
}

}  // namespace ember::simd
