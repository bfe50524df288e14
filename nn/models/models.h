// ember's model zoo: ready-made networks, each an nn::Module to train as it is or build on.
//
//   auto net = nn::models::create("resnet20");    // by name (command lines, configs)
//   auto net = nn::models::resnet20();            // or by type, to reach its members (net->fc)
//
// MNIST ([N, 1, 28, 28] -> 10 logits):   mlp, lenet, cnn               (nn/models/mnist.h)
// CIFAR ([N, 3, 32, 32] -> 10 logits):   resnet8, resnet20, resnet56, resnet18   (nn/models/resnet.h)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/models/mnist.h"
#include "nn/models/resnet.h"

namespace ember::nn::models {

// The names create() knows, in the order above.
const std::vector<std::string>& names();

// A fresh model with PyTorch's default initialisation (drawn from ember's default generator:
// manual_seed first for a reproducible one). An unknown name is an error listing the known ones.
std::shared_ptr<Module> create(const std::string& name);

}  // namespace ember::nn::models
