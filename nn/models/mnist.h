// The three MNIST networks of examples/mnist and the benchmark (bench/mnist_pytorch.py and the
// libtorch anchor build the same layers in PyTorch), each a Sequential whose parameter names
// ("0.weight", "1.bias", ...) are the ones nn.Sequential gives in PyTorch, so checkpoints written by
// ember_mnist load into the PyTorch models and back.
//
//   mlp:   784-512-ReLU-512-ReLU-10                                                  (669,706 parameters)
//   lenet: conv(1,10,5)-maxpool2-ReLU-conv(10,20,5)-maxpool2-ReLU-fc(320,50)-ReLU-fc(50,10)  (21,840)
//   cnn:   conv(1,32,3)-ReLU-conv(32,64,3)-ReLU-maxpool2-fc(9216,128)-ReLU-fc(128,10)    (1,199,882)
//
// Input: [N, 1, 28, 28] images; output: [N, 10] logits.
#pragma once

#include <memory>

#include "nn/layers.h"

namespace ember::nn::models {

std::shared_ptr<Sequential> mnist_mlp();
std::shared_ptr<Sequential> lenet();
std::shared_ptr<Sequential> mnist_cnn();

}  // namespace ember::nn::models
