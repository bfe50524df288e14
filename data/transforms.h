// Per-sample transforms, applied by the DataLoader in place on each sample's slot of the batch
// buffer (no allocation), in the order listed in DataLoaderOptions::transforms.
//
// Random transforms draw only from the SampleRng they are handed, a Philox stream keyed by
// (loader seed, epoch, sample index). So the crop/flip a sample gets depends on nothing else: not
// on which worker thread made it, how many workers there are, or what order they finished in —
// the same seed gives bit-identical batches with 0, 1 or 16 workers, and every epoch augments
// differently.
//
// Samples are [C, H, W] (or [H, W], one channel). Transforms keep the shape: RandomCrop pads and
// crops back to the same H x W, as CIFAR training does (torchvision's RandomCrop(32, padding=4)).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/generator.h"
#include "core/shape.h"

namespace ember::data {

// The random numbers of one sample in one epoch.
class SampleRng {
 public:
  SampleRng(uint64_t seed, uint64_t epoch, int64_t index);

  uint32_t next_u32();
  // Uniform integer in [0, n), n >= 1 (multiply-shift; the bias is below n / 2^32).
  int64_t uniform_int(int64_t n) {
    return static_cast<int64_t>((uint64_t{next_u32()} * static_cast<uint64_t>(n)) >> 32);
  }
  // Uniform float in [0, 1).
  float uniform() { return uniform_float(next_u32()); }

 private:
  uint64_t key_;
  uint64_t counter_;
  Philox4 block_{};
  int used_ = 4;  // words of block_ already handed out
};

// An independent Philox key for one (seed, epoch, purpose). Hashing through Philox itself keeps
// neighbouring seeds and epochs unrelated. `stream` separates uses (shuffle vs augmentation).
uint64_t derive_key(uint64_t seed, uint64_t epoch, uint32_t stream);
inline constexpr uint32_t kShuffleStream = 1;
inline constexpr uint32_t kAugmentStream = 2;

class Transform {
 public:
  virtual ~Transform() = default;
  // Throws ember::Error if this transform cannot handle samples of `shape` (the loader calls it
  // once, when it is made, so a mismatch fails early instead of inside a worker).
  virtual void check(const Shape& shape) const;
  // Transforms one contiguous float32 sample of `shape` in place.
  virtual void apply(float* sample, const Shape& shape, SampleRng& rng) const = 0;
  virtual std::string name() const = 0;
};

// (x - mean[c]) / std[c] per channel; one mean/std for all channels if given a single value.
// For uint8 image datasets prefer ImageDataset::normalize, which fuses this into the conversion to
// float; use this transform for float datasets, or to normalise *after* a RandomCrop so the padding
// is black (0 before normalising) as in torchvision, rather than the mean colour.
class Normalize : public Transform {
 public:
  Normalize(std::vector<float> mean, std::vector<float> std);
  void check(const Shape& shape) const override;
  void apply(float* sample, const Shape& shape, SampleRng& rng) const override;
  std::string name() const override { return "Normalize"; }

 private:
  std::vector<float> scale_, shift_;  // x * (1/std) + (-mean/std)
};

// Pads the image with `padding` pixels of value `fill` on every side and crops an H x W window at a
// uniformly random offset: the same as shifting the image by (dy, dx) in [-padding, padding]^2 and
// filling what moved in with `fill`. Done in place, row by row (memmove + fill), no scratch buffer.
class RandomCrop : public Transform {
 public:
  explicit RandomCrop(int64_t padding, float fill = 0.0f);
  void apply(float* sample, const Shape& shape, SampleRng& rng) const override;
  std::string name() const override { return "RandomCrop"; }

 private:
  int64_t padding_;
  float fill_;
};

// Mirrors the image left-right with probability p.
class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  void apply(float* sample, const Shape& shape, SampleRng& rng) const override;
  std::string name() const override { return "RandomHorizontalFlip"; }

 private:
  float p_;
};

}  // namespace ember::data
