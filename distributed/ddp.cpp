// DistributedDataParallel: the wrapper (this file's second half) and its Reducer (first half),
// which owns the buckets and runs the per-step protocol described in ddp.h.
#include "distributed/ddp.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "distributed/handshake.h"

namespace ember::nn {

using distributed::Communicator;
using distributed::ReduceOp;
using distributed::WorkHandle;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// What every rank's model must agree on before DDP communicates: its parameters (with
// requires_grad, which decides the buckets), then its buffers, in the order DDP sends them.
distributed::ModelSignature signature_of(const Module& model) {
  distributed::ModelSignature out;
  for (const auto& [name, t] : model.named_parameters())
    out.push_back({distributed::SignatureEntry::Kind::Parameter, name, t.shape(), t.dtype(), t.requires_grad()});
  for (const auto& [name, t] : model.named_buffers())
    out.push_back({distributed::SignatureEntry::Kind::Buffer, name, t.shape(), t.dtype(), false});
  return out;
}

// The options that shape the collectives (bucket layout, per-forward broadcasts, the unused-
// parameter protocol) must agree too; gradient_as_bucket_view is local and may differ.
void check_same_options(Communicator& comm, const DDPOptions& o) {
  // In bytes, so the message shows a number a user recognises; out-of-range caps are rejected
  // later by the bucket layout, here they only need to compare equal.
  const bool representable = o.bucket_cap_mb >= 0 && o.bucket_cap_mb < 1e12;
  const int64_t cap_bytes = representable ? std::llround(o.bucket_cap_mb * 1024 * 1024) : -1;
  distributed::check_same_values_on_all_ranks(
      comm, {cap_bytes, o.broadcast_buffers, o.find_unused_parameters},
      {"DDPOptions::bucket_cap_mb (in bytes)", "DDPOptions::broadcast_buffers", "DDPOptions::find_unused_parameters"},
      "DDP start-up", " (these options decide which collectives run, so every rank must pass the same)");
}

// t as one flat dimension (a view for the contiguous tensors parameters and gradients usually are).
Tensor flat(const Tensor& t) { return t.reshape({t.numel()}); }

}  // namespace

void broadcast_coalesced(Communicator& comm, const std::vector<Tensor>& tensors, int root) {
  if (comm.world_size() == 1 || tensors.empty()) return;
  NoGradGuard no_grad;        // parameters are leaves that require grad: copy_ into them is an update
  std::vector<DType> dtypes;  // in order of first appearance, the same on every rank
  for (const Tensor& t : tensors) {
    EMBER_CHECK(t.device() == comm.device(), "broadcast_coalesced: a tensor of shape ", t.shape(), " is on ",
                t.device(), " but the ", comm.name(), " communicator works on ", comm.device());
    if (std::find(dtypes.begin(), dtypes.end(), t.dtype()) == dtypes.end()) dtypes.push_back(t.dtype());
  }
  for (DType dtype : dtypes) {
    std::vector<Tensor> group;
    int64_t total = 0;
    for (const Tensor& t : tensors)
      if (t.dtype() == dtype && t.numel() > 0) {
        group.push_back(t);
        total += t.numel();
      }
    if (total == 0) continue;
    Tensor packed = empty({total}, TensorOptions(dtype).device(comm.device()));
    int64_t offset = 0;
    for (const Tensor& t : group) {
      packed.narrow(0, offset, t.numel()).copy_(flat(t));
      offset += t.numel();
    }
    comm.broadcast(packed, root);
    if (comm.rank() == root) continue;
    offset = 0;
    for (const Tensor& t : group) {
      Tensor(t).copy_(packed.narrow(0, offset, t.numel()).view(t.shape()));
      offset += t.numel();
    }
  }
}

// ---------------- the reducer ----------------

class DistributedDataParallel::Reducer {
 public:
  Reducer(const NamedTensors& named_params, std::shared_ptr<Communicator> comm, const DDPOptions& options)
      : comm_(std::move(comm)), options_(options) {
    for (const auto& [name, t] : named_params) params_.push_back(Param{name, t});
    for (size_t i = 0; i < params_.size(); ++i) index_of_[params_[i].tensor.impl()] = static_cast<int64_t>(i);
    assign_buckets();
  }

  // ---- layout ----

  // Reverse registration order (backward's order); a bucket closes when it reaches the cap or the
  // next parameter has another dtype (a flat buffer holds one dtype).
  void assign_buckets() {
    EMBER_CHECK(options_.bucket_cap_mb >= 0, "DistributedDataParallel: bucket_cap_mb must be >= 0, got ",
                options_.bucket_cap_mb);
    const double cap_bytes = options_.bucket_cap_mb * 1024.0 * 1024.0;
    double bytes = 0;
    for (int64_t i = static_cast<int64_t>(params_.size()) - 1; i >= 0; --i) {
      Param& p = params_[i];
      if (!p.tensor.requires_grad()) continue;  // never gets a gradient: not reduced
      if (buckets_.empty() || bytes >= cap_bytes || buckets_.back().dtype != p.tensor.dtype()) {
        buckets_.push_back(Bucket{});
        buckets_.back().dtype = p.tensor.dtype();
        bytes = 0;
      }
      Bucket& b = buckets_.back();
      p.bucket = static_cast<int64_t>(buckets_.size()) - 1;
      p.offset = b.numel;
      b.params.push_back(i);
      b.numel += p.tensor.numel();
      bytes += static_cast<double>(p.tensor.nbytes());
    }
    for (Bucket& b : buckets_) {
      b.flat = empty({b.numel}, TensorOptions(b.dtype).device(comm_->device()));
      b.pending = static_cast<int64_t>(b.params.size());
    }
    stats_.last_step_reductions.assign(buckets_.size(), 0);
  }

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  std::vector<std::vector<int64_t>> bucket_parameters() const {
    std::vector<std::vector<int64_t>> out;
    for (const Bucket& b : buckets_) out.push_back(b.params);
    return out;
  }
  bool bucketed(int64_t i) const { return params_[i].bucket >= 0; }
  const DDPStats& stats() const { return stats_; }

  // ---- per step ----

  // Called by forward() before the model runs.
  void prepare_forward() {
    if (in_progress_) {
      if (options_.find_unused_parameters) {
        finish();
      } else {
        EMBER_FAIL("DistributedDataParallel: the previous backward did not finish its gradient reduction: ",
                   missing_names(), " got no gradient. Every parameter must take part in every synced backward; ",
                   "construct with DDPOptions().find_unused(true) if some parameters are legitimately unused");
      }
    }
    stats_.last_hook_order.clear();
    unreachable_.clear();
  }

  // Called by forward() with the model's output (find_unused_parameters only): parameters the
  // output's graph cannot reach will get no gradient from this step's backward.
  void record_unreachable(const Tensor& output) {
    std::vector<char> reached(params_.size(), 0);
    for (TensorImpl* leaf : autograd::collect_leaves({output})) {
      auto it = index_of_.find(leaf);
      if (it != index_of_.end()) reached[it->second] = 1;
    }
    unreachable_.clear();
    for (size_t i = 0; i < params_.size(); ++i)
      if (!reached[i] && bucketed(static_cast<int64_t>(i))) unreachable_.push_back(static_cast<int64_t>(i));
  }

  // The gradient hook of parameter i: `grad` is its final .grad for this backward.
  void on_gradient(int64_t i, const Tensor& grad) {
    stats_.last_hook_order.push_back(i);
    if (no_sync_depth_ > 0) return;  // accumulate locally; the next synced backward reduces the total
    if (!in_progress_) {
      in_progress_ = true;
      // Parameters the forward could not reach will not fire: they are ready now, with what they hold.
      for (int64_t u : unreachable_)
        if (u != i) mark_ready(u, params_[u].tensor.grad());
      unreachable_.clear();
    }
    EMBER_CHECK(!params_[i].ready, "DistributedDataParallel: parameter '", params_[i].name,
                "' received a gradient twice in one synced backward (a second backward without a forward in ",
                "between, or a parameter the forward's graph did not reach); call forward again before backward");
    mark_ready(i, grad);
  }

  void finish() {
    if (!in_progress_) return;
    EMBER_CHECK(options_.find_unused_parameters, "DistributedDataParallel::finish: ", missing_names(),
                " got no gradient in this backward; construct with DDPOptions().find_unused(true) to reduce ",
                "missing gradients as zeros");
    for (size_t i = 0; i < params_.size(); ++i)
      if (bucketed(static_cast<int64_t>(i)) && !params_[i].ready)
        mark_ready(static_cast<int64_t>(i), params_[i].tensor.grad());
  }

  int no_sync_depth_ = 0;

 private:
  struct Param {
    std::string name;
    Tensor tensor;
    int64_t bucket = -1;  // -1: does not require grad, not reduced
    int64_t offset = 0;   // element offset in the bucket's flat buffer
    bool ready = false;   // its gradient is in the bucket this step
  };
  struct Bucket {
    DType dtype = kFloat32;
    std::vector<int64_t> params;  // indices into params_, in bucket order
    int64_t numel = 0;
    Tensor flat;          // persistent: [numel], reused every step
    int64_t pending = 0;  // gradients still missing this step
    WorkHandle work;
    int reductions = 0;  // all-reduces started this step
  };

  Tensor slice(const Param& p) const { return buckets_[p.bucket].flat.narrow(0, p.offset, p.tensor.numel()); }

  // Puts parameter i's gradient (zeros if undefined) into its bucket; starts every bucket that is
  // now complete and whose predecessors have started.
  void mark_ready(int64_t i, const Tensor& grad) {
    NoGradGuard no_grad;
    Param& p = params_[i];
    Tensor dst = slice(p);
    if (grad.defined()) {
      EMBER_CHECK(grad.numel() == p.tensor.numel(), "DistributedDataParallel: gradient of '", p.name, "' has shape ",
                  grad.shape(), " but the parameter has shape ", p.tensor.shape());
      dst.copy_(flat(grad));
    } else {
      dst.zero_();
    }
    p.ready = true;
    if (--buckets_[p.bucket].pending == 0) launch_ready_buckets();
  }

  void launch_ready_buckets() {
    while (next_launch_ < num_buckets() && buckets_[next_launch_].pending == 0) {
      Bucket& b = buckets_[next_launch_++];
      b.work = comm_->all_reduce_async(b.flat, ReduceOp::Average);
      ++b.reductions;
      ++stats_.all_reduces;
    }
    if (next_launch_ == num_buckets()) complete_step();
  }

  // Waits for every bucket, writes the averages into the .grad tensors and resets for the next step.
  void complete_step() {
    NoGradGuard no_grad;
    const auto t0 = std::chrono::steady_clock::now();
    for (Bucket& b : buckets_) {
      b.work->wait();
      b.work.reset();
    }
    const double waited = seconds_since(t0);
    int64_t bytes = 0;
    for (Bucket& b : buckets_) {
      for (int64_t i : b.params) {
        Param& p = params_[i];
        Tensor avg = slice(p).view(p.tensor.shape());
        Tensor& g = p.tensor.mutable_grad();
        if (options_.gradient_as_bucket_view) {
          g = avg;
        } else if (g.defined() && g.is_contiguous() && g.shape() == avg.shape() && g.dtype() == avg.dtype() &&
                   g.device() == avg.device()) {
          g.copy_(avg);
        } else {
          g = avg.clone();
        }
        p.ready = false;
      }
      bytes += static_cast<int64_t>(b.flat.nbytes());
      b.pending = static_cast<int64_t>(b.params.size());
    }
    for (size_t k = 0; k < buckets_.size(); ++k) {
      stats_.last_step_reductions[k] = buckets_[k].reductions;
      buckets_[k].reductions = 0;
    }
    ++stats_.synced_steps;
    stats_.last_step_bytes = bytes;
    stats_.last_comm_wait_seconds = waited;
    stats_.total_comm_wait_seconds += waited;
    next_launch_ = 0;
    in_progress_ = false;
  }

  std::string missing_names() const {
    std::string out;
    int shown = 0, missing = 0;
    for (const Param& p : params_) {
      if (p.bucket < 0 || p.ready) continue;
      ++missing;
      if (shown < 8) out += (shown++ ? ", '" : "parameter(s) '") + p.name + "'";
    }
    if (missing > shown) out += " and " + std::to_string(missing - shown) + " more";
    return out;
  }

  std::shared_ptr<Communicator> comm_;
  DDPOptions options_;
  std::vector<Param> params_;  // every parameter, in registration order (parameters()' order)
  std::unordered_map<const TensorImpl*, int64_t> index_of_;
  std::vector<Bucket> buckets_;
  bool in_progress_ = false;          // a synced backward has delivered gradients, not all reduced yet
  int64_t next_launch_ = 0;           // buckets start strictly in index order
  std::vector<int64_t> unreachable_;  // find_unused_parameters: from the last forward
  DDPStats stats_;

 public:
  void count_broadcast() { ++stats_.broadcasts; }
};

// ---------------- the wrapper ----------------

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<Module> model, std::shared_ptr<Communicator> comm,
                                                 DDPOptions options)
    : Module("DistributedDataParallel"), model_(std::move(model)), comm_(std::move(comm)), options_(options) {
  EMBER_CHECK(model_ != nullptr, "DistributedDataParallel: model is null");
  EMBER_CHECK(comm_ != nullptr, "DistributedDataParallel: communicator is null");
  const NamedTensors params = model_->named_parameters();
  for (const auto& [name, t] : model_->state_dict())
    EMBER_CHECK(t.device() == comm_->device(), "DistributedDataParallel: '", name, "' is on ", t.device(), " but the ",
                comm_->name(), " communicator works on ", comm_->device(),
                "; move the model there first (model->to(device))");

  // Before the first collective whose size each rank derives from its own model: a rank with
  // another model would make the broadcast below read or write past its buffers.
  distributed::check_same_signature_on_all_ranks(*comm_, signature_of(*model_), "DDP start-up");
  check_same_options(*comm_, options_);

  // Every replica starts from rank 0's state.
  broadcast_coalesced(*comm_, model_->state_dict().values(), 0);

  // The wrapper shows the model's tree under the model's own names (see ddp.h).
  for (const auto& [name, t] : model_->named_parameters(false)) register_parameter(name, t, t.requires_grad());
  for (const auto& [name, t] : model_->named_buffers(false)) register_buffer(name, t);
  for (const auto& [name, child] : model_->named_children()) add_child(name, child);
  Module::train(model_->is_training());

  reducer_ = std::make_shared<Reducer>(params, comm_, options_);
  if (comm_->world_size() > 1) reducer_->count_broadcast();
  std::weak_ptr<Reducer> weak = reducer_;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!reducer_->bucketed(static_cast<int64_t>(i))) continue;
    params[i].second.register_hook([weak, i](const Tensor& grad) {
      if (auto r = weak.lock()) r->on_gradient(static_cast<int64_t>(i), grad);
    });
  }
}

DistributedDataParallel::~DistributedDataParallel() = default;

Tensor DistributedDataParallel::forward(const Tensor& input) {
  reducer_->prepare_forward();
  if (options_.broadcast_buffers && comm_->world_size() > 1) {
    std::vector<Tensor> buffers = model_->buffers();
    if (!buffers.empty()) {
      broadcast_coalesced(*comm_, buffers, 0);
      reducer_->count_broadcast();
    }
  }
  Tensor out = model_->forward(input);
  if (options_.find_unused_parameters && GradMode::is_enabled()) reducer_->record_unreachable(out);
  return out;
}

void DistributedDataParallel::train(bool on) {
  Module::train(on);
  model_->train(on);
}

void DistributedDataParallel::finish() { reducer_->finish(); }

void DistributedDataParallel::check_steps_per_epoch(int64_t steps) const {
  distributed::check_same_steps_per_epoch(*comm_, steps);
}

int64_t DistributedDataParallel::num_buckets() const { return reducer_->num_buckets(); }
std::vector<std::vector<int64_t>> DistributedDataParallel::bucket_parameters() const {
  return reducer_->bucket_parameters();
}
const DDPStats& DistributedDataParallel::stats() const { return reducer_->stats(); }

DistributedDataParallel::NoSyncGuard::NoSyncGuard(DistributedDataParallel& ddp) : ddp_(ddp) {
  ++ddp_.reducer_->no_sync_depth_;
}
DistributedDataParallel::NoSyncGuard::~NoSyncGuard() { --ddp_.reducer_->no_sync_depth_; }

}  // namespace ember::nn
