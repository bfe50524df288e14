// The training loop of the examples (ember_mnist, ember_cifar10), written once: epochs of
// forward / loss / backward / step with a progress bar, the metrics CSV (per epoch and every N
// steps), a checkpoint after every epoch, --resume from one bit for bit, and the summary at the end.
//
// A program builds its data, model and optimizer, fills a TrainingRun (what differs between
// programs comes in as hooks: the loss, what happens after each step, how to evaluate, extra state
// for the checkpoint) and calls train(). Resuming is exact on the CPU because everything random is
// keyed, not drawn in sequence: the loader's order and augmentation by (seed, epoch, sample), and the
// model, optimizer and the hooks' state (a scheduler, an EMA) come back from the checkpoint.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/ember.h"
#include "data/data.h"
#include "examples/common/options.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace ember::examples {

struct TrainingRun {
  TrainingRun(const TrainConfig& config, nn::Module& model, optim::Optimizer& optimizer, data::DataLoader& loader,
              int64_t train_size, Device device)
      : config(config), model(model), optimizer(optimizer), loader(loader), train_size(train_size), device(device) {}

  const TrainConfig& config;
  nn::Module& model;
  optim::Optimizer& optimizer;
  data::DataLoader& loader;
  int64_t train_size;  // samples per epoch
  Device device;
  // Said on every epoch line, in the summary and as the metrics CSV's comment line when not empty
  // (ember_cifar10: "synthetic CIFAR-10 data ...").
  std::string data_note;

  // The loss of one batch; default: cross-entropy.
  std::function<Tensor(const Tensor& logits, const Tensor& target)> loss;
  // After every optimizer step (a per-step learning-rate scheduler, an EMA update); may be empty.
  std::function<void()> after_step;
  // Test loss and accuracy (in [0, 1]); required.
  std::function<std::pair<double, double>()> evaluate;
  // State beyond the model and optimizer, saved in the checkpoint after each epoch and loaded on
  // --resume (under keys of its own); may be empty.
  std::function<void(optim::StateDict&)> save_state;
  std::function<void(const optim::StateDict&)> load_state;
};

struct TrainResult {
  double train_loss = 0, train_accuracy = 0, test_loss = 0, test_accuracy = 0;
  double epoch_seconds = 0;      // the last epoch's training loop
  double launches_per_step = 0;  // kernels + library calls per training step, last epoch (CUDA; 0 on CPU)
};

// Resumes from config.resume (if set), trains up to config.epochs and returns the last epoch's
// numbers (or, when the checkpoint is already there, its test loss and accuracy).
TrainResult train(TrainingRun& run);

// Test-set mean loss and accuracy of `model` (eval mode, no graph), at the training batch size: the
// activations then fit in what training already holds, and the convolution plans are reused.
// `transforms` run on each sample first (e.g. Normalize, for images held raw for augmentation).
std::pair<double, double> evaluate(nn::Module& model, std::shared_ptr<const data::Dataset> test, Device device,
                                   int64_t batch_size,
                                   const std::vector<std::shared_ptr<const data::Transform>>& transforms = {});

// Each file must exist under `root`; else an error naming it and `fetch_hint` (how to get the data).
void check_data_files(const std::string& root, const std::vector<std::string>& files, const std::string& what,
                      const std::string& fetch_hint);

// Prints "test accuracy: X%" (followed by " [note]" when `note` is not empty) and, with --json, the
// one-line summary (`extra` adds the program's keys).
void print_summary(const TrainConfig& c, const TrainResult& r, Device device, const nlohmann::json& extra = {},
                   const std::string& note = "");

}  // namespace ember::examples
