// Initialisers: draw into the tensor's own memory when it is contiguous (the common case, a fresh
// parameter), otherwise draw into a temporary and copy it in.
#include "nn/init.h"

#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace ember::nn::init {

namespace {

void fill_random(const Tensor& t, RandomOp op, double a, double b, Generator* gen, const char* name) {
  EMBER_CHECK(t.defined(), "init::", name, ": undefined tensor");
  EMBER_CHECK(is_floating(t.dtype()), "init::", name, ": expected a floating-point tensor, got ", dtype_name(t.dtype()),
              " of shape ", t.shape());
  NoGradGuard no_grad;
  Generator& g = gen ? *gen : default_generator();
  Tensor target = t;
  check_inplace(target, name);
  if (t.is_contiguous()) {
    backend_of(t).random(op, t, g.reserve(static_cast<uint64_t>(t.numel())), a, b);
  } else {
    Tensor tmp = empty(t.shape(), TensorOptions(t.dtype()).device(t.device()));
    backend_of(t).random(op, tmp, g.reserve(static_cast<uint64_t>(t.numel())), a, b);
    target.copy_(tmp);
  }
}

double fan(const Tensor& t, FanMode mode, const char* name) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  const int64_t f = mode == FanMode::FanIn ? fan_in : fan_out;
  EMBER_CHECK(f > 0, "init::", name, ": tensor ", t.shape(), " has a zero fan (no elements to scale by)");
  return static_cast<double>(f);
}

}  // namespace

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& w) {
  EMBER_CHECK(w.dim() >= 2, "init: fan in and fan out need a tensor with at least 2 dims, got ", w.shape());
  int64_t receptive = 1;
  for (int d = 2; d < w.dim(); ++d) receptive *= w.size(d);
  return {w.size(1) * receptive, w.size(0) * receptive};
}

double calculate_gain(Nonlinearity nl, double param) {
  switch (nl) {
    case Nonlinearity::Linear:
    case Nonlinearity::Conv:
    case Nonlinearity::Sigmoid:
      return 1.0;
    case Nonlinearity::Tanh:
      return 5.0 / 3.0;
    case Nonlinearity::Relu:
      return std::sqrt(2.0);
    case Nonlinearity::LeakyRelu: {
      const double slope = param < 0 ? 0.01 : param;
      return std::sqrt(2.0 / (1.0 + slope * slope));
    }
  }
  return 1.0;
}

void uniform_(const Tensor& t, double low, double high, Generator* gen) {
  EMBER_CHECK(low <= high, "init::uniform_: low ", low, " is greater than high ", high);
  fill_random(t, RandomOp::Uniform, low, high, gen, "uniform_");
}

void normal_(const Tensor& t, double mean, double std, Generator* gen) {
  EMBER_CHECK(std >= 0, "init::normal_: std must be non-negative, got ", std);
  fill_random(t, RandomOp::Normal, mean, std, gen, "normal_");
}

void constant_(const Tensor& t, double value) {
  NoGradGuard no_grad;
  Tensor target = t;
  target.fill_(value);
}
void zeros_(const Tensor& t) { constant_(t, 0.0); }
void ones_(const Tensor& t) { constant_(t, 1.0); }

void kaiming_uniform_(const Tensor& t, double a, FanMode mode, Nonlinearity nl, Generator* gen) {
  const double bound = calculate_gain(nl, a) * std::sqrt(3.0 / fan(t, mode, "kaiming_uniform_"));
  uniform_(t, -bound, bound, gen);
}

void kaiming_normal_(const Tensor& t, double a, FanMode mode, Nonlinearity nl, Generator* gen) {
  normal_(t, 0.0, calculate_gain(nl, a) / std::sqrt(fan(t, mode, "kaiming_normal_")), gen);
}

void xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  uniform_(t, -bound, bound, gen);
}

void xavier_normal_(const Tensor& t, double gain, Generator* gen) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out)), gen);
}

}  // namespace ember::nn::init
