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
//
//   build/bench/ember_step_profile --model mlp --threads 1 --engines auto,onednn,blas [--rounds 31]
//
// compares GEMM engines inside the real step instead: after the warm-up, --rounds rounds each run
// --steps steps on every listed engine (set_cpu_gemm_engine), starting from a different engine each
// round, and it prints each engine's median ms per step (min-max) and its ratio to the first. One
// process and interleaved blocks keep this machine's slow spells, which last seconds and move
// process-to-process timings by 10%, from landing on one engine only: this is the measurement
// behind GemmEngine::Auto's shape rule (core/cpu/cpu_matmul.cpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "core/cpu/cpu_matmul.h"
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
                        "ember_step_profile [--model mlp|lenet|cnn|resnet20] [--batch N] [--steps N] [--threads N]"
                        " [--engines auto,onednn,blas,eigen] [--rounds N]");

GemmEngine parse_engine(const std::string& name) {
  if (name == "auto") return GemmEngine::Auto;
  if (name == "onednn") return GemmEngine::OneDnn;
  if (name == "blas") return GemmEngine::Blas;
  if (name == "eigen") return GemmEngine::Eigen;
  kArgs.fail("--engines: unknown engine '" + name + "' (expected auto, onednn, blas or eigen)");
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts(1);
  for (char c : s) {
    if (c == ',') parts.emplace_back();
    else parts.back() += c;
  }
  return parts;
}

// The interleaved engine comparison (--engines): median, min and max ms per step of each engine.
void compare_engines(const std::vector<GemmEngine>& engines, int rounds, int steps, const std::function<void()>& step) {
  const GemmEngine saved = cpu_gemm_engine();
  for (GemmEngine e : engines) {  // fails here, before any timing, if an engine is not built in
    set_cpu_gemm_engine(e);
    step();
  }
  std::vector<std::vector<double>> ms(engines.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t i = 0; i < engines.size(); ++i) {
      const size_t e = (static_cast<size_t>(r) + i) % engines.size();
      set_cpu_gemm_engine(engines[e]);
      const auto t0 = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) step();
      ms[e].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps);
    }
  set_cpu_gemm_engine(saved);
  for (std::vector<double>& m : ms) std::sort(m.begin(), m.end());
  const double first = ms[0][ms[0].size() / 2];
  std::printf("| engine | ms per step, median of %d blocks of %d steps (min-max) | vs %s |\n|---|---|---|\n", rounds,
              steps, gemm_engine_name(engines[0]));
  for (size_t e = 0; e < engines.size(); ++e) {
    const double median = ms[e][ms[e].size() / 2];
    std::printf("| %s | %.3f (%.3f-%.3f) | %.3f |\n", gemm_engine_name(engines[e]), median, ms[e].front(), ms[e].back(),
                median / first);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "cnn";
  int batch = 0, steps = 20, threads = 2, rounds = 31;
  std::vector<GemmEngine> engines;  // --engines: compare these instead of profiling
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string v = kArgs.value(argc, argv, i);
    if (a == "--model") model = v;
    else if (a == "--batch") batch = static_cast<int>(kArgs.positive(a, v, 100000));
    else if (a == "--steps") steps = static_cast<int>(kArgs.positive(a, v, 100000));
    else if (a == "--threads") threads = static_cast<int>(kArgs.positive(a, v));
    else if (a == "--engines") {
      engines.clear();
      for (const std::string& name : split_commas(v)) engines.push_back(parse_engine(name));  // exits on a bad name
    }
    else if (a == "--rounds") rounds = static_cast<int>(kArgs.positive(a, v, 100000));
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
  if (!engines.empty()) {
    std::printf("%s, batch %d, %d thread(s), engines interleaved after %d warm-up steps\n", model.c_str(), batch,
                threads, steps);
    try {
      compare_engines(engines, rounds, steps, step);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ember_step_profile: %s\n", e.what());
      return 1;
    }
    return 0;
  }
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
