// The CPU pooling kernels' fast paths (core/cpu/cpu_pool.cpp) compute what the general kernels do.
//
// Max pooling 2x2 stride 2 (max_2x2_row) and the plane-by-plane backward are compared, element for
// element and bit for bit (NaN with NaN, -0 with +0 told apart), with a plain reference written
// here from the documented rule: taps in row-major order from a -inf start, a tap replaces the best
// when greater or NaN (so ties keep the first maximum and the last NaN wins), and the backward is a
// zero fill plus a scatter-add at the indices. Covered: NaNs (one and two per window), ties,
// all -inf windows, odd planes (7x7: the last row and column belong to no window), one image,
// float32 and float64, and a backward given indices of another window (3x3 stride 2 pad 1 on 8x8,
// overlapping windows whose gradients add up).
//
// Adaptive average pooling to 1x1 (one vectorised sum per plane): the forward equals a float64
// mean to float32 rounding, NaN and inf propagate, and the backward is bit for bit the general
// kernel's 0 + g / (H * W); odd planes (7x7, 1x1, 1x13) and one image.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/ember.h"
#include "nn/functional.h"

using namespace ember;

namespace {

namespace F = nn::functional;

// Reference max pooling with window k, stride s, no padding (indices are flat per plane).
template <typename T>
void reference_pool(const std::vector<T>& x, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t s,
                    std::vector<T>& y, std::vector<int64_t>& idx) {
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
  y.assign(planes * OH * OW, 0);
  idx.assign(planes * OH * OW, 0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        T best = -std::numeric_limits<T>::infinity();
        int64_t at = oh * s * W + ow * s;
        for (int64_t i = 0; i < k; ++i)
          for (int64_t j = 0; j < k; ++j) {
            const int64_t pos = (oh * s + i) * W + ow * s + j;
            const T v = x[p * H * W + pos];
            if (v > best || v != v) {
              best = v;
              at = pos;
            }
          }
        y[(p * OH + oh) * OW + ow] = best;
        idx[(p * OH + oh) * OW + ow] = at;
      }
}

template <typename T>
std::vector<T> reference_unpool(const std::vector<T>& gy, const std::vector<int64_t>& idx, int64_t planes,
                                int64_t plane_in) {
  std::vector<T> gx(planes * plane_in, T(0));
  const int64_t plane_out = static_cast<int64_t>(gy.size()) / planes;
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t o = 0; o < plane_out; ++o) gx[p * plane_in + idx[p * plane_out + o]] += gy[p * plane_out + o];
  return gx;
}

template <typename T>
void expect_same_bits(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool same = (std::isnan(a[i]) && std::isnan(b[i])) || (a[i] == b[i] && std::signbit(a[i]) == std::signbit(b[i]));
    ASSERT_TRUE(same) << what << " differs at " << i << ": " << a[i] << " vs " << b[i];
  }
}

// Inputs with every awkward case: random values, then ties (small integers), NaNs and -inf planted.
template <typename T>
std::vector<T> awkward(int64_t n, uint64_t seed) {
  std::vector<T> v(n);
  uint64_t r = seed;
  auto next = [&] { return (r = r * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t u = next();
    switch (u % 8) {
      case 0: v[i] = std::numeric_limits<T>::quiet_NaN(); break;
      case 1: v[i] = -std::numeric_limits<T>::infinity(); break;
      case 2: case 3: v[i] = static_cast<T>(next() % 3); break;  // ties
      default: v[i] = static_cast<T>(static_cast<double>(next() % 20000) / 1000.0 - 10.0);
    }
  }
  for (int64_t i = 0; i + 3 < n && i < 64; i += 4) v[i] = v[i + 1] = -std::numeric_limits<T>::infinity();  // -inf runs
  return v;
}

template <typename T>
Tensor tensor_of(const std::vector<T>& v, const Shape& s) {
  return from_vector<T>(v, s);
}

template <typename T>
void check_2x2(const Shape& shape, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "shape " << shape << ", " << (sizeof(T) == 4 ? "float32" : "float64"));
  const int64_t planes = shape[0] * shape[1], H = shape[2], W = shape[3];
  const std::vector<T> xv = awkward<T>(planes * H * W, seed);
  std::vector<T> want_y;
  std::vector<int64_t> want_idx;
  reference_pool(xv, planes, H, W, 2, 2, want_y, want_idx);

  auto [y, idx] = F::max_pool2d_with_indices(tensor_of(xv, shape), 2);
  expect_same_bits(y.template to_vector<T>(), want_y, "max_pool2d values");
  EXPECT_EQ(idx.template to_vector<int64_t>(), want_idx);

  // The backward, with gradients that include -0 and NaN.
  std::vector<T> gyv = awkward<T>(static_cast<int64_t>(want_y.size()), seed + 1);
  for (size_t i = 0; i < gyv.size(); i += 5) gyv[i] = T(-0.0);
  for (T& g : gyv)
    if (std::isinf(g)) g = T(1.5);
  const Tensor gx = max_pool2d_backward(tensor_of(gyv, y.shape()), idx, shape);
  expect_same_bits(gx.template to_vector<T>(), reference_unpool(gyv, want_idx, planes, H * W), "max_pool2d_backward");
}

TEST(CpuMaxPool2x2, MatchesTheReferenceBitForBit) {
  const std::vector<Shape> shapes = {{2, 3, 8, 8},   {1, 1, 7, 7},  {1, 2, 7, 6}, {3, 4, 24, 24},
                                     {1, 1, 2, 2},   {1, 3, 5, 9},  {2, 20, 8, 8}, {1, 64, 24, 24},
                                     {1, 1, 3, 100}, {4, 2, 33, 2}};
  uint64_t seed = 7;
  for (const Shape& s : shapes) {
    check_2x2<float>(s, seed++);
    check_2x2<double>(s, seed++);
  }
}

TEST(CpuMaxPool2x2, TwoNaNsInAWindowKeepTheLast) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto [y, idx] = F::max_pool2d_with_indices(from_vector<float>({nan, 1, 5, nan}, {1, 1, 2, 2}), 2);
  EXPECT_TRUE(std::isnan(y.item()));
  EXPECT_EQ(idx.to_vector<int64_t>(), (std::vector<int64_t>{3}));
  auto [y2, idx2] = F::max_pool2d_with_indices(from_vector<float>({2, 7, 7, 7}, {1, 1, 2, 2}), 2);
  EXPECT_EQ(y2.item(), 7.0);
  EXPECT_EQ(idx2.to_vector<int64_t>(), (std::vector<int64_t>{1}));  // ties: the first maximum
}

// Indices from a 3x3 stride-2 padded pool on 8x8 leave their 2x2 blocks and overlap: the backward
// must scatter-add like the reference.
TEST(CpuMaxPool2x2, BackwardWithIndicesOfAnotherWindow) {
  const Shape shape{2, 3, 8, 8};
  const std::vector<float> xv = awkward<float>(2 * 3 * 64, 99);
  auto [y, idx] = F::max_pool2d_with_indices(from_vector<float>(xv, shape), 3, 2, 1);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 4, 4}));
  std::vector<float> gyv(y.numel());
  for (size_t i = 0; i < gyv.size(); ++i) gyv[i] = static_cast<float>(i % 7) - 2.5f;
  const Tensor gx = max_pool2d_backward(from_vector<float>(gyv, y.shape()), idx, shape);
  expect_same_bits(gx.to_vector<float>(), reference_unpool(gyv, idx.to_vector<int64_t>(), 6, 64), "overlapping windows");
}

template <typename T>
void check_avg_1x1(const Shape& shape, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "shape " << shape << ", " << (sizeof(T) == 4 ? "float32" : "float64"));
  const int64_t planes = shape[0] * shape[1], n = shape[2] * shape[3];
  std::vector<T> xv = awkward<T>(planes * n, seed);
  for (T& v : xv)
    if (std::isnan(v) || std::isinf(v)) v = T(0.25);
  if (planes > 1) xv[n] = std::numeric_limits<T>::quiet_NaN();  // plane 1: NaN
  if (planes > 2) xv[2 * n] = std::numeric_limits<T>::infinity();  // plane 2: inf
  const Tensor y = F::adaptive_avg_pool2d(tensor_of(xv, shape), 1);
  ASSERT_EQ(y.shape(), (Shape{shape[0], shape[1], 1, 1}));
  const std::vector<T> got = y.template to_vector<T>();
  for (int64_t p = 0; p < planes; ++p) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(xv[p * n + i]);
    const double want = s / static_cast<double>(n);
    if (std::isnan(want) || std::isinf(want)) {
      EXPECT_EQ(std::isnan(got[p]), std::isnan(want)) << "plane " << p;
      if (std::isinf(want)) {
        EXPECT_EQ(static_cast<double>(got[p]), want) << "plane " << p;
      }
    } else {
      const double tol = (sizeof(T) == 4 ? 1e-5 : 1e-12) * (1.0 + std::fabs(want)) * 10;
      EXPECT_NEAR(static_cast<double>(got[p]), want, tol) << "plane " << p;
    }
  }
  // The backward: every element of plane p is 0 + g[p] / n.
  std::vector<T> gyv = awkward<T>(planes, seed + 1);
  gyv[0] = T(-0.0);
  const Tensor gx = adaptive_avg_pool2d_backward(tensor_of(gyv, y.shape()), shape);
  std::vector<T> want_gx(planes * n);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < n; ++i) want_gx[p * n + i] = T(0) + gyv[p] / static_cast<T>(n);
  expect_same_bits(gx.template to_vector<T>(), want_gx, "adaptive_avg_pool2d_backward");
}

TEST(CpuAdaptiveAvgPool1x1, MatchesTheReference) {
  const std::vector<Shape> shapes = {{4, 64, 8, 8}, {1, 3, 7, 7}, {2, 5, 1, 1}, {1, 4, 1, 13}, {2, 3, 40, 40}};
  uint64_t seed = 31;
  for (const Shape& s : shapes) {
    check_avg_1x1<float>(s, seed++);
    check_avg_1x1<double>(s, seed++);
  }
}

}  // namespace
