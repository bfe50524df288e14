// Subset and random_split: part of a dataset, and a seeded split of one into disjoint parts (a
// train/validation split), as torch.utils.data.Subset and torch.utils.data.random_split.
//
//   auto train_full = std::make_shared<data::CIFAR10>(...);
//   auto parts = data::random_split(train_full, {45000, 5000}, /*seed=*/1);   // or {0.9, 0.1}
//   data::DataLoader train(parts[0], ...), val(parts[1], ...);
//
// The split depends on the seed alone (a Philox permutation on its own stream, so it is unrelated
// to the DataLoader's shuffle with the same seed) and is the same on every machine and thread count.
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace ember::data {

// The samples of `base` at `indices`, in that order: sample i of the subset is base sample indices[i].
class Subset final : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  Shape sample_shape() const override { return base_->sample_shape(); }
  void get_into(int64_t index, float* data_out, int64_t* target_out) const override;
  void prefetch(int64_t index) const override;
  std::string name() const override;
  const std::vector<int64_t>& indices() const { return indices_; }
  const std::shared_ptr<const Dataset>& dataset() const { return base_; }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
};

// Splits `dataset` into disjoint subsets that together cover it, with PyTorch's rule:
//   * lengths that sum to the dataset's size are taken as they are ({45000, 5000});
//   * fractions that sum to 1 ({0.9, 0.1}) become floor(n * fraction) each, and the samples left
//     over go one each to the subsets in turn, from the first (so 10 samples split {0.5, 0.3, 0.2}
//     are 5, 3, 2, and 11 are 6, 3, 2).
// The subsets are consecutive runs of one seeded permutation of [0, n). Errors: an empty dataset,
// no lengths, a negative length, a fraction outside [0, 1], lengths that are neither whole numbers
// summing to n nor fractions summing to 1.
std::vector<std::shared_ptr<Subset>> random_split(std::shared_ptr<const Dataset> dataset,
                                                  const std::vector<double>& lengths, uint64_t seed);
// The same for integer lengths held in a vector (a braced list of integers takes the overload above).
template <std::integral T>
std::vector<std::shared_ptr<Subset>> random_split(std::shared_ptr<const Dataset> dataset,
                                                  const std::vector<T>& lengths, uint64_t seed) {
  return random_split(std::move(dataset), std::vector<double>(lengths.begin(), lengths.end()), seed);
}

// How random_split sizes the subsets of n samples (exposed for tests and for printing a plan).
std::vector<int64_t> split_lengths(int64_t n, const std::vector<double>& lengths);

}  // namespace ember::data
