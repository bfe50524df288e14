#include "nn/models/mnist.h"

namespace ember::nn::models {

std::shared_ptr<Sequential> mnist_mlp() {
  return std::make_shared<Sequential>(std::make_shared<Flatten>(), std::make_shared<Linear>(784, 512),
                                      std::make_shared<ReLU>(), std::make_shared<Linear>(512, 512),
                                      std::make_shared<ReLU>(), std::make_shared<Linear>(512, 10));
}

std::shared_ptr<Sequential> lenet() {
  return std::make_shared<Sequential>(
      std::make_shared<Conv2d>(1, 10, 5), std::make_shared<MaxPool2d>(2), std::make_shared<ReLU>(),
      std::make_shared<Conv2d>(10, 20, 5), std::make_shared<MaxPool2d>(2), std::make_shared<ReLU>(),
      std::make_shared<Flatten>(), std::make_shared<Linear>(320, 50), std::make_shared<ReLU>(),
      std::make_shared<Linear>(50, 10));
}

std::shared_ptr<Sequential> mnist_cnn() {
  return std::make_shared<Sequential>(
      std::make_shared<Conv2d>(1, 32, 3), std::make_shared<ReLU>(), std::make_shared<Conv2d>(32, 64, 3),
      std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2), std::make_shared<Flatten>(),
      std::make_shared<Linear>(9216, 128), std::make_shared<ReLU>(), std::make_shared<Linear>(128, 10));
}

}  // namespace ember::nn::models
