// The three MNIST networks of the benchmark, built exactly as bench/mnist_pytorch.py builds them in
// PyTorch (same layers, same parameter names, same default initialisation).
#pragma once

#include <memory>
#include <string>

#include "nn/nn.h"

namespace ember::examples {

// mlp:   784-512-ReLU-512-ReLU-10
// lenet: conv(1,10,5)-maxpool2-ReLU-conv(10,20,5)-maxpool2-ReLU-fc(320,50)-ReLU-fc(50,10)
// cnn:   conv(1,32,3)-ReLU-conv(32,64,3)-ReLU-maxpool2-fc(9216,128)-ReLU-fc(128,10)
inline std::shared_ptr<nn::Sequential> make_mnist_model(const std::string& name) {
  using namespace nn;
  if (name == "mlp")
    return std::make_shared<Sequential>(std::make_shared<Flatten>(), std::make_shared<Linear>(784, 512),
                                        std::make_shared<ReLU>(), std::make_shared<Linear>(512, 512),
                                        std::make_shared<ReLU>(), std::make_shared<Linear>(512, 10));
  if (name == "lenet")
    return std::make_shared<Sequential>(
        std::make_shared<Conv2d>(1, 10, 5), std::make_shared<MaxPool2d>(2), std::make_shared<ReLU>(),
        std::make_shared<Conv2d>(10, 20, 5), std::make_shared<MaxPool2d>(2), std::make_shared<ReLU>(),
        std::make_shared<Flatten>(), std::make_shared<Linear>(320, 50), std::make_shared<ReLU>(),
        std::make_shared<Linear>(50, 10));
  if (name == "cnn")
    return std::make_shared<Sequential>(
        std::make_shared<Conv2d>(1, 32, 3), std::make_shared<ReLU>(), std::make_shared<Conv2d>(32, 64, 3),
        std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2), std::make_shared<Flatten>(),
        std::make_shared<Linear>(9216, 128), std::make_shared<ReLU>(), std::make_shared<Linear>(128, 10));
  EMBER_FAIL("unknown model '", name, "' (expected mlp, lenet or cnn)");
}

}  // namespace ember::examples
