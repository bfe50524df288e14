// An exponential moving average (EMA) of a model's weights, for evaluating with smoother weights
// than the last step's — PyTorch's torch.optim.swa_utils.AveragedModel with an EMA average function
// (timm's ModelEmaV2, torchvision's reference ExponentialMovingAverage), without the model copy:
// ember modules cannot be deep-copied, so the average is kept as named tensors and swapped into a
// model (or copied into a second instance of the same architecture) when it is needed.
//
//   optim::ExponentialMovingAverage ema(*model, optim::EmaOptions().decay(0.999));
//   for (...) { ...; opt.step(); ema.update(*model); }
//   {
//     optim::EmaScope use_ema(ema, *model);   // the model now holds the averaged weights
//     evaluate(*model);
//   }                                          // ... and its own again
//
// What update(model) does, after each optimizer step:
//   parameters: the first update copies them (AveragedModel's n_averaged == 0 case); every later
//     one sets avg = decay * avg + (1 - decay) * param, in that operation order (PyTorch's avg_fn);
//   buffers (BatchNorm's running statistics, num_batches_tracked): copied. Averaging running
//     statistics of weights that are themselves changing is meaningless; the latest ones describe
//     the recent activations best (timm's choice; AveragedModel would need update_bn instead).
// With warmup, the decay of update n (counting from 0) is min(decay, (1 + n) / (10 + n)), as in
// tf.train.ExponentialMovingAverage's num_updates: early averages forget the random start quickly.
//
// The average lives on the model's device and dtype at construction (build it after model.to(...));
// it holds no autograd graph.
// optim/ may include nn/; nn/ never includes optim/.
#pragma once

#include <cstdint>

#include "nn/module.h"
#include "optim/optimizer.h"

namespace ember::optim {

struct EmaOptions {
  EMBER_ARG(double, decay) = 0.999;  // weight of the old average at each update, in [0, 1]
  EMBER_ARG(bool, warmup) = false;   // ramp the decay up from 0.1 (see above)
};

class ExponentialMovingAverage {
 public:
  // Starts from a copy of the model's current parameters and buffers.
  explicit ExponentialMovingAverage(const nn::Module& model, const EmaOptions& options = {});
  ExponentialMovingAverage(const ExponentialMovingAverage&) = delete;
  ExponentialMovingAverage& operator=(const ExponentialMovingAverage&) = delete;

  // Folds the model's current weights into the average. The model must have the same parameters and
  // buffers (names and shapes) as the one the average was made from.
  void update(const nn::Module& model);
  // The decay update number n (0-based) uses; update n == 0 copies whatever this says.
  double decay_at(int64_t n) const;
  // How many updates have been folded in (AveragedModel's n_averaged).
  int64_t num_updates() const { return num_updates_; }
  const EmaOptions& options() const { return options_; }

  // The averaged parameters and the copied buffers, by the model's state-dict names (read only: the
  // tensors are the live average).
  const nn::NamedTensors& averaged() const { return averaged_; }
  // Writes the average into `model` (the same architecture: this model, or a second instance kept
  // for evaluation). Its handles stay the same, so an optimizer over it keeps working.
  void copy_to(nn::Module& model) const;

  // For checkpoints: tensors "module.<name>" (as AveragedModel names them, so PyTorch can load the
  // averaged weights with that prefix stripped) and "n_averaged" (0-d int64); metadata
  // "averaged_model" = "ExponentialMovingAverage". load_state_dict checks names and shapes and copies
  // (nothing changes if it throws).
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

 private:
  void check_matches(const nn::NamedTensors& model_state, const char* what) const;

  EmaOptions options_;
  nn::NamedTensors averaged_;        // model.state_dict() order: parameters then buffers, per module
  std::vector<bool> is_parameter_;   // per entry of averaged_: averaged (true) or copied (false)
  int64_t num_updates_ = 0;
};

// Puts the average into `model` for as long as it lives and the model's own weights back after:
// evaluate with the EMA weights in the middle of training without a second model. The model's
// weights are cloned once on entry (one model's worth of memory).
class EmaScope {
 public:
  EmaScope(const ExponentialMovingAverage& ema, nn::Module& model);
  ~EmaScope();
  EmaScope(const EmaScope&) = delete;
  EmaScope& operator=(const EmaScope&) = delete;

 private:
  nn::Module& model_;
  nn::NamedTensors saved_;  // the model's own weights, cloned
};

}  // namespace ember::optim
