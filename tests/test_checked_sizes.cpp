// Issue 12 item 2: size arithmetic on untrusted shapes. Every shape whose element count, stride or
// byte size overflows int64 is an ember::Error naming the op and the shape (before: a segfault in
// the fill, a negative numel, a numel of 0), and a request that fits int64 but not in memory is an
// OutOfMemoryError naming the bytes asked for.
#include "tests/test_util.h"

using namespace ember;
using test::expect_error;

TEST(CheckedSizes, ElementCountOverflowingInt64IsAnErrorNamingTheOpAndShape) {
  // 3 * 3074457345618258603 = 2^63 + 1: wrapped to -9223372036854775807 before.
  expect_error([] { zeros({3, 3074457345618258603LL}); }, {"zeros", "[3, 3074457345618258603]", "2^63-1"});
  // 2^32 * 2^32 = 2^64: wrapped to a numel of 0 before.
  expect_error([] { zeros({1LL << 32, 1LL << 32}); }, {"zeros", "[4294967296, 4294967296]"});
  expect_error([] { ones({1LL << 32, 1LL << 32}); }, {"ones"});
  expect_error([] { empty({1LL << 32, 1LL << 32}); }, {"empty"});
  expect_error([] { full({1LL << 32, 1LL << 32}, 2.0); }, {"full"});
  expect_error([] { rand({1LL << 32, 1LL << 32}); }, {"uniform"});
  expect_error([] { randn({1LL << 32, 1LL << 32}); }, {"normal"});
  expect_error([] { randint(0, 5, {1LL << 32, 1LL << 32}); }, {"randint"});
  // A zero dim beside huge ones still has strides that overflow: refused like the reader must.
  expect_error([] { zeros({0, 1LL << 62, 1LL << 62}); }, {"zeros", "[0, 4611686018427387904, 4611686018427387904]"});
}

TEST(CheckedSizes, ByteCountOverflowingInt64IsAnError) {
  // 2^62 float32 elements = 2^64 bytes: the size wrapped to 0 and the fill segfaulted before.
  expect_error([] { zeros({1LL << 62}); }, {"zeros", "[4611686018427387904]", "4-byte elements"});
  expect_error([] { empty({1LL << 61}, kFloat64); }, {"empty", "8-byte elements"});
}

TEST(CheckedSizes, AllocationThatFitsInt64ButNotInMemoryIsOutOfMemory) {
  // 2^60 float32 = 2^62 bytes: a valid size no machine has.
  try {
    zeros({1LL << 60});
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("4611686018427387904 bytes"), std::string::npos) << e.what();
  }
  // The allocator stays usable afterwards.
  EXPECT_EQ(ones({4}).sum().item(), 4.0);
}

TEST(CheckedSizes, NegativeDimensionsAreRefused) {
  expect_error([] { zeros({2, -3}); }, {"zeros", "negative dimension", "[2, -3]"});
}

TEST(CheckedSizes, FromVectorAndFromBlobCheckTheirShapes) {
  std::vector<float> v(4, 1.0f);
  expect_error([&] { from_vector(v, {1LL << 32, 1LL << 32}); }, {"from_vector", "[4294967296, 4294967296]"});
  expect_error([&] { from_blob(v.data(), {1LL << 62}, kFloat32); }, {"from_blob", "4-byte elements"});
}

TEST(CheckedSizes, ArangeWithTooManyElementsIsAnError) {
  expect_error([] { arange(0.0, 1e300, 1.0); }, {"arange", "2^63-1"});
}

TEST(CheckedSizes, ContiguousStridesOverflowIsAnError) {
  expect_error([] { contiguous_strides({4, 1LL << 62, 4}); }, {"contiguous_strides", "size overflow"});
  EXPECT_EQ(contiguous_strides({2, 3, 4}), Shape({12, 4, 1}));
  EXPECT_EQ(contiguous_strides({2, 0, 4}), Shape({4, 4, 1}));
}

TEST(CheckedSizes, ViewsAndExpandsCannotOverflowTheElementCount) {
  Tensor one = ones({1, 1});
  expect_error([&] { one.expand({1LL << 32, 1LL << 32}); }, {"expand", "[4294967296, 4294967296]"});
  Tensor e = zeros({0});
  // 2^32 * 2^32 wraps to 0 = the input's size: accepted as a matching shape before.
  expect_error([&] { e.view({1LL << 32, 1LL << 32}); }, {"view"});
  expect_error([&] { e.reshape({1LL << 32, 1LL << 32}); }, {"reshape"});
  expect_error([&] { e.view({0, -1}); }, {"view", "invalid for input of size 0"});
  EXPECT_EQ(zeros({2, 0, 3}).view({0, 7}).shape(), Shape({0, 7}));
}
