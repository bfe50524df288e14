// Optimizer base class: parameter checks, groups, zero_grad and the state dict.
#include "optim/optimizer.h"

#include <charconv>
#include <cmath>
#include <set>
#include <typeinfo>
#include <utility>

#include "core/autograd.h"
#include "core/ops.h"

namespace ember::optim {

// ---------------- StateDict ----------------

void StateDict::merge(const std::string& prefix, const StateDict& other) {
  for (const auto& [k, v] : other.tensors) tensors[prefix + "." + k] = v;
  for (const auto& [k, v] : other.metadata) metadata[prefix + "." + k] = v;
}

StateDict StateDict::sub(const std::string& prefix) const {
  const std::string p = prefix + ".";
  StateDict out;
  // std::map is sorted, so the keys under the prefix form one contiguous run starting at lower_bound.
  for (auto it = tensors.lower_bound(p); it != tensors.end() && it->first.starts_with(p); ++it)
    out.tensors[it->first.substr(p.size())] = it->second;
  for (auto it = metadata.lower_bound(p); it != metadata.end() && it->first.starts_with(p); ++it)
    out.metadata[it->first.substr(p.size())] = it->second;
  return out;
}

// ---------------- options and groups ----------------

std::optional<double> OptimizerOptions::hyper_parameter(const std::string& name) const {
  for (const auto& [k, v] : hyper_parameters())
    if (k == name) return v;
  return std::nullopt;
}

const OptimizerOptions& ParamGroup::options() const {
  EMBER_CHECK(options_ != nullptr,
              "ParamGroup: this group has no options yet (they are set when it is added to an optimizer)");
  return *options_;
}
OptimizerOptions& ParamGroup::options() { return const_cast<OptimizerOptions&>(std::as_const(*this).options()); }

// ---------------- Optimizer ----------------

Optimizer::Optimizer(std::unique_ptr<OptimizerOptions> defaults, std::vector<ParamGroup> groups)
    : defaults_(std::move(defaults)) {
  defaults_->validate();
  EMBER_CHECK(!groups.empty(), name(), ": got no parameter groups");
  for (ParamGroup& g : groups) {
    if (g.has_options()) {
      add_param_group(std::move(g.params_), *g.options_);
    } else if (!g.overrides_.empty()) {
      // PyTorch's group dict: the defaults, with the keys the group names replaced.
      std::unique_ptr<OptimizerOptions> options = defaults_->clone();
      for (const auto& [key, value] : g.overrides_)
        EMBER_CHECK(options->set_hyper_parameter(key, value), name(), ": parameter group ", groups_.size(),
                    " overrides '", key, "', which is not a ", name(), " hyper-parameter");
      add_param_group(std::move(g.params_), *options);
    } else {
      add_param_group(std::move(g.params_));
    }
  }
}

void Optimizer::add_param_group(std::vector<Tensor> params) { add_param_group(std::move(params), *defaults_); }

void Optimizer::add_param_group(std::vector<Tensor> params, const OptimizerOptions& options) {
  const size_t g = groups_.size();
  const OptimizerOptions& defaults = *defaults_;  // a plain reference: typeid of *ptr is an evaluated expression
  EMBER_CHECK(typeid(options) == typeid(defaults), name(), ": parameter group ", g, " has options for ",
              options.optimizer_name(), "; this optimizer is ", name());
  options.validate();
  EMBER_CHECK(!params.empty(), name(), ": parameter group ", g, " is empty (got an empty parameter list)");

  // Every parameter must be a floating-point leaf that requires grad, and belong to one group only
  // (updating a tensor twice per step is never what was meant).
  std::set<const TensorImpl*> seen;
  for (const ParamGroup& group : groups_)
    for (const Tensor& p : group.params()) seen.insert(p.impl());
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    EMBER_CHECK(p.defined(), name(), ": parameter ", i, " of group ", g, " is an undefined tensor");
    EMBER_CHECK(is_floating(p.dtype()), name(), ": parameter ", i, " of group ", g, " has dtype ",
                dtype_name(p.dtype()), "; only floating-point tensors can be optimized");
    EMBER_CHECK(p.requires_grad(), name(), ": parameter ", i, " of group ", g, " (shape ", p.shape(),
                ") does not require grad; only tensors that require grad can be optimized");
    EMBER_CHECK(p.is_leaf(), name(), ": parameter ", i, " of group ", g, " (shape ", p.shape(),
                ") is not a leaf tensor (it was computed from others); optimize the leaves instead");
    EMBER_CHECK(seen.insert(p.impl()).second, name(), ": parameter ", i, " of group ", g, " (shape ", p.shape(),
                ") appears more than once among the parameter groups");
  }
  state_.resize(state_.size() + params.size());  // lazily created on each parameter's first step
  groups_.emplace_back(std::move(params), options);
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (const ParamGroup& group : groups_)
    for (const Tensor& p : group.params()) {
      if (set_to_none) {
        p.zero_grad();
      } else if (p.grad().defined()) {
        Tensor g = p.grad();
        g.zero_();
      }
    }
}

StateDict Optimizer::state_dict() const {
  StateDict sd;
  sd.metadata["optimizer"] = name();
  sd.metadata["param_groups"] = std::to_string(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = "param_groups." + std::to_string(g) + ".";
    sd.metadata[prefix + "params"] = std::to_string(groups_[g].params().size());
    for (const auto& [k, v] : groups_[g].options().hyper_parameters())
      sd.metadata[prefix + k] = detail::format_double(v);
  }
  for (size_t i = 0; i < state_.size(); ++i)
    if (state_[i]) state_[i]->save("state." + std::to_string(i) + ".", sd.tensors);
  return sd;
}

void Optimizer::load_state_dict(const StateDict& sd) {
  const std::string what = std::string(name()) + ": load_state_dict";
  const char* w = what.c_str();
  auto type = sd.metadata.find("optimizer");
  EMBER_CHECK(type != sd.metadata.end(), what, ": the state dict has no 'optimizer' entry (is it an optimizer's?)");
  EMBER_CHECK(type->second == name(), what, ": the state dict is from a ", type->second, " optimizer, this one is ",
              name());
  const int64_t ngroups = detail::parse_int(sd.metadata, "param_groups", w);
  EMBER_CHECK(ngroups == static_cast<int64_t>(groups_.size()), what, ": the state dict has ", ngroups,
              " parameter groups, this optimizer has ", groups_.size());

  // Everything is parsed into fresh objects first and swapped in at the end, so a bad state dict
  // leaves the optimizer untouched.
  std::vector<std::unique_ptr<OptimizerOptions>> options;
  std::vector<const Tensor*> params;  // all parameters, in state_ order
  std::set<std::string> known = {"optimizer", "param_groups"};
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = "param_groups." + std::to_string(g) + ".";
    const int64_t n = detail::parse_int(sd.metadata, prefix + "params", w);
    EMBER_CHECK(n == static_cast<int64_t>(groups_[g].params().size()), what, ": parameter group ", g, " has ", n,
                " parameters in the state dict, ", groups_[g].params().size(), " in this optimizer");
    known.insert(prefix + "params");
    auto o = groups_[g].options().clone();
    for (const auto& [k, v] : o->hyper_parameters()) {
      bool ok = o->set_hyper_parameter(k, detail::parse_double(sd.metadata, prefix + k, w));
      EMBER_CHECK(ok, what, ": cannot set ", k);  // cannot happen: k came from hyper_parameters()
      known.insert(prefix + k);
    }
    o->validate();
    options.push_back(std::move(o));
    for (const Tensor& p : groups_[g].params()) params.push_back(&p);
  }
  for (const auto& [k, v] : sd.metadata)
    EMBER_CHECK(known.count(k), what, ": unknown metadata entry '", k, "' (not a ", name(), " hyper-parameter)");

  // Group the state tensors by parameter: "state.<i>.<name>".
  std::vector<std::map<std::string, Tensor>> per_param(params.size());
  for (const auto& [key, t] : sd.tensors) {
    const std::string bad = "unexpected tensor '" + key + "' (expected state.<parameter index>.<name>)";
    EMBER_CHECK(key.starts_with("state."), what, ": ", bad);
    size_t i = 0;
    const char* first = key.data() + 6;
    const char* last = key.data() + key.size();
    auto [end, ec] = std::from_chars(first, last, i);
    EMBER_CHECK(ec == std::errc() && end != first && end + 1 < last && *end == '.', what, ": ", bad);
    EMBER_CHECK(i < params.size(), what, ": tensor '", key, "' is for parameter ", i, " but this optimizer has only ",
                params.size(), " parameters");
    per_param[i][std::string(end + 1, last)] = t;
  }
  std::vector<std::unique_ptr<ParamState>> state(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (per_param[i].empty()) continue;  // never stepped
    state[i] = make_state();
    state[i]->load(per_param[i], *params[i], "state." + std::to_string(i));
  }

  for (size_t g = 0; g < groups_.size(); ++g) groups_[g].options_ = std::move(options[g]);
  state_ = std::move(state);
}

// ---------------- helpers ----------------

namespace detail {

std::string format_double(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round-trip form
  return std::string(buf, end);
}

double parse_double(const std::map<std::string, std::string>& metadata, const std::string& key, const char* what) {
  auto it = metadata.find(key);
  EMBER_CHECK(it != metadata.end(), what, ": the state dict has no '", key, "' entry");
  const std::string& s = it->second;
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  EMBER_CHECK(ec == std::errc() && end == s.data() + s.size() && !s.empty(), what, ": entry '", key, "' = '", s,
              "' is not a number");
  // from_chars accepts "inf" and "nan"; no hyper-parameter may be either.
  EMBER_CHECK(std::isfinite(v), what, ": entry '", key, "' = '", s, "' is not a finite number");
  return v;
}

int64_t parse_int(const std::map<std::string, std::string>& metadata, const std::string& key, const char* what) {
  auto it = metadata.find(key);
  EMBER_CHECK(it != metadata.end(), what, ": the state dict has no '", key, "' entry");
  const std::string& s = it->second;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  EMBER_CHECK(ec == std::errc() && end == s.data() + s.size() && !s.empty(), what, ": entry '", key, "' = '", s,
              "' is not an integer");
  return v;
}

Tensor load_state_tensor(const Tensor& t, const Tensor& param, const std::string& key) {
  EMBER_CHECK(t.defined(), "load_state_dict: ", key, " is an undefined tensor");
  EMBER_CHECK(t.shape() == param.shape(), "load_state_dict: ", key, " has shape ", t.shape(),
              " but its parameter has shape ", param.shape());
  // Floating state follows the parameter's dtype (float64 state loads into a float32 optimizer);
  // integer moments for a float parameter mean the file is not what it claims: refused, not cast.
  EMBER_CHECK(is_floating(t.dtype()), "load_state_dict: ", key, " has dtype ", dtype_name(t.dtype()),
              " but its parameter has dtype ", dtype_name(param.dtype()), "; optimizer state must be floating-point");
  NoGradGuard no_grad;
  // A fresh contiguous copy: the optimizer must not share memory with the dict it was loaded from.
  Tensor out = empty(param.shape(), TensorOptions(param.dtype()).device(param.device()));
  out.copy_(t.detach());
  return out;
}

}  // namespace detail
}  // namespace ember::optim
