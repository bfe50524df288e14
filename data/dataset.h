// Datasets: a numbered collection of (sample, label) pairs that the DataLoader batches.
//
// Why samples are written *into* a buffer (get_into) instead of returned as tensors:
// a loader builds thousands of batches per epoch (938 of 64 for MNIST), each from 64-256 samples.
// If every sample came back as its own Tensor, each one would cost a heap allocation, a
// reference-counted Storage, and a second copy into the batch — per sample, 60000 times per
// MNIST epoch — and for small images that overhead is about as large as decoding the pixels.
// With get_into the loader hands the dataset the sample's slot inside the batch buffer, so
// decoding writes the final bytes once, straight where the model will read them, and the random
// transforms then run on that slot while it is still in L1 cache. A batch-level hook
// (fill_batch(indices, Batch&)) would save one virtual call per sample, which is noise next to
// decoding a sample, and would make every dataset repeat the loop over indices; per-sample keeps
// datasets to "how do I decode sample i" and leaves batching and transforms to the loader.
// get() is the convenient, allocating form for inspection and tests; it is built on get_into.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/shape.h"
#include "core/tensor.h"

namespace ember::data {

// One sample as tensors: what Dataset::get returns.
struct Example {
  Tensor data;         // float32, the dataset's sample_shape()
  int64_t target = 0;  // class label
};

class Dataset {
 public:
  virtual ~Dataset() = default;

  // Number of samples.
  virtual int64_t size() const = 0;
  // Shape of one sample's data, e.g. [1, 28, 28] for MNIST. Every sample has this shape.
  virtual Shape sample_shape() const = 0;
  // Writes sample `index` (0 <= index < size()) as sample_shape().numel() float32 values to
  // `data_out` and its label to `*target_out`. The DataLoader calls this from several worker
  // threads at once, so implementations must be safe to call concurrently (const and no shared
  // mutable state). Errors (a corrupt sample) are thrown as ember::Error; the loader passes them on
  // to the consumer.
  virtual void get_into(int64_t index, float* data_out, int64_t* target_out) const = 0;
  // Used in error messages ("MNIST", "CIFAR10", ...).
  virtual std::string name() const { return "Dataset"; }
  // A hint that sample `index` will be read soon (the loader gives it two samples ahead). Shuffled
  // reads jump around memory, so each sample starts with cache and TLB misses; a dataset in memory
  // can start those loads now (ImageDataset does), to overlap them with the current sample's work.
  // Must not throw; the default does nothing.
  virtual void prefetch(int64_t index) const {}

  // Sample `index` as a fresh tensor (allocates; for inspection and tests, not the training loop).
  Example get(int64_t index) const;

 protected:
  // Throws "<name>: sample index i is out of range for a dataset of n samples".
  void check_index(int64_t index) const;
};

// A dataset over tensors already in memory: data [N, ...] (any float dtype, any device; kept as a
// contiguous float32 CPU copy) and integer targets [N].
class TensorDataset : public Dataset {
 public:
  TensorDataset(const Tensor& data, const Tensor& targets);

  int64_t size() const override { return n_; }
  Shape sample_shape() const override { return sample_shape_; }
  void get_into(int64_t index, float* data_out, int64_t* target_out) const override;
  std::string name() const override { return "TensorDataset"; }

 private:
  Tensor data_;     // float32 [N, ...], contiguous, CPU
  Tensor targets_;  // int64 [N], contiguous, CPU
  int64_t n_ = 0;
  Shape sample_shape_;
  int64_t sample_numel_ = 0;
};

// The first n samples of another dataset (e.g. a quick run on part of MNIST: --limit in examples/).
class Prefix final : public Dataset {
 public:
  Prefix(std::shared_ptr<const Dataset> base, int64_t n);
  int64_t size() const override { return n_; }
  Shape sample_shape() const override { return base_->sample_shape(); }
  void get_into(int64_t index, float* data_out, int64_t* target_out) const override;
  std::string name() const override { return base_->name() + "[:" + std::to_string(n_) + "]"; }

 private:
  std::shared_ptr<const Dataset> base_;
  int64_t n_;
};

}  // namespace ember::data
