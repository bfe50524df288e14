// The layers: PyTorch's torch.nn modules with the same names, parameter names, defaults and
// default initialisation (drawn from `gen`, or ember's default generator — see manual_seed).
// Options that PyTorch passes as keyword arguments are small structs, filled with designated
// initializers:
//
//   auto net = std::make_shared<nn::Sequential>(
//       std::make_shared<nn::Conv2d>(1, 32, 3, nn::Conv2dOptions{.padding = 1}),
//       std::make_shared<nn::BatchNorm2d>(32), std::make_shared<nn::ReLU>(),
//       std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::Flatten>(),
//       std::make_shared<nn::Linear>(32 * 14 * 14, 10));
//   Tensor logits = net->forward(images);
//
// Parameters and buffers are public members (conv->weight, bn->running_mean), as in libtorch.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/generator.h"
#include "nn/functional.h"
#include "nn/module.h"

namespace ember::nn {

// ---------------- linear and embedding ----------------

// y = x · weightᵀ + bias. weight [out, in] and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& input) override;
  Tensor forward_relu(const Tensor& input) override;  // F::linear_relu; bypasses forward()
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);

  int64_t in_features, out_features;
  Tensor weight, bias;  // bias is undefined without one
};

// A lookup table: indices (int64, any shape) -> rows of weight [num_embeddings, embedding_dim] ~ N(0, 1).
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator* gen = nullptr);
  Tensor forward(const Tensor& indices) override;
  std::string extra_repr() const override;

  int64_t num_embeddings, embedding_dim;
  Tensor weight;
};

// ---------------- convolution and pooling ----------------

struct Conv2dOptions {
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// weight [out, in/groups, kh, kw] and bias [out] ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups*kh*kw.
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Conv2dOptions options = {},
         Generator* gen = nullptr);
  Tensor forward(const Tensor& input) override;
  Tensor forward_relu(const Tensor& input) override;  // F::conv2d_relu; bypasses forward()
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);

  int64_t in_channels, out_channels;
  Size2 kernel_size;
  Conv2dOptions options;
  Tensor weight, bias;
};

struct MaxPool2dOptions {
  std::optional<Size2> stride;  // default: kernel_size
  Size2 padding = 0;
  Size2 dilation = 1;
  bool ceil_mode = false;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Size2 kernel_size, MaxPool2dOptions options = {});
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  Size2 kernel_size;
  MaxPool2dOptions options;
};

struct AvgPool2dOptions {
  std::optional<Size2> stride;  // default: kernel_size
  Size2 padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Size2 kernel_size, AvgPool2dOptions options = {});
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  Size2 kernel_size;
  AvgPool2dOptions options;
};

// Averages each plane down to output_size, whatever the input's size (AdaptiveAvgPool2d(1): global average).
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(Size2 output_size);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  Size2 output_size;
};

// ---------------- normalisation ----------------

struct BatchNormOptions {
  double eps = 1e-5;
  // Weight of the new batch in the running statistics; nullopt = cumulative average over all batches.
  std::optional<double> momentum = 0.1;
  bool affine = true;               // learnable weight (init 1) and bias (init 0)
  bool track_running_stats = true;  // running_mean, running_var, num_batches_tracked buffers
};

// Shared by BatchNorm1d and BatchNorm2d, which differ only in the input ranks they accept.
// Training: normalise with the batch's statistics and update the running ones. Evaluation:
// normalise with the running statistics (or the batch's, when they are not tracked).
class BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& input) override;
  // relu(forward(input)) in one fused op (F::batch_norm_relu) where the device has it: for a layer
  // whose output goes straight into a ReLU, as ResNet's conv-BN-ReLU (nn::ResidualBlock calls it,
  // and Sequential for a BatchNorm followed by a ReLU). It does not go through forward(): a
  // subclass that overrides forward() must override this too.
  Tensor forward_relu(const Tensor& input) override;
  std::string extra_repr() const override;
  void reset_running_stats();

  int64_t num_features;
  BatchNormOptions options;
  Tensor weight, bias;                                    // [C], when affine
  Tensor running_mean, running_var, num_batches_tracked;  // [C], [C], int64 []; when tracked

  // When set, replaces the training-mode normalisation (called after the input check and the
  // num_batches_tracked update, with this step's momentum). distributed::convert_sync_batchnorm
  // sets it to SyncBatchNorm's, which takes the statistics over every rank's batch: nn knows no
  // communicator, so the cross-rank version lives in distributed/sync_batch_norm.h.
  std::function<Tensor(const BatchNorm& self, const Tensor& input, double momentum)> training_forward;

 protected:
  BatchNorm(const char* type_name, int64_t num_features, BatchNormOptions options);
  virtual void check_input(const Tensor& input) const = 0;

 private:
  Tensor forward_with(const Tensor& input, bool relu);
};

class BatchNorm1d : public BatchNorm {  // input [N, C] or [N, C, L]
 public:
  explicit BatchNorm1d(int64_t num_features, BatchNormOptions options = {});

 protected:
  void check_input(const Tensor& input) const override;
};

class BatchNorm2d : public BatchNorm {  // input [N, C, H, W]
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions options = {});

 protected:
  void check_input(const Tensor& input) const override;
};

struct LayerNormOptions {
  double eps = 1e-5;
  bool elementwise_affine = true;  // weight (init 1) and bias (init 0) of normalized_shape
};

// Normalises over the trailing dims normalized_shape.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::vector<int64_t> normalized_shape, LayerNormOptions options = {});
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  std::vector<int64_t> normalized_shape;
  LayerNormOptions options;
  Tensor weight, bias;
};

// ---------------- regularisation and reshaping ----------------

// Zeroes each element with probability p in training mode (scaling the rest by 1/(1-p)); identity in eval mode.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  double p;
  Generator* gen;  // nullptr: the default generator
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  int64_t start_dim, end_dim;
};

// ---------------- activations ----------------

class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& input) override;
};

class GELU : public Module {  // the exact (erf) form
 public:
  GELU() : Module("GELU") {}
  Tensor forward(const Tensor& input) override;
};

class Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& input) override;
};

class Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& input) override;
};

// ---------------- containers ----------------

// Runs its children in order; they are named "0", "1", ... as in PyTorch.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  template <typename... Ms>
  explicit Sequential(std::shared_ptr<Ms>... modules) : Sequential() {
    (push_back(std::move(modules)), ...);
  }

  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return register_module(std::to_string(size()), std::move(module));
  }
  // Constructs a child in place: seq->emplace_back<nn::Linear>(784, 10).
  template <typename M, typename... Args>
  std::shared_ptr<M> emplace_back(Args&&... args) {
    return push_back(std::make_shared<M>(std::forward<Args>(args)...));
  }

  size_t size() const { return named_children().size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  // The i-th child as its concrete type; an error if it is not an M.
  template <typename M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    EMBER_CHECK(m != nullptr, "Sequential: child ", i, " is a ", (*this)[i]->type_name(), ", not the requested type");
    return m;
  }

  Tensor forward(const Tensor& input) override;
};

// ResNet's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), with 3x3 convolutions
// (the first one strided) and, when the stride or the channel count changes, a projection
// shortcut `downsample` = 1x1 strided conv + batch norm (identity otherwise). Names match
// torchvision's (conv1, bn1, conv2, bn2, downsample.0, downsample.1), so are its state dicts.
class ResidualBlock : public Module {
 public:
  ResidualBlock(int64_t in_channels, int64_t out_channels, int64_t stride = 1, Generator* gen = nullptr);
  Tensor forward(const Tensor& input) override;

  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Sequential> downsample;  // null for the identity shortcut
};

}  // namespace ember::nn
