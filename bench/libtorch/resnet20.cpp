// libtorch_resnet20: the libtorch C++ anchor of bench/resnet20_step.cpp — the same CIFAR ResNet-20
// and the same training step, timed the same way.
//
// Network: ember's nn::models::resnet20() (nn/models/resnet.h), with the same module names (conv1,
// bn1, layer1.0.conv1, ..., layer2.0.downsample.0, fc): conv 3->16 3x3 pad 1 (no bias) + BN + ReLU; three stages of three basic blocks
// (conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU) with 16, 32, 64 channels, the first block of stages
// 2 and 3 with stride 2 and a 1x1 stride-2 conv + BN projection shortcut; global average pool;
// fc 64->10. Step: forward on a fixed random batch [B,3,32,32] with random labels of 10 classes,
// cross-entropy, backward, SGD (lr 0.1, momentum 0.9), zero_grad; loss.item() ends each step.
//
//   libtorch_resnet20 [--batch 128] [--threads 2] [--warmup 5] [--steps 20]
//
// Prints a summary line and one JSON line: median, min and max step in ms, peak RSS, loaded libraries.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_report.h"
#include "bench/libtorch/flags.h"

namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

struct BasicBlockImpl : nn::Module {
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride)
      : conv1(register_module("conv1", conv(in, out, 3, stride))),
        bn1(register_module("bn1", nn::BatchNorm2d(out))),
        conv2(register_module("conv2", conv(out, out, 3, 1))),
        bn2(register_module("bn2", nn::BatchNorm2d(out))) {
    if (stride != 1 || in != out)
      downsample = register_module("downsample", nn::Sequential(conv(in, out, 1, stride), nn::BatchNorm2d(out)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = torch::relu(bn1(conv1(x)));
    out = bn2(conv2(out));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }

  // Declared in registration order (members initialise in declaration order).
  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;
  nn::Sequential downsample{nullptr};  // empty for the identity shortcut
};
TORCH_MODULE(BasicBlock);

// The stem, three stages (layer1..layer3, each an nn::Sequential of basic blocks), the head.
struct ResNet20Impl : nn::Module {
  ResNet20Impl()
      : conv1(register_module("conv1", conv(3, 16, 3, 1))), bn1(register_module("bn1", nn::BatchNorm2d(16))) {
    const int64_t stages[][3] = {{16, 16, 1}, {16, 32, 2}, {32, 64, 2}};  // in, out, stride of the first block
    int index = 1;
    for (const auto& s : stages) {
      nn::Sequential stage;
      for (int b = 0; b < 3; ++b) stage->push_back(BasicBlock(b == 0 ? s[0] : s[1], s[1], b == 0 ? s[2] : 1));
      layers.push_back(register_module("layer" + std::to_string(index++), stage));
    }
    fc = register_module("fc", nn::Linear(64, 10));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = torch::relu(bn1(conv1(x)));
    for (auto& stage : layers) out = stage->forward(out);
    return fc(torch::adaptive_avg_pool2d(out, {1, 1}).flatten(1));
  }

  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  std::vector<nn::Sequential> layers;
  nn::Linear fc{nullptr};
};
TORCH_MODULE(ResNet20);

}  // namespace

int main(int argc, char** argv) {
  long batch = 0, threads = 0, warmup = 0, steps = 0;
  bool channels_last = false;
  try {
    const ember::bench::Flags flags(argc, argv, {"--batch", "--threads", "--warmup", "--steps", "--memory-format"});
    const std::string format = flags.text("--memory-format", "contiguous");
    if (format != "contiguous" && format != "channels_last")
      throw std::invalid_argument("--memory-format must be contiguous or channels_last, got '" + format + "'");
    channels_last = format == "channels_last";
    batch = flags.number("--batch", 128, 1);
    threads = flags.number("--threads", 2, 1);
    warmup = flags.number("--warmup", 5, 0);
    steps = flags.number("--steps", 20, 1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libtorch_resnet20: %s\nusage: libtorch_resnet20 [--batch B] [--threads N] [--warmup W] [--steps S] [--memory-format contiguous|channels_last]\n",
                 e.what());
    return 2;
  }

  try {
    torch::set_num_threads(static_cast<int>(threads));
    torch::manual_seed(1);
    ResNet20 model;
    model->train();
    torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    torch::Tensor x = torch::randn({batch, 3, 32, 32});
    if (channels_last) {  // PyTorch's NHWC layout: activations and 4-D weights stored channel-innermost
      for (auto& p : model->parameters())
        if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
      x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    }
    const torch::Tensor y = torch::randint(0, 10, {batch}, torch::kInt64);

    auto step = [&] {
      optimizer.zero_grad();
      torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
      loss.backward();
      optimizer.step();
      return loss.item<double>();
    };
    for (long i = 0; i < warmup; ++i) step();
    std::vector<double> ms;
    double loss = 0;
    for (long i = 0; i < steps; ++i) {
      const auto start = std::chrono::steady_clock::now();
      loss = step();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    const ember::bench::Spread s = ember::bench::spread(ms);
    std::printf("libtorch resnet20 batch %ld, %d threads: step %.1f ms median (min %.1f, max %.1f) over %ld steps, loss %.4f\n",
                batch, torch::get_num_threads(), s.median, s.min, s.max, steps, loss);
    std::printf("{\"framework\": \"libtorch\", \"torch\": \"%s\", \"model\": \"resnet20\", \"batch\": %ld, \"threads\": %d, "
                "\"steps\": %ld, \"step_ms_median\": %.3f, \"step_ms_min\": %.3f, \"step_ms_max\": %.3f, \"loss\": %.5f, "
                "\"peak_rss_mb\": %.1f, \"libs\": %s}\n",
                TORCH_VERSION, batch, torch::get_num_threads(), steps, s.median, s.min, s.max, loss,
                ember::bench::peak_rss_mb(), ember::bench::json_list(ember::bench::loaded_math_libraries()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libtorch_resnet20: %s\n", e.what());
    return 1;
  }
  return 0;
}
