// Cutout and RandomErasing: the exact region each one touches for a given per-sample stream, the
// area and aspect-ratio bounds, p = 0 as the identity, the same batches with any number of
// DataLoader workers, and the argument errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/ember.h"
#include "data/data.h"
#include "tests/test_util.h"

using namespace ember;

namespace {

// The bounding box of the pixels of plane 0 that differ from `background` (empty: h = w = 0).
struct Box {
  int64_t top = 0, left = 0, h = 0, w = 0;
  int64_t changed = 0;  // how many pixels changed
};
Box changed_box(const std::vector<float>& img, int64_t H, int64_t W, float background) {
  int64_t y0 = H, y1 = -1, x0 = W, x1 = -1;
  Box b;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      if (img[y * W + x] != background) {
        y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
        ++b.changed;
      }
  if (b.changed) b = {y0, x0, y1 - y0 + 1, x1 - x0 + 1, b.changed};
  return b;
}

}  // namespace

TEST(CutoutTransform, ErasesTheClippedSquareAtTheDrawnCentre) {
  const int64_t C = 3, H = 12, W = 10, L = 6;
  data::Cutout cutout(L);
  int clipped = 0;
  for (int64_t index = 0; index < 200; ++index) {
    std::vector<float> img(C * H * W, 1.0f);
    data::SampleRng rng(5, 2, index);
    cutout.apply(img.data(), {C, H, W}, rng);
    // Replay the draws: centre row, then column; the square is [c - L/2, c - L/2 + L) clipped.
    data::SampleRng replay(5, 2, index);
    const int64_t cy = replay.uniform_int(H), cx = replay.uniform_int(W);
    const int64_t y0 = std::max<int64_t>(0, cy - L / 2), y1 = std::min<int64_t>(H, cy - L / 2 + L);
    const int64_t x0 = std::max<int64_t>(0, cx - L / 2), x1 = std::min<int64_t>(W, cx - L / 2 + L);
    clipped += (y1 - y0) * (x1 - x0) < L * L;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const bool inside = y >= y0 && y < y1 && x >= x0 && x < x1;
          ASSERT_EQ(img[(c * H + y) * W + x], inside ? 0.0f : 1.0f)
              << "sample " << index << " channel " << c << " pixel (" << y << ", " << x << ")";
        }
    // Same stream, same result.
    std::vector<float> again(C * H * W, 1.0f);
    data::SampleRng rng2(5, 2, index);
    cutout.apply(again.data(), {C, H, W}, rng2);
    EXPECT_EQ(again, img);
  }
  EXPECT_GT(clipped, 20) << "centres near the border should clip the square often";
  EXPECT_LT(clipped, 200) << "and some squares should lie fully inside";
}

TEST(CutoutTransform, FullSquareInsideAndSeveralHoles) {
  // An odd length keeps its side: a 5 x 5 square when it is not clipped.
  data::Cutout five(5);
  int full = 0;
  for (int64_t index = 0; index < 100; ++index) {
    std::vector<float> img(20 * 20, 3.0f);
    data::SampleRng rng(1, 0, index);
    five.apply(img.data(), {20, 20}, rng);
    const Box b = changed_box(img, 20, 20, 3.0f);
    EXPECT_EQ(b.changed, b.h * b.w);
    EXPECT_LE(b.h, 5);
    EXPECT_LE(b.w, 5);
    full += b.h == 5 && b.w == 5;
  }
  EXPECT_GT(full, 30);
  // n_holes = 0 changes nothing; 3 holes erase at least as much as one.
  std::vector<float> img(8 * 8, 1.0f);
  data::SampleRng rng(0, 0, 0);
  data::Cutout(4, 0).apply(img.data(), {8, 8}, rng);
  EXPECT_EQ(img, std::vector<float>(64, 1.0f));
  std::vector<float> one(64, 1.0f), three(64, 1.0f);
  data::SampleRng r1(9, 0, 3), r3(9, 0, 3);
  data::Cutout(3, 1).apply(one.data(), {8, 8}, r1);
  data::Cutout(3, 3).apply(three.data(), {8, 8}, r3);
  for (size_t i = 0; i < 64; ++i) {
    if (one[i] == 0.0f) {
      EXPECT_EQ(three[i], 0.0f) << "the first hole is drawn first in both";
    }
  }
}

TEST(CutoutTransform, Errors) {
  test::expect_error([] { data::Cutout(0); }, {"Cutout: length must be positive, got 0"});
  test::expect_error([] { data::Cutout(4, -1); }, {"Cutout: n_holes must be non-negative, got -1"});
  test::expect_error([] { data::Cutout(4).check({5}); }, {"Cutout: expects image samples [C, H, W] or [H, W], got [5]"});
}

TEST(RandomErasingTransform, ProbabilityZeroIsTheIdentity) {
  data::RandomErasing never({.p = 0.0});
  Tensor x = randn({3, 16, 16});
  const std::vector<float> orig = x.to_vector<float>();
  for (int64_t index = 0; index < 300; ++index) {
    std::vector<float> img = orig;
    data::SampleRng rng(4, 0, index);
    never.apply(img.data(), {3, 16, 16}, rng);
    ASSERT_EQ(img, orig) << "sample " << index;
  }
}

// With p = 1 every sample is erased (unless 10 draws all miss): one rectangle, the same in every
// channel, whose size is consistent with an area in scale * H * W and a ratio in `ratio` after
// rounding h and w (each within 1/2 of the real-valued sqrt(area * r), sqrt(area / r)).
TEST(RandomErasingTransform, RectangleRespectsScaleAndRatio) {
  const int64_t C = 3, H = 32, W = 32;
  const double smin = 0.05, smax = 0.3, rmin = 0.5, rmax = 2.0;
  data::RandomErasing erase({.p = 1.0, .scale_min = smin, .scale_max = smax, .ratio_min = rmin, .ratio_max = rmax,
                             .value = {7.0f}});
  std::set<std::pair<int64_t, int64_t>> sizes;
  int erased = 0;
  for (int64_t index = 0; index < 1000; ++index) {
    std::vector<float> img(C * H * W, 0.0f);
    data::SampleRng rng(8, 1, index);
    erase.apply(img.data(), {C, H, W}, rng);
    const Box b = changed_box(img, H, W, 0.0f);
    if (b.changed == 0) continue;
    ++erased;
    ASSERT_EQ(b.changed, b.h * b.w) << "a filled rectangle";
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const bool inside = y >= b.top && y < b.top + b.h && x >= b.left && x < b.left + b.w;
          ASSERT_EQ(img[(c * H + y) * W + x], inside ? 7.0f : 0.0f);
        }
    EXPECT_LT(b.h, H);
    EXPECT_LT(b.w, W);
    const double h = double(b.h), w = double(b.w), area = double(H * W);
    EXPECT_GE((h + 0.5) * (w + 0.5), smin * area) << b.h << " x " << b.w;
    EXPECT_LE((h - 0.5) * (w - 0.5), smax * area) << b.h << " x " << b.w;
    EXPECT_GE((h + 0.5) / (w - 0.5), rmin) << b.h << " x " << b.w;
    EXPECT_LE((h - 0.5) / (w + 0.5), rmax) << b.h << " x " << b.w;
    sizes.insert({b.h, b.w});
  }
  EXPECT_GT(erased, 990) << "these bounds almost always fit within 10 tries";
  EXPECT_GT(sizes.size(), 30u) << "sizes should vary";
}

TEST(RandomErasingTransform, DeterministicPerChannelValuesAndNoise) {
  const Shape shape{3, 10, 10};
  data::RandomErasing per_channel({.p = 1.0, .value = {1.0f, 2.0f, 3.0f}});
  per_channel.check(shape);
  std::vector<float> img(300, 0.0f), again(300, 0.0f);
  data::SampleRng rng(2, 0, 7), rng2(2, 0, 7);
  per_channel.apply(img.data(), shape, rng);
  per_channel.apply(again.data(), shape, rng2);
  EXPECT_EQ(img, again) << "same stream, same rectangle";
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < 100; ++i) {
      const float v = img[c * 100 + i];
      EXPECT_TRUE(v == 0.0f || v == float(c + 1)) << "channel " << c << " holds " << v;
    }
  EXPECT_GT(std::count(img.begin(), img.end(), 3.0f), 0);

  // value = "random": N(0, 1) noise, different per pixel.
  data::RandomErasing noise({.p = 1.0, .scale_min = 0.3, .scale_max = 0.3, .ratio_min = 1.0, .ratio_max = 1.0,
                             .random_value = true});
  std::vector<float> all;
  for (int64_t index = 0; index < 50; ++index) {
    std::vector<float> z(300, 100.0f);
    data::SampleRng r(3, 0, index);
    noise.apply(z.data(), shape, r);
    for (float v : z)
      if (v != 100.0f) all.push_back(v);
  }
  ASSERT_GT(all.size(), 2000u);
  double mean = 0, sq = 0;
  for (float v : all) mean += v, sq += double(v) * v;
  mean /= all.size();
  const double var = sq / all.size() - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.1);
  EXPECT_NEAR(var, 1.0, 0.15);
}

TEST(RandomErasingTransform, TenMissesLeaveTheImageAlone) {
  // Area = the whole image with ratio 1: h = w = H, which never fits (h < H is required).
  data::RandomErasing impossible({.p = 1.0, .scale_min = 1.0, .scale_max = 1.0, .ratio_min = 1.0, .ratio_max = 1.0});
  std::vector<float> img(64, 2.5f);
  data::SampleRng rng(0, 0, 0);
  impossible.apply(img.data(), {8, 8}, rng);
  EXPECT_EQ(img, std::vector<float>(64, 2.5f));
}

TEST(RandomErasingTransform, SameBatchesWithAnyNumberOfWorkers) {
  Tensor images = randn({24, 3, 8, 8});
  Tensor labels = zeros({24}, kInt64);
  auto ds = std::make_shared<data::TensorDataset>(images, labels);
  auto opts = data::DataLoaderOptions()
                  .batch_size(5)
                  .shuffle()
                  .seed(3)
                  .transform(data::RandomErasing({.p = 0.7, .random_value = true}))
                  .transform(data::Cutout(3));
  std::vector<float> reference;
  for (int workers : {0, 3}) {
    data::DataLoader loader(ds, opts.num_workers(workers));
    std::vector<float> all;
    for (auto& b : loader) {
      std::vector<float> v = b.data.to_vector<float>();
      all.insert(all.end(), v.begin(), v.end());
    }
    if (workers == 0) reference = all;
    else EXPECT_EQ(all, reference) << workers << " workers";
  }
  EXPECT_NE(reference, images.to_vector<float>());
}

TEST(RandomErasingTransform, Errors) {
  test::expect_error([] { data::RandomErasing({.p = 1.5}); },
                     {"RandomErasing: probability p must be in [0, 1], got 1.5"});
  test::expect_error([] { data::RandomErasing({.scale_min = 0.5, .scale_max = 0.2}); },
                     {"RandomErasing: scale must be (min, max) with 0 <= min <= max <= 1, got (0.5, 0.2)"});
  test::expect_error([] { data::RandomErasing({.scale_max = 1.5}); }, {"scale must be (min, max)", "1.5"});
  test::expect_error([] { data::RandomErasing({.ratio_min = 0.0}); },
                     {"RandomErasing: ratio must be (min, max) with 0 < min <= max, got (0, 3.3)"});
  test::expect_error([] { data::RandomErasing({.ratio_min = 3, .ratio_max = 1}); }, {"ratio must be (min, max)"});
  test::expect_error([] { data::RandomErasing({.value = {}}); }, {"RandomErasing: value is empty"});
  test::expect_error([] { data::RandomErasing({.value = {1, 2}}).check({3, 4, 4}); },
                     {"RandomErasing: has 2 fill values but samples [3, 4, 4] have 3 channels"});
}
