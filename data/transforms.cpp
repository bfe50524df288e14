#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "core/error.h"

namespace ember::data {

uint64_t derive_key(uint64_t seed, uint64_t epoch, uint32_t stream) {
  Philox4 r = philox4x32(seed, epoch << 8 | stream);
  return uint64_t{r.v[0]} | uint64_t{r.v[1]} << 32;
}

// Counter layout: sample index in the high bits, block number in the low 16, so each sample owns
// 65536 Philox blocks (262144 random words) — far more than any augmentation draws.
SampleRng::SampleRng(uint64_t seed, uint64_t epoch, int64_t index)
    : key_(derive_key(seed, epoch, kAugmentStream)), counter_(static_cast<uint64_t>(index) << 16) {}

uint32_t SampleRng::next_u32() {
  if (used_ == 4) {
    block_ = philox4x32(key_, counter_++);
    used_ = 0;
  }
  return block_.v[used_++];
}

float SampleRng::normal() {
  // Box-Muller: 1 - u is in (0, 1], so the log is finite.
  const double u1 = 1.0 - static_cast<double>(uniform()), u2 = static_cast<double>(uniform());
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
}

namespace {

// An image sample as planes of H x W: [C, H, W] or [H, W].
struct Planes {
  int64_t count, height, width;
};
Planes planes_of(const Shape& s) { return s.size() == 3 ? Planes{s[0], s[1], s[2]} : Planes{1, s[0], s[1]}; }

}  // namespace

void Transform::check(const Shape& shape) const {
  EMBER_CHECK(shape.size() == 2 || shape.size() == 3, name(), ": expects image samples [C, H, W] or [H, W], got ",
              shape);
}

// ---- Normalize ----

Normalize::Normalize(std::vector<float> mean, std::vector<float> std) {
  EMBER_CHECK(!mean.empty() && mean.size() == std.size(), "Normalize: needs as many means as stds (one per channel, ",
              "or one for all), got ", mean.size(), " and ", std.size());
  for (size_t c = 0; c < mean.size(); ++c) {
    EMBER_CHECK(std[c] > 0 && std::isfinite(std[c]) && std::isfinite(mean[c]), "Normalize: channel ", c,
                " needs a finite mean and a positive std, got mean ", mean[c], ", std ", std[c]);
    scale_.push_back(1.0f / std[c]);
    shift_.push_back(-mean[c] / std[c]);
  }
}

void Normalize::check(const Shape& shape) const {
  Transform::check(shape);
  int64_t channels = planes_of(shape).count;
  EMBER_CHECK(scale_.size() == 1 || static_cast<int64_t>(scale_.size()) == channels, "Normalize: has ", scale_.size(),
              " means/stds but samples ", shape, " have ", channels, " channels");
}

void Normalize::apply(float* sample, const Shape& shape, SampleRng&) const {
  Planes p = planes_of(shape);
  const int64_t plane = p.height * p.width;
  for (int64_t c = 0; c < p.count; ++c) {
    const float a = scale_.size() == 1 ? scale_[0] : scale_[c], b = shift_.size() == 1 ? shift_[0] : shift_[c];
    float* x = sample + c * plane;
    for (int64_t j = 0; j < plane; ++j) x[j] = x[j] * a + b;
  }
}

// ---- RandomCrop ----

RandomCrop::RandomCrop(int64_t padding, float fill) : padding_(padding), fill_(fill) {
  EMBER_CHECK(padding >= 0, "RandomCrop: padding must be non-negative, got ", padding);
}

void RandomCrop::apply(float* sample, const Shape& shape, SampleRng& rng) const {
  const Planes p = planes_of(shape);
  const int64_t H = p.height, W = p.width;
  // The crop window's top-left corner in the padded image is (padding + dy, padding + dx).
  const int64_t dy = rng.uniform_int(2 * padding_ + 1) - padding_;
  const int64_t dx = rng.uniform_int(2 * padding_ + 1) - padding_;
  if (dy == 0 && dx == 0) return;
  // Output pixel (y, x) is input pixel (y + dy, x + dx), or `fill` where that lies outside the image.
  // Destination columns [x0, x1) have a source column; the rest are fill.
  const int64_t x0 = std::max<int64_t>(0, -dx), x1 = std::min<int64_t>(W, W - dx);
  for (int64_t c = 0; c < p.count; ++c) {
    float* img = sample + c * H * W;
    auto write_row = [&](int64_t y) {
      float* dst = img + y * W;
      const int64_t sy = y + dy;
      if (sy < 0 || sy >= H || x0 >= x1) {
        std::fill(dst, dst + W, fill_);
        return;
      }
      std::memmove(dst + x0, img + sy * W + x0 + dx, (x1 - x0) * sizeof(float));  // memmove: dy == 0 overlaps
      std::fill(dst, dst + x0, fill_);
      std::fill(dst + x1, dst + W, fill_);
    };
    // In place: visit rows so that each source row is read before it is overwritten. Moving down
    // (dy < 0, row y reads row y + dy above it) goes bottom-up; moving up goes top-down.
    if (dy > 0) {
      for (int64_t y = 0; y < H; ++y) write_row(y);
    } else {
      for (int64_t y = H - 1; y >= 0; --y) write_row(y);
    }
  }
}

// ---- RandomHorizontalFlip ----

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(static_cast<float>(p)) {
  EMBER_CHECK(p >= 0 && p <= 1, "RandomHorizontalFlip: probability must be in [0, 1], got ", p);
}

void RandomHorizontalFlip::apply(float* sample, const Shape& shape, SampleRng& rng) const {
  // Always draw, even for p = 0 or 1, so a sample's later transforms see the same stream either way.
  if (!(rng.uniform() < p_)) return;
  const Planes p = planes_of(shape);
  for (int64_t r = 0; r < p.count * p.height; ++r) std::reverse(sample + r * p.width, sample + (r + 1) * p.width);
}

// ---- Cutout ----

Cutout::Cutout(int64_t length, int64_t n_holes) : length_(length), n_holes_(n_holes) {
  EMBER_CHECK(length > 0, "Cutout: length must be positive, got ", length);
  EMBER_CHECK(n_holes >= 0, "Cutout: n_holes must be non-negative, got ", n_holes);
}

void Cutout::apply(float* sample, const Shape& shape, SampleRng& rng) const {
  const Planes p = planes_of(shape);
  const int64_t H = p.height, W = p.width;
  for (int64_t hole = 0; hole < n_holes_; ++hole) {
    const int64_t cy = rng.uniform_int(H), cx = rng.uniform_int(W);
    const int64_t y0 = std::clamp<int64_t>(cy - length_ / 2, 0, H), y1 = std::clamp<int64_t>(cy - length_ / 2 + length_, 0, H);
    const int64_t x0 = std::clamp<int64_t>(cx - length_ / 2, 0, W), x1 = std::clamp<int64_t>(cx - length_ / 2 + length_, 0, W);
    for (int64_t c = 0; c < p.count; ++c)
      for (int64_t y = y0; y < y1; ++y) std::fill(sample + (c * H + y) * W + x0, sample + (c * H + y) * W + x1, 0.0f);
  }
}

// ---- RandomErasing ----

RandomErasing::RandomErasing(RandomErasingOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  EMBER_CHECK(o.p >= 0 && o.p <= 1, "RandomErasing: probability p must be in [0, 1], got ", o.p);
  EMBER_CHECK(o.scale_min >= 0 && o.scale_max <= 1 && o.scale_min <= o.scale_max,
              "RandomErasing: scale must be (min, max) with 0 <= min <= max <= 1, got (", o.scale_min, ", ",
              o.scale_max, ")");
  EMBER_CHECK(o.ratio_min > 0 && o.ratio_min <= o.ratio_max && std::isfinite(o.ratio_max),
              "RandomErasing: ratio must be (min, max) with 0 < min <= max, got (", o.ratio_min, ", ", o.ratio_max, ")");
  EMBER_CHECK(o.random_value || !o.value.empty(), "RandomErasing: value is empty; give one fill value, one per ",
              "channel, or set random_value");
}

void RandomErasing::check(const Shape& shape) const {
  Transform::check(shape);
  const int64_t channels = planes_of(shape).count;
  EMBER_CHECK(options_.random_value || options_.value.size() == 1 || static_cast<int64_t>(options_.value.size()) == channels,
              "RandomErasing: has ", options_.value.size(), " fill values but samples ", shape, " have ", channels,
              " channels (give one value, or one per channel)");
}

void RandomErasing::apply(float* sample, const Shape& shape, SampleRng& rng) const {
  const auto& o = options_;
  if (!(rng.uniform() < o.p)) return;
  const Planes p = planes_of(shape);
  const int64_t H = p.height, W = p.width;
  const double area = static_cast<double>(H * W);
  const double log_lo = std::log(o.ratio_min), log_hi = std::log(o.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    // torchvision's order: area fraction, then log aspect ratio; a rectangle that does not fit costs
    // only these two draws.
    const double erase_area = area * rng.uniform(o.scale_min, o.scale_max);
    const double aspect = std::exp(rng.uniform(log_lo, log_hi));
    // Python's round() rounds half to even; nearbyint does too in the default rounding mode.
    const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(erase_area * aspect)));
    const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(erase_area / aspect)));
    if (!(h < H && w < W)) continue;
    // Then, as in torchvision: the noise (if any), then the top-left corner.
    std::vector<float> noise;  // the one allocation a transform makes, and only for random_value
    if (o.random_value) {
      noise.resize(p.count * h * w);
      for (float& v : noise) v = rng.normal();
    }
    const int64_t top = rng.uniform_int(H - h + 1), left = rng.uniform_int(W - w + 1);
    for (int64_t c = 0; c < p.count; ++c) {
      const float fill = o.random_value ? 0.0f : o.value[o.value.size() == 1 ? 0 : c];
      for (int64_t y = 0; y < h; ++y) {
        float* row = sample + (c * H + top + y) * W + left;
        if (o.random_value) std::copy_n(noise.data() + (c * h + y) * w, w, row);
        else std::fill(row, row + w, fill);
      }
    }
    return;
  }
}

}  // namespace ember::data
