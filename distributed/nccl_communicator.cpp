// NcclCommunicator: see nccl_communicator.h. Compiled only when ember is built with CUDA.
//
// Stream order of one collective on cuda:d:
//   compute stream:  ... kernels that wrote t ... [ready]            ...wait(done)... later kernels
//   NCCL stream:                                  wait(ready) -> nccl op on t -> [done]
// `ready` makes NCCL read t only after the compute stream has written it; Work::wait() makes the
// compute stream wait for `done`, so later kernels read the result; the host never blocks. t is
// marked as used on the NCCL stream (cuda::record_stream), so freeing it early cannot hand its
// memory to a new tensor while NCCL still writes there.
//
// Hangs: a peer that never joins would leave the NCCL kernel, and so the compute stream, waiting
// forever. A watchdog thread per communicator watches every collective in flight; when one is not
// done within CommunicatorOptions::timeout, or NCCL reports an asynchronous error, it prints the
// op, the rank and the timeout, aborts the NCCL communicator (ncclCommAbort: its kernels return)
// and kills the job (MPI_Abort over the bootstrap communicator, or std::abort in one process).
// A CUDA error met while checking (a sticky error makes every event query fail) does the same:
// the check never throws on that thread (distributed/watchdog.h).
// barrier() waits on the host itself and throws instead, after aborting the communicator.
#include "distributed/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "core/backend.h"
#include "core/ember.h"
#include "cuda/caching_allocator.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/runtime.h"
#include "distributed/mpi_communicator.h"
#include "distributed/watchdog.h"

namespace ember::distributed {

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType t, const std::string& op) {
  switch (t) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Int64: return ncclInt64;
    case DType::UInt8: return ncclUint8;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Float16: return ncclFloat16;
  }
  EMBER_FAIL(op, ": dtype ", dtype_name(t), " is not supported by the NCCL communicator");
}

ncclRedOp_t nccl_op(ReduceOp op, DType t, const std::string& name) {
  check_collective_op(name, op, t);  // the same rules as the MPI communicator
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
    case ReduceOp::Mean: return ncclAvg;  // NCCL >= 2.10 divides by the world size itself
    default: break;
  }
  EMBER_FAIL(name, ": ReduceOp ", reduce_op_name(op), " has no NCCL reduction");
}

// Launcher-provided world size (mpirun sets one of these), or 1 when started without a launcher.
int launched_world_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* s = std::getenv(var)) return std::max(1, std::atoi(s));
  return 1;
}

// What the collectives of one communicator share with its watchdog: the communicator (so the
// watchdog can abort it) and the collectives in flight.
struct InFlight {
  std::string op;
  std::shared_ptr<cuda::Event> done;
  Clock::time_point deadline;
};

class NcclCommunicator;

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<cuda::Event> done, int device, std::function<void()> check_health)
      : done_(std::move(done)), device_(device), check_health_(std::move(check_health)) {}

  void wait() override {
    check_health_();  // a communicator that failed must not hand out a garbage result silently
    if (!done_) return;  // nothing was launched (an empty tensor)
    cuda::DeviceGuard guard(device_);
    done_->wait(cuda::compute_stream(device_));
  }

  bool is_completed() override {
    check_health_();
    return !done_ || done_->query();
  }

 private:
  std::shared_ptr<cuda::Event> done_;
  int device_;
  std::function<void()> check_health_;
};

class NcclCommunicator : public Communicator, public std::enable_shared_from_this<NcclCommunicator> {
 public:
  // Takes ownership of `comm`. `bootstrap` (may be null) is the MPI communicator the job was set up
  // with; abort() goes through it so every process of the job stops.
  NcclCommunicator(ncclComm_t comm, int rank, int world_size, int device, const CommunicatorOptions& options,
                   std::shared_ptr<Communicator> bootstrap)
      : comm_(comm), rank_(rank), world_size_(world_size), device_(device), options_(options),
        bootstrap_(std::move(bootstrap)) {
    cuda::DeviceGuard guard(device_);
    // The highest priority, so communication is not starved by long compute kernels.
    int least = 0, greatest = 0;
    EMBER_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    EMBER_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
    barrier_buffer_ = zeros({1}, TensorOptions(kFloat32).device(Device(DeviceType::CUDA, device_)));
    cuda::record_stream(barrier_buffer_, stream_);  // only ever used there (its value is irrelevant)
    watchdog_ = std::thread([this] { watch(); });
  }

  // Never throws: a destructor may run during unwinding. The order matters: stream_ is destroyed
  // last, after everything recorded on it is finished, released, or forgotten by the allocator.
  // (Before, it was destroyed first; freeing barrier_buffer_ and the tensors launch() recorded on
  // it then recorded events on a dead stream, and their blocks were abandoned.)
  ~NcclCommunicator() override {
    stop_watchdog();
    cudaSetDevice(device_);
    // Our own collectives finish first (after an abort, ncclCommAbort has made them return).
    (void)cudaStreamSynchronize(stream_);
    if (!aborted_.exchange(true)) ncclCommDestroy(comm_);
    in_flight_.clear();
    try {
      cuda::forget_stream(device_, stream_);  // tensors recorded on it may outlive us
    } catch (...) {  // device_ is valid (checked at construction); nothing useful to do otherwise
    }
    barrier_buffer_ = Tensor();
    (void)cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  Device device() const override { return Device(DeviceType::CUDA, device_); }
  std::string name() const override { return "nccl"; }

  WorkHandle all_reduce_async(const Tensor& t, ReduceOp op) override {
    const std::string name = std::string("all_reduce(") + reduce_op_name(op) + ")";
    check_tensor(t, name);
    const ncclRedOp_t nop = nccl_op(op, t.dtype(), name);
    return launch(name, {t}, t.numel(), [&](cudaStream_t s) {
      EMBER_CUDA_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                     nccl_type(t.dtype(), name), nop, comm_, s));
    });
  }

  WorkHandle broadcast_async(const Tensor& t, int root) override {
    check_tensor(t, "broadcast");
    EMBER_CHECK(root >= 0 && root < world_size_, "broadcast: root ", root, " is not a rank (world size ",
                world_size_, ")");
    return launch("broadcast", {t}, t.numel(), [&](cudaStream_t s) {
      EMBER_CUDA_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                     nccl_type(t.dtype(), "broadcast"), root, comm_, s));
    });
  }

  WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    check_tensor(in, "all_gather (in)");
    check_tensor(out, "all_gather (out)");
    check_world_sized("all_gather", in, out, world_size_, /*out_is_larger=*/true);
    return launch("all_gather", {in, out}, in.numel(), [&](cudaStream_t s) {
      EMBER_CUDA_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                                     nccl_type(in.dtype(), "all_gather"), comm_, s));
    });
  }

  WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    const std::string name = std::string("reduce_scatter(") + reduce_op_name(op) + ")";
    check_tensor(in, name + " (in)");
    check_tensor(out, name + " (out)");
    check_world_sized(name, in, out, world_size_, /*out_is_larger=*/false);
    const ncclRedOp_t nop = nccl_op(op, in.dtype(), name);
    return launch(name, {in, out}, out.numel(), [&](cudaStream_t s) {
      EMBER_CUDA_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                         nccl_type(in.dtype(), name), nop, comm_, s));
    });
  }

  // A one-element all-reduce that the host waits for, watching the deadline and NCCL's errors.
  void barrier() override {
    std::shared_ptr<cuda::Event> done;
    {
      check_health();
      cuda::DeviceGuard guard(device_);
      std::lock_guard<std::mutex> lock(launch_mutex_);
      EMBER_CUDA_CHECK(ncclAllReduce(barrier_buffer_.data_ptr(), barrier_buffer_.data_ptr(), 1, ncclFloat32,
                                     ncclSum, comm_, stream_));
      done = std::make_shared<cuda::Event>();
      done->record(stream_);
    }
    const auto deadline = Clock::now() + options_.timeout;
    auto pause = std::chrono::microseconds(1);
    while (!done->query()) {
      std::string error;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        check_health();  // the watchdog may have aborted the communicator meanwhile
        error = async_error_locked();
      }
      if (!error.empty() || Clock::now() > deadline) {
        const std::string msg =
            error.empty() ? timeout_message("barrier") : error_message("barrier", "NCCL asynchronous error: " + error);
        std::fprintf(stderr, "%s\n", msg.c_str());
        std::fflush(stderr);
        abort_nccl();
        EMBER_FAIL(msg);
      }
      if (pause < std::chrono::microseconds(1000)) pause *= 2;
      std::this_thread::sleep_for(pause);
    }
  }

  [[noreturn]] void abort(const std::string& reason) override {
    std::fprintf(stderr, "%s\n", reason.c_str());
    std::fflush(stderr);
    abort_nccl();
    if (bootstrap_) bootstrap_->abort(reason);  // MPI_Abort: every process of the job
    std::abort();                               // one process: it is the whole job
  }

 private:
  void check_tensor(const Tensor& t, const std::string& op) const {
    EMBER_CHECK(t.device().is_cuda() && t.device().index == device_, op, ": this NCCL communicator (rank ", rank_,
                ") takes tensors on cuda:", device_, ", got one on ", t.device());
    EMBER_CHECK(t.is_contiguous(), op, ": the tensor must be contiguous (shape ", t.shape(),
                "); call .contiguous() and copy the result back");
    nccl_type(t.dtype(), op);
  }

  // Orders the NCCL stream after the compute stream, runs `call` on it, records `done`, and hands
  // the collective to the watchdog. `count` is the per-rank element count: 0 launches nothing
  // (every rank has the same count, so every rank skips alike).
  template <typename Call>
  WorkHandle launch(const std::string& op, const std::vector<Tensor>& tensors, int64_t count, Call&& call) {
    check_health();
    auto health = [self = shared_from_this()] { self->check_health(); };
    if (count == 0) return std::make_shared<NcclWork>(nullptr, device_, std::move(health));
    cuda::DeviceGuard guard(device_);
    std::lock_guard<std::mutex> lock(launch_mutex_);
    // Before anything is queued: it throws for memory the caching allocator does not own.
    for (const Tensor& t : tensors) cuda::record_stream(t, stream_);
    cuda::Event ready;
    ready.record(cuda::compute_stream(device_));
    ready.wait(stream_);
    call(stream_);
    auto done = std::make_shared<cuda::Event>();
    done->record(stream_);
    {
      std::lock_guard<std::mutex> watch_lock(mutex_);
      in_flight_.push_back({op, done, Clock::now() + options_.timeout});
    }
    return std::make_shared<NcclWork>(std::move(done), device_, std::move(health));
  }

  void check_health() const {
    EMBER_CHECK(!aborted_, "NCCL communicator (rank ", rank_, ", cuda:", device_,
                ") is unusable: it was aborted after a collective failed or timed out");
  }

  // NCCL's asynchronous error as text, or "" if none. Caller holds mutex_ (so the communicator
  // cannot be aborted, and freed, during the query).
  std::string async_error_locked() {
    ncclResult_t result = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm_, &result);
    if (rc != ncclSuccess) return ncclGetErrorString(rc);
    // ncclInProgress only means non-blocking work is still being set up, which is not an error.
    if (result != ncclSuccess && result != ncclInProgress) return ncclGetErrorString(result);
    return "";
  }

  std::string timeout_message(const std::string& op) const {
    return detail::str_cat(op, " timed out on rank ", rank_, " (cuda:", device_, ") after ", options_.timeout.count(),
                           " ms (CommunicatorOptions::timeout): a peer rank has not called the same collective "
                           "(it failed, hangs, or called collectives in another order or with other sizes); "
                           "aborting the NCCL communicator");
  }
  std::string error_message(const std::string& op, const std::string& error) const {
    return detail::str_cat(op, " failed on rank ", rank_, " (cuda:", device_, "): ", error,
                           "; aborting the NCCL communicator");
  }

  void abort_nccl() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!aborted_.exchange(true)) ncclCommAbort(comm_);  // its kernels return; the comm is freed
  }

  // The watchdog thread: drops finished collectives, and kills the job when one is overdue, NCCL
  // reports an error, or CUDA fails while checking, so no rank hangs in a stream waiting for a
  // peer that is gone. check_collectives never throws (distributed/watchdog.h).
  void watch() {
    cudaSetDevice(device_);  // events and NCCL queries from this thread use cuda:device_
    const auto period = std::clamp(options_.timeout / 10, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, period);
      if (stopping_ || aborted_) break;
      const WatchdogVerdict verdict =
          check_collectives(in_flight_, Clock::now(), [this] { return async_error_locked(); });
      if (verdict.healthy()) continue;
      const std::string reason = verdict.kind == WatchdogVerdict::Kind::TimedOut
                                     ? timeout_message(verdict.op)
                                     : error_message(verdict.op, verdict.error);
      lock.unlock();
      abort(reason + " and the job");
    }
  }

  void stop_watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
  }

  ncclComm_t comm_;
  int rank_;
  int world_size_;
  int device_;
  CommunicatorOptions options_;
  std::shared_ptr<Communicator> bootstrap_;
  cudaStream_t stream_ = nullptr;
  Tensor barrier_buffer_;
  std::atomic<bool> aborted_{false};
  // One collective enqueued at a time, in call order. Not mutex_: enqueueing can block (NCCL
  // connects to peers lazily, at the first collective), and the watchdog must stay free to act.
  std::mutex launch_mutex_;

  // Shared with the watchdog thread.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<InFlight> in_flight_;  // in launch order, so the oldest is at the front
  bool stopping_ = false;
  std::thread watchdog_;
};

void check_device(int device, const char* fn) {
  const int n = cuda::device_count();
  EMBER_CHECK(device >= 0 && device < n, fn, ": cuda:", device, " does not exist (", n,
              " GPUs visible); one process per GPU, so run at most that many ranks per node");
}

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const CommunicatorOptions& options) {
  const int launched = launched_world_size();
  if (launched <= 1) {
    // World size 1: no launcher, so no MPI needed (a one-GPU machine without MPI installed).
    check_device(0, "make_nccl_communicator");
    return make_nccl_communicators({0}, options).front();
  }
  EMBER_CHECK(MpiEnvironment::available(), "make_nccl_communicator: started as ", launched,
              " ranks, but ember was built without MPI, which NCCL needs to share its id between processes");
  std::shared_ptr<Communicator> bootstrap = make_mpi_communicator(options);
  const int rank = bootstrap->rank();
  const int world = bootstrap->world_size();
  const int device = MpiEnvironment::local_rank();
  int version = 0;
  EMBER_CUDA_CHECK(ncclGetVersion(&version));
  check_same_on_all_ranks(*bootstrap, "world size, device type and NCCL version",
                          {world, static_cast<int64_t>(DeviceType::CUDA), version});
  // Each rank checks its GPU; agreeing on the outcome keeps a rank without one from leaving the
  // others waiting in ncclCommInitRank.
  const bool device_ok = device >= 0 && device < cuda::device_count();
  Tensor ok = from_vector<int64_t>({device_ok ? 0 : 1}, {1});
  bootstrap->all_reduce(ok, ReduceOp::Sum);
  check_device(device, "make_nccl_communicator");
  EMBER_CHECK(ok.item<int64_t>() == 0, "make_nccl_communicator: ", ok.item<int64_t>(),
              " rank(s) have no GPU for their local rank (this rank uses cuda:", device, ")");

  // Rank 0 makes the id NCCL's ranks find each other with; MPI carries it to the others.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank == 0) EMBER_CUDA_CHECK(ncclGetUniqueId(&id));
  Tensor id_bytes = empty({static_cast<int64_t>(sizeof(id))}, TensorOptions(kUInt8));
  std::memcpy(id_bytes.data_ptr(), &id, sizeof(id));
  bootstrap->broadcast(id_bytes, 0);
  std::memcpy(&id, id_bytes.data_ptr(), sizeof(id));

  ncclComm_t comm = nullptr;
  {
    cuda::DeviceGuard guard(device);
    EMBER_CUDA_CHECK(ncclCommInitRank(&comm, world, id, rank));
  }
  return std::make_shared<NcclCommunicator>(comm, rank, world, device, options, std::move(bootstrap));
}

std::vector<std::shared_ptr<Communicator>> make_nccl_communicators(const std::vector<int>& devices,
                                                                   const CommunicatorOptions& options) {
  EMBER_CHECK(!devices.empty(), "make_nccl_communicators: no devices given");
  EMBER_CHECK(std::set<int>(devices.begin(), devices.end()).size() == devices.size(),
              "make_nccl_communicators: a device is listed twice (one communicator per GPU)");
  for (int d : devices) check_device(d, "make_nccl_communicators");
  const int n = static_cast<int>(devices.size());
  std::vector<ncclComm_t> comms(n, nullptr);
  EMBER_CUDA_CHECK(ncclCommInitAll(comms.data(), n, devices.data()));
  std::vector<std::shared_ptr<Communicator>> result;
  for (int i = 0; i < n; ++i)
    result.push_back(std::make_shared<NcclCommunicator>(comms[i], i, n, devices[i], options, nullptr));
  return result;
}

}  // namespace ember::distributed
