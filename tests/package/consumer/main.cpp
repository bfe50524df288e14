// A program from outside ember's source tree, as a user would write it. tests/package builds it
// against an installed ember (find_package) and against ember's source (add_subdirectory).
//
// It checks what a user relies on: that the library it linked is the one its CMake package
// described (a CUDA build brings its CUDA backend, even in a static link and without a GPU), and
// that a small model trains. It prints what it sees, then "consumer OK" or the reason it failed.
#include <cstdio>
#include <memory>

#include "core/build_info.h"
#include "core/version.h"
#include "nn/nn.h"
#include "optim/optim.h"

#ifndef EMBER_CONSUMER_EXPECTS_CUDA
#error "tests/package/consumer/CMakeLists.txt defines EMBER_CONSUMER_EXPECTS_CUDA (1 when ember::cuda exists)"
#endif

using namespace ember;

int main() {
  std::printf("ember %s: CUDA backend %s, %d CUDA device(s) visible\n", EMBER_VERSION_STRING,
              cuda_is_built() ? "linked in" : "not built", cuda_device_count());
  if (cuda_is_built() != bool(EMBER_CONSUMER_EXPECTS_CUDA)) {
    std::printf("consumer FAILED: the package %s ember::cuda, but the linked library %s the CUDA backend\n",
                EMBER_CONSUMER_EXPECTS_CUDA ? "has" : "has no", cuda_is_built() ? "registered" : "did not register");
    return 1;
  }

  // A regression task a two-layer MLP learns in a few steps: y = tanh(x . [1, -2, 0.5, 3]).
  manual_seed(0);
  Tensor x = randn({128, 4});
  Tensor y = x.matmul(from_vector<float>({1, -2, 0.5, 3}, {4, 1})).tanh();
  auto net = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 16), std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Linear>(16, 1));
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  const int steps = 30;
  double first = 0, last = 0;
  for (int step = 0; step < steps; ++step) {
    Tensor loss = mse_loss(net->forward(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  std::printf("MLP on the CPU: loss %.4f -> %.4f in %d SGD steps\n", first, last, steps);
  if (!(last < 0.5 * first)) {
    std::printf("consumer FAILED: the loss did not halve\n");
    return 1;
  }

  // With a GPU, the same library must run on it: a matmul there agrees with the CPU's.
  if (cuda_is_available()) {
    Tensor a = randn({32, 32});
    Tensor on_gpu = a.to(Device("cuda")).matmul(a.to(Device("cuda"))).to(Device("cpu"));
    const double diff = (on_gpu - a.matmul(a)).abs().max().item();
    std::printf("matmul on cuda:0 vs the CPU: max difference %.2e\n", diff);
    if (!(diff < 1e-3)) {
      std::printf("consumer FAILED: cuda:0 disagrees with the CPU\n");
      return 1;
    }
  }
  std::printf("consumer OK\n");
  return 0;
}
