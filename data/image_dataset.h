// ImageDataset: images kept in memory as the files store them (uint8 [N, C, H, W]) plus int64
// labels, converted to float32 one sample at a time as the loader asks for them. Keeping uint8 uses a
// quarter of the memory of float32 (CIFAR-10's training set: 150 MB instead of 600 MB) and the
// conversion is one fused multiply-add per pixel, done while writing into the batch anyway.
//
// To-float with normalisation is fused into that conversion: with normalize(mean, std) set,
//   out = (pixel / 255 - mean[c]) / std[c]  =  pixel * scale[c] + shift[c]
// with scale = 1 / (255 std) and shift = -mean / std, so normalising costs no extra pass.
// Without normalize() the values are pixel / 255, in [0, 1] (like torchvision's ToTensor).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"

namespace ember::data {

class ImageDataset : public Dataset {
 public:
  // images: uint8 [N, C, H, W]; targets: int64 [N] with values in [0, num_classes). Both are
  // kept as contiguous CPU tensors (copied only if they are not already).
  ImageDataset(std::string name, const Tensor& images, const Tensor& targets, int64_t num_classes);

  int64_t size() const override { return n_; }
  Shape sample_shape() const override { return {channels_, height_, width_}; }
  void get_into(int64_t index, float* data_out, int64_t* target_out) const override;
  std::string name() const override { return name_; }
  void prefetch(int64_t index) const override;  // cache-prefetches the sample's pixels and label

  // Normalise per channel while converting (one value per channel, std > 0). Configure before a
  // DataLoader starts reading: the loader's worker threads read these settings without a lock.
  ImageDataset& normalize(const std::vector<float>& mean, const std::vector<float>& std);

  const Tensor& images() const { return images_; }    // uint8 [N, C, H, W], the raw pixels
  const Tensor& targets() const { return targets_; }  // int64 [N]
  int64_t num_classes() const { return num_classes_; }

 private:
  std::string name_;
  Tensor images_;
  Tensor targets_;
  int64_t num_classes_;
  int64_t n_, channels_, height_, width_;
  std::vector<float> scale_, shift_;  // per channel: out = pixel * scale + shift
  const uint8_t* pixels_ = nullptr;   // images_' data, cached for get_into
  const int64_t* labels_ = nullptr;   // targets_' data
};

}  // namespace ember::data
