// GlooCommunicator: see gloo_communicator.h.
#include "distributed/gloo_communicator.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "distributed/device_binding.h"

namespace ember::distributed {

bool gloo_available() { return true; }

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Gloo's rendezvous (each rank publishes its pairs' addresses, then reads the others') over our store.
class GlooStoreAdapter final : public gloo::rendezvous::Store {
 public:
  explicit GlooStoreAdapter(std::shared_ptr<distributed::Store> store) : store_(std::move(store)) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    store_->set(key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string v = store_->get(key);
    return std::vector<char>(v.begin(), v.end());
  }
  void wait(const std::vector<std::string>& keys) override { store_->wait(keys); }
  void wait(const std::vector<std::string>& keys, const milliseconds& timeout) override {
    // Gloo passes 0 for "its default": ours.
    store_->wait(keys, timeout.count() > 0 ? timeout : store_->timeout());
  }

 private:
  std::shared_ptr<distributed::Store> store_;
};

// Calls fn with a typed null pointer for the tensor's dtype (the types MPI supports too).
template <typename Fn>
void dispatch(DType dtype, const std::string& op, Fn&& fn) {
  switch (dtype) {
    case DType::Float32: fn(static_cast<float*>(nullptr)); return;
    case DType::Float64: fn(static_cast<double*>(nullptr)); return;
    case DType::Int64: fn(static_cast<int64_t*>(nullptr)); return;
    case DType::UInt8: fn(static_cast<uint8_t*>(nullptr)); return;
    default:
      EMBER_FAIL(op, ": dtype ", dtype_name(dtype), " is not supported by the Gloo communicator "
                     "(supported: float32, float64, int64, uint8)");
  }
}

template <typename T>
gloo::AllreduceOptions::Func reduce_function(ReduceOp op) {
  using Fn = void (*)(void*, const void*, const void*, size_t);
  switch (op) {
    case ReduceOp::Max: return static_cast<Fn>(&gloo::max<T>);
    case ReduceOp::Min: return static_cast<Fn>(&gloo::min<T>);
    default: return static_cast<Fn>(&gloo::sum<T>);  // Sum, and Mean before its division
  }
}

// Mean is a sum divided once on each rank (as the MPI communicator does, so results match).
template <typename T>
void divide(T* p, size_t n, int world_size) {
  if constexpr (std::is_floating_point_v<T>)
    for (size_t i = 0; i < n; ++i) p[i] /= static_cast<T>(world_size);
}

// What a Work and the worker thread share about one collective.
struct WorkState {
  std::mutex mutex;
  std::condition_variable cv;
  bool started = false, done = false;
  Clock::time_point start;
  std::string error;  // non-empty when it failed
};

class GlooWork final : public Work {
 public:
  GlooWork(std::shared_ptr<WorkState> state, std::string op, int rank, milliseconds timeout)
      : state_(std::move(state)), op_(std::move(op)), rank_(rank), timeout_(timeout) {}

  bool is_completed() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->done && state_->error.empty();
  }

  void wait() override {
    std::unique_lock<std::mutex> lock(state_->mutex);
    // Gloo enforces the timeout itself; this bound (a few seconds more, counted from when the
    // worker started the collective) only guards against a Gloo that never returns.
    constexpr milliseconds kGrace{5000};
    while (!state_->done) {
      state_->cv.wait_for(lock, milliseconds(100));
      if (!state_->done && state_->started && Clock::now() > state_->start + timeout_ + kGrace)
        EMBER_FAIL(op_, " timed out on rank ", rank_, " after ", timeout_.count(),
                   " ms (CommunicatorOptions::timeout) and Gloo did not return");
    }
    if (!state_->error.empty()) EMBER_FAIL(state_->error);
  }

 private:
  std::shared_ptr<WorkState> state_;
  std::string op_;
  int rank_;
  milliseconds timeout_;
};

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, const CommunicatorOptions& options)
      : context_(std::move(context)), options_(options), rank_(context_->rank), world_size_(context_->size) {
    worker_ = std::thread([this] { run_worker(); });
  }

  ~GlooCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    worker_.join();  // finishes the collectives already queued (each bounded by the timeout)
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  Device device() const override { return kCPU; }
  std::string name() const override { return "gloo"; }

  WorkHandle all_reduce_async(const Tensor& t, ReduceOp op) override {
    const std::string name = std::string("all_reduce(") + reduce_op_name(op) + ")";
    check_tensor(t, name);
    check_collective_op(name, op, t.dtype());
    return enqueue(name, [this, t, op, name] {
      dispatch(t.dtype(), name, [&](auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        T* p = static_cast<T*>(t.data_ptr());
        const size_t n = static_cast<size_t>(t.numel());
        gloo::AllreduceOptions o(context_);
        o.setOutput<T>(p, n);
        o.setReduceFunction(reduce_function<T>(op));
        o.setTimeout(options_.timeout);
        gloo::allreduce(o);
        if (op == ReduceOp::Mean) divide(p, n, world_size_);
      });
    }, t.numel() == 0);
  }

  WorkHandle broadcast_async(const Tensor& t, int root) override {
    check_tensor(t, "broadcast");
    EMBER_CHECK(root >= 0 && root < world_size_, "broadcast: root ", root, " is not a rank (world size ", world_size_,
                ")");
    return enqueue("broadcast", [this, t, root] {
      dispatch(t.dtype(), "broadcast", [&](auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        gloo::BroadcastOptions o(context_);
        o.setOutput<T>(static_cast<T*>(t.data_ptr()), static_cast<size_t>(t.numel()));
        o.setRoot(root);
        o.setTimeout(options_.timeout);
        gloo::broadcast(o);
      });
    }, t.numel() == 0);
  }

  WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    check_tensor(in, "all_gather (in)");
    check_tensor(out, "all_gather (out)");
    check_world_sized("all_gather", in, out, world_size_, /*out_is_larger=*/true);
    return enqueue("all_gather", [this, in, out] {
      dispatch(in.dtype(), "all_gather", [&](auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        gloo::AllgatherOptions o(context_);
        o.setInput<T>(static_cast<T*>(in.data_ptr()), static_cast<size_t>(in.numel()));
        o.setOutput<T>(static_cast<T*>(out.data_ptr()), static_cast<size_t>(out.numel()));
        o.setTimeout(options_.timeout);
        gloo::allgather(o);
      });
    }, in.numel() == 0);
  }

  // Gloo has no reduce-scatter for arbitrary sizes: an all-reduce of a copy, then this rank's
  // slice (twice the traffic of a real one; DDP does not use it).
  WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    const std::string name = check_reduce_scatter_args(
        in, out, op, world_size_, [this](const Tensor& t, const std::string& what) { check_tensor(t, what); });
    return enqueue(name, [this, in, out, op, name] {
      dispatch(in.dtype(), name, [&](auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        const size_t n = static_cast<size_t>(out.numel());
        std::vector<T> all(static_cast<const T*>(in.data_ptr()), static_cast<const T*>(in.data_ptr()) + in.numel());
        gloo::AllreduceOptions o(context_);
        o.setOutput<T>(all.data(), all.size());
        o.setReduceFunction(reduce_function<T>(op));
        o.setTimeout(options_.timeout);
        gloo::allreduce(o);
        T* p = static_cast<T*>(out.data_ptr());
        std::memcpy(p, all.data() + static_cast<size_t>(rank_) * n, n * sizeof(T));
        if (op == ReduceOp::Mean) divide(p, n, world_size_);
      });
    }, out.numel() == 0);
  }

  void barrier() override {
    enqueue("barrier", [this] {
      gloo::BarrierOptions o(context_);
      o.setTimeout(options_.timeout);
      gloo::barrier(o);
    }, false)->wait();
  }

  [[noreturn]] void abort(const std::string& reason) override {
    std::fprintf(stderr, "%s\n", reason.c_str());
    std::fflush(stdout);
    std::fflush(stderr);
    // No job-wide abort without MPI: this process ends, its peers' collectives fail on the closed
    // connections, and the launcher (ember-run) stops the rest.
    std::_Exit(1);
  }

 private:
  void check_tensor(const Tensor& t, const std::string& op) const {
    EMBER_CHECK(t.device().is_cpu(), op, ": the Gloo communicator takes CPU tensors, got one on ", t.device(),
                " (use the NCCL communicator for CUDA tensors)");
    EMBER_CHECK(t.is_contiguous(), op, ": the tensor must be contiguous (shape ", t.shape(),
                "); call .contiguous() and copy the result back");
    dispatch(t.dtype(), op, [](auto*) {});
    std::lock_guard<std::mutex> lock(mutex_);
    EMBER_CHECK(broken_.empty(), op, " on rank ", rank_, ": the communicator is unusable after an earlier failure: ",
                broken_);
  }

  // Queues fn for the worker; `empty` collectives (no elements) complete at once on every rank.
  WorkHandle enqueue(const std::string& op, std::function<void()> fn, bool empty) {
    auto state = std::make_shared<WorkState>();
    auto work = std::make_shared<GlooWork>(state, op, rank_, options_.timeout);
    if (empty) {
      state->done = true;
      return work;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back({op, std::move(fn), state});
    }
    cv_.notify_all();
    return work;
  }

  void run_worker() {
    while (true) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      std::string error;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!broken_.empty()) error = task.op + " on rank " + std::to_string(rank_) +
                                      ": not run, the communicator broke earlier: " + broken_;
      }
      if (error.empty()) {
        {
          std::lock_guard<std::mutex> lock(task.state->mutex);
          task.state->started = true;
          task.state->start = Clock::now();
        }
        try {
          task.fn();
        } catch (const std::exception& e) {
          const bool timed_out = std::strstr(e.what(), "Timed out") || std::strstr(e.what(), "timed out");
          error = task.op + (timed_out ? " timed out" : " failed") + " on rank " + std::to_string(rank_) +
                  (timed_out ? " after " + std::to_string(options_.timeout.count()) +
                                   " ms (CommunicatorOptions::timeout): a peer rank has not called the same "
                                   "collective (it failed, hangs, or called collectives in another order)"
                             : " (gloo: a peer rank may have failed or exited)") +
                  ": " + e.what();
          std::fprintf(stderr, "%s\n", error.c_str());
          std::fflush(stderr);
          std::lock_guard<std::mutex> lock(mutex_);
          broken_ = error;
        }
      }
      // The collective's closure holds references to the caller's tensors: drop them before the
      // caller can see the work done. Otherwise a caller that waits, drops its tensors and leaves
      // main() races this thread, which could free a tensor after the CPU allocator is gone.
      task.fn = nullptr;
      {
        std::lock_guard<std::mutex> lock(task.state->mutex);
        task.state->done = true;
        task.state->error = error;
      }
      task.state->cv.notify_all();
    }
  }

  struct Task {
    std::string op;
    std::function<void()> fn;
    std::shared_ptr<WorkState> state;
  };

  std::shared_ptr<gloo::Context> context_;
  CommunicatorOptions options_;
  int rank_, world_size_;
  mutable std::mutex mutex_;  // guards queue_, stopping_, broken_
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  std::string broken_;  // the first failure, once there was one
  std::thread worker_;
};

}  // namespace

std::shared_ptr<Communicator> make_gloo_communicator(std::shared_ptr<Store> store, int rank, int world_size,
                                                     const CommunicatorOptions& options,
                                                     const std::string& listen_host) {
  EMBER_CHECK(store != nullptr, "make_gloo_communicator: no store");
  EMBER_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "make_gloo_communicator: rank ", rank,
              " is not in a world of ", world_size);
  // Each communicator gets its own namespace in the store: the rank's n-th communicator uses
  // "gloo/n" (every rank makes its communicators in the same order, so the numbers agree; counted
  // in the store, per rank, so ranks that are threads of one process count apart).
  const int64_t n = store->add("gloo/made_by_rank_" + std::to_string(rank), 1);
  auto prefixed = std::make_shared<PrefixStore>("gloo/" + std::to_string(n), store);

  gloo::transport::tcp::attr attr;
  if (!listen_host.empty()) {
    attr.hostname = listen_host;
  } else if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface) {
    attr.iface = iface;
  } else {
    attr.hostname = host_name();
  }
  const std::string where = attr.iface.empty() ? "host '" + attr.hostname + "'" : "interface '" + attr.iface + "'";
  try {
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, world_size);
    context->setTimeout(options.timeout);
    GlooStoreAdapter adapter(prefixed);
    context->connectFullMesh(adapter, device);
    return std::make_shared<GlooCommunicator>(context, options);
  } catch (const std::exception& e) {
    EMBER_FAIL("Gloo start-up on rank ", rank, " of ", world_size, " (listening on ", where, ", store at ",
               store->address(), ") failed within ", options.timeout.count(), " ms: ", e.what());
  }
}

}  // namespace ember::distributed
