// Parameter initialisation, as torch.nn.init: each function fills a tensor in place (without
// recording autograd) from ember's random generator — `gen`, or the default one (manual_seed).
//
//   nn::init::kaiming_uniform_(conv->weight, std::sqrt(5.0));  // PyTorch's default for Conv/Linear
//   nn::init::zeros_(conv->bias);
#pragma once

#include <cstdint>
#include <utility>

#include "core/generator.h"
#include "core/tensor.h"

namespace ember::nn::init {

enum class FanMode { FanIn, FanOut };
enum class Nonlinearity { Linear, Conv, Sigmoid, Tanh, Relu, LeakyRelu };

// (fan_in, fan_out) of a weight [out, in, *kernel]: in * receptive field, out * receptive field.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& weight);
// The recommended gain for a nonlinearity (param = LeakyRelu's negative slope; 0.01 when < 0).
double calculate_gain(Nonlinearity nonlinearity, double param = -1.0);

void uniform_(const Tensor& t, double low = 0.0, double high = 1.0, Generator* gen = nullptr);
void normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
void constant_(const Tensor& t, double value);
void zeros_(const Tensor& t);
void ones_(const Tensor& t);

// U(-bound, bound) with bound = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).
// With a = sqrt(5) (PyTorch's layer default) the bound is 1 / sqrt(fan_in).
void kaiming_uniform_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                      Nonlinearity nonlinearity = Nonlinearity::LeakyRelu, Generator* gen = nullptr);
void kaiming_normal_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                     Nonlinearity nonlinearity = Nonlinearity::LeakyRelu, Generator* gen = nullptr);
// U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)), and the normal counterpart.
void xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
void xavier_normal_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace ember::nn::init
