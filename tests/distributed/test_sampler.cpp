// DistributedSampler (PyTorch's sharding rules) and the DataLoader's sampler option. No
// communication: these run alike on every rank of ember_dist_tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <vector>

#include "core/ember.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "data/distributed_sampler.h"

namespace {

using namespace ember;
using data::DistributedSampler;
using Indices = std::vector<int64_t>;

std::vector<Indices> shards(int64_t n, int world, bool shuffle, uint64_t seed, bool drop_last, int64_t epoch) {
  std::vector<Indices> out;
  for (int r = 0; r < world; ++r)
    out.push_back(DistributedSampler(n, world, r, shuffle, seed, drop_last).indices(epoch));
  return out;
}

TEST(DistributedSampler, MatchesPyTorchWithoutShuffle) {
  // torch.utils.data.DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False)
  EXPECT_EQ(shards(10, 3, false, 0, false, 0), (std::vector<Indices>{{0, 3, 6, 9}, {1, 4, 7, 0}, {2, 5, 8, 1}}));
  // ... drop_last=True
  EXPECT_EQ(shards(10, 3, false, 0, true, 0), (std::vector<Indices>{{0, 3, 6}, {1, 4, 7}, {2, 5, 8}}));
  // More ranks than samples: the padding wraps around as often as needed.
  EXPECT_EQ(shards(2, 4, false, 0, false, 0), (std::vector<Indices>{{0}, {1}, {0}, {1}}));
  EXPECT_EQ(DistributedSampler(2, 4, 3, false, 0, true).size(), 0);
}

TEST(DistributedSampler, ShardsAreDisjointCoverTheDataAndArePaddedEqually) {
  for (int64_t n : {1, 7, 12, 100, 101}) {
    for (int world : {1, 2, 3, 4}) {
      const std::vector<Indices> s = shards(n, world, true, 5, false, 3);
      const int64_t per_rank = (n + world - 1) / world;
      std::multiset<int64_t> all;
      for (const Indices& shard : s) {
        EXPECT_EQ(static_cast<int64_t>(shard.size()), per_rank) << "n " << n << " world " << world;
        all.insert(shard.begin(), shard.end());
      }
      for (int64_t i = 0; i < n; ++i) EXPECT_GE(all.count(i), 1u) << "sample " << i << " missing, n " << n;
      // Only the padding repeats: exactly per_rank * world - n extra copies.
      EXPECT_EQ(
          static_cast<int64_t>(all.size()) - static_cast<int64_t>(std::set<int64_t>(all.begin(), all.end()).size()),
          per_rank * world - n);
      if (n % world == 0) {
        EXPECT_EQ(static_cast<int64_t>(std::set<int64_t>(all.begin(), all.end()).size()), n);
      }

      // drop_last: equal shards of floor(n / world), pairwise disjoint.
      const std::vector<Indices> d = shards(n, world, true, 5, true, 3);
      std::set<int64_t> seen;
      for (const Indices& shard : d) {
        EXPECT_EQ(static_cast<int64_t>(shard.size()), n / world);
        for (int64_t i : shard) EXPECT_TRUE(seen.insert(i).second) << "index " << i << " in two shards";
      }
    }
  }
}

TEST(DistributedSampler, IsAStridedShardOfTheSharedPermutation) {
  const int64_t n = 50;
  const Indices perm = data::permutation(n, 9, 2);
  for (int r = 0; r < 4; ++r) {
    const Indices mine = DistributedSampler(n, 4, r, true, 9).indices(2);
    for (size_t k = 0; k < mine.size(); ++k) EXPECT_EQ(mine[k], perm[(r + 4 * k) % n]) << "rank " << r << " k " << k;
  }
}

TEST(DistributedSampler, SetEpochChangesTheOrderDeterministically) {
  DistributedSampler a(64, 2, 1, true, 3), b(64, 2, 1, true, 3);
  const Indices e0 = a.indices();
  EXPECT_EQ(a.epoch(), 0);
  a.set_epoch(1);
  const Indices e1 = a.indices();
  EXPECT_NE(e0, e1);
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), e0.size());
  b.set_epoch(1);
  EXPECT_EQ(b.indices(), e1) << "same seed and epoch: same shard on every call";
  EXPECT_EQ(a.indices(0), e0);
  EXPECT_NE(DistributedSampler(64, 2, 1, true, 4).indices(1), e1) << "the seed matters";
  EXPECT_EQ(DistributedSampler(64, 2, 1, false).indices(5), DistributedSampler(64, 2, 1, false).indices(0))
      << "without shuffle the epoch does not matter";
}

TEST(DistributedSampler, RejectsBadArguments) {
  EXPECT_THROW(DistributedSampler(10, 0, 0), Error);
  EXPECT_THROW(DistributedSampler(10, 2, 2), Error);
  EXPECT_THROW(DistributedSampler(10, 2, -1), Error);
  EXPECT_THROW(DistributedSampler(-1, 2, 0), Error);
}

// Sample i of this data set is the value i, so a batch shows which indices the loader took.
std::shared_ptr<data::TensorDataset> numbered(int64_t n) {
  Tensor x = arange(static_cast<double>(n)).reshape({n, 1});
  Tensor y = arange(static_cast<double>(n), TensorOptions(kInt64));
  return std::make_shared<data::TensorDataset>(x, y);
}

TEST(DistributedSampler, FeedsTheDataLoader) {
  const int64_t n = 23;
  auto dataset = numbered(n);
  for (int workers : {0, 2}) {
    std::multiset<int64_t> all;
    for (int r = 0; r < 3; ++r) {
      auto sampler = std::make_shared<DistributedSampler>(n, 3, r, true, 11);
      data::DataLoader loader(dataset, data::DataLoaderOptions().batch_size(3).sampler(sampler).num_workers(workers));
      EXPECT_EQ(loader.samples_per_epoch(), 8);
      EXPECT_EQ(loader.num_batches(), 3);
      for (int64_t epoch = 0; epoch < 2; ++epoch) {
        Indices got;
        for (auto& batch : loader)
          for (int64_t t : batch.target.to_vector<int64_t>()) got.push_back(t);
        EXPECT_EQ(got, sampler->indices(epoch)) << "rank " << r << " epoch " << epoch << " workers " << workers;
        if (epoch == 0) all.insert(got.begin(), got.end());
      }
    }
    EXPECT_EQ(std::set<int64_t>(all.begin(), all.end()).size(), static_cast<size_t>(n));
  }
}

TEST(DistributedSampler, LoaderRejectsShuffleTogetherWithASampler) {
  auto dataset = numbered(4);
  auto sampler = std::make_shared<DistributedSampler>(4, 2, 0);
  EXPECT_THROW(data::DataLoader(dataset, data::DataLoaderOptions().sampler(sampler).shuffle()), Error);
  auto too_big = std::make_shared<DistributedSampler>(10, 1, 0);  // indices beyond the data set
  data::DataLoader loader(dataset, data::DataLoaderOptions().sampler(too_big));
  EXPECT_THROW(loader.begin(), Error);
}

TEST(DataLoaderPermutation, IsTheLoadersShuffle) {
  auto dataset = numbered(17);
  data::DataLoader loader(dataset, data::DataLoaderOptions().batch_size(17).shuffle().seed(4));
  loader.set_epoch(2);
  auto it = loader.begin();
  EXPECT_EQ(it->target.to_vector<int64_t>(), data::permutation(17, 4, 2));
}

}  // namespace
