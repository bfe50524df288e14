// data::random_split and data::Subset: disjoint subsets that cover the dataset, sized by PyTorch's
// rule for fractions, the same for a seed and different across seeds, and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/ember.h"
#include "data/data.h"
#include "tests/test_util.h"

using namespace ember;

namespace {

// Sample i holds the value i (one float) and the label i % 10, so a subset reveals which samples it has.
std::shared_ptr<data::TensorDataset> numbered(int64_t n) {
  std::vector<float> v(n);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) v[i] = float(i), labels[i] = i % 10;
  return std::make_shared<data::TensorDataset>(from_vector<float>(v, {n, 1}), from_vector<int64_t>(labels));
}

std::vector<int64_t> samples_of(const data::Dataset& d) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < d.size(); ++i) {
    data::Example ex = d.get(i);
    out.push_back(static_cast<int64_t>(ex.data.item()));
    EXPECT_EQ(ex.target, out.back() % 10) << "labels travel with their samples";
  }
  return out;
}

}  // namespace

TEST(RandomSplit, DisjointCoveringAndSeeded) {
  auto ds = numbered(1000);
  auto parts = data::random_split(ds, {700, 200, 100}, 42);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0]->size(), 700);
  EXPECT_EQ(parts[1]->size(), 200);
  EXPECT_EQ(parts[2]->size(), 100);
  std::vector<int64_t> all;
  for (const auto& p : parts) {
    const std::vector<int64_t> s = samples_of(*p);
    EXPECT_EQ(s, p->indices());
    all.insert(all.end(), s.begin(), s.end());
  }
  std::vector<int64_t> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> want(1000);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(sorted, want) << "every sample in exactly one subset";
  EXPECT_NE(all, want) << "the split is shuffled, not the first 700 then the next 200";

  // The same seed gives the same split; another seed, another one.
  auto again = data::random_split(ds, {700, 200, 100}, 42);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(again[i]->indices(), parts[i]->indices());
  auto other = data::random_split(ds, {700, 200, 100}, 43);
  EXPECT_NE(other[0]->indices(), parts[0]->indices());
  // Fractions are the same split when they give the same lengths.
  auto frac = data::random_split(ds, {0.7, 0.2, 0.1}, 42);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(frac[i]->indices(), parts[i]->indices());
  // Lengths in a vector of integers work too.
  std::vector<int64_t> lengths = {900, 100};
  EXPECT_EQ(data::random_split(ds, lengths, 1)[1]->size(), 100);
  EXPECT_EQ(parts[1]->name(), "Subset of TensorDataset");
}

// PyTorch's rule: floor(n * fraction) each, then the remainder one at a time from the first subset.
TEST(RandomSplit, FractionsFollowPyTorchsRule) {
  EXPECT_EQ(data::split_lengths(10, {0.5, 0.3, 0.2}), (std::vector<int64_t>{5, 3, 2}));
  // 11: floors 5, 3, 2 leave 1 over, which goes to the first.
  EXPECT_EQ(data::split_lengths(11, {0.5, 0.3, 0.2}), (std::vector<int64_t>{6, 3, 2}));
  // 10 in thirds: floors 3, 3, 3 leave 1.
  EXPECT_EQ(data::split_lengths(10, {1.0 / 3, 1.0 / 3, 1.0 / 3}), (std::vector<int64_t>{4, 3, 3}));
  // 5 in four quarters: floors 1, 1, 1, 1 leave 1.
  EXPECT_EQ(data::split_lengths(5, {0.25, 0.25, 0.25, 0.25}), (std::vector<int64_t>{2, 1, 1, 1}));
  // 2 into {0.1, 0.1, 0.8}: floors 0, 0, 1 leave 1, so the first gets it and one subset is empty.
  EXPECT_EQ(data::split_lengths(2, {0.1, 0.1, 0.8}), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(data::split_lengths(50000, {0.9, 0.1}), (std::vector<int64_t>{45000, 5000}));
  // Whole lengths pass through.
  EXPECT_EQ(data::split_lengths(7, {3, 4}), (std::vector<int64_t>{3, 4}));
}

TEST(RandomSplit, Errors) {
  auto ds = numbered(10);
  test::expect_error([&] { data::random_split(ds, {6, 3}, 0); },
                     {"random_split: the lengths sum to 9 but the dataset has 10 samples"});
  test::expect_error([&] { data::random_split(ds, {12, -2}, 0); }, {"random_split: length -2 at index 1 is negative"});
  test::expect_error([&] { data::random_split(ds, {2.5, 7.5}, 0); },
                     {"random_split: length 2.5 at index 0 is not a whole number"});
  test::expect_error([&] { data::random_split(ds, {1.5, -0.5}, 0); },
                     {"random_split: fraction 1.5 at index 0 is not between 0 and 1"});
  test::expect_error([&] { data::random_split(ds, std::vector<double>{}, 0); }, {"random_split: got no lengths"});
  test::expect_error([&] { data::random_split(numbered(0), {0.5, 0.5}, 0); },
                     {"random_split: TensorDataset is empty; there is nothing to split"});
  test::expect_error([&] { data::random_split(nullptr, {1.0}, 0); }, {"random_split: the dataset is null"});
  test::expect_error([&] { data::Subset(ds, {0, 10}); },
                     {"Subset: index 10 (position 1) is out of range for TensorDataset, which has 10 samples"});
  data::Subset sub(ds, {3, 1});
  test::expect_error([&] { sub.get(2); }, {"Subset of TensorDataset: sample index 2 is out of range"});
}
