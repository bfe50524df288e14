// Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay —
// PyTorch's torch.optim.SGD, update for update:
//
//   d = grad + weight_decay * p
//   if momentum != 0:
//     buf = d                                  (first step)
//     buf = momentum * buf + (1 - dampening) * d   (later steps)
//     d = nesterov ? d + momentum * buf : buf
//   p -= lr * d
#pragma once

#include "optim/optimizer.h"

namespace ember::optim {

class SGDOptions : public OptimizerOptions {
 public:
  SGDOptions(double lr) : lr_(lr) {}  // NOLINT: implicit so `SGD(params, 0.1)` reads well

  EMBER_ARG(double, lr);
  EMBER_ARG(double, momentum) = 0;
  EMBER_ARG(double, dampening) = 0;
  EMBER_ARG(double, weight_decay) = 0;
  EMBER_ARG(bool, nesterov) = false;

 public:
  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<SGDOptions>(*this); }
  const char* optimizer_name() const override { return "SGD"; }
  double get_lr() const override { return lr_; }
  void set_lr(double lr) override { lr_ = lr; }
  std::vector<std::pair<std::string, double>> hyper_parameters() const override;
  bool set_hyper_parameter(const std::string& name, double value) override;
  void validate() const override;
};

struct SGDParamState : ParamState {
  Tensor momentum_buffer;  // undefined until the first step with momentum != 0
  void save(const std::string& prefix, std::map<std::string, Tensor>& out) const override;
  void load(const std::map<std::string, Tensor>& tensors, const Tensor& param, const std::string& where) override;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& defaults) : SGD({ParamGroup(std::move(params))}, defaults) {}
  SGD(std::vector<ParamGroup> groups, const SGDOptions& defaults)
      : Optimizer(std::make_unique<SGDOptions>(defaults), std::move(groups)) {}

  void step() override;

 protected:
  std::unique_ptr<ParamState> make_state() const override { return std::make_unique<SGDParamState>(); }
};

}  // namespace ember::optim
