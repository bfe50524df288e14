// Adam and AdamW — PyTorch's torch.optim.Adam / AdamW, update for update. With t the parameter's
// step count (starting at 1):
//
//   Adam:  g = grad + weight_decay * p          (L2 penalty folded into the gradient)
//   AdamW: p = p * (1 - lr * weight_decay)      (decoupled decay, applied to p directly); g = grad
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   v_max = max(v_max, v)                        (amsgrad only; v_max replaces v below)
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#pragma once

#include <tuple>

#include "optim/optimizer.h"

namespace ember::optim {

class AdamOptions : public OptimizerOptions {
 public:
  using Betas = std::tuple<double, double>;  // (beta1, beta2)

  AdamOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: implicit so `Adam(params, 1e-3)` reads well

  EMBER_ARG(double, lr);
  EMBER_ARG(Betas, betas) = {0.9, 0.999};
  EMBER_ARG(double, eps) = 1e-8;
  EMBER_ARG(double, weight_decay) = 0;
  EMBER_ARG(bool, amsgrad) = false;

 public:
  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<AdamOptions>(*this); }
  const char* optimizer_name() const override { return "Adam"; }
  double get_lr() const override { return lr_; }
  void set_lr(double lr) override { lr_ = lr; }
  std::vector<std::pair<std::string, double>> hyper_parameters() const override;
  bool set_hyper_parameter(const std::string& name, double value) override;
  void validate() const override;
};

// AdamW's options are Adam's with a different default weight decay (1e-2, as in PyTorch).
class AdamWOptions : public AdamOptions {
 public:
  AdamWOptions(double lr = 1e-3) : AdamOptions(lr) { weight_decay(1e-2); }  // NOLINT

  // The fluent setters again, so that chains keep the AdamWOptions type (same signatures as the
  // base's, so these hide them while the using-declarations keep the getters visible).
  AdamWOptions& lr(const double& v) { AdamOptions::lr(v); return *this; }
  AdamWOptions& betas(const Betas& v) { AdamOptions::betas(v); return *this; }
  AdamWOptions& eps(const double& v) { AdamOptions::eps(v); return *this; }
  AdamWOptions& weight_decay(const double& v) { AdamOptions::weight_decay(v); return *this; }
  AdamWOptions& amsgrad(const bool& v) { AdamOptions::amsgrad(v); return *this; }
  using AdamOptions::amsgrad;
  using AdamOptions::betas;
  using AdamOptions::eps;
  using AdamOptions::lr;
  using AdamOptions::weight_decay;

  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<AdamWOptions>(*this); }
  const char* optimizer_name() const override { return "AdamW"; }
};

struct AdamParamState : ParamState {
  int64_t step = 0;       // how many updates this parameter has had (its bias correction uses it)
  Tensor exp_avg;         // m: running mean of the gradient
  Tensor exp_avg_sq;      // v: running mean of the squared gradient
  Tensor max_exp_avg_sq;  // v_max: defined only with amsgrad
  void save(const std::string& prefix, std::map<std::string, Tensor>& out) const override;
  void load(const std::map<std::string, Tensor>& tensors, const Tensor& param, const std::string& where) override;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& defaults = {})
      : Adam({ParamGroup(std::move(params))}, defaults) {}
  Adam(std::vector<ParamGroup> groups, const AdamOptions& defaults = {})
      : Optimizer(std::make_unique<AdamOptions>(defaults), std::move(groups)) {}

  void step() override;

 protected:
  std::unique_ptr<ParamState> make_state() const override { return std::make_unique<AdamParamState>(); }
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& defaults = {})
      : AdamW({ParamGroup(std::move(params))}, defaults) {}
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults = {})
      : Optimizer(std::make_unique<AdamWOptions>(defaults), std::move(groups)) {}

  void step() override;

 protected:
  std::unique_ptr<ParamState> make_state() const override { return std::make_unique<AdamParamState>(); }
};

}  // namespace ember::optim
