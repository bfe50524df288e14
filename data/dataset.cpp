#include "data/dataset.h"

#include <cstring>

#include "core/ops.h"

namespace ember::data {

void Dataset::check_index(int64_t index) const {
  EMBER_CHECK(index >= 0 && index < size(), name(), ": sample index ", index, " is out of range for a dataset of ",
              size(), " samples");
}

Example Dataset::get(int64_t index) const {
  check_index(index);
  Example ex;
  ex.data = empty(sample_shape(), kFloat32);
  get_into(index, ex.data.data<float>(), &ex.target);
  return ex;
}

TensorDataset::TensorDataset(const Tensor& data, const Tensor& targets) {
  EMBER_CHECK(data.defined() && targets.defined(), "TensorDataset: data and targets must be defined tensors");
  EMBER_CHECK(data.dim() >= 1, "TensorDataset: data must have a leading sample dimension, got shape ", data.shape());
  EMBER_CHECK(is_floating(data.dtype()), "TensorDataset: data must be floating point, got ", data.dtype());
  EMBER_CHECK(!is_floating(targets.dtype()), "TensorDataset: targets must be integer class labels, got ",
              targets.dtype());
  EMBER_CHECK(targets.dim() == 1 && targets.size(0) == data.size(0), "TensorDataset: targets must have shape [",
              data.size(0), "] to match data ", data.shape(), ", got ", targets.shape());
  // One contiguous float32 host copy up front, so get_into is a plain memcpy.
  data_ = data.detach().to(kCPU).to(kFloat32).contiguous();
  targets_ = targets.detach().to(kCPU).to(kInt64).contiguous();
  n_ = data.size(0);
  sample_shape_ = Shape(data.shape().begin() + 1, data.shape().end());
  sample_numel_ = sample_shape_.numel();
}

void TensorDataset::get_into(int64_t index, float* data_out, int64_t* target_out) const {
  check_index(index);
  std::memcpy(data_out, data_.data<float>() + index * sample_numel_, sample_numel_ * sizeof(float));
  *target_out = targets_.data<int64_t>()[index];
}

Prefix::Prefix(std::shared_ptr<const Dataset> base, int64_t n) : base_(std::move(base)), n_(n) {
  EMBER_CHECK(base_ != nullptr, "Prefix: the base dataset is null");
  EMBER_CHECK(n >= 0 && n <= base_->size(), "Prefix: cannot take the first ", n, " samples of ", base_->name(),
              ", which has ", base_->size());
}

void Prefix::get_into(int64_t index, float* data_out, int64_t* target_out) const {
  check_index(index);
  base_->get_into(index, data_out, target_out);
}

}  // namespace ember::data
