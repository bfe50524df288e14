// Quickstart: tensors, autograd and gradient descent on a tiny linear regression.
// The README shows this file; CMake builds it as ember_quickstart and ctest runs it.
#include <cmath>
#include <cstdio>

#include "core/ember.h"

using namespace ember;

int main() {
  manual_seed(0);

  // Data: 64 random points x in R^2 with targets y = x . [2, -3] + 1.
  Tensor x = randn({64, 2});
  Tensor y = x.matmul(from_vector<float>({2, -3}, {2, 1})) + 1.0;

  // Parameters: leaves that require grad, so backward() fills their .grad().
  Tensor w = zeros({2, 1}, TensorOptions().requires_grad());
  Tensor b = zeros({1}, TensorOptions().requires_grad());

  for (int step = 0; step < 100; ++step) {
    Tensor loss = (x.matmul(w) + b - y).pow(2).mean();  // mean squared error
    w.zero_grad();
    b.zero_grad();
    loss.backward();

    NoGradGuard no_grad;  // the update itself is not part of the graph
    w.sub_(w.grad() * 0.1);
    b.sub_(b.grad() * 0.1);
    if (step % 20 == 0) std::printf("step %3d  loss %.6f\n", step, loss.item());
  }

  std::vector<float> wv = w.to_vector<float>();
  float bv = b.item<float>();
  std::printf("learned w = [%.3f, %.3f], b = %.3f   (true: [2, -3], 1)\n", wv[0], wv[1], bv);
  const bool ok = std::abs(wv[0] - 2) < 1e-2 && std::abs(wv[1] + 3) < 1e-2 && std::abs(bv - 1) < 1e-2;
  return ok ? 0 : 1;
}
