// Dynamic loss scaling (see optim/grad_scaler.h).
#include "optim/grad_scaler.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace ember::optim {

using detail::format_double;
using detail::parse_double;
using detail::parse_int;

GradScaler::GradScaler(GradScalerOptions o)
    : scale_(o.init_scale()),
      growth_factor_(o.growth_factor()),
      backoff_factor_(o.backoff_factor()),
      growth_interval_(o.growth_interval()),
      enabled_(o.enabled()) {
  EMBER_CHECK(scale_ > 0 && std::isfinite(scale_), "GradScaler: init_scale must be positive and finite, got ", scale_);
  EMBER_CHECK(growth_factor_ > 1, "GradScaler: growth_factor must be > 1, got ", growth_factor_);
  EMBER_CHECK(backoff_factor_ > 0 && backoff_factor_ < 1, "GradScaler: backoff_factor must be in (0, 1), got ",
              backoff_factor_);
  EMBER_CHECK(growth_interval_ > 0, "GradScaler: growth_interval must be positive, got ", growth_interval_);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  EMBER_CHECK(loss.defined(), "GradScaler::scale: undefined loss");
  return enabled_ ? loss * scale_ : loss;
}

void GradScaler::unscale_(Optimizer& opt) {
  if (!enabled_) return;
  PerOptimizer& st = per_optimizer_[&opt];
  EMBER_CHECK(!st.unscaled, "GradScaler::unscale_: already called for this optimizer since the last update()");
  EMBER_CHECK(!st.stepped, "GradScaler::unscale_: called after step(); call update() first");
  NoGradGuard no_grad;
  const double inv = 1.0 / scale_;
  for (ParamGroup& group : opt.param_groups())
    for (const Tensor& p : group.params()) {
      Tensor& g = p.mutable_grad();
      if (!g.defined()) continue;
      // As PyTorch: unscaling a float16 gradient in place flushes the small ones to zero, and
      // float16 weights would round most updates away; the recipe keeps parameters float32.
      EMBER_CHECK(g.dtype() != kFloat16, "GradScaler::unscale_: a parameter ", p.shape(),
                  " has a float16 gradient; keep the parameters float32 (master weights) and run the forward "
                  "under AutocastGuard(kFloat16) instead of converting the model");
      g.mul_(inv);
      // sum(g * 0) is 0 for finite g and NaN as soon as one element is inf or NaN; adding it to the
      // flag keeps everything on the gradients' device, with no host read per tensor.
      Tensor probe = (g * 0.0).sum().to(kFloat32);
      st.found_inf = st.found_inf.defined() ? st.found_inf + probe : probe;
    }
  st.unscaled = true;
}

bool GradScaler::step(Optimizer& opt) {
  if (!enabled_) {
    opt.step();
    return true;
  }
  PerOptimizer& st = per_optimizer_[&opt];
  EMBER_CHECK(!st.stepped, "GradScaler::step: already called for this optimizer since the last update()");
  if (!st.unscaled) unscale_(opt);
  // As PyTorch: a step with nothing checked (no parameter had a gradient) would count as a clean
  // step towards growing the scale.
  EMBER_CHECK(st.found_inf.defined(), "GradScaler::step: no parameter of this optimizer has a gradient, so no "
              "inf/NaN check was recorded (did backward run on the scaled loss?)");
  st.stepped = true;
  st.found_inf_host = st.found_inf.defined() && std::isnan(st.found_inf.item());  // the one host sync
  if (st.found_inf_host) return false;
  opt.step();
  return true;
}

void GradScaler::update() {
  if (!enabled_) return;
  // As PyTorch: update() without a step() or unscale_() since the last one (e.g. once per
  // micro-batch under gradient accumulation) would grow the scale on steps that never happened.
  EMBER_CHECK(!per_optimizer_.empty(), "GradScaler::update: no inf checks were recorded since the last update() "
              "(call step(optimizer) first)");
  bool found_inf = false;
  for (const auto& [opt, st] : per_optimizer_) {
    // A flag that step() has not read yet (unscale_ without step) is read here.
    found_inf = found_inf || (st.stepped ? st.found_inf_host : st.found_inf.defined() && std::isnan(st.found_inf.item()));
  }
  if (found_inf) {
    scale_ *= backoff_factor_;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == growth_interval_) {
    const double grown = scale_ * growth_factor_;
    if (std::isfinite(grown)) scale_ = grown;  // as PyTorch: never grow into inf
    growth_tracker_ = 0;
  }
  per_optimizer_.clear();
}

StateDict GradScaler::state_dict() const {
  StateDict sd;
  sd.metadata["scale"] = format_double(scale_);
  sd.metadata["growth_factor"] = format_double(growth_factor_);
  sd.metadata["backoff_factor"] = format_double(backoff_factor_);
  sd.metadata["growth_interval"] = std::to_string(growth_interval_);
  sd.metadata["growth_tracker"] = std::to_string(growth_tracker_);
  return sd;
}

void GradScaler::load_state_dict(const StateDict& sd) {
  const char* w = "GradScaler::load_state_dict";
  const double scale = parse_double(sd.metadata, "scale", w);
  const double growth = parse_double(sd.metadata, "growth_factor", w);
  const double backoff = parse_double(sd.metadata, "backoff_factor", w);
  const int64_t interval = parse_int(sd.metadata, "growth_interval", w);
  const int64_t tracker = parse_int(sd.metadata, "growth_tracker", w);
  EMBER_CHECK(scale > 0 && std::isfinite(scale) && growth > 1 && backoff > 0 && backoff < 1 && interval > 0 &&
                  tracker >= 0 && tracker < interval,
              w, ": invalid state (scale ", scale, ", growth_factor ", growth, ", backoff_factor ", backoff,
              ", growth_interval ", interval, ", growth_tracker ", tracker, ")");
  scale_ = scale;
  growth_factor_ = growth;
  backoff_factor_ = backoff;
  growth_interval_ = interval;
  growth_tracker_ = tracker;
  per_optimizer_.clear();
}

}  // namespace ember::optim
