// SGD: the update written twice — once as the device's fused multi-tensor step (the common case:
// contiguous float parameters and gradients; OptimKernels::sgd_step, core/cpu/cpu_optim.cpp and
// cuda/cuda_optim.cu), once with tensor ops for everything else (strided parameters or gradients).
// Both follow PyTorch's _single_tensor_sgd line by line.
#include "optim/sgd.h"

#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/kernels/optim_kernels.h"

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
  // isfinite too: an infinite rate or decay (from a flag or a crafted checkpoint) only produces NaN.
  EMBER_CHECK(lr_ >= 0 && std::isfinite(lr_), "SGD: invalid learning rate ", lr_, " (must be finite and >= 0)");
  EMBER_CHECK(momentum_ >= 0 && std::isfinite(momentum_), "SGD: invalid momentum ", momentum_,
              " (must be finite and >= 0)");
  EMBER_CHECK(std::isfinite(dampening_), "SGD: invalid dampening ", dampening_, " (must be finite)");
  EMBER_CHECK(weight_decay_ >= 0 && std::isfinite(weight_decay_), "SGD: invalid weight_decay ", weight_decay_,
              " (must be finite and >= 0)");
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

// The tensor-op update: any device, any strides. `first` = the momentum buffer has just been
// created (it takes the value of d instead of being decayed).
void sgd_generic(Tensor& p, const Tensor& g, Tensor& buf, const OptimKernels::SGDStep& h, bool first) {
  Tensor d = h.weight_decay != 0 ? g + p * h.weight_decay : g;
  if (h.momentum != 0) {
    if (first) buf.copy_(d);
    else buf.mul_(h.momentum).add_(d, 1 - h.dampening);
    d = h.nesterov ? d + buf * h.momentum : buf;
  }
  p.add_(d, -h.lr);
}

// What the fused step needs: contiguous float tensors of one dtype on one device.
bool fusable(const Tensor& p, const Tensor& g, const Tensor& buf) {
  const bool float_param = p.dtype() == kFloat32 || p.dtype() == kFloat64;
  const bool buf_ok = !buf.defined() || (buf.is_contiguous() && buf.dtype() == p.dtype());
  return float_param && p.is_contiguous() && g.is_contiguous() && g.dtype() == p.dtype() &&
         g.device() == p.device() && buf_ok;
}

// Parameters of one group that one OptimKernels::sgd_step call updates together.
struct SGDBatch {
  Device device;
  DType dtype;
  bool first;
  std::vector<Tensor> params, grads, momentum_buffers;
};

SGDBatch& batch_for(std::vector<SGDBatch>& batches, const Tensor& p, bool first) {
  for (SGDBatch& b : batches)
    if (b.device == p.device() && b.dtype == p.dtype() && b.first == first) return b;
  return batches.emplace_back(SGDBatch{p.device(), p.dtype(), first, {}, {}, {}});
}

}  // namespace

void SGD::step() {
  NoGradGuard no_grad;
  size_t index = 0;
  for (ParamGroup& group : param_groups()) {
    const auto& o = static_cast<const SGDOptions&>(group.options());
    const OptimKernels::SGDStep h{o.lr(), o.momentum(), o.dampening(), o.weight_decay(), o.nesterov()};
    std::vector<SGDBatch> batches;
    for (Tensor p : group.params()) {
      auto& slot = state_[index++];
      const Tensor g = p.grad();
      if (!g.defined()) continue;  // no gradient this step: leave the parameter and its state alone
      if (!slot) slot = std::make_unique<SGDParamState>();
      Tensor& buf = static_cast<SGDParamState&>(*slot).momentum_buffer;
      // The buffer is created on the first step with momentum (PyTorch: `buf = clone(d)`).
      const bool first = h.momentum != 0 && !buf.defined();
      if (first) buf = empty_like(p);
      if (fusable(p, g, buf)) {
        SGDBatch& b = batch_for(batches, p, first);
        b.params.push_back(p);
        b.grads.push_back(g);
        if (h.momentum != 0) b.momentum_buffers.push_back(buf);
      } else {
        sgd_generic(p, g, buf, h, first);
      }
    }
    for (SGDBatch& b : batches) {
      OptimKernels::SGDStep s = h;
      s.first = b.first;
      optim_kernels(b.device).sgd_step(b.params, b.grads, b.momentum_buffers, s);
      // The kernel wrote p without an in-place op: tell autograd.
      for (Tensor& p : b.params) p.storage()->bump_version();
    }
  }
}

}  // namespace ember::optim
