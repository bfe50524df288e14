// SGD: the update written twice — once as one fused loop over contiguous CPU memory (the common
// case: one pass, no temporaries), once with tensor ops for everything else (other devices,
// strided parameters or gradients). Both follow PyTorch's _single_tensor_sgd line by line.
#include "optim/sgd.h"

#include "core/autograd.h"
#include "core/cpu/parallel.h"
#include "core/ops.h"

namespace ember::optim {

// ---------------- options ----------------

std::vector<std::pair<std::string, double>> SGDOptions::hyper_parameters() const {
  return {{"lr", lr_}, {"momentum", momentum_}, {"dampening", dampening_}, {"weight_decay", weight_decay_},
          {"nesterov", nesterov_ ? 1.0 : 0.0}};
}

bool SGDOptions::set_hyper_parameter(const std::string& name, double v) {
  if (name == "lr") lr_ = v;
  else if (name == "momentum") momentum_ = v;
  else if (name == "dampening") dampening_ = v;
  else if (name == "weight_decay") weight_decay_ = v;
  else if (name == "nesterov") nesterov_ = v != 0;
  else return false;
  return true;
}

void SGDOptions::validate() const {
  EMBER_CHECK(lr_ >= 0, "SGD: invalid learning rate ", lr_, " (must be >= 0)");
  EMBER_CHECK(momentum_ >= 0, "SGD: invalid momentum ", momentum_, " (must be >= 0)");
  EMBER_CHECK(weight_decay_ >= 0, "SGD: invalid weight_decay ", weight_decay_, " (must be >= 0)");
  EMBER_CHECK(!nesterov_ || (momentum_ > 0 && dampening_ == 0),
              "SGD: Nesterov momentum requires a momentum > 0 and zero ", "dampening (got momentum ", momentum_,
              ", dampening ", dampening_, ")");
}

// ---------------- state ----------------

void SGDParamState::save(const std::string& prefix, std::map<std::string, Tensor>& out) const {
  if (momentum_buffer.defined()) out[prefix + "momentum_buffer"] = momentum_buffer;
}

void SGDParamState::load(const std::map<std::string, Tensor>& tensors, const Tensor& param, const std::string& where) {
  for (const auto& [name, t] : tensors) {
    EMBER_CHECK(name == "momentum_buffer", "SGD: load_state_dict: unknown state tensor '", where, ".", name,
                "' (SGD keeps only momentum_buffer)");
    momentum_buffer = detail::load_state_tensor(t, param, where + "." + name);
  }
}

// ---------------- the update ----------------

namespace {

struct SGDHyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
};

// One pass over contiguous memory. `first` = the momentum buffer has just been created (it takes
// the value of d instead of being decayed). Arithmetic is in T, like PyTorch's kernels.
template <typename T>
void sgd_fused(T* p, const T* g, T* buf, int64_t n, const SGDHyper& h, bool first) {
  const T lr = h.lr, mom = h.momentum, wd = h.weight_decay, keep = 1 - h.dampening;
  const bool use_mom = buf != nullptr, nesterov = h.nesterov;
  parallel_for(n, kGrainSize, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T d = g[i];
      if (wd != 0) d = d + wd * p[i];
      if (use_mom) {
        T b = first ? d : buf[i] * mom + keep * d;
        buf[i] = b;
        d = nesterov ? d + mom * b : b;
      }
      p[i] = p[i] - lr * d;
    }
  });
}

// The same with tensor ops: any device, any strides.
void sgd_generic(Tensor& p, const Tensor& g, Tensor& buf, const SGDHyper& h, bool first) {
  Tensor d = h.weight_decay != 0 ? g + p * h.weight_decay : g;
  if (h.momentum != 0) {
    if (first) buf.copy_(d);
    else buf.mul_(h.momentum).add_(d, 1 - h.dampening);
    d = h.nesterov ? d + buf * h.momentum : buf;
  }
  p.add_(d, -h.lr);
}

bool fusable(const Tensor& p, const Tensor& g) {
  return p.device().is_cpu() && g.device().is_cpu() && p.is_contiguous() && g.is_contiguous() &&
         (p.dtype() == kFloat32 || p.dtype() == kFloat64);
}

}  // namespace

void SGD::step() {
  NoGradGuard no_grad;
  size_t index = 0;
  for (ParamGroup& group : param_groups()) {
    const auto& o = static_cast<const SGDOptions&>(group.options());
    const SGDHyper h{o.lr(), o.momentum(), o.dampening(), o.weight_decay(), o.nesterov()};
    for (Tensor p : group.params()) {
      auto& slot = state_[index++];
      const Tensor g = p.grad();
      if (!g.defined()) continue;  // no gradient this step: leave the parameter and its state alone
      if (!slot) slot = std::make_unique<SGDParamState>();
      Tensor& buf = static_cast<SGDParamState&>(*slot).momentum_buffer;
      // The buffer is created on the first step with momentum (PyTorch: `buf = clone(d)`).
      const bool first = h.momentum != 0 && !buf.defined();
      if (first) buf = empty_like(p);
      if (fusable(p, g)) {
        EMBER_DISPATCH_FLOAT(p.dtype(), "SGD", [&]<typename T>() {
          sgd_fused<T>(p.data<T>(), g.data<T>(), h.momentum != 0 ? buf.data<T>() : nullptr, p.numel(), h, first);
        });
        p.storage()->bump_version();  // the loop wrote p without an in-place op: tell autograd
      } else {
        sgd_generic(p, g, buf, h, first);
      }
    }
  }
}

}  // namespace ember::optim
