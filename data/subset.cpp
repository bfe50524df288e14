#include "data/subset.h"

#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/generator.h"
#include "data/transforms.h"  // derive_key, kSplitStream

namespace ember::data {

Subset::Subset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  EMBER_CHECK(base_ != nullptr, "Subset: the base dataset is null");
  const int64_t n = base_->size();
  for (size_t i = 0; i < indices_.size(); ++i)
    EMBER_CHECK(indices_[i] >= 0 && indices_[i] < n, "Subset: index ", indices_[i], " (position ", i,
                ") is out of range for ", base_->name(), ", which has ", n, " samples");
}

void Subset::get_into(int64_t index, float* data_out, int64_t* target_out) const {
  check_index(index);
  base_->get_into(indices_[index], data_out, target_out);
}

void Subset::prefetch(int64_t index) const {
  if (index >= 0 && index < size()) base_->prefetch(indices_[index]);
}

std::string Subset::name() const { return "Subset of " + base_->name(); }

std::vector<int64_t> split_lengths(int64_t n, const std::vector<double>& lengths) {
  EMBER_CHECK(!lengths.empty(), "random_split: got no lengths");
  double sum = 0;
  for (double l : lengths) sum += l;  // left to right, as Python's sum()
  // PyTorch's test for fractions: math.isclose(sum, 1) (relative tolerance 1e-9) and sum <= 1.
  const bool fractions = std::abs(sum - 1.0) <= 1e-9 * std::max(std::abs(sum), 1.0) && sum <= 1.0;
  std::vector<int64_t> out;
  if (fractions) {
    for (size_t i = 0; i < lengths.size(); ++i) {
      EMBER_CHECK(lengths[i] >= 0 && lengths[i] <= 1, "random_split: fraction ", lengths[i], " at index ", i,
                  " is not between 0 and 1");
      out.push_back(static_cast<int64_t>(std::floor(static_cast<double>(n) * lengths[i])));
    }
    // The samples the floors left over go one each to the subsets in turn, from the first.
    const int64_t remainder = n - std::accumulate(out.begin(), out.end(), int64_t{0});
    for (int64_t i = 0; i < remainder; ++i) ++out[i % static_cast<int64_t>(out.size())];
    return out;
  }
  for (size_t i = 0; i < lengths.size(); ++i) {
    EMBER_CHECK(lengths[i] >= 0, "random_split: length ", lengths[i], " at index ", i, " is negative");
    EMBER_CHECK(std::floor(lengths[i]) == lengths[i] && lengths[i] <= 9.0e15, "random_split: length ", lengths[i],
                " at index ", i, " is not a whole number (and the lengths, summing to ", sum,
                ", are not fractions summing to 1)");
    out.push_back(static_cast<int64_t>(lengths[i]));
  }
  EMBER_CHECK(std::accumulate(out.begin(), out.end(), int64_t{0}) == n, "random_split: the lengths sum to ", sum,
              " but the dataset has ", n, " samples");
  return out;
}

std::vector<std::shared_ptr<Subset>> random_split(std::shared_ptr<const Dataset> dataset,
                                                  const std::vector<double>& lengths, uint64_t seed) {
  EMBER_CHECK(dataset != nullptr, "random_split: the dataset is null");
  const int64_t n = dataset->size();
  EMBER_CHECK(n > 0, "random_split: ", dataset->name(), " is empty; there is nothing to split");
  const std::vector<int64_t> sizes = split_lengths(n, lengths);

  // Fisher-Yates driven by Philox on the split's own stream (the DataLoader's shuffle uses the
  // same algorithm on kShuffleStream), so a split and a loader seeded alike are unrelated.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t{0});
  const uint64_t key = derive_key(seed, 0, kSplitStream);
  for (int64_t i = n - 1; i > 0; --i) {
    Philox4 r = philox4x32(key, static_cast<uint64_t>(i));
    const uint64_t bits = uint64_t{r.v[0]} | uint64_t{r.v[1]} << 32;
    const auto j = static_cast<int64_t>((static_cast<unsigned __int128>(bits) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(order[i], order[j]);
  }

  std::vector<std::shared_ptr<Subset>> parts;
  int64_t offset = 0;
  for (int64_t len : sizes) {
    parts.push_back(std::make_shared<Subset>(
        dataset, std::vector<int64_t>(order.begin() + offset, order.begin() + offset + len)));
    offset += len;
  }
  return parts;
}

}  // namespace ember::data
