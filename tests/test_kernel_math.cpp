// The math the CPU loops and the CUDA kernels share (core/reduce_math.h, core/pool_math.h,
// core/softmax_math.h, core/cross_entropy_row.h), tested on the CPU. Parts of it only the CUDA
// kernels call (the pooling backward's "which outputs cover this input", the extrema's identities),
// and this is where those parts run without a GPU: each against a brute-force definition.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/cpu/simd_math.h"
#include "core/cross_entropy_row.h"
#include "core/ops.h"
#include "core/pool_math.h"
#include "core/reduce_math.h"
#include "core/softmax_math.h"

using namespace ember;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------- pooling

TEST(PoolMath, MaxTapsAreExactlyTheWindowPositionsInsideTheInput) {
  for (int64_t size : {1, 2, 5, 9})
    for (int64_t k : {1, 2, 3})
      for (int64_t s : {1, 2, 3})
        for (int64_t d : {1, 2})
          for (int64_t pad = 0; 2 * pad <= k; ++pad) {
            const int64_t span = (k - 1) * d + 1;
            if (size + 2 * pad < span) continue;
            const int64_t out = (size + 2 * pad - span) / s + 1;
            for (int64_t o = 0; o < out; ++o) {
              std::vector<int64_t> want, got;
              for (int64_t j = 0; j < k; ++j) {
                const int64_t i = o * s - pad + j * d;
                if (i >= 0 && i < size) want.push_back(i);
              }
              const pool::Taps t = pool::max_taps(o, k, s, pad, d, size);
              for (int64_t i = t.first; i < t.end; i += d) got.push_back(i);
              EXPECT_EQ(got, want) << "size " << size << " k " << k << " s " << s << " d " << d << " pad " << pad
                                   << " o " << o;
            }
          }
}

TEST(PoolMath, MaxReplacesKeepsTheFirstMaximumAndLetsANaNWin) {
  EXPECT_TRUE(pool::max_replaces(2.0, 1.0));
  EXPECT_FALSE(pool::max_replaces(1.0, 1.0));  // a tie keeps the earlier position
  EXPECT_FALSE(pool::max_replaces(0.5, 1.0));
  EXPECT_TRUE(pool::max_replaces(kNaN, 1.0));
  EXPECT_TRUE(pool::max_replaces(kNaN, kNaN));  // a later NaN replaces an earlier one
  EXPECT_FALSE(pool::max_replaces(1e300, kNaN));
  EXPECT_TRUE(pool::max_replaces(-1e300, -kInf));
}

TEST(PoolMath, AvgWindowClipsToTheInputAndCountsThePaddingOnlyWhenAsked) {
  // size 5, kernel 3, stride 2, pad 1: windows [-1, 2), [1, 4), [3, 6) of the padded input.
  const pool::AvgWindow first = pool::avg_window(0, 3, 2, 1, 5);
  EXPECT_EQ(first.start, 0);
  EXPECT_EQ(first.end, 2);
  EXPECT_EQ(first.span, 3);
  const pool::AvgWindow last = pool::avg_window(2, 3, 2, 1, 5);
  EXPECT_EQ(last.start, 3);
  EXPECT_EQ(last.end, 5);
  EXPECT_EQ(last.span, 3);
  // Size 6 in ceil mode: the window of output 3 runs past size + pad = 7 and is cut there, so its
  // span (the divisor with count_include_pad) is 2, not 3.
  const pool::AvgWindow ceil = pool::avg_window(3, 3, 2, 1, 6);
  EXPECT_EQ(ceil.start, 5);
  EXPECT_EQ(ceil.end, 6);
  EXPECT_EQ(ceil.span, 2);
  EXPECT_EQ(pool::avg_divisor(first, last, true), 9);
  EXPECT_EQ(pool::avg_divisor(first, last, false), 4);
}

TEST(PoolMath, AvgOutputsCoveringAnInputAreExactlyTheWindowsThatContainIt) {
  for (int64_t size : {1, 4, 7, 10})
    for (int64_t k : {1, 2, 3, 4})
      for (int64_t s : {1, 2, 3})
        for (int64_t pad = 0; 2 * pad <= k; ++pad) {
          if (size + 2 * pad < k) continue;
          for (bool ceil_mode : {false, true}) {
            int64_t out = (size + 2 * pad - k + (ceil_mode ? s - 1 : 0)) / s + 1;
            if (ceil_mode && (out - 1) * s >= size + pad) --out;  // PyTorch: the last window starts inside
            for (int64_t i = 0; i < size; ++i) {
              int64_t first = -1, end = -1;
              for (int64_t o = 0; o < out; ++o) {
                const pool::AvgWindow w = pool::avg_window(o, k, s, pad, size);
                if (w.start <= i && i < w.end) {
                  if (first < 0) first = o;
                  end = o + 1;
                }
              }
              const pool::Outputs got = pool::avg_outputs_covering(i, k, s, pad, out);
              SCOPED_TRACE(::testing::Message() << "size " << size << " k " << k << " s " << s << " pad " << pad
                                                << (ceil_mode ? " ceil" : "") << " i " << i);
              if (first < 0) {
                EXPECT_GE(got.first, got.end) << "no window covers the input";
              } else {
                EXPECT_EQ(got.first, first);
                EXPECT_EQ(got.end, end);
              }
            }
          }
        }
}

TEST(PoolMath, AdaptiveWindowsCoverTheInputAndTheirInverseFindsThem) {
  for (int64_t size : {1, 3, 5, 7, 10})
    for (int64_t out : {1, 2, 3, 5, 7, 11}) {
      EXPECT_EQ(pool::adaptive_start(0, out, size), 0);
      EXPECT_EQ(pool::adaptive_end(out - 1, out, size), size);
      for (int64_t o = 0; o < out; ++o)  // floor(o*size/out) .. ceil((o+1)*size/out), never empty
        EXPECT_LT(pool::adaptive_start(o, out, size), pool::adaptive_end(o, out, size));
      for (int64_t i = 0; i < size; ++i) {
        int64_t first = -1, end = -1;
        for (int64_t o = 0; o < out; ++o)
          if (pool::adaptive_start(o, out, size) <= i && i < pool::adaptive_end(o, out, size)) {
            if (first < 0) first = o;
            end = o + 1;
          }
        const pool::Outputs got = pool::adaptive_outputs_covering(i, size, out);
        EXPECT_EQ(got.first, first) << "size " << size << " out " << out << " i " << i;
        EXPECT_EQ(got.end, end) << "size " << size << " out " << out << " i " << i;
      }
    }
}

// ---------------------------------------------------------------- reductions

TEST(ReduceMath, OutputDtypes) {
  EXPECT_EQ(reduction::output_dtype(ReduceOp::Sum, kUInt8), kInt64);
  EXPECT_EQ(reduction::output_dtype(ReduceOp::Sum, kFloat32), kFloat32);
  EXPECT_EQ(reduction::output_dtype(ReduceOp::Sum, kInt64), kInt64);
  EXPECT_EQ(reduction::output_dtype(ReduceOp::Mean, kUInt8), kUInt8);  // an integer mean divides in integers
  EXPECT_EQ(reduction::output_dtype(ReduceOp::Max, kFloat64), kFloat64);
  EXPECT_EQ(reduction::output_dtype(ReduceOp::ArgMin, kFloat32), kInt64);
  EXPECT_EQ(reduction::mean<uint8_t>(int64_t{7}, 2), 3);
  EXPECT_DOUBLE_EQ(reduction::mean<double>(7.0, 2), 3.5);
  static_assert(std::is_same_v<reduction::SumAcc<uint8_t>, int64_t>);
  static_assert(std::is_same_v<reduction::SumAcc<float>, float>);  // float sums stay in float
  static_assert(std::is_same_v<reduction::SumOut<uint8_t>, int64_t>);
}

TEST(ReduceMath, ExtremaPropagateNaNAndArgExtremaKeepTheFirst) {
  using reduction::beats;
  using reduction::pick;
  EXPECT_EQ(pick<true>(2.0, 1.0), 2.0);
  EXPECT_EQ(pick<false>(2.0, 1.0), 1.0);
  EXPECT_TRUE(std::isnan(pick<true>(kNaN, 1.0)));
  EXPECT_TRUE(std::isnan(pick<true>(1e300, kNaN)));  // a NaN, once seen, stays
  EXPECT_TRUE(std::isnan(pick<false>(-1e300, kNaN)));
  EXPECT_TRUE(beats<true>(kNaN, 1.0));
  EXPECT_FALSE(beats<true>(kNaN, kNaN));  // the first NaN stays
  EXPECT_FALSE(beats<true>(1.0, 1.0));    // a tie keeps the earlier element
  EXPECT_TRUE(beats<false>(int64_t{-3}, int64_t{2}));
  EXPECT_EQ((reduction::identity<true, double>()), -kInf);
  EXPECT_EQ((reduction::identity<false, uint8_t>()), 255);
  EXPECT_EQ((reduction::identity<true, int64_t>()), std::numeric_limits<int64_t>::lowest());
}

TEST(ReduceMath, PlanMergesContiguousDimsAndFindsRowsOrColumns) {
  Tensor x = zeros({2, 3, 4});
  // Over dims 1 and 2 of a contiguous tensor: 2 rows of 12.
  reduction::Layout L = reduction::plan(x, zeros({2, 1, 1}), 0b110);
  EXPECT_EQ(L.M, 2);
  EXPECT_EQ(L.N, 12);
  EXPECT_EQ(L.nred, 1);
  EXPECT_EQ(L.red[0].size, 12);
  EXPECT_EQ(L.red[0].in, 1);
  EXPECT_TRUE(L.rows);
  // Over dim 0: the innermost dim is kept, a column reduction; the kept dims merge into one of 12.
  L = reduction::plan(x, zeros({1, 3, 4}), 0b001);
  EXPECT_FALSE(L.rows);
  EXPECT_EQ(L.nkept, 1);
  EXPECT_EQ(L.kept[0].size, 12);
  EXPECT_EQ(L.red[0].in, 12);
  // The same reduction on a transposed view walks memory order: dim 0 of x.t() is innermost.
  Tensor t = zeros({4, 3}).t();  // [3, 4], strides [1, 3]
  L = reduction::plan(t, zeros({1, 4}), 0b01);
  EXPECT_TRUE(L.rows);
  EXPECT_EQ(L.red[0].in, 1);
  EXPECT_EQ(L.kept[0].in, 3);
  // A full reduction: no kept dims, a size-1 placeholder stands in.
  L = reduction::plan(x, zeros({1, 1, 1}), 0b111);
  EXPECT_EQ(L.M, 1);
  EXPECT_EQ(L.N, 24);
  EXPECT_EQ(L.nkept, 1);
  EXPECT_EQ(L.kept[0].size, 1);
  // offsets_of: flat kept index 5 of [2, 3] kept dims with strides (in 12/4, out 3/1).
  const reduction::Dim dims[2] = {{2, 12, 3}, {3, 4, 1}};
  int64_t in_off = -1, out_off = -1;
  reduction::offsets_of(dims, 2, 5, in_off, out_off);
  EXPECT_EQ(in_off, 1 * 12 + 2 * 4);
  EXPECT_EQ(out_off, 1 * 3 + 2 * 1);
}

// ---------------------------------------------------------------- softmax and cross entropy

TEST(SoftmaxMath, RowFormulas) {
  EXPECT_TRUE(std::isnan(softmax_math::max_nan(kNaN, 1.0)));
  EXPECT_TRUE(std::isnan(softmax_math::max_nan(1.0, kNaN)));  // a NaN anywhere makes the row NaN
  EXPECT_EQ(softmax_math::max_nan(-1.0, 2.0), 2.0);
  EXPECT_FLOAT_EQ(softmax_math::inverse_sum<float>(4.0), 0.25f);
  EXPECT_DOUBLE_EQ(softmax_math::log_sum<double>(std::exp(2.0)), 2.0);
  EXPECT_DOUBLE_EQ(softmax_math::log_softmax(3.0, 1.0, 0.5), 1.5);
  EXPECT_DOUBLE_EQ(softmax_math::softmax_grad(2.0, 0.25, 1.0), 0.25);       // y * (g - dot)
  EXPECT_DOUBLE_EQ(softmax_math::log_softmax_grad(2.0, 0.25, 4.0), 1.0);    // g - exp(y) * sum(g)
}

TEST(CrossEntropyRow, MaxSkipsNaNAndAnInfiniteMaxShiftsByZero) {
  EXPECT_EQ(xent::row_max(1.0, kNaN), 1.0);
  EXPECT_EQ(xent::row_max(-kInf, 2.0), 2.0);
  EXPECT_EQ(xent::shift(kInf), 0.0);
  EXPECT_EQ(xent::shift(-kInf), 0.0);
  EXPECT_EQ(xent::shift(-3.5f), -3.5f);
}

// ---------------------------------------------------------------- simd::exp (CPU only)

// The float32 exp the CPU softmax and cross entropy vectorise: within 2 ulps of the correctly
// rounded e^x over every 97th float between -104 and 89 (about 9e6 values, normal and denormal
// results), and exact at the edges: NaN stays NaN, overflow gives +inf, underflow 0, e^0 = 1.
TEST(SimdMath, ExpF32IsWithinTwoUlpsOverTheWholeRange) {
  const uint32_t lo = std::bit_cast<uint32_t>(-104.0f), hi = std::bit_cast<uint32_t>(89.0f);
  int checked = 0;
  auto ulps = [](float a, float b) {
    return std::abs(static_cast<int64_t>(std::bit_cast<int32_t>(a)) - std::bit_cast<int32_t>(b));
  };
  auto check = [&](float x) {
    const float want = static_cast<float>(std::exp(static_cast<double>(x))), got = simd::exp_f32(x);
    ASSERT_LE(ulps(got, want), 2) << "x = " << x << ": " << got << " vs " << want;
    ++checked;
  };
  for (uint32_t u = 0x80000000u; u <= lo; u += 97) check(std::bit_cast<float>(u));  // -0 .. -104
  for (uint32_t u = 0; u <= hi; u += 97) check(std::bit_cast<float>(u));            // +0 .. 89
  EXPECT_GT(checked, 8000000);
  EXPECT_TRUE(std::isnan(simd::exp_f32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(simd::exp_f32(89.0f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(simd::exp_f32(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_EQ(simd::exp_f32(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(simd::exp_f32(-104.0f), 0.0f);
  EXPECT_EQ(simd::exp_f32(0.0f), 1.0f);
  EXPECT_EQ(simd::exp(0.5), std::exp(0.5));  // float64: libm's exp itself
}

}  // namespace
