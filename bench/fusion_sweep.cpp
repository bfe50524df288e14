// ember_fusion_sweep: each fused `layer + ReLU` op against the two ops it replaces, at the layers
// of the MNIST nets and ResNet-20 where ember uses it (nn::Sequential's Conv2d/Linear + ReLU,
// nn::ResidualBlock's add + ReLU). One sample is a forward and a backward (y.backward(v): the
// gradient of every input), the fused and the composed way interleaved sample by sample
// (bench/interleaved.h), so a slow second on a shared machine lands on both. Prints the median of
// each and their ratio; fused/composed below 1 is a gain.
//
//   build/bench/ember_fusion_sweep [--threads 2] [--reps 15]
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "bench/interleaved.h"
#include "core/ember.h"

namespace {

using namespace ember;
using ember::bench::Args;

const Args kArgs("ember_fusion_sweep", "ember_fusion_sweep [--threads N] [--reps N]");

struct Case {
  const char* layer;
  std::vector<Shape> inputs;  // each requires grad
  std::function<Tensor(const std::vector<Tensor>&, bool fused)> fn;
};

std::vector<Case> cases() {
  auto conv = [](Size2 padding) {
    return [padding](const std::vector<Tensor>& x, bool fused) {
      const Tensor b = x.size() > 2 ? x[2] : Tensor();
      return fused ? conv2d_relu(x[0], x[1], b, 1, padding) : relu(conv2d(x[0], x[1], b, 1, padding));
    };
  };
  auto lin = [](const std::vector<Tensor>& x, bool fused) {
    return fused ? linear_relu(x[0], x[1], x[2]) : relu(linear(x[0], x[1], x[2]));
  };
  auto add = [](const std::vector<Tensor>& x, bool fused) { return fused ? add_relu(x[0], x[1]) : relu(x[0] + x[1]); };
  return {
      {"cnn conv1 + relu, b64", {{64, 1, 28, 28}, {32, 1, 3, 3}, {32}}, conv(0)},
      {"cnn conv2 + relu, b64", {{64, 32, 26, 26}, {64, 32, 3, 3}, {64}}, conv(0)},
      {"cnn fc1 + relu, b64", {{64, 9216}, {128, 9216}, {128}}, lin},
      {"mlp fc1 + relu, b128", {{128, 784}, {512, 784}, {512}}, lin},
      {"mlp fc2 + relu, b128", {{128, 512}, {512, 512}, {512}}, lin},
      {"lenet fc1 + relu, b64", {{64, 320}, {50, 320}, {50}}, lin},
      {"resnet stage 1 add + relu, b128", {{128, 16, 32, 32}, {128, 16, 32, 32}}, add},
      {"resnet stage 3 add + relu, b128", {{128, 64, 8, 8}, {128, 64, 8, 8}}, add},
      {"resnet stage 1 add + relu, b32", {{32, 16, 32, 32}, {32, 16, 32, 32}}, add},
  };
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 15;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string v = kArgs.value(argc, argv, i);
    if (a == "--threads") threads = static_cast<int>(kArgs.positive(a, v));
    else if (a == "--reps") reps = static_cast<int>(kArgs.positive(a, v));
    else kArgs.fail("unknown flag " + a);
  }
  if (reps < 5) kArgs.fail("--reps needs at least 5 (the median of fewer is noise on a shared machine)");
  set_num_threads(threads);
  std::printf("forward + backward, median of %d interleaved samples, %d thread(s)\n\n", reps, threads);
  std::printf("| layer | composed ms | fused ms | fused / composed |\n|---|---|---|---|\n");
  for (const Case& c : cases()) {
    std::vector<Tensor> x;
    for (const Shape& s : c.inputs) x.push_back(randn(s).requires_grad_(true));
    const Tensor v = randn(c.fn(x, false).shape());
    const std::vector<double> s = bench::interleaved_median_seconds(2, reps, [&](size_t way) {
      for (Tensor& t : x) t.zero_grad();
      c.fn(x, way == 1).backward(v);
    });
    std::printf("| %s | %.3f | %.3f | %.3f |\n", c.layer, s[0] * 1e3, s[1] * 1e3, s[1] / s[0]);
  }
  return 0;
}
