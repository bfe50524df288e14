// Adam and AdamW share one update; the only difference is where weight decay goes (`decoupled`).
// As in sgd.cpp the update is written twice: the device's fused multi-tensor step for contiguous
// float parameters (OptimKernels::adam_step: reads p, g, m, v once and writes them once), and tensor
// ops for everything else. Both follow PyTorch's _single_tensor_adam / _single_tensor_adamw line
// by line.
#include "optim/adam.h"

#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/kernels/optim_kernels.h"

namespace ember::optim {

// ---------------- options ----------------

std::vector<std::pair<std::string, double>> AdamOptions::hyper_parameters() const {
  return {{"lr", lr_},   {"beta1", std::get<0>(betas_)},   {"beta2", std::get<1>(betas_)},
          {"eps", eps_}, {"weight_decay", weight_decay_}, {"amsgrad", amsgrad_ ? 1.0 : 0.0}};
}

bool AdamOptions::set_hyper_parameter(const std::string& name, double v) {
  if (name == "lr") lr_ = v;
  else if (name == "beta1") std::get<0>(betas_) = v;
  else if (name == "beta2") std::get<1>(betas_) = v;
  else if (name == "eps") eps_ = v;
  else if (name == "weight_decay") weight_decay_ = v;
  else if (name == "amsgrad") amsgrad_ = v != 0;
  else return false;
  return true;
}

void AdamOptions::validate() const {
  const char* opt = optimizer_name();
  const auto [beta1, beta2] = betas_;
  // isfinite too: an infinite rate, eps or decay (from a flag or a crafted checkpoint) only produces NaN.
  EMBER_CHECK(lr_ >= 0 && std::isfinite(lr_), opt, ": invalid learning rate ", lr_, " (must be finite and >= 0)");
  EMBER_CHECK(eps_ >= 0 && std::isfinite(eps_), opt, ": invalid eps ", eps_, " (must be finite and >= 0)");
  EMBER_CHECK(beta1 >= 0 && beta1 < 1, opt, ": invalid beta1 (betas[0]) ", beta1, " (must be in [0, 1))");
  EMBER_CHECK(beta2 >= 0 && beta2 < 1, opt, ": invalid beta2 (betas[1]) ", beta2, " (must be in [0, 1))");
  EMBER_CHECK(weight_decay_ >= 0 && std::isfinite(weight_decay_), opt, ": invalid weight_decay ", weight_decay_,
              " (must be finite and >= 0)");
}

// ---------------- state ----------------

void AdamParamState::save(const std::string& prefix, std::map<std::string, Tensor>& out) const {
  out[prefix + "step"] = scalar_tensor(static_cast<double>(step), TensorOptions(kInt64));
  out[prefix + "exp_avg"] = exp_avg;
  out[prefix + "exp_avg_sq"] = exp_avg_sq;
  if (max_exp_avg_sq.defined()) out[prefix + "max_exp_avg_sq"] = max_exp_avg_sq;
}

namespace {

// Steps are counted exactly up to 2^53 (where a double, used for the bias corrections, still
// holds every integer); a larger count cannot come from training and would make the int64 cast UB.
constexpr double kMaxStepCount = 9007199254740992.0;  // 2^53

int64_t load_step_count(const Tensor& t, const std::string& key) {
  EMBER_CHECK(t.numel() == 1, "load_state_dict: ", key, " should hold one number, got shape ", t.shape());
  EMBER_CHECK(t.dtype() == kInt64 || is_floating(t.dtype()), "load_state_dict: ", key, " has dtype ",
              dtype_name(t.dtype()), "; a step count is int64 (or float, as PyTorch saves it)");
  const double s = t.item();
  EMBER_CHECK(s >= 0 && s <= kMaxStepCount && s == std::floor(s), "load_state_dict: ", key, " = ", s,
              " is not a step count (an integer in [0, 2^53])");
  return static_cast<int64_t>(s);
}

}  // namespace

void AdamParamState::load(const std::map<std::string, Tensor>& tensors, const Tensor& param, const std::string& where) {
  for (const auto& [name, t] : tensors) {
    const std::string key = where + "." + name;
    if (name == "step") {
      step = load_step_count(t, key);
    } else if (name == "exp_avg") {
      exp_avg = detail::load_state_tensor(t, param, key);
    } else if (name == "exp_avg_sq") {
      exp_avg_sq = detail::load_state_tensor(t, param, key);
    } else if (name == "max_exp_avg_sq") {
      max_exp_avg_sq = detail::load_state_tensor(t, param, key);
    } else {
      EMBER_FAIL("load_state_dict: unknown state tensor '", key,
                 "' (Adam keeps step, exp_avg, exp_avg_sq and, with amsgrad, max_exp_avg_sq)");
    }
  }
  for (const char* name : {"step", "exp_avg", "exp_avg_sq"})
    EMBER_CHECK(tensors.count(name), "load_state_dict: ", where, " has no '", name, "' tensor");
}

// ---------------- the update ----------------

namespace {

// The tensor-op update: any device, any strides.
void adam_generic(Tensor& p, const Tensor& g, AdamParamState& st, const OptimKernels::AdamStep& s) {
  Tensor grad = g;
  if (s.weight_decay != 0) {
    if (s.decoupled) p.mul_(1 - s.lr * s.weight_decay);
    else grad = g + p * s.weight_decay;
  }
  st.exp_avg.mul_(s.beta1).add_(grad, 1 - s.beta1);
  st.exp_avg_sq.mul_(s.beta2).add_(grad * grad, 1 - s.beta2);
  Tensor v = st.exp_avg_sq;
  if (s.amsgrad) {
    st.max_exp_avg_sq.copy_(maximum(st.max_exp_avg_sq, st.exp_avg_sq));
    v = st.max_exp_avg_sq;
  }
  Tensor denom = sqrt(v).div_(s.bias_corr2_sqrt).add_(s.eps);
  p.add_(st.exp_avg / denom, -s.step_size);
}

// What the fused step needs: contiguous float tensors of one dtype on one device.
bool fusable(const Tensor& p, const Tensor& g, const AdamParamState& st) {
  const auto same_layout = [&p](const Tensor& t) {
    return !t.defined() || (t.is_contiguous() && t.dtype() == p.dtype() && t.device() == p.device());
  };
  return (p.dtype() == kFloat32 || p.dtype() == kFloat64) && p.is_contiguous() && g.is_contiguous() &&
         g.dtype() == p.dtype() && g.device() == p.device() && same_layout(st.exp_avg) &&
         same_layout(st.exp_avg_sq) && same_layout(st.max_exp_avg_sq);
}

// Parameters of one group with the same step count (so the same bias corrections) that one
// OptimKernels::adam_step call updates together.
struct AdamBatch {
  Device device;
  DType dtype;
  int64_t step;
  std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs;
};

AdamBatch& batch_for(std::vector<AdamBatch>& batches, const Tensor& p, int64_t step) {
  for (AdamBatch& b : batches)
    if (b.device == p.device() && b.dtype == p.dtype() && b.step == step) return b;
  return batches.emplace_back(AdamBatch{p.device(), p.dtype(), step, {}, {}, {}, {}, {}});
}

// Per-step constants, computed once on the host (in double, like PyTorch's Python).
OptimKernels::AdamStep step_constants(const AdamOptions& o, bool decoupled, int64_t step) {
  const auto [beta1, beta2] = o.betas();
  const double t = static_cast<double>(step);
  return {o.lr(), beta1, beta2, o.eps(), o.weight_decay(), o.amsgrad(), decoupled,
          o.lr() / (1 - std::pow(beta1, t)), std::sqrt(1 - std::pow(beta2, t))};
}

void adam_step(Optimizer& opt, std::vector<std::unique_ptr<ParamState>>& state, bool decoupled) {
  NoGradGuard no_grad;
  size_t index = 0;
  for (ParamGroup& group : opt.param_groups()) {
    const auto& o = static_cast<const AdamOptions&>(group.options());
    std::vector<AdamBatch> batches;
    for (Tensor p : group.params()) {
      auto& slot = state[index++];
      const Tensor g = p.grad();
      if (!g.defined()) continue;  // no gradient this step: the parameter and its step count stay put
      if (!slot) {
        auto st = std::make_unique<AdamParamState>();
        st->exp_avg = zeros_like(p);
        st->exp_avg_sq = zeros_like(p);
        slot = std::move(st);
      }
      auto& st = static_cast<AdamParamState&>(*slot);
      // amsgrad may be switched on later (or by a loaded state dict): create v_max when first needed.
      if (o.amsgrad() && !st.max_exp_avg_sq.defined()) st.max_exp_avg_sq = zeros_like(p);

      st.step += 1;
      if (fusable(p, g, st)) {
        AdamBatch& b = batch_for(batches, p, st.step);
        b.params.push_back(p);
        b.grads.push_back(g);
        b.exp_avgs.push_back(st.exp_avg);
        b.exp_avg_sqs.push_back(st.exp_avg_sq);
        if (o.amsgrad()) b.max_exp_avg_sqs.push_back(st.max_exp_avg_sq);
      } else {
        adam_generic(p, g, st, step_constants(o, decoupled, st.step));
      }
    }
    for (AdamBatch& b : batches) {
      optim_kernels(b.device).adam_step(b.params, b.grads, b.exp_avgs, b.exp_avg_sqs, b.max_exp_avg_sqs,
                                  step_constants(o, decoupled, b.step));
      // The kernel wrote p without an in-place op: tell autograd.
      for (Tensor& p : b.params) p.storage()->bump_version();
    }
  }
}

}  // namespace

void Adam::step() { adam_step(*this, state_, /*decoupled=*/false); }
void AdamW::step() { adam_step(*this, state_, /*decoupled=*/true); }

}  // namespace ember::optim
