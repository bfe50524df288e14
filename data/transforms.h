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
  // Uniform double in [lo, hi), from one float draw (24 random bits are plenty for augmentation).
  double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(uniform()); }
  // A standard normal (Box-Muller on two draws).
  float normal();

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
inline constexpr uint32_t kSplitStream = 3;  // data::random_split's permutation

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

// Cutout (DeVries & Taylor, 2017): sets a square of side `length` at a uniformly random centre to
// 0 in every channel, `n_holes` times. The square is clipped at the border, so a centre near an edge
// erases less — the paper's choice, which keeps every centre equally likely. Put it after Normalize
// (as the paper does) so 0 is the mean colour. Draws, per hole: the centre row, then the column.
// The square covers rows [cy - length/2, cy - length/2 + length) (for an even length exactly the
// reference code's [cy - length/2, cy + length/2)).
class Cutout : public Transform {
 public:
  explicit Cutout(int64_t length, int64_t n_holes = 1);
  void apply(float* sample, const Shape& shape, SampleRng& rng) const override;
  std::string name() const override { return "Cutout"; }

 private:
  int64_t length_, n_holes_;
};

// torchvision.transforms.RandomErasing (Zhong et al., 2017), with its sampling order: with
// probability p, try up to 10 times to draw a rectangle with area in scale * H * W and aspect ratio
// h / w log-uniform in ratio; the first one that fits inside the image is filled with `value` (one
// value, or one per channel) or, with random_value, with N(0, 1) noise. If none of the 10 fits, the
// image is left unchanged (as torchvision's is). Like torchvision, h and w round half to even.
struct RandomErasingOptions {
  double p = 0.5;
  double scale_min = 0.02, scale_max = 0.33;  // erased area as a fraction of the image
  double ratio_min = 0.3, ratio_max = 3.3;    // aspect ratio h / w
  std::vector<float> value = {0.0f};          // one fill value, or one per channel
  bool random_value = false;                  // torchvision's value="random": per-pixel N(0, 1)
};

class RandomErasing : public Transform {
 public:
  explicit RandomErasing(RandomErasingOptions options = {});
  void check(const Shape& shape) const override;
  void apply(float* sample, const Shape& shape, SampleRng& rng) const override;
  std::string name() const override { return "RandomErasing"; }
  const RandomErasingOptions& options() const { return options_; }

 private:
  RandomErasingOptions options_;
};

}  // namespace ember::data
