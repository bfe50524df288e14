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
#include "nn/layers.h"

namespace ember::nn {

using distributed::Communicator;
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
  auto bytes_of = [](double mb) -> int64_t {
    const bool representable = mb >= 0 && mb < 1e12;
    return representable ? std::llround(mb * 1024 * 1024) : -1;
  };
  distributed::check_same_values_on_all_ranks(
      comm, {bytes_of(o.bucket_cap_mb), bytes_of(o.first_bucket_mb), o.broadcast_buffers, o.find_unused_parameters},
      {"DDPOptions::bucket_cap_mb (in bytes)", "DDPOptions::first_bucket_mb (in bytes)",
       "DDPOptions::broadcast_buffers", "DDPOptions::find_unused_parameters"},
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
      : comm_(std::move(comm)), options_(options), divisor_(comm_->world_size()) {
    EMBER_CHECK(options_.bucket_cap_mb >= 0, "DistributedDataParallel: bucket_cap_mb must be >= 0, got ",
                options_.bucket_cap_mb);
    EMBER_CHECK(options_.first_bucket_mb >= 0, "DistributedDataParallel: first_bucket_mb must be >= 0, got ",
                options_.first_bucket_mb);
    for (const auto& [name, t] : named_params) params_.push_back(Param{name, t, t.shape(), t.dtype(), t.device()});
    for (size_t i = 0; i < params_.size(); ++i) index_of_[params_[i].tensor.impl()] = static_cast<int64_t>(i);
    // The first guess at the order gradients become ready: reverse registration order.
    std::vector<int64_t> order;
    for (int64_t i = static_cast<int64_t>(params_.size()) - 1; i >= 0; --i)
      if (params_[i].tensor.requires_grad()) order.push_back(i);  // the others never get a gradient
    assign_buckets(order);
  }

  // ---- layout ----

  // Fills buckets with the parameters in `order` (the order their gradients are expected to be
  // ready). The first bucket closes at min(first_bucket_mb, bucket_cap_mb), the others at
  // bucket_cap_mb: a bucket closes once it reaches its cap, or when the next parameter has another
  // dtype (a flat buffer holds one dtype).
  void assign_buckets(const std::vector<int64_t>& order) {
    const double cap_bytes = options_.bucket_cap_mb * 1024.0 * 1024.0;
    const double first_cap_bytes = std::min(options_.first_bucket_mb, options_.bucket_cap_mb) * 1024.0 * 1024.0;
    buckets_.clear();
    for (Param& p : params_) p.bucket = -1;
    double bytes = 0;
    for (int64_t i : order) {
      Param& p = params_[i];
      const double limit = buckets_.size() <= 1 ? first_cap_bytes : cap_bytes;  // filling the first bucket?
      if (buckets_.empty() || bytes >= limit || buckets_.back().dtype != p.tensor.dtype()) {
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

  // Once, before the step after the first synced one: buckets in the order gradients became ready
  // in that step on rank `root` (broadcast, so every rank builds the same buckets). Collective.
  void maybe_rebuild_buckets(int root) {
    if (rebuilt_ || stats_.synced_steps < 1 || in_progress_) return;
    rebuilt_ = true;
    int64_t n = 0;
    for (const Param& p : params_)
      if (p.bucket >= 0) ++n;
    Tensor order = empty({n}, TensorOptions(kInt64));
    if (comm_->rank() == root) {
      EMBER_CHECK(static_cast<int64_t>(ready_order_.size()) == n, "DistributedDataParallel: internal error: ",
                  ready_order_.size(), " gradients recorded as ready, ", n, " expected");
      std::copy(ready_order_.begin(), ready_order_.end(), order.data<int64_t>());
    }
    Tensor on_device = order.to(comm_->device());
    comm_->broadcast(on_device, root);
    const std::vector<int64_t> v = on_device.to(kCPU).to_vector<int64_t>();
    // Every rank holds the same parameter list (the start-up handshake), so this is a permutation of
    // our bucketed parameters unless something is badly wrong.
    std::vector<char> seen(params_.size(), 0);
    for (int64_t i : v) {
      EMBER_CHECK(i >= 0 && i < static_cast<int64_t>(params_.size()) && params_[i].bucket >= 0 && !seen[i],
                  "DistributedDataParallel: rank ", root, "'s gradient order names parameter ", i,
                  ", which this rank does not reduce (or twice)");
      seen[i] = 1;
    }
    assign_buckets(v);
    ++stats_.bucket_rebuilds;
  }

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  std::vector<std::vector<int64_t>> bucket_parameters() const {
    std::vector<std::vector<int64_t>> out;
    for (const Bucket& b : buckets_) out.push_back(b.params);
    return out;
  }
  bool bucketed(int64_t i) const { return params_[i].bucket >= 0; }
  const DDPStats& stats() const { return stats_; }
  bool in_progress() const { return in_progress_; }
  void set_divisor(int d) { divisor_ = d; }
  void set_comm_hook(distributed::CommHook hook) {
    EMBER_CHECK(stats_.synced_steps == 0 && !in_progress_,
                "DistributedDataParallel::register_comm_hook: register the hook before the first backward");
    hook_ = std::move(hook);
  }

  // ---- per step ----

  // The buckets and gradient hooks belong to the tensors the model held when DDP wrapped it. A
  // parameter registered later would never be reduced (and the start-up handshake never compared
  // it with the other ranks); one converted to another shape, dtype or device (model->to(...))
  // no longer fits its bucket slot. Checked at every forward, on this rank.
  void check_parameters_unchanged(const NamedTensors& now) const {
    const std::string where = "DistributedDataParallel on rank " + std::to_string(comm_->rank()) + ": ";
    const char* fix = "; DDP's buckets and gradient hooks were made for the model as it was wrapped: change the model "
                      "before wrapping it, or wrap it again (on every rank)";
    if (now.size() != params_.size()) {
      std::unordered_set<std::string> wrapped;
      for (const Param& p : params_) wrapped.insert(p.name);
      std::string added;  // the first parameter DDP did not wrap, if one was added
      for (const auto& [name, t] : now)
        if (added.empty() && !wrapped.count(name)) added = " (the first new one: '" + name + "')";
      EMBER_FAIL(where, "the model has ", now.size(), " parameters now but had ", params_.size(),
                 " when DDP wrapped it", added, fix);
    }
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param& p = params_[i];
      const auto& [name, t] = now[i];
      EMBER_CHECK(name == p.name && t.is_same(p.tensor), where, "the model's parameter #", i, " is now '", name,
                  "', a tensor DDP did not wrap (it wrapped '", p.name, "' there)", fix);
      EMBER_CHECK(t.shape() == p.shape && t.dtype() == p.dtype && t.device() == p.device, where, "parameter '", name,
                  "' is now ", t.shape(), " ", dtype_name(t.dtype()), " on ", t.device(), "; it was ", p.shape, " ",
                  dtype_name(p.dtype), " on ", p.device, " when DDP wrapped it", fix);
    }
  }

  // Called by forward() before the model runs.
  void prepare_forward() {
    if (in_progress_) {
      if (options_.find_unused_parameters) {
        finish();
      } else {
        EMBER_FAIL("DistributedDataParallel on rank ", comm_->rank(),
                   ": expected to have finished reduction in the prior iteration before starting a new one: the ",
                   "previous backward did not finish its gradient reduction: ", missing_names(),
                   " got no gradient. Every parameter must take part in every synced backward; ",
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
    poll_in_flight();                // MPI progresses only inside MPI calls: give it one per hook
    if (!in_progress_) {
      in_progress_ = true;
      // Parameters the forward could not reach will not fire: they are ready now, with what they hold.
      for (int64_t u : unreachable_)
        if (u != i) mark_ready(u, params_[u].tensor.grad(), /*from_hook=*/false);
      unreachable_.clear();
    }
    EMBER_CHECK(!params_[i].ready, "DistributedDataParallel on rank ", comm_->rank(), ": parameter '", params_[i].name,
                "' received a gradient twice in one synced backward (a second backward without a forward in ",
                "between, or a parameter the forward's graph did not reach); call forward again before backward");
    mark_ready(i, grad, /*from_hook=*/true);
  }

  void finish() {
    if (!in_progress_) return;
    EMBER_CHECK(options_.find_unused_parameters, "DistributedDataParallel::finish on rank ", comm_->rank(), ": ",
                missing_names(), " got no gradient in this backward; construct with DDPOptions().find_unused(true) ",
                "to reduce missing gradients as zeros");
    complete_with_local_grads();
  }

  // Starts the reductions a backward left unstarted: every parameter whose hook did not fire takes
  // part with its current local .grad (zeros if undefined). join() uses it to keep the ranks'
  // collectives in step before it reports the missing gradients.
  void complete_with_local_grads() {
    if (!in_progress_) return;
    for (size_t i = 0; i < params_.size(); ++i)
      if (bucketed(static_cast<int64_t>(i)) && !params_[i].ready)
        mark_ready(static_cast<int64_t>(i), params_[i].tensor.grad(), /*from_hook=*/false);
  }

  // join(): this rank takes part in a step without gradients of its own. It runs the same
  // reductions as the others, in the same order, contributing zeros from scratch buffers (as
  // PyTorch's joined ranks do: Reducer::get_grad_buckets(return_zero_tensors=true)); the results
  // are discarded. Neither the bucket buffers nor this rank's .grad tensors are touched: with
  // gradient_as_bucket_view the .grad tensors ARE views into the bucket buffers, so zeroing those
  // (as this once did) overwrote a joined rank's last gradients with the others' average.
  // `joined`: counted as a joined step (false: a catch-up for a forward that had no backward).
  void shadow_step(bool joined = true) {
    NoGradGuard no_grad;
    std::vector<WorkHandle> works;
    for (size_t k = 0; k < buckets_.size(); ++k)
      works.push_back(start_reduction(static_cast<int64_t>(k), zeros_like(buckets_[k].flat)));
    for (WorkHandle& w : works) w->wait();
    for (size_t k = 0; k < buckets_.size(); ++k) {
      stats_.last_step_reductions[k] = buckets_[k].reductions;
      buckets_[k].reductions = 0;  // else the next real step would count these too
    }
    ++stats_.synced_steps;
    if (joined) ++stats_.joined_steps;
  }

  int no_sync_depth_ = 0;

 private:
  struct Param {
    std::string name;
    Tensor tensor;
    Shape shape;  // as wrapped: the bucket layout was made for these
    DType dtype;
    Device device;
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
    int reductions = 0;   // all-reduces started this step
    bool done = false;    // its reduction was seen complete this step
    BucketTiming timing;  // this step's
  };

  static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  Tensor slice(const Param& p) const { return buckets_[p.bucket].flat.narrow(0, p.offset, p.tensor.numel()); }

  // Reduces bucket k's `buffer` (its flat buffer, or a shadow step's zeros of the same layout).
  WorkHandle start_reduction(int64_t k, const Tensor& buffer) {
    Bucket& b = buckets_[k];
    ++b.reductions;
    ++stats_.all_reduces;
    const distributed::GradBucket gb{k, buffer, divisor_};
    WorkHandle w = hook_ ? hook_(*comm_, gb) : distributed::allreduce_hook(*comm_, gb);
    EMBER_CHECK(w != nullptr, "DistributedDataParallel: the comm hook returned no Work for bucket ", k);
    return w;
  }

  // Puts parameter i's gradient (zeros if undefined) into its bucket; starts every bucket that is
  // now complete and whose predecessors have started.
  void mark_ready(int64_t i, const Tensor& grad, bool from_hook) {
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
    if (from_hook) ready_order_.push_back(i);
    Bucket& b = buckets_[p.bucket];
    if (--b.pending == 0) {
      b.timing.ready_s = now_s();
      launch_ready_buckets();
    }
  }

  // Buckets start in index order, the same on every rank (see ddp.h, "Launch order").
  void launch_ready_buckets() {
    while (next_launch_ < num_buckets() && buckets_[next_launch_].pending == 0) {
      Bucket& b = buckets_[next_launch_];
      b.timing.launch_s = now_s();
      b.work = start_reduction(next_launch_, b.flat);
      ++next_launch_;
      poll(b);  // a first MPI call right away: the collective's first messages go out now
    }
    if (next_launch_ == num_buckets()) complete_step();
  }

  void poll(Bucket& b) {
    if (!b.done && b.work && b.work->is_completed()) {
      b.done = true;
      b.timing.done_s = now_s();
    }
  }
  void poll_in_flight() {
    for (int64_t k = 0; k < next_launch_; ++k) poll(buckets_[k]);
  }

  // Waits for every bucket, writes the averages into the .grad tensors and resets for the next step.
  void complete_step() {
    NoGradGuard no_grad;
    const double backward_end = now_s();  // every gradient is in: backward's computation is over
    const auto t0 = std::chrono::steady_clock::now();
    for (Bucket& b : buckets_) {
      b.work->wait();  // also when seen complete: on CUDA it orders the compute stream after it
      if (!b.done) {
        b.done = true;
        b.timing.done_s = now_s();
      }
      b.work.reset();
    }
    const double waited = seconds_since(t0);
    int64_t bytes = 0;
    double comm = 0, hidden = 0;
    stats_.last_buckets.clear();
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
      b.timing.bytes = static_cast<int64_t>(b.flat.nbytes());
      bytes += b.timing.bytes;
      comm += b.timing.done_s - b.timing.launch_s;
      hidden += std::max(0.0, std::min(b.timing.done_s, backward_end) - b.timing.launch_s);
      stats_.last_buckets.push_back(b.timing);
      b.pending = static_cast<int64_t>(b.params.size());
      b.done = false;
    }
    for (size_t k = 0; k < buckets_.size(); ++k) {
      stats_.last_step_reductions[k] = buckets_[k].reductions;
      buckets_[k].reductions = 0;
    }
    if (!rebuilt_) {
      // The rebuild wants every bucketed parameter; those no hook delivered (unused) go last.
      for (int64_t i = static_cast<int64_t>(params_.size()) - 1; i >= 0; --i)
        if (bucketed(i) && std::find(ready_order_.begin(), ready_order_.end(), i) == ready_order_.end())
          ready_order_.push_back(i);
    } else {
      ready_order_.clear();  // only the first synced step's order is used
    }
    ++stats_.synced_steps;
    stats_.last_step_bytes = bytes;
    stats_.last_comm_wait_seconds = waited;
    stats_.total_comm_wait_seconds += waited;
    stats_.last_backward_end_s = backward_end;
    stats_.last_comm_seconds = comm;
    stats_.last_comm_hidden_seconds = hidden;
    stats_.total_comm_seconds += comm;
    stats_.total_comm_hidden_seconds += hidden;
    next_launch_ = 0;
    in_progress_ = false;
  }

 public:
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

 private:

  std::shared_ptr<Communicator> comm_;
  DDPOptions options_;
  std::vector<Param> params_;  // every parameter, in registration order (parameters()' order)
  std::unordered_map<const TensorImpl*, int64_t> index_of_;
  std::vector<Bucket> buckets_;
  bool in_progress_ = false;          // a synced backward has delivered gradients, not all reduced yet
  int64_t next_launch_ = 0;           // buckets start strictly in index order
  std::vector<int64_t> unreachable_;  // find_unused_parameters: from the last forward
  std::vector<int64_t> ready_order_;  // parameters in the order their gradients arrived (first synced step)
  bool rebuilt_ = false;
  int divisor_ = 1;                   // the bucket sums are divided by this (world size, or join's count)
  distributed::CommHook hook_;        // empty: allreduce_hook
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

void DistributedDataParallel::agree_before_step(int root) {
  reducer_->maybe_rebuild_buckets(root);
  if (options_.broadcast_buffers && comm_->world_size() > 1) {
    std::vector<Tensor> buffers = model_->buffers();
    if (!buffers.empty()) {
      broadcast_coalesced(*comm_, buffers, root);
      reducer_->count_broadcast();
    }
  }
}

Tensor DistributedDataParallel::forward(const Tensor& input) {
  reducer_->check_parameters_unchanged(model_->named_parameters());
  int root = 0;
  if (joining_) {
    const JoinMisuse misuse = settle_join_step();
    reducer_->prepare_forward();
    const bool syncs = GradMode::is_enabled() && reducer_->no_sync_depth_ == 0;
    const JoinRound round = join_round(/*active=*/true, syncs, misuse);  // throws on every rank on misuse
    root = round.root;
    reducer_->set_divisor(join_divide_by_initial_world_size_ ? comm_->world_size() : round.active);
    join_step_syncs_ = syncs;
    join_step_synced_at_ = reducer_->stats().synced_steps;
  } else {
    reducer_->prepare_forward();
  }
  agree_before_step(root);
  Tensor out = model_->forward(input);
  if (options_.find_unused_parameters && GradMode::is_enabled()) reducer_->record_unreachable(out);
  return out;
}

bool DistributedDataParallel::forward_communicates() const {
  bool found = false;
  model_->apply([&](Module& m) {
    const auto* bn = dynamic_cast<const BatchNorm*>(&m);
    if (bn != nullptr && bn->training_forward && bn->is_training()) found = true;
  });
  return found;
}

DistributedDataParallel::JoinMisuse DistributedDataParallel::settle_join_step() {
  JoinMisuse misuse = JoinMisuse::None;
  join_misuse_detail_.clear();
  if (reducer_->in_progress()) {  // a backward ran, but some parameters got no gradient
    if (!options_.find_unused_parameters) {
      misuse = JoinMisuse::MissingGradients;
      join_misuse_detail_ = reducer_->missing_names();
    }
    reducer_->complete_with_local_grads();
  } else if (join_step_syncs_ && reducer_->num_buckets() > 0 &&
             reducer_->stats().synced_steps == join_step_synced_at_) {
    // The last forward promised a synced step, so the joined ranks reduced zeros for it: run the
    // same reductions (with zeros) so this rank reaches the next round with them.
    reducer_->shadow_step(/*joined=*/false);
    misuse = JoinMisuse::NoBackward;
  }
  join_step_syncs_ = false;
  return misuse;
}

namespace {
std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (int r : ranks) out += (out.empty() ? "" : ", ") + std::to_string(r);
  return out;
}
}  // namespace

DistributedDataParallel::JoinRound DistributedDataParallel::join_round(bool active, bool syncs, JoinMisuse misuse) {
  const int W = comm_->world_size(), me = comm_->rank();
  // [0, W): who trains this step; [W, 2W): what went wrong on each rank (JoinMisuse); [2W, 3W):
  // whose forward runs collectives of its own; 3W: how many training ranks sync this step.
  Tensor flags = zeros({3 * W + 1}, TensorOptions(kInt64));
  int64_t* f = flags.data<int64_t>();
  f[W + me] = static_cast<int64_t>(misuse);
  if (active) {
    f[me] = 1;
    f[2 * W + me] = forward_communicates() ? 1 : 0;
    f[3 * W] = syncs ? 1 : 0;
  }
  Tensor on_device = flags.to(comm_->device());
  comm_->all_reduce(on_device, ReduceOp::Sum);
  const std::vector<int64_t> v = on_device.to(kCPU).to_vector<int64_t>();
  JoinRound r;
  r.root = -1;
  std::vector<int> training, joined, no_backward, missing_grads, communicating, silent;
  for (int k = 0; k < W; ++k) {
    (v[k] > 0 ? training : joined).push_back(k);
    if (v[k] > 0) (v[2 * W + k] > 0 ? communicating : silent).push_back(k);
    if (v[W + k] == static_cast<int64_t>(JoinMisuse::NoBackward)) no_backward.push_back(k);
    if (v[W + k] == static_cast<int64_t>(JoinMisuse::MissingGradients)) missing_grads.push_back(k);
  }
  r.active = static_cast<int>(training.size());
  r.root = training.empty() ? 0 : training.front();
  r.syncing = static_cast<int>(v[3 * W]);

  // Every rank holds the same vector, so every rank throws here together: none is left waiting.
  // (The collectives of the faulty step were completed with zeros first; see settle_join_step.)
  EMBER_CHECK(missing_grads.empty(), "DistributedDataParallel::join (seen on rank ", me, "): rank(s) ",
              rank_list(missing_grads), " ran a backward in which some parameters got no gradient",
              join_misuse_detail_.empty() ? std::string() : " (on this rank: " + join_misuse_detail_ + ")",
              "; expected to have finished reduction in the prior iteration. Every parameter must take part in ",
              "every synced backward; construct with DDPOptions().find_unused(true) if some are legitimately unused");
  EMBER_CHECK(no_backward.empty(), "DistributedDataParallel::join (seen on rank ", me, "): rank(s) ",
              rank_list(no_backward), " ran forward() with gradients enabled inside join() and no backward() ",
              "reaching its parameters before its next forward() or the end of its loop. Inside join() every ",
              "such forward must be followed by backward (the ranks out of data reduce zeros for that step and ",
              "wait for it); run evaluation forwards under NoGradGuard");
  EMBER_CHECK(communicating.empty() || silent.empty(), "DistributedDataParallel::join (seen on rank ", me,
              "): rank(s) ", rank_list(communicating), " run SyncBatchNorm layers in training mode (collectives ",
              "inside forward) but rank(s) ", rank_list(silent), " do not (evaluation mode?): the ranks would ",
              "disagree on the sequence of collectives. Put every rank in the same mode (ddp->train() / eval())");
  EMBER_CHECK(communicating.empty() || joined.empty(), "DistributedDataParallel::join (seen on rank ", me,
              "): rank(s) ", rank_list(joined), " ran out of data while rank(s) ", rank_list(training),
              " still train a model whose forward runs collectives (SyncBatchNorm layers in training mode). A ",
              "joined rank cannot take part in them, so the ranks would disagree on the sequence of collectives ",
              "(PyTorch's join() does not support SyncBatchNorm either). Give every rank the same number of steps ",
              "(check_steps_per_epoch) or use BatchNorm inside join()");
  if (r.active > 0) join_last_root_ = r.root;
  return r;
}

void DistributedDataParallel::join(const std::function<void()>& loop, bool divide_by_initial_world_size) {
  EMBER_CHECK(!joining_, "DistributedDataParallel::join on rank ", comm_->rank(), ": already inside join()");
  joining_ = true;
  join_divide_by_initial_world_size_ = divide_by_initial_world_size;
  join_last_root_ = 0;
  join_step_syncs_ = false;
  // However join() ends (an error of the loop, or a misuse every rank reports), DDP leaves join mode.
  struct LeaveJoin {
    DistributedDataParallel& ddp;
    ~LeaveJoin() {
      ddp.joining_ = false;
      ddp.join_step_syncs_ = false;
      ddp.reducer_->set_divisor(ddp.comm_->world_size());
    }
  } leave{*this};
  // An error thrown by the loop itself leaves the other ranks waiting in a collective this rank
  // will not join; their timeout reports it.
  loop();
  // Out of data: shadow the others' steps until a round finds no rank training. The first round
  // also reports a misuse of this rank's last step (its collectives are completed first).
  JoinMisuse misuse = settle_join_step();
  while (true) {
    const JoinRound round = join_round(/*active=*/false, /*syncs=*/false, misuse);
    misuse = JoinMisuse::None;
    if (round.active == 0) break;
    agree_before_step(round.root);
    if (round.syncing > 0) {
      reducer_->set_divisor(divide_by_initial_world_size ? comm_->world_size() : round.active);
      reducer_->shadow_step();
    }
  }
  // A joined rank's optimizer stopped stepping: every rank takes the state of the rank that
  // trained longest.
  broadcast_coalesced(*comm_, model_->state_dict().values(), join_last_root_);
}

void DistributedDataParallel::register_comm_hook(distributed::CommHook hook) {
  EMBER_CHECK(hook != nullptr, "DistributedDataParallel::register_comm_hook: the hook is empty");
  reducer_->set_comm_hook(std::move(hook));
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
