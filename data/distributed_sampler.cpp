#include "data/distributed_sampler.h"

#include <numeric>

#include "core/error.h"

namespace ember::data {

DistributedSampler::DistributedSampler(int64_t dataset_size, int world_size, int rank, bool shuffle, uint64_t seed,
                                       bool drop_last)
    : dataset_size_(dataset_size),
      world_size_(world_size),
      rank_(rank),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  EMBER_CHECK(dataset_size >= 0, "DistributedSampler: dataset_size must be >= 0, got ", dataset_size);
  EMBER_CHECK(world_size >= 1, "DistributedSampler: world_size must be >= 1, got ", world_size);
  EMBER_CHECK(rank >= 0 && rank < world_size, "DistributedSampler: rank ", rank, " is outside [0, ", world_size, ")");
  // PyTorch: with drop_last, ceil((n - w) / w) = floor(n / w) when n is not a multiple of w.
  num_samples_ = drop_last ? dataset_size / world_size : (dataset_size + world_size - 1) / world_size;
}

void DistributedSampler::set_epoch(int64_t epoch) {
  EMBER_CHECK(epoch >= 0, "DistributedSampler: set_epoch needs a non-negative epoch, got ", epoch);
  epoch_ = epoch;
}

std::vector<int64_t> DistributedSampler::indices(int64_t epoch) const {
  EMBER_CHECK(epoch >= 0, "DistributedSampler: epoch must be non-negative, got ", epoch);
  std::vector<int64_t> order;
  if (shuffle_) {
    order = permutation(dataset_size_, seed_, epoch);
  } else {
    order.resize(dataset_size_);
    std::iota(order.begin(), order.end(), int64_t{0});
  }
  // Every rank sees the same total_size positions: padded by wrapping around, or cut.
  const int64_t total = total_size();
  std::vector<int64_t> mine;
  mine.reserve(num_samples_);
  for (int64_t pos = rank_; pos < total; pos += world_size_) mine.push_back(order[pos % dataset_size_]);
  return mine;
}

}  // namespace ember::data
