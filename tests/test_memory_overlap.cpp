// Issue 12 item 3: in-place writes through overlapping memory raise like PyTorch instead of
// silently accumulating into a shared element or reading values already overwritten.
#include "core/memory_overlap.h"
#include "tests/test_util.h"

using namespace ember;
using test::expect_error;

namespace {
const char* kInternal = "more than one element of the written-to tensor refers to a single memory location";
const char* kPartial = "some elements of the input tensor and the written-to tensor refer to a single memory location";
}  // namespace

TEST(MemoryOverlap, InternalOverlapDetection) {
  EXPECT_FALSE(has_internal_overlap(zeros({3, 4})));
  EXPECT_FALSE(has_internal_overlap(zeros({3, 4}).t()));
  EXPECT_FALSE(has_internal_overlap(zeros({4, 6}).slice(1, 0, 6, 2)));
  EXPECT_FALSE(has_internal_overlap(zeros({3, 1}).expand({3, 1})));
  EXPECT_FALSE(has_internal_overlap(zeros({1, 4}).expand({1, 4})));
  EXPECT_TRUE(has_internal_overlap(zeros({3, 1}).expand({3, 4})));
  EXPECT_TRUE(has_internal_overlap(zeros({4}).expand({2, 4})));
  EXPECT_TRUE(has_internal_overlap(zeros({4}).expand({2, 4}).t()));
}

TEST(MemoryOverlap, InPlaceIntoAnExpandedTensorRaises) {
  Tensor x = ones({3, 4});
  // Before: every column accumulated into the one shared element of each row.
  expect_error([&] { ones({3, 1}).expand({3, 4}).add_(x); }, {"add_", kInternal, "[3, 4]"});
  expect_error([&] { ones({3, 1}).expand({3, 4}).sub_(x); }, {"sub_", kInternal});
  expect_error([&] { ones({3, 1}).expand({3, 4}).mul_(x); }, {"mul_", kInternal});
  expect_error([&] { ones({3, 1}).expand({3, 4}).div_(x); }, {"div_", kInternal});
  expect_error([&] { ones({3, 1}).expand({3, 4}).mul_(2.0); }, {"mul_", kInternal});
  expect_error([&] { ones({3, 1}).expand({3, 4}).add_(2.0); }, {"add_", kInternal});
  expect_error([&] { ones({3, 1}).expand({3, 4}).clamp_(0, 1); }, {"clamp_", kInternal});
  expect_error([&] { ones({3, 1}).expand({3, 4}).copy_(x); }, {"copy_", kInternal});
}

TEST(MemoryOverlap, FillOfAnExpandedTensorIsAllowedLikePyTorch) {
  Tensor base = ones({3, 1});
  base.expand({3, 4}).fill_(2.0);
  EXPECT_EQ(base.to_vector<float>(), std::vector<float>({2, 2, 2}));
}

TEST(MemoryOverlap, InPlaceWithAPartiallyOverlappingInputRaises) {
  Tensor x = arange(9.0).reshape({3, 3});
  // Before: the upper triangle was read after the lower one had been overwritten.
  expect_error([&] { x.add_(x.t()); }, {"add_", kPartial, "strides [1, 3]"});
  expect_error([&] { x.mul_(x.select(0, 0)); }, {"mul_", kPartial});
  Tensor v = arange(8.0);
  expect_error([&] { v.slice(0, 1, 8).copy_(v.slice(0, 0, 7)); }, {"copy_", kPartial});
  EXPECT_EQ(x.to_vector<float>(), std::vector<float>({0, 1, 2, 3, 4, 5, 6, 7, 8})) << "nothing was written";
  EXPECT_EQ(x.storage()->version(), 0u) << "a refused write does not count as a modification";
}

TEST(MemoryOverlap, IdenticalOrDisjointViewsAreFine) {
  Tensor x = arange(4.0);
  x.add_(x);  // exactly the same view: each element reads itself before writing
  EXPECT_EQ(x.to_vector<float>(), std::vector<float>({0, 2, 4, 6}));
  x.copy_(x);
  Tensor v = arange(8.0);
  v.slice(0, 4, 8).add_(v.slice(0, 0, 4));  // same storage, disjoint bytes
  EXPECT_EQ(v.to_vector<float>(), std::vector<float>({0, 1, 2, 3, 4, 6, 8, 10}));
  v.slice(0, 4, 8).copy_(v.slice(0, 0, 4));
  EXPECT_EQ(v.to_vector<float>(), std::vector<float>({0, 1, 2, 3, 0, 1, 2, 3}));
  Tensor y = ones({3, 4});
  y.add_(ones({4}));  // a broadcast input from another storage
  EXPECT_EQ(y.sum().item(), 24.0);
}
