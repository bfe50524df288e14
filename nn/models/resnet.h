// ResNets for 32x32 images (CIFAR-10), built from nn::ResidualBlock (ResNet's basic block).
//
// One class covers both families; the factory functions below fix the published shapes:
//
//   resnet8/20/56  He et al. 2016, "Deep Residual Learning", section 4.2: a 3x3 conv 3->16 + BN +
//                  ReLU, then three stages of n basic blocks with 16, 32 and 64 channels (n = 1, 3, 9:
//                  6n+2 weighted layers), global average pooling, fc 64->classes. The first block of
//                  stages 2 and 3 halves the image with stride 2; its shortcut is a 1x1 conv + BN
//                  (the paper's option B; option A's zero-padded identity has no parameters, which is
//                  why the published counts, 0.27M and 0.85M, are 0.3-1% below these).
//   resnet18       the common CIFAR variant of torchvision's resnet18 (11.17M parameters): a 3x3
//                  stem conv 3->64 with stride 1 and no max pool (a 32x32 image is small already),
//                  then four stages of 2 blocks with 64, 128, 256, 512 channels.
//
// Parameter names are torchvision's (conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0, fc), so
// checkpoints map one to one onto a PyTorch model built the same way. Initialisation is PyTorch's
// default for each layer (nn::Conv2d, nn::BatchNorm2d, nn::Linear).
//
//   auto net = nn::models::resnet20();            // 10 classes
//   Tensor logits = net->forward(images);         // images [N, 3, 32, 32] -> logits [N, 10]
//
// The input's height and width need not be 32: the pooling at the end is global.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "nn/layers.h"

namespace ember::nn::models {

struct ResNetOptions {
  std::vector<int64_t> blocks;    // basic blocks per stage, e.g. {3, 3, 3} for resnet20
  std::vector<int64_t> channels;  // output channels per stage, e.g. {16, 32, 64}
  int64_t in_channels = 3;        // of the input image
  int64_t num_classes = 10;
  // The layout the activations of a CPU forward run in. ChannelsLast (the default): the input is
  // copied channels-last once and every convolution, batch norm and residual add after it reads
  // and writes that layout, which oneDNN's convolutions take without a reorder (on the CPU they
  // cost a reorder of each activation in and out otherwise; bench/RESULTS.md). The values are the
  // same either way. Contiguous: the input's own layout. Other devices run NCHW.
  MemoryFormat memory_format = MemoryFormat::ChannelsLast;
};

class ResNet : public Module {
 public:
  explicit ResNet(const ResNetOptions& options);
  Tensor forward(const Tensor& input) override;

  // The stem: a 3x3 stride-1 conv from the image's channels to the first stage's, then BN + ReLU.
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  // layer1, layer2, ...: one Sequential of ResidualBlocks per stage (registered under those names).
  std::vector<std::shared_ptr<Sequential>> layers;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<Linear> fc;
  MemoryFormat memory_format;  // options.memory_format
};

// He et al.'s CIFAR ResNet with 6n+2 layers: n basic blocks per stage, 16/32/64 channels.
std::shared_ptr<ResNet> cifar_resnet(int64_t n, int64_t num_classes = 10);
inline std::shared_ptr<ResNet> resnet8(int64_t num_classes = 10) { return cifar_resnet(1, num_classes); }
inline std::shared_ptr<ResNet> resnet20(int64_t num_classes = 10) { return cifar_resnet(3, num_classes); }
inline std::shared_ptr<ResNet> resnet56(int64_t num_classes = 10) { return cifar_resnet(9, num_classes); }
// ResNet-18 for 32x32 images: 3x3 stem, no max pool, 2 blocks in each of 4 stages (64-512 channels).
std::shared_ptr<ResNet> resnet18(int64_t num_classes = 10);

}  // namespace ember::nn::models
