// DataLoader: turns a Dataset into batches, optionally shuffled, made by worker threads ahead of
// the training loop. Used like libtorch's:
//
//   auto mnist = std::make_shared<data::MNIST>("data/mnist", /*train=*/true);
//   mnist->normalize({data::MNIST::kMean}, {data::MNIST::kStd});
//   data::DataLoader loader(mnist, data::DataLoaderOptions().batch_size(64).shuffle().seed(1).num_workers(2));
//   for (int epoch = 0; epoch < 10; ++epoch)
//     for (auto& batch : loader) { ... batch.data [64, 1, 28, 28] float32, batch.target [64] int64 ... }
//
// Each begin() starts the next epoch: a new permutation keyed by (seed, epoch) (or, with a sampler,
// the sampler's indices(epoch)), then
// ceil(size / batch_size) batches (or floor with drop_last). Batch k of an epoch is always samples
// order[k*B .. (k+1)*B) in that order, with transforms keyed by (seed, epoch, sample index), so the
// batches are bit-identical whatever num_workers is. Workers build batches in parallel and may
// finish out of order; the loader hands them out in order.
//
// Threads: num_workers threads share a claim counter. A worker may claim batch k only while k is
// fewer than prefetch_depth * num_workers batches ahead of the one the consumer takes next, which
// bounds memory to that many ready batches. Finished batches wait in a ring of that many slots
// (slot k % window) until the consumer takes them. With num_workers = 0 batches are made on the
// consumer's thread when it asks.
//
// Errors: an exception thrown while making a batch (a corrupt sample, a transform that does not fit)
// is caught in the worker and rethrown to the consumer when it reaches that batch: an ember::Error
// naming the sample and batch, with the original exception nested (std::rethrow_if_nested) and its
// message included. That epoch then ends; begin() starts the next one.
//
// Shutdown: destroying the loader (even mid-epoch, with workers blocked on a full queue) stops and
// joins the workers; a worker in the middle of a batch finishes that batch first.
#pragma once

#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/allocator.h"
#include "core/tensor.h"
#include "data/dataset.h"
#include "data/transforms.h"

namespace ember::data {

struct Batch {
  Tensor data;        // float32 [B, ...sample_shape]
  Tensor target;      // int64 [B]
  int64_t index = 0;  // which batch of the epoch (0-based)
  int64_t size() const { return data.defined() ? data.size(0) : 0; }
};

// Chooses which samples an epoch visits and in what order (PyTorch's Sampler), for when that is not
// simply "all of them, maybe shuffled" — e.g. data::DistributedSampler gives each rank its shard.
// The loader asks for the order of each epoch it starts, passing its own epoch number (so
// loader.set_epoch also moves the sampler), and batches indices(epoch) in order.
class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual int64_t size() const = 0;  // indices per epoch (the same every epoch)
  // Dataset indices in visiting order; repeats are allowed. Must return size() indices.
  virtual std::vector<int64_t> indices(int64_t epoch) const = 0;
};

// Options, set fluently like TensorOptions:
//   DataLoaderOptions().batch_size(128).shuffle(true).seed(1).num_workers(2)
//       .transform(data::RandomCrop(4)).transform(data::RandomHorizontalFlip())
struct DataLoaderOptions {
  int64_t batch_size_ = 1;
  bool shuffle_ = false;                    // exclusive with sampler_
  std::shared_ptr<const Sampler> sampler_;  // null: every sample once, shuffled or in order
  uint64_t seed_ = 0;       // keys the shuffle and the random transforms
  bool drop_last_ = false;  // drop a last batch smaller than batch_size
  int num_workers_ = 0;     // 0: batches are made on the consumer's thread, on demand
  // Batches each worker may have ready ahead of the consumer (PyTorch's prefetch_factor). At most
  // prefetch_depth * num_workers batches exist that the consumer has not taken yet.
  int prefetch_depth_ = 2;
  // Put batches in page-locked host memory, which the GPU copies from asynchronously and about twice
  // as fast. Takes effect when a CUDA device is present and the CUDA backend has registered its
  // pinned allocator (set_pinned_allocator in core/allocator.h); otherwise ordinary host memory is used.
  bool pin_memory_ = false;
  // Where batch memory comes from; overrides pin_memory. nullptr: cpu_allocator() (or pinned, above).
  // It must outlive every batch the loader hands out.
  Allocator* allocator_ = nullptr;
  // Applied in order to each sample, in place, after Dataset::get_into (see transforms.h).
  std::vector<std::shared_ptr<const Transform>> transforms_;

  DataLoaderOptions() = default;
  DataLoaderOptions batch_size(int64_t b) const { auto o = *this; o.batch_size_ = b; return o; }
  DataLoaderOptions shuffle(bool s = true) const { auto o = *this; o.shuffle_ = s; return o; }
  DataLoaderOptions sampler(std::shared_ptr<const Sampler> s) const {
    auto o = *this;
    o.sampler_ = std::move(s);
    return o;
  }
  DataLoaderOptions seed(uint64_t s) const { auto o = *this; o.seed_ = s; return o; }
  DataLoaderOptions drop_last(bool d = true) const { auto o = *this; o.drop_last_ = d; return o; }
  DataLoaderOptions num_workers(int n) const { auto o = *this; o.num_workers_ = n; return o; }
  DataLoaderOptions prefetch_depth(int d) const { auto o = *this; o.prefetch_depth_ = d; return o; }
  DataLoaderOptions pin_memory(bool p = true) const { auto o = *this; o.pin_memory_ = p; return o; }
  DataLoaderOptions allocator(Allocator* a) const { auto o = *this; o.allocator_ = a; return o; }
  // Appends a transform (shared, since the options and loaders may be copied).
  DataLoaderOptions transform(std::shared_ptr<const Transform> t) const {
    auto o = *this;
    o.transforms_.push_back(std::move(t));
    return o;
  }
  template <typename T>
    requires std::derived_from<T, Transform>
  DataLoaderOptions transform(T t) const {
    return transform(std::make_shared<const T>(std::move(t)));
  }
};

// The loader's shuffle: a permutation of [0, n) keyed by (seed, epoch), the same on every machine
// (Fisher-Yates driven by Philox). DataLoaderOptions().shuffle().seed(s) visits epoch e in
// permutation(n, s, e) order.
std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch);

class DataLoader {
 public:
  class Iterator;

  // Shares ownership of the dataset.
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options);
  // Borrows the dataset, which must outlive the loader.
  DataLoader(const Dataset& dataset, DataLoaderOptions options);
  DataLoader(Dataset&&, DataLoaderOptions) = delete;  // a temporary would die before the loader
  ~DataLoader();  // stops and joins the workers
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts the next epoch (the first call starts epoch 0, or the one set_epoch chose) and returns
  // an iterator at its first batch. Any batches left over from the previous epoch are discarded.
  Iterator begin();
  std::default_sentinel_t end() const { return {}; }

  int64_t num_batches() const;  // batches per epoch
  int64_t dataset_size() const { return dataset_->size(); }
  int64_t samples_per_epoch() const;  // the sampler's size, else the dataset's
  // The epoch the last begin() started (-1 before the first).
  int64_t epoch() const { return epoch_; }
  // The next begin() starts epoch e (to resume training; like DistributedSampler.set_epoch).
  void set_epoch(int64_t e);
  const DataLoaderOptions& options() const { return options_; }
  Allocator& allocator() const { return *allocator_; }

 private:
  struct Epoch;
  struct Slot;
  class BufferPool;

  bool next(uint64_t generation, Batch& out);  // false at the end of the epoch
  Batch make_batch(const Epoch& epoch, int64_t k);
  void worker_loop();
  void stop_workers();

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  Shape sample_shape_;
  Allocator* allocator_;
  std::shared_ptr<BufferPool> pool_;
  int64_t window_ = 0;  // ring size: prefetch_depth * num_workers
  int64_t epoch_ = -1, next_epoch_ = 0;

  // Shared with the workers, guarded by mu_.
  std::mutex mu_;
  std::condition_variable work_cv_;   // workers wait for a batch to claim
  std::condition_variable ready_cv_;  // the consumer waits for batch next_yield_
  std::shared_ptr<const Epoch> current_;
  int64_t next_claim_ = 0, next_yield_ = 0;
  std::vector<Slot> slots_;  // ring of window = prefetch_depth * num_workers
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// Input iterator over one epoch; `*it` is the current Batch, which the iterator owns (move it out to
// keep it). Incrementing releases the current batch's memory back to the loader before the next.
class DataLoader::Iterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = Batch;
  using difference_type = std::ptrdiff_t;

  Iterator() = default;
  Batch& operator*() { return batch_; }
  Batch* operator->() { return &batch_; }
  Iterator& operator++();
  void operator++(int) { ++*this; }
  bool operator==(std::default_sentinel_t) const { return loader_ == nullptr; }

 private:
  friend class DataLoader;
  Iterator(DataLoader* loader, uint64_t generation) : loader_(loader), generation_(generation) {}
  DataLoader* loader_ = nullptr;  // null at the end
  uint64_t generation_ = 0;       // which begin() this iterator belongs to
  Batch batch_;
};

}  // namespace ember::data
