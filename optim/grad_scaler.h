// Dynamic loss scaling for float16 training (PyTorch's torch.amp.GradScaler). float16's smallest
// subnormal is 2^-24, so small gradients vanish in a float16 backward; multiplying the loss by a
// large scale S lifts them into range, and the gradients are divided by S again before the step.
// S adapts: a step whose gradients hold an inf or NaN (S was too large) is skipped and S is
// multiplied by backoff_factor; after growth_interval clean steps in a row, S grows by growth_factor.
// (bfloat16 has float32's range and needs none of this.)
//
//   optim::GradScaler scaler;
//   for (...) {
//     Tensor loss;
//     { AutocastGuard autocast(kFloat16); loss = criterion(model.forward(x), y); }
//     opt.zero_grad();
//     scaler.scale(loss).backward();
//     scaler.unscale_(opt);               // optional: only needed to clip the true gradients
//     optim::clip_grad_norm_(params, 1.0);
//     scaler.step(opt);                   // skipped when a gradient is not finite
//     scaler.update();                    // backs off or grows the scale
//   }
//
// Finding an inf costs no host synchronisation per tensor: each gradient adds sum(g * 0) (0, or NaN
// when g holds an inf or NaN) into one flag tensor on the gradients' device, and step() reads that
// flag once.
#pragma once

#include <cstdint>
#include <map>

#include "optim/optimizer.h"

namespace ember::optim {

struct GradScalerOptions {
  EMBER_ARG(double, init_scale) = 65536.0;  // 2^16, as PyTorch
  EMBER_ARG(double, growth_factor) = 2.0;
  EMBER_ARG(double, backoff_factor) = 0.5;
  EMBER_ARG(int64_t, growth_interval) = 2000;
  EMBER_ARG(bool, enabled) = true;  // false: every call passes through (scale 1, plain steps)
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  // loss * scale (differentiable): call backward() on the result.
  Tensor scale(const Tensor& loss) const;
  // Divides the gradients of opt's parameters by the scale, in place, and records whether any is
  // inf or NaN. At most once per optimizer between two update() calls.
  void unscale_(Optimizer& opt);
  // unscale_ (unless already done), then opt.step() only when every gradient was finite. Reads the
  // flag (one host sync). Returns whether the step ran.
  bool step(Optimizer& opt);
  // Adjusts the scale from the steps since the last update: backoff when any found an inf or NaN,
  // growth after growth_interval clean updates. Clears the per-optimizer state.
  void update();

  double get_scale() const { return enabled_ ? scale_ : 1.0; }
  int64_t growth_tracker() const { return growth_tracker_; }
  bool is_enabled() const { return enabled_; }

  // metadata "scale", "growth_factor", "backoff_factor", "growth_interval", "growth_tracker"
  // (PyTorch's GradScaler.state_dict keys, less its underscore), for checkpoints:
  // `all.merge("scaler", scaler.state_dict())`.
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

 private:
  struct PerOptimizer {
    bool unscaled = false;
    bool stepped = false;
    Tensor found_inf;  // 0-d float32: 0 while every gradient was finite, NaN otherwise
    bool found_inf_host = false;
  };

  double scale_, growth_factor_, backoff_factor_;
  int64_t growth_interval_, growth_tracker_ = 0;
  bool enabled_;
  std::map<const Optimizer*, PerOptimizer> per_optimizer_;
};

}  // namespace ember::optim
