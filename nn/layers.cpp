#include "nn/layers.h"

#include <cmath>
#include <sstream>
#include <typeinfo>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/init.h"

namespace ember::nn {

namespace F = functional;

namespace {

std::string size2_str(Size2 s) {
  std::ostringstream os;  // rather than string +, on which GCC 12 gives a false -Wrestrict warning
  os << '(' << s.h << ", " << s.w << ')';
  return os.str();
}
const char* bool_str(bool b) { return b ? "True" : "False"; }

// PyTorch's default for Linear and Conv weights (kaiming_uniform_ with a = sqrt(5), i.e.
// U(-1/sqrt(fan_in), 1/sqrt(fan_in))), and for their bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void default_init(const Tensor& weight, const Tensor& bias, Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn, init::Nonlinearity::LeakyRelu, gen);
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

}  // namespace

// ---------------- Linear ----------------

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator* gen)
    : Module("Linear"), in_features(in), out_features(out) {
  EMBER_CHECK(in >= 0 && out >= 0, "Linear: feature counts must be non-negative, got in_features=", in,
              ", out_features=", out);
  weight = register_parameter("weight", empty({out, in}));
  if (with_bias) bias = register_parameter("bias", empty({out}));
  reset_parameters(gen);
}

void Linear::reset_parameters(Generator* gen) {
  if (in_features > 0) default_init(weight, bias, gen);
}

Tensor Linear::forward(const Tensor& input) { return F::linear(input, weight, bias); }
Tensor Linear::forward_relu(const Tensor& input) { return F::linear_relu(input, weight, bias); }

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features) + ", out_features=" + std::to_string(out_features) +
         ", bias=" + bool_str(bias.defined());
}

// ---------------- Embedding ----------------

Embedding::Embedding(int64_t num, int64_t dim, Generator* gen)
    : Module("Embedding"), num_embeddings(num), embedding_dim(dim) {
  EMBER_CHECK(num >= 0 && dim >= 0, "Embedding: sizes must be non-negative, got ", num, " x ", dim);
  weight = register_parameter("weight", empty({num, dim}));
  init::normal_(weight, 0.0, 1.0, gen);
}

Tensor Embedding::forward(const Tensor& indices) { return embedding(weight, indices); }

std::string Embedding::extra_repr() const {
  return std::to_string(num_embeddings) + ", " + std::to_string(embedding_dim);
}

// ---------------- Conv2d ----------------

Conv2d::Conv2d(int64_t in, int64_t out, Size2 kernel, Conv2dOptions opts, Generator* gen)
    : Module("Conv2d"), in_channels(in), out_channels(out), kernel_size(kernel), options(opts) {
  EMBER_CHECK(opts.groups > 0, "Conv2d: groups must be positive, got ", opts.groups);
  EMBER_CHECK(in > 0 && out > 0 && in % opts.groups == 0 && out % opts.groups == 0, "Conv2d: in_channels=", in,
              " and out_channels=", out, " must be positive and divisible by groups=", opts.groups);
  EMBER_CHECK(kernel.h > 0 && kernel.w > 0, "Conv2d: kernel_size must be positive, got ", size2_str(kernel));
  weight = register_parameter("weight", empty({out, in / opts.groups, kernel.h, kernel.w}));
  if (opts.bias) bias = register_parameter("bias", empty({out}));
  reset_parameters(gen);
}

void Conv2d::reset_parameters(Generator* gen) { default_init(weight, bias, gen); }

Tensor Conv2d::forward(const Tensor& input) {
  return F::conv2d(input, weight, bias, options.stride, options.padding, options.dilation, options.groups);
}
Tensor Conv2d::forward_relu(const Tensor& input) {
  return F::conv2d_relu(input, weight, bias, options.stride, options.padding, options.dilation, options.groups);
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(in_channels) + ", " + std::to_string(out_channels) +
                  ", kernel_size=" + size2_str(kernel_size) + ", stride=" + size2_str(options.stride);
  if (!(options.padding == Size2(0))) s += ", padding=" + size2_str(options.padding);
  if (!(options.dilation == Size2(1))) s += ", dilation=" + size2_str(options.dilation);
  if (options.groups != 1) s += ", groups=" + std::to_string(options.groups);
  if (!options.bias) s += ", bias=False";
  return s;
}

// ---------------- pooling ----------------

MaxPool2d::MaxPool2d(Size2 kernel, MaxPool2dOptions opts) : Module("MaxPool2d"), kernel_size(kernel), options(opts) {}

Tensor MaxPool2d::forward(const Tensor& input) {
  return F::max_pool2d(input, kernel_size, options.stride, options.padding, options.dilation, options.ceil_mode);
}

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + size2_str(kernel_size) + ", stride=" + size2_str(options.stride.value_or(kernel_size)) +
         ", padding=" + size2_str(options.padding) + ", dilation=" + size2_str(options.dilation) +
         ", ceil_mode=" + bool_str(options.ceil_mode);
}

AvgPool2d::AvgPool2d(Size2 kernel, AvgPool2dOptions opts) : Module("AvgPool2d"), kernel_size(kernel), options(opts) {}

Tensor AvgPool2d::forward(const Tensor& input) {
  return F::avg_pool2d(input, kernel_size, options.stride, options.padding, options.ceil_mode,
                       options.count_include_pad);
}

std::string AvgPool2d::extra_repr() const {
  return "kernel_size=" + size2_str(kernel_size) + ", stride=" + size2_str(options.stride.value_or(kernel_size)) +
         ", padding=" + size2_str(options.padding);
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Size2 size) : Module("AdaptiveAvgPool2d"), output_size(size) {}

Tensor AdaptiveAvgPool2d::forward(const Tensor& input) { return F::adaptive_avg_pool2d(input, output_size); }

std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=" + size2_str(output_size); }

// ---------------- batch norm ----------------

BatchNorm::BatchNorm(const char* type_name, int64_t features, BatchNormOptions opts)
    : Module(type_name), num_features(features), options(opts) {
  EMBER_CHECK(features > 0, type_name, ": num_features must be positive, got ", features);
  if (opts.affine) {
    weight = register_parameter("weight", ones({features}));
    bias = register_parameter("bias", zeros({features}));
  }
  if (opts.track_running_stats) {
    running_mean = register_buffer("running_mean", zeros({features}));
    running_var = register_buffer("running_var", ones({features}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, kInt64));
  }
}

void BatchNorm::reset_running_stats() {
  if (!options.track_running_stats) return;
  init::zeros_(running_mean);
  init::ones_(running_var);
  NoGradGuard no_grad;
  num_batches_tracked.zero_();
}

Tensor BatchNorm::forward(const Tensor& input) { return forward_with(input, /*relu=*/false); }

Tensor BatchNorm::forward_relu(const Tensor& input) { return forward_with(input, /*relu=*/true); }

Tensor BatchNorm::forward_with(const Tensor& input, bool relu) {
  check_input(input);
  double momentum = options.momentum.value_or(0.0);
  if (is_training() && options.track_running_stats) {
    num_batches_tracked.add_(1.0);
    // Cumulative average: the n-th batch gets weight 1/n.
    if (!options.momentum) momentum = 1.0 / num_batches_tracked.item();
  }
  if (is_training() && training_forward) {
    const Tensor out = training_forward(*this, input, momentum);
    return relu ? ember::relu(out) : out;
  }
  // Evaluation without tracked statistics falls back to the batch's (PyTorch's rule).
  const bool use_batch_stats = is_training() || !options.track_running_stats;
  const auto norm = relu ? F::batch_norm_relu : F::batch_norm;
  return norm(input, running_mean, running_var, weight, bias, use_batch_stats, momentum, options.eps);
}

std::string BatchNorm::extra_repr() const {
  std::ostringstream os;
  os << num_features << ", eps=" << options.eps << ", momentum=";
  if (options.momentum)
    os << *options.momentum;
  else
    os << "None";
  os << ", affine=" << bool_str(options.affine) << ", track_running_stats=" << bool_str(options.track_running_stats);
  return os.str();
}

BatchNorm1d::BatchNorm1d(int64_t features, BatchNormOptions opts) : BatchNorm("BatchNorm1d", features, opts) {}

void BatchNorm1d::check_input(const Tensor& input) const {
  EMBER_CHECK(input.dim() == 2 || input.dim() == 3, "BatchNorm1d: expected a 2-D [N, C] or 3-D [N, C, L] input, got ",
              input.shape());
  EMBER_CHECK(input.size(1) == num_features, "BatchNorm1d: input ", input.shape(), " has ", input.size(1),
              " channels, expected num_features=", num_features);
}

BatchNorm2d::BatchNorm2d(int64_t features, BatchNormOptions opts) : BatchNorm("BatchNorm2d", features, opts) {}

void BatchNorm2d::check_input(const Tensor& input) const {
  EMBER_CHECK(input.dim() == 4, "BatchNorm2d: expected a 4-D [N, C, H, W] input, got ", input.shape());
  EMBER_CHECK(input.size(1) == num_features, "BatchNorm2d: input ", input.shape(), " has ", input.size(1),
              " channels, expected num_features=", num_features);
}

// ---------------- LayerNorm ----------------

LayerNorm::LayerNorm(std::vector<int64_t> shape, LayerNormOptions opts)
    : Module("LayerNorm"), normalized_shape(std::move(shape)), options(opts) {
  EMBER_CHECK(!normalized_shape.empty(), "LayerNorm: normalized_shape must have at least one dim");
  if (opts.elementwise_affine) {
    weight = register_parameter("weight", ones(Shape(normalized_shape)));
    bias = register_parameter("bias", zeros(Shape(normalized_shape)));
  }
}

Tensor LayerNorm::forward(const Tensor& input) {
  return F::layer_norm(input, normalized_shape, weight, bias, options.eps);
}

std::string LayerNorm::extra_repr() const {
  std::ostringstream os;
  os << Shape(normalized_shape).str() << ", eps=" << options.eps
     << ", elementwise_affine=" << bool_str(options.elementwise_affine);
  return os.str();
}

// ---------------- Dropout, Flatten, activations ----------------

Dropout::Dropout(double p_, Generator* gen_) : Module("Dropout"), p(p_), gen(gen_) {
  EMBER_CHECK(p_ >= 0.0 && p_ <= 1.0, "Dropout: probability p must be in [0, 1], got ", p_);
}

Tensor Dropout::forward(const Tensor& input) { return F::dropout(input, p, is_training(), gen); }

std::string Dropout::extra_repr() const {
  std::ostringstream os;
  os << "p=" << p;
  return os.str();
}

Flatten::Flatten(int64_t start, int64_t end) : Module("Flatten"), start_dim(start), end_dim(end) {}

Tensor Flatten::forward(const Tensor& input) { return input.flatten(start_dim, end_dim); }

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_dim) + ", end_dim=" + std::to_string(end_dim);
}

Tensor ReLU::forward(const Tensor& input) { return relu(input); }
Tensor GELU::forward(const Tensor& input) { return gelu(input); }
Tensor Tanh::forward(const Tensor& input) { return tanh(input); }
Tensor Sigmoid::forward(const Tensor& input) { return sigmoid(input); }

// ---------------- Sequential ----------------

const std::shared_ptr<Module>& Sequential::operator[](size_t i) const {
  EMBER_CHECK(i < size(), "Sequential: index ", i, " is out of range for ", size(), " modules");
  return named_children()[i].second;
}

namespace {

// One of ember's own layers with a fused `op + ReLU` (exactly that class: a subclass may override
// forward(), which forward_relu would bypass).
bool fuses_following_relu(const Module& m) {
  const std::type_info& t = typeid(m);
  return t == typeid(Linear) || t == typeid(Conv2d) || t == typeid(BatchNorm1d) || t == typeid(BatchNorm2d);
}

}  // namespace

// A Linear, Conv2d or BatchNorm followed by a plain ReLU runs as one fused op (forward_relu): the
// same values and gradients with one pass over the activation fewer and one tensor less.
Tensor Sequential::forward(const Tensor& input) {
  const auto& layers = named_children();
  Tensor x = input;
  for (size_t i = 0; i < layers.size(); ++i) {
    const Module& m = *layers[i].second;
    if (i + 1 < layers.size() && typeid(*layers[i + 1].second) == typeid(ReLU) && fuses_following_relu(m)) {
      x = layers[i].second->forward_relu(x);
      ++i;  // the ReLU is done
    } else {
      x = layers[i].second->forward(x);
    }
  }
  return x;
}

// ---------------- ResidualBlock ----------------

ResidualBlock::ResidualBlock(int64_t in, int64_t out, int64_t stride, Generator* gen) : Module("ResidualBlock") {
  EMBER_CHECK(stride >= 1, "ResidualBlock: stride must be >= 1, got ", stride);
  conv1 = register_module(
      "conv1", std::make_shared<Conv2d>(in, out, 3, Conv2dOptions{.stride = stride, .padding = 1, .bias = false}, gen));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(out));
  conv2 =
      register_module("conv2", std::make_shared<Conv2d>(out, out, 3, Conv2dOptions{.padding = 1, .bias = false}, gen));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(out));
  if (stride != 1 || in != out)
    downsample = register_module(
        "downsample", std::make_shared<Sequential>(
                          std::make_shared<Conv2d>(in, out, 1, Conv2dOptions{.stride = stride, .bias = false}, gen),
                          std::make_shared<BatchNorm2d>(out)));
}

Tensor ResidualBlock::forward(const Tensor& input) {
  Tensor out = bn1->forward_relu(conv1->forward(input));
  out = bn2->forward(conv2->forward(out));
  return add_relu(out, downsample ? downsample->forward(input) : input);  // relu(out + shortcut), one pass
}

}  // namespace ember::nn
