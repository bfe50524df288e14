#include "nn/models/resnet.h"

#include <string>

#include "core/error.h"

namespace ember::nn::models {

ResNet::ResNet(const ResNetOptions& o) : Module("ResNet"), memory_format(o.memory_format) {
  EMBER_CHECK(!o.blocks.empty() && o.blocks.size() == o.channels.size(), "ResNet: blocks has ", o.blocks.size(),
              " stages and channels ", o.channels.size(), "; they need the same, non-zero number");
  EMBER_CHECK(o.in_channels > 0 && o.num_classes > 0, "ResNet: in_channels (", o.in_channels,
              ") and num_classes (", o.num_classes, ") must be positive");
  for (size_t s = 0; s < o.blocks.size(); ++s)
    EMBER_CHECK(o.blocks[s] > 0 && o.channels[s] > 0, "ResNet: stage ", s + 1, " has ", o.blocks[s], " blocks of ",
                o.channels[s], " channels; both must be positive");

  const int64_t width = o.channels.front();
  conv1 = register_module("conv1", std::make_shared<Conv2d>(o.in_channels, width, 3,
                                                            Conv2dOptions{.padding = 1, .bias = false}));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(width));
  int64_t in = width;
  for (size_t s = 0; s < o.blocks.size(); ++s) {
    // Every stage after the first halves the image in its first block (where the shortcut
    // becomes a projection, since the shape changes); the rest keep it.
    auto stage = std::make_shared<Sequential>();
    for (int64_t b = 0; b < o.blocks[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      stage->emplace_back<ResidualBlock>(in, o.channels[s], stride);
      in = o.channels[s];
    }
    layers.push_back(register_module("layer" + std::to_string(s + 1), stage));
  }
  avgpool = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1));
  fc = register_module("fc", std::make_shared<Linear>(in, o.num_classes));
}

Tensor ResNet::forward(const Tensor& input) {
  const bool to_channels_last =
      memory_format == MemoryFormat::ChannelsLast && input.device().is_cpu() && input.dim() == 4;
  Tensor x = bn1->forward_relu(conv1->forward(to_channels_last ? input.contiguous(MemoryFormat::ChannelsLast) : input));
  for (const auto& stage : layers) x = stage->forward(x);
  return fc->forward(avgpool->forward(x).flatten(1));  // [N, C, 1, 1] -> [N, C] -> [N, classes]
}

std::shared_ptr<ResNet> cifar_resnet(int64_t n, int64_t num_classes) {
  EMBER_CHECK(n > 0, "cifar_resnet: n (blocks per stage) must be positive, got ", n);
  return std::make_shared<ResNet>(ResNetOptions{.blocks = {n, n, n}, .channels = {16, 32, 64}, .num_classes = num_classes});
}

std::shared_ptr<ResNet> resnet18(int64_t num_classes) {
  return std::make_shared<ResNet>(
      ResNetOptions{.blocks = {2, 2, 2, 2}, .channels = {64, 128, 256, 512}, .num_classes = num_classes});
}

}  // namespace ember::nn::models
