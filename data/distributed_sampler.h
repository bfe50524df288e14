// DistributedSampler: each rank of a data-parallel job reads its own shard of the data set, with
// PyTorch's torch.utils.data.DistributedSampler semantics:
//  * every rank computes the same per-epoch order: data::permutation(n, seed, epoch) when shuffling
//    (the loader's own shuffle, keyed by seed and epoch), 0..n-1 otherwise;
//  * without drop_last the order is padded by repeating it from the start until its length is a
//    multiple of world_size, so every rank gets ceil(n / world_size) indices; with drop_last it is
//    cut to floor(n / world_size) * world_size instead;
//  * rank r takes positions r, r + world_size, r + 2 * world_size, ... (a strided shard), so the
//    shards are disjoint apart from the padding and together cover the data set.
// The permutation itself is ember's (Philox), not torch.randperm's, so the orders differ from
// PyTorch's while the sharding rules are identical.
//
//   data::DistributedSampler sampler(dataset->size(), comm->world_size(), comm->rank());
//   data::DataLoader loader(dataset, data::DataLoaderOptions().batch_size(64).sampler(
//       std::make_shared<data::DistributedSampler>(sampler)));
//
// In a DataLoader the loader passes its own epoch to indices(epoch), so each epoch reshuffles
// without a set_epoch call; set_epoch/indices() are for using the sampler on its own.
#pragma once

#include <cstdint>
#include <vector>

#include "data/dataloader.h"

namespace ember::data {

class DistributedSampler : public Sampler {
 public:
  DistributedSampler(int64_t dataset_size, int world_size, int rank, bool shuffle = true, uint64_t seed = 0,
                     bool drop_last = false);

  int64_t size() const override { return num_samples_; }  // indices this rank gets per epoch
  std::vector<int64_t> indices(int64_t epoch) const override;
  std::vector<int64_t> indices() const { return indices(epoch_); }  // for the epoch set_epoch chose
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  int64_t total_size() const { return num_samples_ * world_size_; }  // size() summed over ranks

 private:
  int64_t dataset_size_;
  int world_size_, rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
};

}  // namespace ember::data
