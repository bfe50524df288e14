#include "data/image_dataset.h"

#include <cmath>

namespace ember::data {

ImageDataset::ImageDataset(std::string name, const Tensor& images, const Tensor& targets, int64_t num_classes)
    : name_(std::move(name)), num_classes_(num_classes) {
  EMBER_CHECK(images.defined() && images.dtype() == kUInt8 && images.dim() == 4, name_,
              ": images must be a uint8 tensor [N, C, H, W], got ",
              images.defined() ? dtype_name(images.dtype()) : "an undefined tensor", " ",
              images.defined() ? images.shape_str() : "");
  EMBER_CHECK(targets.defined() && targets.dtype() == kInt64 && targets.dim() == 1 && targets.size(0) == images.size(0),
              name_, ": targets must be an int64 tensor [", images.size(0), "] (one label per image), got ",
              targets.defined() ? dtype_name(targets.dtype()) : "an undefined tensor", " ",
              targets.defined() ? targets.shape_str() : "");
  EMBER_CHECK(num_classes > 0, name_, ": num_classes must be positive, got ", num_classes);
  images_ = images.to(kCPU).contiguous();
  targets_ = targets.to(kCPU).contiguous();
  n_ = images_.size(0);
  channels_ = images_.size(1);
  height_ = images_.size(2);
  width_ = images_.size(3);
  pixels_ = images_.data<uint8_t>();
  labels_ = targets_.data<int64_t>();
  // Labels are checked once here, so get_into can trust them.
  for (int64_t i = 0; i < n_; ++i)
    EMBER_CHECK(labels_[i] >= 0 && labels_[i] < num_classes, name_, ": label ", labels_[i], " of sample ", i,
                " is out of range [0, ", num_classes - 1, "]");
  scale_.assign(channels_, 1.0f / 255.0f);
  shift_.assign(channels_, 0.0f);
}

ImageDataset& ImageDataset::normalize(const std::vector<float>& mean, const std::vector<float>& std) {
  EMBER_CHECK(static_cast<int64_t>(mean.size()) == channels_ && static_cast<int64_t>(std.size()) == channels_, name_,
              ": normalize needs one mean and one std per channel (", channels_, "), got ", mean.size(), " and ",
              std.size());
  for (int64_t c = 0; c < channels_; ++c) {
    EMBER_CHECK(std[c] > 0 && std::isfinite(std[c]) && std::isfinite(mean[c]), name_, ": normalize: channel ", c,
                " needs a finite mean and a positive std, got mean ", mean[c], ", std ", std[c]);
    scale_[c] = 1.0f / (255.0f * std[c]);
    shift_[c] = -mean[c] / std[c];
  }
  return *this;
}

void ImageDataset::prefetch(int64_t index) const {
  if (index < 0 || index >= n_) return;  // only a hint: never fault on a bad index
  const int64_t bytes = channels_ * height_ * width_;
  const uint8_t* p = pixels_ + index * bytes;
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);  // one per cache line
  __builtin_prefetch(labels_ + index);
}

void ImageDataset::get_into(int64_t index, float* data_out, int64_t* target_out) const {
  check_index(index);
  const int64_t plane = height_ * width_;
  const uint8_t* src = pixels_ + index * channels_ * plane;
  for (int64_t c = 0; c < channels_; ++c) {
    const float a = scale_[c], b = shift_[c];
    const uint8_t* in = src + c * plane;
    float* out = data_out + c * plane;
    for (int64_t j = 0; j < plane; ++j) out[j] = static_cast<float>(in[j]) * a + b;  // vectorises
  }
  *target_out = labels_[index];
}

}  // namespace ember::data
