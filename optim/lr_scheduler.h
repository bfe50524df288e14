// Learning-rate schedulers: StepLR, MultiStepLR, CosineAnnealingLR, LinearLR (linear warm-up),
// OneCycleLR, SequentialLR (one schedule after another, e.g. warm-up then cosine) and
// ReduceLROnPlateau, with PyTorch's exact semantics (torch.optim.lr_scheduler, 1.13).
//
// Construction already takes the first step (epoch 0 — it may change the lr, e.g. LinearLR starts
// at start_factor * lr). Then call step() once per epoch (or per batch for OneCycleLR), after
// optimizer.step():
//
//   optim::SGD opt(params, 0.1);
//   optim::CosineAnnealingLR sched(opt, /*T_max=*/100);
//   for (...) { ...; opt.step(); sched.step(); }
//
// A scheduler keeps a reference to its optimizer, which must outlive it. Every scheduler's base lr
// is the group's initial_lr (see ParamGroup): the lr before the first scheduler touched it.
//
// Like PyTorch's, StepLR, CosineAnnealingLR and LinearLR are "chainable": each step scales the lr
// currently in the optimizer, so the optimizer's lr is part of the schedule's state. To resume, build
// the optimizer and scheduler as before, then load both state dicts (in either order).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace ember::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // Advances one epoch and writes the new learning rates into the optimizer's groups.
  virtual void step();
  // The learning rate of each parameter group, as set by the last step.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  const char* name() const { return name_; }
  Optimizer& optimizer() const { return optimizer_; }

  // Metadata only: "scheduler" (the class name), "last_epoch", "step_count", "base_lrs.<g>",
  // "last_lr.<g>", plus whatever a subclass needs (OneCycleLR's per-group lr and momentum bounds).
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

 protected:
  LRScheduler(Optimizer& optimizer, const char* name);
  // PyTorch's _initial_step(): subclass constructors call this last (it calls the virtual get_lr).
  void initial_step();
  // The learning rates for last_epoch_ (already advanced), one per group.
  virtual std::vector<double> get_lr() = 0;
  // The same from base_lrs_ and last_epoch_ alone, for schedulers that have a closed form
  // (PyTorch's _get_closed_form_lr); nullopt for those that do not.
  virtual std::optional<std::vector<double>> closed_form_lr() const { return std::nullopt; }
  // PyTorch's step(epoch): jumps to `epoch`, with the closed form when there is one (else get_lr).
  // SequentialLR restarts a scheduler this way, with step_to(0), at its milestone.
  void step_to(int64_t epoch);
  // Writes one lr per group into the optimizer and remembers them as get_last_lr().
  void set_lrs(const std::vector<double>& lrs);
  // Extra state of a subclass (base implementations: none).
  virtual void save_extra(StateDict&) const {}
  virtual void load_extra(const StateDict&) {}
  // The current lr of each group.
  std::vector<double> group_lrs() const;

  Optimizer& optimizer_;
  const char* name_;
  std::vector<double> base_lrs_;  // each group's lr when the scheduler was made ("initial_lr")
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;  // how many times step() ran, the constructor's step included
  std::vector<double> last_lr_;

 private:
  friend class SequentialLR;  // rewinds and restarts the schedulers it runs
};

// Multiplies the lr by gamma every step_size epochs.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// Multiplies the lr by gamma at each milestone epoch (a milestone listed twice multiplies twice, as
// PyTorch's Counter does). The usual CIFAR schedule: MultiStepLR(opt, {100, 150}, 0.1).
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;
  void save_extra(StateDict& sd) const override;
  void load_extra(const StateDict& sd) override;

 private:
  std::vector<int64_t> milestones_;  // sorted
  double gamma_;
};

// Cosine from each group's initial lr down to eta_min over T_max epochs (then back up: it is a
// cosine, not a clamp — PyTorch's recursive form, reproduced exactly).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;

 private:
  int64_t T_max_;
  double eta_min_;
};

// Scales the lr by a factor that moves linearly from start_factor (epoch 0) to end_factor (epoch
// total_iters), then stays. With end_factor = 1 this is the usual linear warm-up. torch's LinearLR.
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;

 private:
  double start_factor_, end_factor_;
  int64_t total_iters_;
};
using LinearWarmup = LinearLR;

enum class AnnealStrategy { Cos, Linear };

struct OneCycleLROptions {
  // max_lr for every group, or one per group.
  OneCycleLROptions(double max_lr, int64_t total_steps) : max_lrs_({max_lr}), total_steps_(total_steps) {}
  OneCycleLROptions(std::vector<double> max_lrs, int64_t total_steps)
      : max_lrs_(std::move(max_lrs)), total_steps_(total_steps) {}

  EMBER_ARG(std::vector<double>, max_lrs);
  EMBER_ARG(int64_t, total_steps);
  EMBER_ARG(double, pct_start) = 0.3;  // fraction of the cycle spent increasing the lr
  EMBER_ARG(AnnealStrategy, anneal_strategy) = AnnealStrategy::Cos;
  // Cycle the momentum (SGD's momentum, Adam's beta1) inversely to the lr, between these bounds.
  EMBER_ARG(bool, cycle_momentum) = true;
  EMBER_ARG(double, base_momentum) = 0.85;
  EMBER_ARG(double, max_momentum) = 0.95;
  EMBER_ARG(double, div_factor) = 25.0;         // initial_lr = max_lr / div_factor
  EMBER_ARG(double, final_div_factor) = 1e4;    // min_lr = initial_lr / final_div_factor
  EMBER_ARG(bool, three_phase) = false;         // the paper's three phases instead of fastai's two
};

// The 1cycle policy: warm up from max_lr/div_factor to max_lr over pct_start of total_steps, then
// anneal to initial_lr/final_div_factor. Call step() once per batch; stepping more than total_steps
// times is an error. Not chainable: it sets the lr outright. With cycle_momentum (the default, as
// in PyTorch) it also sets the optimizer's momentum (SGD) or beta1 (Adam, AdamW) — to max_momentum
// right away at construction, so an SGD built with momentum 0 gets momentum.
class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, const OneCycleLROptions& options);

 protected:
  std::vector<double> get_lr() override;
  void save_extra(StateDict& sd) const override;
  void load_extra(const StateDict& sd) override;

 private:
  struct Phase {
    double end_step;
    int start_lr, end_lr;              // indexes into GroupBounds::lr
    bool start_max_mom, end_max_mom;   // true: max_momentum, false: base_momentum
  };
  struct GroupBounds {
    double lr[3];  // initial_lr, max_lr, min_lr
    double base_momentum, max_momentum;
  };
  double anneal(double start, double end, double pct) const;

  OneCycleLROptions options_;
  std::vector<Phase> phases_;
  std::vector<GroupBounds> bounds_;
  std::string momentum_name_;  // "momentum", "beta1", or empty when not cycling
};

// Runs several schedulers one after another: schedulers[0] until milestones[0], then schedulers[1]
// (restarted at its epoch 0) until milestones[1], and so on. The usual warm-up then cosine:
//
//   auto warmup = std::make_shared<optim::LinearLR>(opt, 0.1, 1.0, 5);
//   auto cosine = std::make_shared<optim::CosineAnnealingLR>(opt, epochs - 5);
//   optim::SequentialLR sched(opt, {warmup, cosine}, {5});
//
// PyTorch's semantics, including its quirks: construction puts the lr back to each group's
// initial_lr, rewinds every scheduler by one epoch and re-runs only the first one's initial step; at
// a milestone the next scheduler jumps to its epoch 0 by its closed form (so CosineAnnealingLR starts
// from its base lr there, wherever the warm-up ended). Step only this scheduler, never the ones it
// holds. Its state dict holds theirs too ("schedulers.<i>.*").
class SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  void step() override;
  const std::vector<std::shared_ptr<LRScheduler>>& schedulers() const { return schedulers_; }

 protected:
  std::vector<double> get_lr() override { return group_lrs(); }  // unused: step() delegates
  void save_extra(StateDict& sd) const override;
  void load_extra(const StateDict& sd) override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

enum class PlateauMode { Min, Max };     // the metric should go down (a loss) or up (an accuracy)
enum class ThresholdMode { Rel, Abs };   // "better" means by a relative or an absolute margin

struct ReduceLROnPlateauOptions {
  EMBER_ARG(PlateauMode, mode) = PlateauMode::Min;
  EMBER_ARG(double, factor) = 0.1;        // new lr = lr * factor
  EMBER_ARG(int64_t, patience) = 10;      // bad epochs tolerated before reducing
  EMBER_ARG(double, threshold) = 1e-4;    // how much better counts as better
  EMBER_ARG(ThresholdMode, threshold_mode) = ThresholdMode::Rel;
  EMBER_ARG(int64_t, cooldown) = 0;       // epochs to wait after a reduction before counting again
  EMBER_ARG(std::vector<double>, min_lrs) = {0.0};  // one lower bound for every group, or one per group
  EMBER_ARG(double, eps) = 1e-8;          // a reduction smaller than this is skipped

 public:
  ReduceLROnPlateauOptions& min_lr(double v) {
    min_lrs_ = {v};
    return *this;
  }
};

// Reduces the lr by `factor` when a metric has stopped improving for `patience` epochs: call
// step(validation_loss) once per epoch. torch.optim.lr_scheduler.ReduceLROnPlateau (1.13), decision
// for decision. Not an LRScheduler: its step needs the metric, and it cannot run inside SequentialLR
// (as in PyTorch). It only ever lowers the lr, so it composes with nothing else that sets it.
class ReduceLROnPlateau {
 public:
  explicit ReduceLROnPlateau(Optimizer& optimizer, const ReduceLROnPlateauOptions& options = {});
  ReduceLROnPlateau(const ReduceLROnPlateau&) = delete;
  ReduceLROnPlateau& operator=(const ReduceLROnPlateau&) = delete;

  // One epoch's metric (a NaN counts as not better).
  void step(double metric);
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  double best() const { return best_; }                 // +inf (Min) or -inf (Max) before the first step
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }
  const ReduceLROnPlateauOptions& options() const { return options_; }

  // Metadata "scheduler" = "ReduceLROnPlateau", "mode", "last_epoch", "best" ("inf" before the first
  // step), "num_bad_epochs", "cooldown_counter", "last_lr.<g>". The lr itself lives in the optimizer.
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

 private:
  bool is_better(double a, double best) const;

  Optimizer& optimizer_;
  ReduceLROnPlateauOptions options_;
  std::vector<double> min_lrs_;  // one per group
  int64_t last_epoch_ = 0;
  double best_;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
  std::vector<double> last_lr_;
};

}  // namespace ember::optim
