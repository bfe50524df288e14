// Parameter groups built from a model: the weight-decay split every CIFAR/ImageNet recipe uses.
//
// Weight decay is meant to keep the weights of convolutions and linear layers small. Applied to a
// bias or to a normalisation layer's scale and shift it only fights the normalisation (a BatchNorm
// output does not change when the weights before it shrink, so decaying them just changes the
// effective lr) and measurably hurts accuracy. So recipes decay the matrices and kernels and
// nothing else. libtorch has no helper for it; this is the rule timm and torchvision's reference
// scripts use: a parameter with at most one dimension (every bias, every norm scale and shift)
// gets no decay.
//
//   optim::SGD opt(optim::decay_param_groups(*model, 5e-4), optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
//
// optim/ may include nn/ (the model is an nn::Module); nn/ never includes optim/.
#pragma once

#include <vector>

#include "nn/module.h"
#include "optim/optimizer.h"

namespace ember::optim {

// Two groups over the model's parameters that require grad, in the model's order:
//   [0] every parameter with dim() >= 2 (conv kernels, linear and embedding matrices), with
//       weight_decay = `weight_decay`;
//   [1] every parameter with dim() <= 1 (biases, BatchNorm/LayerNorm weight and bias), with
//       weight_decay = 0.
// Each group overrides only weight_decay; everything else (lr, momentum, ...) comes from the
// optimizer's defaults. A group that would be empty is left out (so a model without biases or
// norms gets one group). Frozen parameters (requires_grad false) are skipped, as an optimizer
// would refuse them. Works with every optimizer that has a "weight_decay" (SGD, Adam, AdamW).
std::vector<ParamGroup> decay_param_groups(const nn::Module& model, double weight_decay);

}  // namespace ember::optim
