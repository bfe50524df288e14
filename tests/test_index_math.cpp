// cuda/index_math.h on the CPU: the 32-bit fast divider against `/` and `%` (every small divisor,
// powers of two and their neighbours, divisors and numerators at the 2^31 and 2^32 boundaries,
// random ones), and the host-side choice of the 32-bit path, which must give the same offsets as
// the 64-bit one and must not be taken once a count or an offset passes 2^31 - 1 (issue 19 item 5).
// The reductions' index math (cuda/reduce_index.h) likewise: both paths against
// reduction::offsets_of on real layout plans, and the host's choice at the 2^31 and 2^32 boundaries.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/ops.h"
#include "cuda/index_math.h"
#include "cuda/reduce_index.h"

using namespace ember::cuda;

namespace {

constexpr uint64_t k2to31 = uint64_t{1} << 31;
constexpr uint64_t k2to32 = uint64_t{1} << 32;

std::vector<uint32_t> interesting_divisors() {
  std::vector<uint32_t> d;
  for (uint32_t i = 1; i <= 2048; ++i) d.push_back(i);
  for (int b = 11; b < 32; ++b)
    for (int64_t delta = -2; delta <= 2; ++delta) d.push_back(static_cast<uint32_t>((int64_t{1} << b) + delta));
  for (uint64_t v : {k2to31 - 1, k2to31, k2to31 + 1, k2to32 - 3, k2to32 - 2, k2to32 - 1, uint64_t{3000000019},
                     uint64_t{65537} * 3, uint64_t{1000003}})
    d.push_back(static_cast<uint32_t>(v));
  std::mt19937 rng(19);
  for (int i = 0; i < 2000; ++i) d.push_back(std::max<uint32_t>(1, static_cast<uint32_t>(rng())));
  for (int i = 0; i < 2000; ++i) d.push_back(1 + rng() % 100000);
  return d;
}

std::vector<uint32_t> interesting_numerators(uint32_t d, std::mt19937& rng) {
  std::vector<uint32_t> n = {0, 1, 2, d - 1, d, static_cast<uint32_t>(std::min<uint64_t>(uint64_t{d} + 1, k2to32 - 1)),
                             static_cast<uint32_t>(k2to31 - 1), static_cast<uint32_t>(k2to31),
                             static_cast<uint32_t>(k2to31 + 1), static_cast<uint32_t>(k2to32 - 2),
                             static_cast<uint32_t>(k2to32 - 1)};
  // The largest multiples of d and their neighbours, where a rounding error would show first.
  const uint64_t top = (k2to32 - 1) / d * d;
  for (int64_t delta = -1; delta <= 1; ++delta)
    if (static_cast<int64_t>(top) + delta >= 0 && top + delta < k2to32) n.push_back(static_cast<uint32_t>(top + delta));
  const uint64_t half = (k2to31 - 1) / d * d;
  for (int64_t delta = -1; delta <= 1; ++delta)
    if (static_cast<int64_t>(half) + delta >= 0) n.push_back(static_cast<uint32_t>(half + delta));
  for (int i = 0; i < 40; ++i) n.push_back(static_cast<uint32_t>(rng()));
  return n;
}

}  // namespace

TEST(IntDivider, MatchesDivisionAndRemainderEverywhereIncludingThe2To31And2To32Boundaries) {
  std::mt19937 rng(5);
  int64_t checked = 0, wrong = 0;
  for (uint32_t d : interesting_divisors()) {
    const IntDivider div(d);
    for (uint32_t n : interesting_numerators(d, rng)) {
      ++checked;
      if (div.div(n) != n / d || div.mod(n) != n % d) {
        if (++wrong <= 5) ADD_FAILURE() << n << " / " << d << ": got " << div.div(n) << " rem " << div.mod(n);
      }
    }
  }
  EXPECT_EQ(wrong, 0) << "of " << checked;
  EXPECT_GT(checked, 50000);
}

TEST(IntDivider, EveryNumeratorBelow2To20ForSmallDivisors) {
  for (uint32_t d : {1u, 3u, 7u, 10u, 28u, 255u, 1000u}) {
    const IntDivider div(d);
    for (uint32_t n = 0; n < (1u << 20); ++n)
      ASSERT_EQ(div.div(n), n / d) << n << " / " << d;
  }
}

TEST(IndexMath, OffsetsFit32BitUpTo2To31Minus1) {
  const int64_t max = kMax32BitIndex;
  {
    const int64_t size[1] = {max + 1}, stride[1] = {1};
    EXPECT_TRUE(offsets_fit_32bit(1, size, stride)) << "last offset 2^31 - 1";
  }
  {
    const int64_t size[1] = {max + 2}, stride[1] = {1};
    EXPECT_FALSE(offsets_fit_32bit(1, size, stride)) << "last offset 2^31";
  }
  {
    const int64_t size[2] = {2, 3}, stride[2] = {max - 2, 1};
    EXPECT_TRUE(offsets_fit_32bit(2, size, stride));  // (max - 2) + 2 = max
    const int64_t over[2] = {max - 1, 1};
    EXPECT_FALSE(offsets_fit_32bit(2, size, over));
  }
  {
    const int64_t size[2] = {65536, 65536}, stride[2] = {65536, 1};  // 2^32 elements
    EXPECT_FALSE(offsets_fit_32bit(2, size, stride));
    const int64_t broadcast[2] = {0, 0};
    EXPECT_TRUE(offsets_fit_32bit(2, size, broadcast));
  }
  const int64_t size[1] = {10}, negative[1] = {-1};
  EXPECT_FALSE(offsets_fit_32bit(1, size, negative)) << "negative strides keep the 64-bit path";
  EXPECT_TRUE(count_fits_32bit(max));
  EXPECT_FALSE(count_fits_32bit(max + 1));
}

TEST(IndexMath, OffsetCalcChoosesThe32BitPathOnlyWhenEverythingFits) {
  OffsetCalc<2> oc;
  oc.ndim = 2;
  oc.size[0] = 32768;  // 32768 * 65535 = 2^31 - 32768 elements
  oc.size[1] = 65535;
  oc.stride[0][0] = 65535, oc.stride[1][0] = 1;  // contiguous output
  oc.stride[0][1] = 0, oc.stride[1][1] = 1;      // a broadcast row
  OffsetCalc<2> narrow = oc;
  use_32bit_if_it_fits(narrow);
  EXPECT_TRUE(narrow.narrow);

  OffsetCalc<2> too_many = oc;
  too_many.size[0] = 32769;  // 2^31 + 32767 elements
  too_many.stride[0][0] = 65535;
  use_32bit_if_it_fits(too_many);
  EXPECT_FALSE(too_many.narrow);

  OffsetCalc<2> far_offset = oc;
  far_offset.stride[0][1] = 65537;  // operand 1's last offset: 32767 * 65537 + 65534 > 2^31 - 1
  use_32bit_if_it_fits(far_offset);
  EXPECT_FALSE(far_offset.narrow);

  // Both paths give the same offsets at the far end.
  for (int64_t i : {int64_t{0}, int64_t{65534}, int64_t{65535}, int64_t{32768} * 65535 - 1}) {
    int64_t a[2], b[2];
    narrow.get(i, a);
    oc.get(i, b);
    EXPECT_EQ(a[0], b[0]) << i;
    EXPECT_EQ(a[1], b[1]) << i;
  }
}

TEST(IndexMath, NarrowOffsetsMatchWideOffsetsForRandomViews) {
  std::mt19937 rng(42);
  int compared = 0;
  for (int trial = 0; trial < 300; ++trial) {
    OffsetCalc<3> wide;
    wide.ndim = 1 + static_cast<int>(rng() % 5);
    int64_t numel = 1;
    for (int d = 0; d < wide.ndim; ++d) {
      wide.size[d] = 1 + rng() % 37;
      numel *= wide.size[d];
      for (int k = 0; k < 3; ++k) wide.stride[d][k] = rng() % 3 == 0 ? 0 : static_cast<int64_t>(rng() % 5000);
    }
    OffsetCalc<3> narrow = wide;
    use_32bit_if_it_fits(narrow);
    ASSERT_TRUE(narrow.narrow);
    for (int s = 0; s < 50; ++s) {
      const int64_t i = static_cast<int64_t>(rng() % numel);
      int64_t a[3], b[3];
      narrow.get(i, a);
      wide.get(i, b);
      for (int k = 0; k < 3; ++k) ASSERT_EQ(a[k], b[k]) << "trial " << trial << " i " << i << " operand " << k;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 300 * 50);
}

TEST(IndexMath, PlaneIndexerSplitsLikeDivisionAndModulo) {
  for (auto [planes, rows, cols] : {std::array<int64_t, 3>{3, 5, 7}, {64, 28, 28}, {1, 1, 1}, {1000, 1, 13}}) {
    const PlaneIndexer ix(planes, rows, cols);
    EXPECT_TRUE(ix.narrow);
    for (int64_t i = 0; i < planes * rows * cols; ++i) {
      int64_t p, r, c;
      ix.split(i, p, r, c);
      ASSERT_EQ(c, i % cols);
      ASSERT_EQ(r, (i / cols) % rows);
      ASSERT_EQ(p, i / (cols * rows));
    }
  }
  // 2^31 elements: the 64-bit path, still correct at the end.
  const PlaneIndexer big(2, 32768, 32768);
  EXPECT_FALSE(big.narrow);
  int64_t p, r, c;
  big.split((int64_t{1} << 31) - 1, p, r, c);
  EXPECT_EQ(p, 1);
  EXPECT_EQ(r, 32767);
  EXPECT_EQ(c, 32767);
  const PlaneIndexer just_fits(1, 32768, 65535);
  EXPECT_TRUE(just_fits.narrow);
  just_fits.split(int64_t{32768} * 65535 - 1, p, r, c);
  EXPECT_EQ(p, 0);
  EXPECT_EQ(r, 32767);
  EXPECT_EQ(c, 65534);
}

TEST(IndexMath, IndexDividerIs32BitUpTo2To31Minus1AndExactEitherSide) {
  const int64_t max = kMax32BitIndex;
  for (int64_t d : {int64_t{1}, int64_t{3}, int64_t{10}, int64_t{784}, int64_t{65537}, max}) {
    const IndexDivider small(d, max);  // indices below 2^31 - 1: the 32-bit path
    EXPECT_TRUE(small.narrow) << d;
    for (int64_t i : {int64_t{0}, int64_t{1}, d - 1, d, d + 1, max - d, max - 1, max})
      if (i >= 0) {
        ASSERT_EQ(small.div(i), i / d) << i << " / " << d;
      }
    const IndexDivider big(d, max + 1);  // 2^31 indices: 64-bit
    EXPECT_FALSE(big.narrow) << d;
    for (int64_t i : {max, max + 1, (int64_t{1} << 32) + 5, (int64_t{1} << 40) + 3})
      ASSERT_EQ(big.div(i), i / d) << i << " / " << d;
  }
  EXPECT_FALSE(IndexDivider(max + 1, 10).narrow) << "a divisor of 2^31";
}

// ---------------------------------------------------------------- reductions (cuda/reduce_index.h)

namespace {

using ember::reduction::Dim;
using ember::reduction::Layout;

// Both index paths of ix against each other and against reduction::offsets_of (what the kernel
// used before), for the outputs and reduced elements listed (all of them when the lists are empty).
void expect_paths_agree(const Layout& L, const ReduceIndex& ix, std::vector<int64_t> ms, std::vector<int64_t> js,
                        const std::string& what) {
  if (ms.empty())
    for (int64_t m = 0; m < L.M; ++m) ms.push_back(m);
  if (js.empty())
    for (int64_t j = 0; j < L.N; ++j) js.push_back(j);
  for (int64_t m : ms) {
    int64_t in_ref, out_ref, in_w, out_w;
    ember::reduction::offsets_of(L.kept, L.nkept, m, in_ref, out_ref);
    output_offsets<false>(ix, m, in_w, out_w);
    ASSERT_EQ(in_w, in_ref) << what << " output " << m;
    ASSERT_EQ(out_w, out_ref) << what << " output " << m;
    if (ix.narrow) {
      int64_t in_n, out_n;
      output_offsets<true>(ix, m, in_n, out_n);
      ASSERT_EQ(in_n, in_ref) << what << " output " << m << " (32-bit)";
      ASSERT_EQ(out_n, out_ref) << what << " output " << m << " (32-bit)";
    }
  }
  for (int64_t j : js) {
    int64_t ref, unused;
    ember::reduction::offsets_of(L.red, L.nred, j, ref, unused);
    ASSERT_EQ(reduced_offset<false>(ix, j), ref) << what << " reduced element " << j;
    if (ix.narrow) {
      ASSERT_EQ(static_cast<int64_t>(reduced_offset<true>(ix, static_cast<uint32_t>(j))), ref)
          << what << " reduced element " << j << " (32-bit)";
    }
  }
}

Layout layout_of(std::initializer_list<Dim> kept, std::initializer_list<Dim> red) {
  Layout L;
  for (const Dim& d : kept) {
    L.kept[L.nkept++] = d;
    L.M *= d.size;
  }
  for (const Dim& d : red) {
    L.red[L.nred++] = d;
    L.N *= d.size;
  }
  return L;
}

}  // namespace

TEST(ReduceIndex, BothPathsMatchOffsetsOfForEveryDimsMaskOfStridedViews) {
  using namespace ember;
  const Tensor base = empty({6, 5, 9, 8});
  const Tensor views[] = {base, base.permute({2, 0, 3, 1}).slice(2, 1, 8, 2), base.transpose(0, 3),
                          empty({5, 1, 7}).expand({4, 5, 3, 7})};
  int checked = 0;
  for (const Tensor& in : views) {
    for (uint32_t mask = 1; mask < (1u << in.dim()); ++mask) {
      Shape out_shape = in.shape();
      for (int d = 0; d < in.dim(); ++d)
        if ((mask >> d) & 1u) out_shape[d] = 1;
      const Layout L = reduction::plan(in, empty(out_shape), mask);
      const ReduceIndex ix = make_reduce_index(L);
      ASSERT_TRUE(ix.narrow) << "small tensors take the 32-bit path";
      expect_paths_agree(L, ix, {}, {}, "mask " + std::to_string(mask));
      // The second pass of a split reduction, over [M, splits] partials.
      const Layout P = partials_layout(L, 7);
      const ReduceIndex px = make_reduce_index(P);
      ASSERT_TRUE(px.narrow);
      expect_paths_agree(P, px, {}, {}, "partials of mask " + std::to_string(mask));
      for (int64_t m = 0; m < P.M; ++m) {
        int64_t in_off, out_off;
        output_offsets<true>(px, m, in_off, out_off);
        ASSERT_EQ(in_off, m * 7) << "partials are [outputs, splits], contiguous";
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 15 + 15 + 15 + 15);
}

TEST(ReduceIndex, Chooses32BitOnlyWhenCountsAndOffsetsFitAtThe2To31Boundary) {
  const int64_t max = kMax32BitIndex;  // 2^31 - 1
  // N = 2^31 - 1 elements, the largest count the 32-bit path takes, beside an input stride of 2^31 - 1.
  const Layout fits = layout_of({{2, max, 1}}, {{max, 1, 0}});
  const ReduceIndex a = make_reduce_index(fits);
  EXPECT_TRUE(a.narrow);
  expect_paths_agree(fits, a, {0, 1}, {0, 1, max - 2, max - 1}, "N = 2^31 - 1");

  const Layout too_many = layout_of({{2, 1, 1}}, {{max + 1, 2, 0}});  // N = 2^31
  EXPECT_FALSE(make_reduce_index(too_many).narrow);
  expect_paths_agree(too_many, make_reduce_index(too_many), {0, 1}, {max, max - 1}, "N = 2^31");

  const Layout too_many_outputs = layout_of({{max + 1, 1, 1}}, {{3, 0, 0}});  // M = 2^31
  EXPECT_FALSE(make_reduce_index(too_many_outputs).narrow);

  const Layout far_input = layout_of({{2, max, 1}}, {{3, 1, 0}});  // kept side reaches 2^31 - 1
  EXPECT_TRUE(make_reduce_index(far_input).narrow);
  const Layout past_input = layout_of({{2, max + 1, 1}}, {{3, 1, 0}});  // ... and 2^31
  EXPECT_FALSE(make_reduce_index(past_input).narrow);

  const Layout far_output = layout_of({{2, 1, max + 1}}, {{3, 2, 0}});  // an output offset of 2^31
  EXPECT_FALSE(make_reduce_index(far_output).narrow);

  const Layout negative = layout_of({{4, -3, 1}}, {{3, 1, 0}});  // a flipped view: 64-bit
  EXPECT_FALSE(make_reduce_index(negative).narrow);
  expect_paths_agree(negative, make_reduce_index(negative), {}, {}, "negative stride");
}

TEST(ReduceIndex, InputOffsetsUpTo2To32Minus2AreFormedWithoutWrapping) {
  // Both sides at 2^31 - 1 on their own: each fits, their sum (the input offset) needs 32 bits
  // unsigned. The kernel adds them as int64 + uint32_t, so nothing wraps.
  const int64_t max = kMax32BitIndex;
  const Layout L = layout_of({{2, max, 1}}, {{3, 2, 0}, {2, max - 4, 0}});
  const ReduceIndex ix = make_reduce_index(L);
  ASSERT_TRUE(ix.narrow);
  int64_t in_off, out_off;
  output_offsets<true>(ix, 1, in_off, out_off);
  const int64_t last = in_off + reduced_offset<true>(ix, 5u);  // element (1, [2, 1]) of the reduction
  EXPECT_EQ(last, max + 2 * 2 + (max - 4));
  EXPECT_GT(last, int64_t{1} << 31) << "past 2^31, below 2^32";
  expect_paths_agree(L, ix, {0, 1}, {}, "2^32 - 2");
}

TEST(ReduceIndex, PartialsOfManyOutputsTakeThe64BitPathWhenOnlyTheFirstPassFits) {
  // 2^20 outputs of 2^10 elements split 4096 ways: the partials reach 2^32 - 1 > 2^31 - 1.
  const Layout L = layout_of({{int64_t{1} << 20, 1024, 1}}, {{1024, 1, 0}});
  EXPECT_TRUE(make_reduce_index(L).narrow);
  const Layout P = partials_layout(L, 4096);
  const ReduceIndex px = make_reduce_index(P);
  EXPECT_FALSE(px.narrow);
  int64_t in_off, out_off;
  output_offsets<false>(px, (int64_t{1} << 20) - 1, in_off, out_off);
  EXPECT_EQ(in_off + reduced_offset<false>(px, 4095), (int64_t{1} << 32) - 1);
  EXPECT_EQ(out_off, (int64_t{1} << 20) - 1);
}
