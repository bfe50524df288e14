#include "optim/ema.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/autograd.h"
#include "core/ops.h"

namespace ember::optim {

ExponentialMovingAverage::ExponentialMovingAverage(const nn::Module& model, const EmaOptions& options)
    : options_(options) {
  EMBER_CHECK(options.decay() >= 0 && options.decay() <= 1, "ExponentialMovingAverage: decay must be in [0, 1], got ",
              options.decay());
  const nn::NamedTensors params = model.named_parameters();
  for (const auto& [name, t] : model.state_dict()) {
    averaged_.insert(name, t.detach().clone());  // clone: a fresh copy, not a view of the model's storage
    is_parameter_.push_back(params.contains(name));
  }
}

double ExponentialMovingAverage::decay_at(int64_t n) const {
  if (!options_.warmup()) return options_.decay();
  const double ramp = (1.0 + static_cast<double>(n)) / (10.0 + static_cast<double>(n));
  return std::min(options_.decay(), ramp);
}

void ExponentialMovingAverage::check_matches(const nn::NamedTensors& model_state, const char* what) const {
  for (const auto& [name, avg] : averaged_) {
    const Tensor* t = model_state.find(name);
    EMBER_CHECK(t != nullptr, "ExponentialMovingAverage: ", what, ": the model has no \"", name,
                "\"; the average was made from a model with ", averaged_.size(), " parameters and buffers");
    EMBER_CHECK(t->shape() == avg.shape(), "ExponentialMovingAverage: ", what, ": \"", name, "\" has shape ",
                t->shape(), " in the model but ", avg.shape(), " in the average");
    // The average stays where the model was when it was made; a model moved since would otherwise
    // fail inside an op with a less helpful message.
    EMBER_CHECK(t->device() == avg.device() && t->dtype() == avg.dtype(), "ExponentialMovingAverage: ", what, ": \"",
                name, "\" is ", dtype_name(t->dtype()), " on ", t->device(), " in the model but ",
                dtype_name(avg.dtype()), " on ", avg.device(), " in the average (make the average after moving ",
                "or converting the model)");
  }
  EMBER_CHECK(model_state.size() == averaged_.size(), "ExponentialMovingAverage: ", what, ": the model has ",
              model_state.size(), " parameters and buffers, the average ", averaged_.size(),
              " (is it the same architecture?)");
}

void ExponentialMovingAverage::update(const nn::Module& model) {
  const nn::NamedTensors state = model.state_dict();
  check_matches(state, "update");
  NoGradGuard no_grad;
  const double d = decay_at(num_updates_);
  for (size_t i = 0; i < averaged_.size(); ++i) {
    Tensor avg = averaged_[i].second;
    const Tensor& current = state.at(averaged_[i].first);
    if (!is_parameter_[i] || num_updates_ == 0) {
      avg.copy_(current);
    } else {
      // decay * avg + (1 - decay) * param, the operation order of PyTorch's EMA avg_fn. Two
      // temporaries per tensor; cheap next to the training step that came before.
      avg.copy_(avg * d + current.detach() * (1.0 - d));
    }
  }
  ++num_updates_;
}

void ExponentialMovingAverage::copy_to(nn::Module& model) const {
  check_matches(model.state_dict(), "copy_to");
  model.load_state_dict(averaged_);
}

StateDict ExponentialMovingAverage::state_dict() const {
  StateDict sd;
  sd.metadata["averaged_model"] = "ExponentialMovingAverage";
  for (const auto& [name, t] : averaged_) sd.tensors["module." + name] = t;
  sd.tensors["n_averaged"] = full({}, static_cast<double>(num_updates_), kInt64);
  return sd;
}

void ExponentialMovingAverage::load_state_dict(const StateDict& sd) {
  const char* w = "ExponentialMovingAverage: load_state_dict";
  auto type = sd.metadata.find("averaged_model");
  EMBER_CHECK(type != sd.metadata.end() && type->second == "ExponentialMovingAverage", w,
              ": the state dict has no 'averaged_model' = 'ExponentialMovingAverage' entry (is it an EMA's?)");
  auto n = sd.tensors.find("n_averaged");
  EMBER_CHECK(n != sd.tensors.end() && n->second.numel() == 1 && !is_floating(n->second.dtype()), w,
              ": the state dict has no integer 'n_averaged' tensor");
  const int64_t num_updates = n->second.to(kCPU).to(kInt64).item<int64_t>();
  EMBER_CHECK(num_updates >= 0, w, ": n_averaged is negative (", num_updates, ")");
  // Check every entry before copying any.
  for (const auto& [name, avg] : averaged_) {
    auto it = sd.tensors.find("module." + name);
    EMBER_CHECK(it != sd.tensors.end(), w, ": the state dict has no \"module.", name, "\"");
    EMBER_CHECK(it->second.shape() == avg.shape(), w, ": \"module.", name, "\" has shape ", it->second.shape(),
                ", the average has ", avg.shape());
    EMBER_CHECK(is_floating(it->second.dtype()) == is_floating(avg.dtype()), w, ": \"module.", name, "\" is ",
                dtype_name(it->second.dtype()), ", the average is ", dtype_name(avg.dtype()));
  }
  for (const auto& [key, t] : sd.tensors)
    EMBER_CHECK(key == "n_averaged" || (key.starts_with("module.") && averaged_.contains(key.substr(7))), w,
                ": unexpected entry \"", key, "\" (not in the averaged model)");
  NoGradGuard no_grad;
  for (const auto& [name, avg] : averaged_) Tensor(avg).copy_(sd.tensors.at("module." + name));
  num_updates_ = num_updates;
}

EmaScope::EmaScope(const ExponentialMovingAverage& ema, nn::Module& model) : model_(model) {
  for (const auto& [name, t] : model.state_dict()) saved_.insert(name, t.detach().clone());
  ema.copy_to(model);
}

// Cannot fail in practice: the saved tensors came from this model, so names and shapes match.
EmaScope::~EmaScope() { model_.load_state_dict(saved_); }

}  // namespace ember::optim
