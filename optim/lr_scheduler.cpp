// LR schedulers. Each get_lr() is PyTorch's, expression for expression (same operation order), so
// the learning rates agree to the last bit or two with torch.optim.lr_scheduler.
#include "optim/lr_scheduler.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numbers>
#include <set>

namespace ember::optim {

using detail::format_double;
using detail::parse_double;
using detail::parse_int;

// ---------------- LRScheduler ----------------

LRScheduler::LRScheduler(Optimizer& optimizer, const char* name) : optimizer_(optimizer), name_(name) {
  // PyTorch's group.setdefault("initial_lr", group["lr"]): the first scheduler made on a group fixes
  // its initial lr, and every scheduler's base lr is that, not the lr an earlier scheduler left.
  for (ParamGroup& g : optimizer_.param_groups()) {
    if (!g.initial_lr()) g.set_initial_lr(g.options().get_lr());
    base_lrs_.push_back(*g.initial_lr());
  }
}

std::vector<double> LRScheduler::group_lrs() const {
  std::vector<double> lrs;
  for (const ParamGroup& g : optimizer_.param_groups()) lrs.push_back(g.options().get_lr());
  return lrs;
}

void LRScheduler::initial_step() {
  step_count_ = 0;
  step();
}

void LRScheduler::set_lrs(const std::vector<double>& lrs) {
  auto& groups = optimizer_.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(lrs[g]);
  last_lr_ = lrs;
}

void LRScheduler::step() {
  const size_t ngroups = optimizer_.param_groups().size();
  EMBER_CHECK(ngroups == base_lrs_.size(), name_, ": the scheduler was made for ", base_lrs_.size(),
              " parameter groups but the optimizer now has ", ngroups);
  ++step_count_;
  ++last_epoch_;
  set_lrs(get_lr());
}

void LRScheduler::step_to(int64_t epoch) {
  const size_t ngroups = optimizer_.param_groups().size();
  EMBER_CHECK(ngroups == base_lrs_.size(), name_, ": the scheduler was made for ", base_lrs_.size(),
              " parameter groups but the optimizer now has ", ngroups);
  ++step_count_;
  last_epoch_ = epoch;
  std::optional<std::vector<double>> closed = closed_form_lr();
  set_lrs(closed ? *closed : get_lr());
}

StateDict LRScheduler::state_dict() const {
  StateDict sd;
  sd.metadata["scheduler"] = name_;
  sd.metadata["last_epoch"] = std::to_string(last_epoch_);
  sd.metadata["step_count"] = std::to_string(step_count_);
  for (size_t g = 0; g < base_lrs_.size(); ++g) {
    sd.metadata["base_lrs." + std::to_string(g)] = format_double(base_lrs_[g]);
    sd.metadata["last_lr." + std::to_string(g)] = format_double(last_lr_[g]);
  }
  save_extra(sd);
  return sd;
}

void LRScheduler::load_state_dict(const StateDict& sd) {
  const std::string what = std::string(name_) + ": load_state_dict";
  const char* w = what.c_str();
  auto type = sd.metadata.find("scheduler");
  EMBER_CHECK(type != sd.metadata.end(), what, ": the state dict has no 'scheduler' entry (is it a scheduler's?)");
  EMBER_CHECK(type->second == name_, what, ": the state dict is from a ", type->second, " scheduler, this one is ",
              name_);
  // Parse everything before changing anything.
  const int64_t last_epoch = parse_int(sd.metadata, "last_epoch", w);
  const int64_t step_count = parse_int(sd.metadata, "step_count", w);
  std::vector<double> base_lrs, last_lr;
  for (size_t g = 0; g < base_lrs_.size(); ++g) {
    base_lrs.push_back(parse_double(sd.metadata, "base_lrs." + std::to_string(g), w));
    last_lr.push_back(parse_double(sd.metadata, "last_lr." + std::to_string(g), w));
  }
  EMBER_CHECK(!sd.metadata.count("base_lrs." + std::to_string(base_lrs_.size())), what,
              ": the state dict has more parameter groups than the ", base_lrs_.size(), " of this scheduler");
  load_extra(sd);
  last_epoch_ = last_epoch;
  step_count_ = step_count;
  base_lrs_ = std::move(base_lrs);
  last_lr_ = std::move(last_lr);
}

// ---------------- StepLR ----------------

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer, "StepLR"), step_size_(step_size), gamma_(gamma) {
  EMBER_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  initial_step();
}

std::vector<double> StepLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return lrs;
  for (double& lr : lrs) lr *= gamma_;
  return lrs;
}

std::optional<std::vector<double>> StepLR::closed_form_lr() const {
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(base * std::pow(gamma_, static_cast<double>(last_epoch_ / step_size_)));
  return lrs;
}

// ---------------- MultiStepLR ----------------

namespace {

std::string join_ints(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';  // not ("," + to_string(..)): GCC 12 warns -Wrestrict on that (a false positive)
    s += std::to_string(v[i]);
  }
  return s;
}

}  // namespace

MultiStepLR::MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(optimizer, "MultiStepLR"), milestones_(std::move(milestones)), gamma_(gamma) {
  for (int64_t m : milestones_) EMBER_CHECK(m >= 0, "MultiStepLR: milestones must be non-negative epochs, got ", m);
  EMBER_CHECK(std::isfinite(gamma), "MultiStepLR: gamma must be finite, got ", gamma);
  std::sort(milestones_.begin(), milestones_.end());
  initial_step();
}

std::vector<double> MultiStepLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  const auto hits = std::count(milestones_.begin(), milestones_.end(), last_epoch_);
  if (hits == 0) return lrs;
  for (double& lr : lrs) lr = lr * std::pow(gamma_, static_cast<double>(hits));
  return lrs;
}

std::optional<std::vector<double>> MultiStepLR::closed_form_lr() const {
  // gamma to the number of milestones already passed (bisect_right).
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin();
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(base * std::pow(gamma_, static_cast<double>(passed)));
  return lrs;
}

void MultiStepLR::save_extra(StateDict& sd) const { sd.metadata["milestones"] = join_ints(milestones_); }

void MultiStepLR::load_extra(const StateDict& sd) {
  auto it = sd.metadata.find("milestones");
  EMBER_CHECK(it != sd.metadata.end(), "MultiStepLR: load_state_dict: the state dict has no 'milestones' entry");
  EMBER_CHECK(it->second == join_ints(milestones_), "MultiStepLR: load_state_dict: the state dict is for milestones [",
              it->second, "], this scheduler has [", join_ints(milestones_), "]");
}

// ---------------- CosineAnnealingLR ----------------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler(optimizer, "CosineAnnealingLR"), T_max_(T_max), eta_min_(eta_min) {
  EMBER_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be positive, got ", T_max);
  initial_step();
}

std::vector<double> CosineAnnealingLR::get_lr() {
  constexpr double pi = std::numbers::pi;
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0) return lrs;
  const double e = static_cast<double>(last_epoch_), T = static_cast<double>(T_max_);
  if ((last_epoch_ - 1 - T_max_) % (2 * T_max_) == 0) {
    // Just past the bottom of the cosine (epoch T_max + 1, 3 T_max + 1, ...): the recursive ratio
    // below would divide by 1 + cos(pi) = 0, so PyTorch adds the increment directly.
    for (size_t g = 0; g < lrs.size(); ++g) lrs[g] = lrs[g] + (base_lrs_[g] - eta_min_) * (1 - std::cos(pi / T)) / 2;
    return lrs;
  }
  // Recursive form: scale the current lr's distance above eta_min by the ratio of consecutive cosines.
  const double ratio = (1 + std::cos(pi * e / T)) / (1 + std::cos(pi * (e - 1) / T));
  for (double& lr : lrs) lr = ratio * (lr - eta_min_) + eta_min_;
  return lrs;
}

std::optional<std::vector<double>> CosineAnnealingLR::closed_form_lr() const {
  const double c = std::cos(std::numbers::pi * static_cast<double>(last_epoch_) / static_cast<double>(T_max_));
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(eta_min_ + (base - eta_min_) * (1 + c) / 2);
  return lrs;
}

// ---------------- LinearLR ----------------

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor, int64_t total_iters)
    : LRScheduler(optimizer, "LinearLR"),
      start_factor_(start_factor),
      end_factor_(end_factor),
      total_iters_(total_iters) {
  // start_factor 0 would make the recursive update divide by zero (and leave the lr stuck at 0).
  EMBER_CHECK(start_factor > 0 && start_factor <= 1, "LinearLR: start_factor must be in (0, 1], got ", start_factor);
  EMBER_CHECK(end_factor >= 0 && end_factor <= 1, "LinearLR: end_factor must be in [0, 1], got ", end_factor);
  EMBER_CHECK(total_iters > 0, "LinearLR: total_iters must be positive, got ", total_iters);
  initial_step();
}

std::vector<double> LinearLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0) {
    for (double& lr : lrs) lr *= start_factor_;
    return lrs;
  }
  if (last_epoch_ > total_iters_) return lrs;
  // Recursive form: the factor at epoch e divided by the factor at e - 1.
  const double d = end_factor_ - start_factor_;
  const double scale = 1. + d / (total_iters_ * start_factor_ + (last_epoch_ - 1) * d);
  for (double& lr : lrs) lr *= scale;
  return lrs;
}

std::optional<std::vector<double>> LinearLR::closed_form_lr() const {
  const double done = static_cast<double>(std::min(total_iters_, last_epoch_));
  std::vector<double> lrs;
  for (double base : base_lrs_)
    lrs.push_back(base * (start_factor_ + (end_factor_ - start_factor_) * done / static_cast<double>(total_iters_)));
  return lrs;
}

// ---------------- OneCycleLR ----------------

OneCycleLR::OneCycleLR(Optimizer& optimizer, const OneCycleLROptions& options)
    : LRScheduler(optimizer, "OneCycleLR"), options_(options) {
  const auto& o = options_;
  const size_t ngroups = optimizer.param_groups().size();
  EMBER_CHECK(o.total_steps() > 0, "OneCycleLR: total_steps must be positive, got ", o.total_steps());
  EMBER_CHECK(o.pct_start() >= 0 && o.pct_start() <= 1, "OneCycleLR: pct_start must be in [0, 1], got ", o.pct_start());
  EMBER_CHECK(o.max_lrs().size() == 1 || o.max_lrs().size() == ngroups, "OneCycleLR: got ", o.max_lrs().size(),
              " max_lr values for ", ngroups, " parameter groups");
  EMBER_CHECK(o.div_factor() > 0 && o.final_div_factor() > 0, "OneCycleLR: div_factor and final_div_factor must be ",
              "positive, got ", o.div_factor(), " and ", o.final_div_factor());

  const double total = static_cast<double>(o.total_steps()), pct = o.pct_start();
  enum { kInitial = 0, kMax = 1, kMin = 2 };
  if (o.three_phase()) {
    phases_ = {{pct * total - 1, kInitial, kMax, true, false},
               {2 * pct * total - 2, kMax, kInitial, false, true},
               {total - 1, kInitial, kMin, true, true}};
  } else {
    phases_ = {{pct * total - 1, kInitial, kMax, true, false}, {total - 1, kMax, kMin, false, true}};
  }

  // Momentum cycling needs a momentum to cycle: SGD's "momentum", or Adam's beta1.
  if (o.cycle_momentum()) {
    const OptimizerOptions& d = optimizer.defaults();
    if (d.hyper_parameter("beta1")) momentum_name_ = "beta1";
    else if (d.hyper_parameter("momentum")) momentum_name_ = "momentum";
    else EMBER_FAIL("OneCycleLR: ", optimizer.name(), " has no momentum or beta1 to cycle; pass cycle_momentum(false)");
  }

  base_lrs_.clear();
  for (size_t g = 0; g < ngroups; ++g) {
    GroupBounds b{};
    const double max_lr = o.max_lrs()[o.max_lrs().size() == 1 ? 0 : g];
    b.lr[kInitial] = max_lr / o.div_factor();
    b.lr[kMax] = max_lr;
    b.lr[kMin] = b.lr[kInitial] / o.final_div_factor();
    b.base_momentum = o.base_momentum();
    b.max_momentum = o.max_momentum();
    bounds_.push_back(b);
    base_lrs_.push_back(b.lr[kInitial]);
    optimizer.param_groups()[g].set_initial_lr(b.lr[kInitial]);  // PyTorch sets group["initial_lr"] too
    if (!momentum_name_.empty())
      optimizer.param_groups()[g].options().set_hyper_parameter(momentum_name_, b.max_momentum);
  }
  initial_step();
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (options_.anneal_strategy() == AnnealStrategy::Linear) return (end - start) * pct + start;
  const double cos_out = std::cos(std::numbers::pi * pct) + 1;
  return end + (start - end) / 2.0 * cos_out;
}

std::vector<double> OneCycleLR::get_lr() {
  const int64_t step_num = last_epoch_;
  EMBER_CHECK(step_num <= options_.total_steps(), "OneCycleLR: tried to step ", step_num + 1,
              " times; the specified number of total steps is ", options_.total_steps());
  const double s = static_cast<double>(step_num);
  // Find the phase this step is in (the last phase takes everything past the earlier ones).
  double start_step = 0;
  size_t i = 0;
  for (; i + 1 < phases_.size() && s > phases_[i].end_step; ++i) start_step = phases_[i].end_step;
  const Phase& ph = phases_[i];
  EMBER_CHECK(ph.end_step != start_step, "OneCycleLR: step ", step_num, " falls in phase ", i + 1,
              ", which is empty (pct_start ", options_.pct_start(), " x total_steps ", options_.total_steps(),
              " leaves it no steps)");
  const double pct = (s - start_step) / (ph.end_step - start_step);

  auto& groups = optimizer_.param_groups();
  std::vector<double> lrs;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GroupBounds& b = bounds_[g];
    lrs.push_back(anneal(b.lr[ph.start_lr], b.lr[ph.end_lr], pct));
    if (!momentum_name_.empty()) {
      const double m0 = ph.start_max_mom ? b.max_momentum : b.base_momentum;
      const double m1 = ph.end_max_mom ? b.max_momentum : b.base_momentum;
      groups[g].options().set_hyper_parameter(momentum_name_, anneal(m0, m1, pct));
    }
  }
  return lrs;
}

void OneCycleLR::save_extra(StateDict& sd) const {
  sd.metadata["total_steps"] = std::to_string(options_.total_steps());
  for (size_t g = 0; g < bounds_.size(); ++g) {
    const std::string n = std::to_string(g);
    sd.metadata["initial_lr." + n] = format_double(bounds_[g].lr[0]);
    sd.metadata["max_lr." + n] = format_double(bounds_[g].lr[1]);
    sd.metadata["min_lr." + n] = format_double(bounds_[g].lr[2]);
    sd.metadata["base_momentum." + n] = format_double(bounds_[g].base_momentum);
    sd.metadata["max_momentum." + n] = format_double(bounds_[g].max_momentum);
  }
}

void OneCycleLR::load_extra(const StateDict& sd) {
  const char* w = "OneCycleLR: load_state_dict";
  const int64_t total = parse_int(sd.metadata, "total_steps", w);
  EMBER_CHECK(total == options_.total_steps(), w, ": the state dict is for total_steps ", total,
              ", this scheduler has ", options_.total_steps());
  std::vector<GroupBounds> bounds(bounds_.size());
  for (size_t g = 0; g < bounds.size(); ++g) {
    const std::string n = std::to_string(g);
    bounds[g].lr[0] = parse_double(sd.metadata, "initial_lr." + n, w);
    bounds[g].lr[1] = parse_double(sd.metadata, "max_lr." + n, w);
    bounds[g].lr[2] = parse_double(sd.metadata, "min_lr." + n, w);
    bounds[g].base_momentum = parse_double(sd.metadata, "base_momentum." + n, w);
    bounds[g].max_momentum = parse_double(sd.metadata, "max_momentum." + n, w);
  }
  bounds_ = std::move(bounds);
}

// ---------------- SequentialLR ----------------

SequentialLR::SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones)
    : LRScheduler(optimizer, "SequentialLR"), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  EMBER_CHECK(!schedulers_.empty(), "SequentialLR: got no schedulers");
  EMBER_CHECK(milestones_.size() + 1 == schedulers_.size(), "SequentialLR: expects one milestone fewer than ",
              "schedulers, got ", schedulers_.size(), " schedulers and ", milestones_.size(), " milestones");
  std::set<const LRScheduler*> seen;
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    const LRScheduler* s = schedulers_[i].get();
    EMBER_CHECK(s != nullptr, "SequentialLR: scheduler ", i, " is null");
    EMBER_CHECK(&s->optimizer_ == &optimizer_, "SequentialLR: scheduler ", i, " (", s->name(),
                ") belongs to a different optimizer than the one passed in");
    // A nested SequentialLR cannot be restarted at a milestone (PyTorch's cannot either).
    EMBER_CHECK(dynamic_cast<const SequentialLR*>(s) == nullptr, "SequentialLR: scheduler ", i,
                " is itself a SequentialLR; list its schedulers directly instead");
    EMBER_CHECK(seen.insert(s).second, "SequentialLR: scheduler ", i, " (", s->name(), ") is listed twice");
  }
  // Milestones are searched with bisect, so they must increase; a milestone at epoch 0 would never
  // be "reached" (step() starts at epoch 1), so it is an error rather than a silent skip.
  for (size_t i = 0; i < milestones_.size(); ++i)
    EMBER_CHECK(milestones_[i] > (i ? milestones_[i - 1] : 0), "SequentialLR: milestones must be positive and ",
                "strictly increasing, got [", join_ints(milestones_), "]");

  // Undo what the schedulers' constructors did: back to each group's initial lr, every scheduler one
  // epoch earlier, and only the first one's initial step taken again.
  auto& groups = optimizer_.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(base_lrs_[g]);
  for (auto& s : schedulers_) --s->last_epoch_;
  schedulers_[0]->initial_step();
  last_epoch_ = 0;
  step_count_ = 1;
  last_lr_ = schedulers_[0]->get_last_lr();
}

void SequentialLR::step() {
  ++step_count_;
  ++last_epoch_;
  // bisect_right: the scheduler whose stretch holds this epoch.
  const size_t idx = std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin();
  LRScheduler& s = *schedulers_[idx];
  if (idx > 0 && milestones_[idx - 1] == last_epoch_) s.step_to(0);  // its first epoch: restart it
  else s.step();
  last_lr_ = s.get_last_lr();
}

void SequentialLR::save_extra(StateDict& sd) const {
  sd.metadata["milestones"] = join_ints(milestones_);
  for (size_t i = 0; i < schedulers_.size(); ++i) sd.merge("schedulers." + std::to_string(i), schedulers_[i]->state_dict());
}

void SequentialLR::load_extra(const StateDict& sd) {
  const char* w = "SequentialLR: load_state_dict";
  auto it = sd.metadata.find("milestones");
  EMBER_CHECK(it != sd.metadata.end(), w, ": the state dict has no 'milestones' entry");
  EMBER_CHECK(it->second == join_ints(milestones_), w, ": the state dict is for milestones [", it->second,
              "], this scheduler has [", join_ints(milestones_), "]");
  EMBER_CHECK(!sd.metadata.count("schedulers." + std::to_string(schedulers_.size()) + ".scheduler"), w,
              ": the state dict has more schedulers than the ", schedulers_.size(), " of this one");
  // All or nothing: if scheduler i refuses its state, put back the ones before it.
  std::vector<StateDict> before;
  for (const auto& s : schedulers_) before.push_back(s->state_dict());
  size_t i = 0;
  try {
    for (; i < schedulers_.size(); ++i) schedulers_[i]->load_state_dict(sd.sub("schedulers." + std::to_string(i)));
  } catch (...) {
    for (size_t j = 0; j < i; ++j) schedulers_[j]->load_state_dict(before[j]);
    throw;
  }
}

// ---------------- ReduceLROnPlateau ----------------

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, const ReduceLROnPlateauOptions& options)
    : optimizer_(optimizer), options_(options) {
  const auto& o = options_;
  const size_t ngroups = optimizer.param_groups().size();
  EMBER_CHECK(o.factor() >= 0 && o.factor() < 1, "ReduceLROnPlateau: factor must be in [0, 1), got ", o.factor());
  EMBER_CHECK(o.patience() >= 0, "ReduceLROnPlateau: patience must be non-negative, got ", o.patience());
  EMBER_CHECK(o.cooldown() >= 0, "ReduceLROnPlateau: cooldown must be non-negative, got ", o.cooldown());
  EMBER_CHECK(o.threshold() >= 0 && std::isfinite(o.threshold()),
              "ReduceLROnPlateau: threshold must be finite and non-negative, got ", o.threshold());
  EMBER_CHECK(o.eps() >= 0, "ReduceLROnPlateau: eps must be non-negative, got ", o.eps());
  EMBER_CHECK(o.min_lrs().size() == 1 || o.min_lrs().size() == ngroups, "ReduceLROnPlateau: expected 1 or ", ngroups,
              " min_lrs (one per parameter group), got ", o.min_lrs().size());
  for (double m : o.min_lrs())
    EMBER_CHECK(m >= 0 && std::isfinite(m), "ReduceLROnPlateau: min_lr must be finite and non-negative, got ", m);
  min_lrs_ = o.min_lrs().size() == 1 ? std::vector<double>(ngroups, o.min_lrs()[0]) : o.min_lrs();
  best_ = o.mode() == PlateauMode::Min ? std::numeric_limits<double>::infinity()
                                       : -std::numeric_limits<double>::infinity();
  for (const ParamGroup& g : optimizer_.param_groups()) last_lr_.push_back(g.options().get_lr());
}

bool ReduceLROnPlateau::is_better(double a, double best) const {
  const double t = options_.threshold();
  if (options_.mode() == PlateauMode::Min)
    return options_.threshold_mode() == ThresholdMode::Rel ? a < best * (1. - t) : a < best - t;
  return options_.threshold_mode() == ThresholdMode::Rel ? a > best * (t + 1.) : a > best + t;
}

void ReduceLROnPlateau::step(double metric) {
  auto& groups = optimizer_.param_groups();
  EMBER_CHECK(groups.size() == min_lrs_.size(), "ReduceLROnPlateau: the scheduler was made for ", min_lrs_.size(),
              " parameter groups but the optimizer now has ", groups.size());
  ++last_epoch_;
  if (is_better(metric, best_)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    ++num_bad_epochs_;
  }
  if (in_cooldown()) {
    --cooldown_counter_;
    num_bad_epochs_ = 0;  // bad epochs during the cooldown do not count
  }
  if (num_bad_epochs_ > options_.patience()) {
    for (size_t g = 0; g < groups.size(); ++g) {
      const double old_lr = groups[g].options().get_lr();
      const double new_lr = std::max(old_lr * options_.factor(), min_lrs_[g]);
      if (old_lr - new_lr > options_.eps()) groups[g].options().set_lr(new_lr);
    }
    cooldown_counter_ = options_.cooldown();
    num_bad_epochs_ = 0;
  }
  last_lr_.clear();
  for (const ParamGroup& g : groups) last_lr_.push_back(g.options().get_lr());
}

namespace {
const char* mode_name(PlateauMode m) { return m == PlateauMode::Min ? "min" : "max"; }
}  // namespace

StateDict ReduceLROnPlateau::state_dict() const {
  StateDict sd;
  sd.metadata["scheduler"] = "ReduceLROnPlateau";
  sd.metadata["mode"] = mode_name(options_.mode());
  sd.metadata["last_epoch"] = std::to_string(last_epoch_);
  sd.metadata["best"] = format_double(best_);  // "inf" / "-inf" until the first step
  sd.metadata["num_bad_epochs"] = std::to_string(num_bad_epochs_);
  sd.metadata["cooldown_counter"] = std::to_string(cooldown_counter_);
  for (size_t g = 0; g < last_lr_.size(); ++g) sd.metadata["last_lr." + std::to_string(g)] = format_double(last_lr_[g]);
  return sd;
}

void ReduceLROnPlateau::load_state_dict(const StateDict& sd) {
  const char* w = "ReduceLROnPlateau: load_state_dict";
  auto type = sd.metadata.find("scheduler");
  EMBER_CHECK(type != sd.metadata.end(), w, ": the state dict has no 'scheduler' entry (is it a scheduler's?)");
  EMBER_CHECK(type->second == "ReduceLROnPlateau", w, ": the state dict is from a ", type->second,
              " scheduler, this one is ReduceLROnPlateau");
  auto mode = sd.metadata.find("mode");
  EMBER_CHECK(mode != sd.metadata.end(), w, ": the state dict has no 'mode' entry");
  EMBER_CHECK(mode->second == mode_name(options_.mode()), w, ": the state dict is for mode '", mode->second,
              "', this scheduler's is '", mode_name(options_.mode()), "'");
  // "best" may be infinite (nothing seen yet), which parse_double refuses; never NaN.
  auto b = sd.metadata.find("best");
  EMBER_CHECK(b != sd.metadata.end(), w, ": the state dict has no 'best' entry");
  double best = 0;
  auto [end, ec] = std::from_chars(b->second.data(), b->second.data() + b->second.size(), best);
  EMBER_CHECK(ec == std::errc() && end == b->second.data() + b->second.size() && !std::isnan(best), w,
              ": entry 'best' = '", b->second, "' is not a number");
  const int64_t last_epoch = parse_int(sd.metadata, "last_epoch", w);
  const int64_t bad = parse_int(sd.metadata, "num_bad_epochs", w);
  const int64_t cooldown = parse_int(sd.metadata, "cooldown_counter", w);
  std::vector<double> last_lr;
  for (size_t g = 0; g < min_lrs_.size(); ++g) last_lr.push_back(parse_double(sd.metadata, "last_lr." + std::to_string(g), w));
  EMBER_CHECK(!sd.metadata.count("last_lr." + std::to_string(min_lrs_.size())), w,
              ": the state dict has more parameter groups than the ", min_lrs_.size(), " of this scheduler");
  last_epoch_ = last_epoch;
  best_ = best;
  num_bad_epochs_ = bad;
  cooldown_counter_ = cooldown;
  last_lr_ = std::move(last_lr);
}

}  // namespace ember::optim
