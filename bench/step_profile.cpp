// ember_step_profile: where one CPU training step of a benchmark network spends its time, op by op
// (ember's own profiler, core/profiler.h), on random data of the right shape. perf
// (bench/profile.sh) sees oneDNN's JIT kernels only as anonymous addresses; this names the op that
// ran them, forward and backward.
//
//   build/bench/ember_step_profile [--model mlp|lenet|cnn|resnet20] [--batch N] [--steps 20] [--threads 2]
//
// It runs --steps untimed warm-up steps (plans, JIT, allocator blocks), times --steps steps without
// the profiler, then profiles --steps more and prints the profiler's table (calls, self and total
// milliseconds per op). The optimizer step and zero_grad are not ops: the gap between the
// unprofiled step and the table's total per step is theirs (and the autograd engine's own work).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "bench/bench_args.h"
#include "core/ember.h"
#include "core/profiler.h"
#include "nn/models/mnist.h"
#include "nn/models/resnet.h"
#include "nn/nn.h"
#include "optim/adam.h"
#include "optim/sgd.h"

using namespace ember;

namespace {

const bench::Args kArgs("ember_step_profile",
                        "ember_step_profile [--model mlp|lenet|cnn|resnet20] [--batch N] [--steps N] [--threads N]");

}  // namespace

int main(int argc, char** argv) {
  std::string model = "cnn";
  int batch = 0, steps = 20, threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string v = kArgs.value(argc, argv, i);
    if (a == "--model") model = v;
    else if (a == "--batch") batch = static_cast<int>(kArgs.positive(a, v, 100000));
    else if (a == "--steps") steps = static_cast<int>(kArgs.positive(a, v, 100000));
    else if (a == "--threads") threads = static_cast<int>(kArgs.positive(a, v));
    else kArgs.fail("unknown flag " + a);
  }
  set_num_threads(threads);
  std::shared_ptr<nn::Module> net;
  Shape input;
  int64_t classes = 10;
  if (model == "mlp") net = nn::models::mnist_mlp(), batch = batch ? batch : 128;
  else if (model == "lenet") net = nn::models::lenet(), batch = batch ? batch : 64;
  else if (model == "cnn") net = nn::models::mnist_cnn(), batch = batch ? batch : 64;
  else if (model == "resnet20") net = nn::models::resnet20(), batch = batch ? batch : 128;
  else kArgs.fail("unknown model '" + model + "'");
  input = model == "resnet20" ? Shape{batch, 3, 32, 32} : Shape{batch, 1, 28, 28};
  // The optimizers the benchmarks use: Adam for the cnn (examples/mnist), SGD with momentum otherwise.
  std::unique_ptr<optim::Optimizer> opt;
  if (model == "cnn") opt = std::make_unique<optim::Adam>(net->parameters(), optim::AdamOptions(1e-3));
  else opt = std::make_unique<optim::SGD>(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  const Tensor x = randn(input);
  const Tensor y = randint(0, classes, {batch}, TensorOptions(kInt64));
  auto step = [&] {
    opt->zero_grad();
    Tensor loss = nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt->step();
  };
  for (int s = 0; s < steps; ++s) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) step();  // unprofiled: the wall time of a step as training sees it
  const double step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
  profiler::Profile prof;
  for (int s = 0; s < steps; ++s) step();
  prof.stop();
  std::printf("%s, batch %d, %d thread(s), %d profiled steps after %d warm-up steps; unprofiled step %.3f ms\n",
              model.c_str(), batch, threads, steps, steps, step_ms);
  std::cout << prof.table();
  return 0;
}
