// The optimizer base class: parameter groups (each with its own options), per-parameter state,
// zero_grad(), and a state dict that resumes a run exactly.
//
// The shape of the API follows libtorch: an optimizer is built from a list of parameters (or of
// ParamGroups) and an options struct with fluent setters, e.g.
//
//   optim::SGD opt(model_params, optim::SGDOptions(0.1).momentum(0.9));
//   for (...) { opt.zero_grad(); loss.backward(); opt.step(); }
//
// State dicts hold named tensors plus string metadata, which is exactly what a safetensors file
// holds (see nn/checkpoint.h), so `nn::save_safetensors(path, sd.tensors, sd.metadata)` saves one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

// EMBER_ARG(T, name) declares a private member `name_` with a fluent setter `name(v)` (returning
// the options object, so calls chain) and a getter `name()` — the same pattern as libtorch's TORCH_ARG.
#define EMBER_ARG(T, name)                                      \
 public:                                                        \
  auto name(const T& new_##name)->decltype(*this) {             \
    this->name##_ = new_##name;                                 \
    return *this;                                               \
  }                                                             \
  const T& name() const noexcept { return this->name##_; }      \
                                                                \
 private:                                                       \
  T name##_

namespace ember::optim {

// Named tensors plus string metadata: the state of an optimizer or scheduler, ready to be written
// to a safetensors file. Tensors returned by state_dict() alias the live state (like PyTorch): save
// or clone them before the next step if you need a snapshot.
struct StateDict {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;

  // Copies every entry of `other` in under "<prefix>.": one file can then hold a model, an optimizer
  // and a scheduler (`all.merge("optimizer", opt.state_dict())`).
  void merge(const std::string& prefix, const StateDict& other);
  // The entries under "<prefix>." with the prefix removed (the inverse of merge).
  StateDict sub(const std::string& prefix) const;
};

// Hyper-parameters of one parameter group. Each optimizer has its own subclass (SGDOptions, ...);
// this interface is what the optimizer base class, the state dict and the schedulers need.
class OptimizerOptions {
 public:
  virtual ~OptimizerOptions() = default;
  virtual std::unique_ptr<OptimizerOptions> clone() const = 0;
  virtual const char* optimizer_name() const = 0;  // "SGD", "Adam", ...
  virtual double get_lr() const = 0;
  virtual void set_lr(double lr) = 0;
  // Every hyper-parameter by name as a double (booleans as 0/1; Adam's betas as beta1 and beta2).
  // The state dict stores these, and OneCycleLR cycles "momentum" or "beta1" through them.
  virtual std::vector<std::pair<std::string, double>> hyper_parameters() const = 0;
  // Sets one by name; returns false when there is no hyper-parameter of that name.
  virtual bool set_hyper_parameter(const std::string& name, double value) = 0;
  // Throws a clear ember::Error for a value PyTorch rejects (negative lr, betas outside [0, 1), ...).
  virtual void validate() const = 0;

  std::optional<double> hyper_parameter(const std::string& name) const;
};

// Some parameters and the options that apply to them. A group made without options takes the
// optimizer's defaults when it is added. A group made with overrides takes the defaults with the
// named hyper-parameters changed, like a PyTorch group dict that names only some keys:
//
//   optim::SGD opt({optim::ParamGroup(weights, {{"weight_decay", 5e-4}}),
//                   optim::ParamGroup(biases, {{"weight_decay", 0.0}})},
//                  optim::SGDOptions(0.1).momentum(0.9));   // both groups: lr 0.1, momentum 0.9
class ParamGroup {
 public:
  explicit ParamGroup(std::vector<Tensor> params) : params_(std::move(params)) {}
  ParamGroup(std::vector<Tensor> params, const OptimizerOptions& options)
      : params_(std::move(params)), options_(options.clone()) {}
  ParamGroup(std::vector<Tensor> params, std::map<std::string, double> overrides)
      : params_(std::move(params)), overrides_(std::move(overrides)) {}
  ParamGroup(const ParamGroup& o)
      : params_(o.params_),
        options_(o.options_ ? o.options_->clone() : nullptr),
        overrides_(o.overrides_),
        initial_lr_(o.initial_lr_) {}
  ParamGroup& operator=(const ParamGroup& o) {
    if (this != &o) *this = ParamGroup(o);
    return *this;
  }
  ParamGroup(ParamGroup&&) = default;
  ParamGroup& operator=(ParamGroup&&) = default;

  const std::vector<Tensor>& params() const { return params_; }
  bool has_options() const { return options_ != nullptr; }
  OptimizerOptions& options();
  const OptimizerOptions& options() const;
  // Hyper-parameters this group sets over the optimizer's defaults (empty once it is added: they
  // are folded into options() then).
  const std::map<std::string, double>& overrides() const { return overrides_; }

  // The lr this group had when the first LR scheduler was attached to it (PyTorch's
  // group["initial_lr"]). Every scheduler takes it as its base lr, so schedulers made one after
  // another on one optimizer (as SequentialLR's are) agree on where the schedule starts even though
  // each constructor already changed the lr. Unset until a scheduler is made.
  std::optional<double> initial_lr() const { return initial_lr_; }
  void set_initial_lr(double lr) { initial_lr_ = lr; }

 private:
  friend class Optimizer;
  std::vector<Tensor> params_;
  std::unique_ptr<OptimizerOptions> options_;
  std::map<std::string, double> overrides_;
  std::optional<double> initial_lr_;
};

// The state an optimizer keeps for one parameter (momentum buffer, moment estimates, step count).
// It is created lazily, on the first step that parameter has a gradient — as in PyTorch.
class ParamState {
 public:
  virtual ~ParamState() = default;
  // Adds this state's tensors to `out` as "<prefix><name>" (e.g. "state.3.exp_avg").
  virtual void save(const std::string& prefix, std::map<std::string, Tensor>& out) const = 0;
  // Reads them back from `tensors` (keyed by the bare name, "exp_avg"), converted to the dtype and
  // device of `param`; `where` ("state.3") names the entry in error messages. Every tensor in
  // `tensors` must be one this state knows.
  virtual void load(const std::map<std::string, Tensor>& tensors, const Tensor& param, const std::string& where) = 0;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (those without one are skipped).
  virtual void step() = 0;

  // Clears every parameter's gradient. set_to_none (the default, as in PyTorch 2) makes it
  // undefined, which frees the memory and lets the next backward write it instead of adding to it.
  void zero_grad(bool set_to_none = true);

  // Adds a group that uses the optimizer's default options, or its own (of this optimizer's type).
  void add_param_group(std::vector<Tensor> params);
  void add_param_group(std::vector<Tensor> params, const OptimizerOptions& options);

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  const OptimizerOptions& defaults() const { return *defaults_; }
  const char* name() const { return defaults_->optimizer_name(); }
  size_t num_params() const { return state_.size(); }

  // The whole state, as named tensors and string metadata:
  //   metadata "optimizer" = "Adam", "param_groups" = "2", "param_groups.<g>.params" = "3" (how
  //     many parameters group g has), "param_groups.<g>.<hyper-parameter>" = "0.001" (doubles are
  //     written in shortest round-trip form, so they read back bit-exact);
  //   tensors "state.<i>.<name>", where i numbers the parameters of all groups in order, e.g.
  //     "state.0.exp_avg", "state.0.step" (a 0-d int64). A parameter that has not been stepped has none.
  StateDict state_dict() const;
  // Restores a state saved by an optimizer of the same type over parameters of the same shapes, in
  // the same groups. Hyper-parameters (the lr a scheduler set, ...) are restored too. State tensors
  // are copied, converted to each parameter's dtype and device. Nothing changes if this throws.
  void load_state_dict(const StateDict& state);

 protected:
  Optimizer(std::unique_ptr<OptimizerOptions> defaults, std::vector<ParamGroup> groups);
  // An empty state of this optimizer's kind, for load_state_dict to fill.
  virtual std::unique_ptr<ParamState> make_state() const = 0;

  // state_[i] belongs to the i-th parameter of all groups taken in order (null until its first step).
  std::vector<std::unique_ptr<ParamState>> state_;

 private:
  std::unique_ptr<OptimizerOptions> defaults_;
  std::vector<ParamGroup> groups_;
};

namespace detail {
// Doubles in metadata: shortest form that reads back bit-exact ("0.1", "1e-08").
std::string format_double(double v);
// Parses metadata[key] as a double; throws "<what>: ... <key> ..." when missing or malformed.
double parse_double(const std::map<std::string, std::string>& metadata, const std::string& key, const char* what);
int64_t parse_int(const std::map<std::string, std::string>& metadata, const std::string& key, const char* what);
// A state tensor read back for `param`: shape must match, converted to param's dtype and device, copied.
Tensor load_state_tensor(const Tensor& t, const Tensor& param, const std::string& key);
}  // namespace detail

}  // namespace ember::optim
