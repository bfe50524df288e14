// ember_resnet20_step: one CIFAR ResNet-20 training step on the CPU, timed. The same network and
// step as the libtorch anchor bench/libtorch/resnet20_step.cpp, so bench/run_cpu_bench.sh can put
// the two side by side.
//
// Network: the model zoo's nn::models::resnet20() (nn/models/resnet.h; He et al. 2016, CIFAR-10):
// conv 3->16 3x3 + BN + ReLU; three stages of three basic blocks (nn::ResidualBlock:
// conv-BN-ReLU-conv-BN + shortcut, ReLU) with 16, 32, 64 channels, the first block of stages 2 and 3
// with stride 2 and a 1x1 conv + BN projection shortcut; global average pool; fc 64->10. The
// libtorch anchor and bench/resnet20_pytorch.py build the same network with the same module names.
// Step: forward on a random batch [B,3,32,32] with random labels of 10 classes, cross-entropy,
// backward, SGD (lr 0.1, momentum 0.9), zero_grad. The batch stays the same for every step: the
// data pipeline is not what this times.
//
//   build/bench/ember_resnet20_step [--batch 128] [--threads 2] [--warmup 5] [--steps 20]
//
// Prints a one-line summary and one JSON line: median, min and max step in ms over --steps timed
// steps after --warmup untimed ones, peak RSS, the math libraries loaded.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <string>

#include "bench/bench_report.h"
#include "core/ember.h"
#include "nn/models/resnet.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace ember;

int main(int argc, char** argv) {
  int64_t batch = 128;
  int threads = 2, warmup = 5, steps = 20;
  CLI::App app{"Time a CIFAR ResNet-20 training step with ember on the CPU"};
  app.add_option("--batch", batch, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--steps", steps, "timed steps")->check(CLI::PositiveNumber);
  std::string layout = "channels_last";
  app.add_option("--memory-format", layout, "activation layout: channels_last (ResNet's default) or contiguous (NCHW)")
      ->check(CLI::IsMember({"channels_last", "contiguous"}));
  CLI11_PARSE(app, argc, argv);

  try {
    set_num_threads(threads);
    manual_seed(1);
    auto model = std::make_shared<nn::models::ResNet>(nn::models::ResNetOptions{
        .blocks = {3, 3, 3},
        .channels = {16, 32, 64},
        .memory_format = layout == "contiguous" ? MemoryFormat::Contiguous : MemoryFormat::ChannelsLast});
    optim::SGD optimizer(model->parameters(), optim::SGDOptions(0.1).momentum(0.9));
    const Tensor x = randn({batch, 3, 32, 32});
    const Tensor y = randint(0, 10, {batch});

    auto step = [&] {
      optimizer.zero_grad();
      Tensor loss = nn::functional::cross_entropy(model->forward(x), y);
      loss.backward();
      optimizer.step();
      return loss.item();  // waits for the step to finish on any device
    };
    for (int i = 0; i < warmup; ++i) step();
    std::vector<double> ms;
    double loss = 0;
    for (int i = 0; i < steps; ++i) {
      const auto start = std::chrono::steady_clock::now();
      loss = step();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    const bench::Spread s = bench::spread(ms);
    std::printf(
        "ember resnet20 (%s) batch %lld, %d threads: step %.1f ms median (min %.1f, max %.1f) over %d steps, "
        "loss %.4f\n",
        layout.c_str(), static_cast<long long>(batch), get_num_threads(), s.median, s.min, s.max, steps, loss);
    std::printf(
        "{\"framework\": \"ember\", \"model\": \"resnet20\", \"batch\": %lld, \"threads\": %d, \"steps\": %d, "
        "\"step_ms_median\": %.3f, \"step_ms_min\": %.3f, \"step_ms_max\": %.3f, \"loss\": %.5f, "
        "\"peak_rss_mb\": %.1f, \"libs\": %s}\n",
        static_cast<long long>(batch), get_num_threads(), steps, s.median, s.min, s.max, loss, bench::peak_rss_mb(),
        bench::json_list(bench::loaded_math_libraries()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_resnet20_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
