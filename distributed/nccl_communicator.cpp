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
// Hangs: every NCCL call goes through an NcclGuard (distributed/nccl_guard.h) over the real
// NcclApi (distributed/nccl_api_cuda.cpp). The communicator is nonblocking, init and every
// enqueue are polled under CommunicatorOptions::timeout, and a watchdog thread watches each
// collective from before its enqueue until its `done` event. On a timeout or an error the guard
// aborts NCCL (its kernels return, so the compute stream does not wait forever) and every later
// call, Work::wait() included, throws the reason, naming the op, the rank and the timeout. The job
// is ended from the caller's thread: run_guarded catches that Error and calls abort() (MPI_Abort
// over the bootstrap communicator, or std::abort in one process). The watchdog itself never calls
// MPI (the library runs at MPI_THREAD_SERIALIZED). A failure that no call reported by the time
// the communicator is destroyed ends the job there.
#include "distributed/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

#include "core/ember.h"
#include "cuda/caching_allocator.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/runtime.h"
#include "distributed/mpi_communicator.h"
#include "distributed/nccl_api_cuda.h"
#include "distributed/nccl_guard.h"

namespace ember::distributed {

namespace {

using Clock = std::chrono::steady_clock;

// Launcher-provided world size (mpirun sets one of these), or 1 when started without a launcher.
int launched_world_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* s = std::getenv(var)) return std::max(1, std::atoi(s));
  return 1;
}

void check_device(int device, const char* fn) {
  const int n = cuda::device_count();
  EMBER_CHECK(device >= 0 && device < n, fn, ": cuda:", device, " does not exist (", n,
              " GPUs visible); one process per GPU, so run at most that many ranks per node");
}

NcclUniqueId unique_id_from_bytes(const std::string& bytes, const char* fn) {
  EMBER_CHECK(bytes.size() == kNcclUniqueIdBytes, fn, ": the NCCL unique id has ", bytes.size(), " bytes, expected ",
              kNcclUniqueIdBytes, " (make one with make_nccl_unique_id on one rank and give every rank the same)");
  NcclUniqueId id;
  std::memcpy(id.data(), bytes.data(), id.size());
  return id;
}

class NcclCommunicator;

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<NcclCommunicator> owner, std::shared_ptr<CudaNcclEvent> done)
      : owner_(std::move(owner)), done_(std::move(done)) {}
  void wait() override;
  bool is_completed() override;

 private:
  std::shared_ptr<NcclCommunicator> owner_;  // keeps the communicator (and its stream) alive
  std::shared_ptr<CudaNcclEvent> done_;      // null when nothing was launched (an empty tensor)
};

class NcclCommunicator : public Communicator, public std::enable_shared_from_this<NcclCommunicator> {
 public:
  // Makes the NCCL stream and the guard; the factories then initialise the guard (alone, or with
  // others inside one NCCL group) and call mark_started(). `bootstrap` (may be null) is the MPI
  // communicator the job was set up with: abort() goes through it so every process of the job stops.
  NcclCommunicator(int rank, int world_size, int device, const CommunicatorOptions& options,
                   std::shared_ptr<Communicator> bootstrap)
      : rank_(rank), world_size_(world_size), device_(device), options_(options), bootstrap_(std::move(bootstrap)) {
    cuda::DeviceGuard guard(device_);
    // The highest priority, so communication is not starved by long compute kernels.
    int least = 0, greatest = 0;
    EMBER_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    EMBER_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
    try {
      api_ = make_cuda_nccl_api(device_, stream_);
      guard_ = std::make_unique<NcclGuard>(api_, rank_, world_size_, "cuda:" + std::to_string(device_), options_.timeout);
      barrier_buffer_ = zeros({1}, TensorOptions(kFloat32).device(Device(DeviceType::CUDA, device_)));
      cuda::record_stream(barrier_buffer_, stream_);  // only ever used there (its value is irrelevant)
    } catch (...) {
      guard_.reset();
      barrier_buffer_ = Tensor();
      (void)cudaStreamDestroy(stream_);
      throw;
    }
  }

  // Never throws, and every wait in it is bounded by the timeout (the collectives in flight,
  // finalize, the stream). The guard first finalizes and destroys NCCL's communicator, or aborts
  // it; an unreported failure ends the job here (see below); the stream
  // is destroyed last, after everything recorded on it has finished and the allocator has
  // forgotten it (issue 19 item 1).
  ~NcclCommunicator() override {
    guard_->shutdown();
    if (started_ && guard_->state() == NcclGuard::State::Failed && !guard_->failure_reported()) {
      // Nobody was told (no call after the failure), so nobody else will end the job: results
      // computed since are garbage, and the peers may be waiting for this rank.
      abort("rank " + std::to_string(rank_) + ": the NCCL communicator failed and no call reported it: " +
            guard_->failure());
    }
    release_stream();
  }

  NcclGuard& guard() { return *guard_; }
  void mark_started() { started_ = true; }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  Device device() const override { return Device(DeviceType::CUDA, device_); }
  std::string name() const override { return "nccl"; }

  WorkHandle all_reduce_async(const Tensor& t, ReduceOp op) override {
    const std::string name = std::string("all_reduce(") + reduce_op_name(op) + ")";
    check_tensor(t, name);
    check_collective_op(name, op, t.dtype());
    return launch(name, {t}, {NcclCall::Kind::AllReduce, t.data_ptr(), t.data_ptr(), count(t), t.dtype(), op, 0});
  }

  WorkHandle broadcast_async(const Tensor& t, int root) override {
    check_tensor(t, "broadcast");
    EMBER_CHECK(root >= 0 && root < world_size_, "broadcast: root ", root, " is not a rank (world size ",
                world_size_, ")");
    return launch("broadcast", {t},
                  {NcclCall::Kind::Broadcast, t.data_ptr(), t.data_ptr(), count(t), t.dtype(), ReduceOp::Sum, root});
  }

  WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    check_tensor(in, "all_gather (in)");
    check_tensor(out, "all_gather (out)");
    check_world_sized("all_gather", in, out, world_size_, /*out_is_larger=*/true);
    return launch("all_gather", {in, out},
                  {NcclCall::Kind::AllGather, in.data_ptr(), out.data_ptr(), count(in), in.dtype(), ReduceOp::Sum, 0});
  }

  WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    const std::string name = check_reduce_scatter_args(
        in, out, op, world_size_, [this](const Tensor& t, const std::string& what) { check_tensor(t, what); });
    return launch(name, {in, out},
                  {NcclCall::Kind::ReduceScatter, in.data_ptr(), out.data_ptr(), count(out), in.dtype(), op, 0});
  }

  // A one-element all-reduce that the host waits for, within the timeout.
  void barrier() override {
    guard_->check_usable();
    cuda::DeviceGuard guard(device_);
    const NcclCall call{NcclCall::Kind::AllReduce, barrier_buffer_.data_ptr(), barrier_buffer_.data_ptr(), 1,
                        kFloat32, ReduceOp::Sum, 0};
    guard_->wait_host("barrier", guard_->launch("barrier", call));
  }

  // From the caller's thread (run_guarded): NCCL first, so its kernels return, then the job.
  [[noreturn]] void abort(const std::string& reason) override {
    guard_->fail(reason, /*print=*/false);
    if (bootstrap_) bootstrap_->abort(reason);  // prints it; MPI_Abort: every process of the job
    std::fprintf(stderr, "%s\n", reason.c_str());
    std::fflush(stderr);
    std::abort();  // one process: it is the whole job (a launcher ends the other ranks)
  }

 private:
  static size_t count(const Tensor& t) { return static_cast<size_t>(t.numel()); }

  void check_tensor(const Tensor& t, const std::string& op) const {
    EMBER_CHECK(t.device().is_cuda() && t.device().index == device_, op, ": this NCCL communicator (rank ", rank_,
                ") takes tensors on cuda:", device_, ", got one on ", t.device());
    EMBER_CHECK(t.is_contiguous(), op, ": the tensor must be contiguous (shape ", t.shape(),
                "); call .contiguous() and copy the result back");
  }

  // Orders the NCCL stream after the compute stream, then hands the collective to the guard
  // (watched from before its enqueue). A count of 0 launches nothing (every rank has the same
  // count, so every rank skips alike). Two threads may launch at once: each collective still
  // follows its own `ready` wait on the NCCL stream, and the guard enqueues one at a time.
  WorkHandle launch(const std::string& op, const std::vector<Tensor>& tensors, const NcclCall& call) {
    guard_->check_usable();
    if (call.count == 0) return std::make_shared<NcclWork>(shared_from_this(), nullptr);
    cuda::DeviceGuard guard(device_);
    // Before anything is queued: it throws for memory the caching allocator does not own.
    for (const Tensor& t : tensors) cuda::record_stream(t, stream_);
    cuda::Event ready;
    ready.record(cuda::compute_stream(device_));
    ready.wait(stream_);
    auto done = std::static_pointer_cast<CudaNcclEvent>(guard_->launch(op, call));  // the real api's events
    return std::make_shared<NcclWork>(shared_from_this(), std::move(done));
  }

  // The NCCL stream is destroyed only once it is idle (its collectives finished, or returned after
  // the abort), checked with an event polled for at most the timeout. Otherwise it is left alive,
  // with what was recorded on it: destroying a busy stream would hand its memory to new tensors
  // while kernels may still write there.
  void release_stream() noexcept {
    bool idle = false;
    try {
      std::shared_ptr<NcclEvent> drained = api_->record_event();
      const auto deadline = Clock::now() + options_.timeout;
      while (!(idle = drained->query()) && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } catch (const std::exception& e) {  // a sticky CUDA error: nothing on this device can be trusted
      std::fprintf(stderr, "rank %d: the NCCL stream of cuda:%d: %s\n", rank_, device_, e.what());
    }
    if (!idle) {
      std::fprintf(stderr, "rank %d: the NCCL stream of cuda:%d is still busy after %lld ms; it is left alive\n", rank_,
                   device_, static_cast<long long>(options_.timeout.count()));
      return;
    }
    cudaSetDevice(device_);
    try {
      cuda::forget_stream(device_, stream_);  // tensors recorded on it may outlive us
    } catch (...) {  // device_ is valid (checked at construction); nothing useful to do otherwise
    }
    barrier_buffer_ = Tensor();
    guard_.reset();
    api_.reset();
    (void)cudaStreamDestroy(stream_);
  }

  int rank_;
  int world_size_;
  int device_;
  CommunicatorOptions options_;
  std::shared_ptr<Communicator> bootstrap_;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<NcclApi> api_;  // on stream_
  std::unique_ptr<NcclGuard> guard_;
  Tensor barrier_buffer_;
  bool started_ = false;  // handed out by a factory (a failed init is reported by the factory's throw)
};

void NcclWork::wait() {
  owner_->guard().check_usable();  // a communicator that failed must not hand out a garbage result silently
  if (!done_) return;
  const int device = owner_->device().index;
  cuda::DeviceGuard guard(device);
  done_->event.wait(cuda::compute_stream(device));
}

bool NcclWork::is_completed() {
  owner_->guard().check_usable();
  return !done_ || done_->query();
}

// Makes one communicator and initialises it (nonblocking, polled under the timeout).
std::shared_ptr<Communicator> start_communicator(int rank, int world_size, int device, const NcclUniqueId& id,
                                                 const CommunicatorOptions& options,
                                                 std::shared_ptr<Communicator> bootstrap) {
  auto comm = std::make_shared<NcclCommunicator>(rank, world_size, device, options, std::move(bootstrap));
  comm->guard().init(id);  // throws after aborting: `comm` is then destroyed with nothing left to free
  comm->mark_started();
  return comm;
}

}  // namespace

std::string make_nccl_unique_id() {
  ncclUniqueId id;
  EMBER_CUDA_CHECK(ncclGetUniqueId(&id));
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

std::shared_ptr<Communicator> make_nccl_communicator(int rank, int world_size, int device,
                                                     const std::string& unique_id,
                                                     const CommunicatorOptions& options) {
  const NcclUniqueId id = unique_id_from_bytes(unique_id, "make_nccl_communicator");
  EMBER_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "make_nccl_communicator: rank ", rank,
              " is not in [0, world size ", world_size, ")");
  check_device(device, "make_nccl_communicator");
  return start_communicator(rank, world_size, device, id, options, nullptr);
}

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
  // others waiting in their NCCL init (until its timeout).
  const bool device_ok = device >= 0 && device < cuda::device_count();
  Tensor ok = from_vector<int64_t>({device_ok ? 0 : 1}, {1});
  bootstrap->all_reduce(ok, ReduceOp::Sum);
  check_device(device, "make_nccl_communicator");
  EMBER_CHECK(ok.item<int64_t>() == 0, "make_nccl_communicator: ", ok.item<int64_t>(),
              " rank(s) have no GPU for their local rank (this rank uses cuda:", device, ")");

  // Rank 0 makes the id NCCL's ranks find each other with; MPI carries it to the others.
  Tensor id_bytes = zeros({static_cast<int64_t>(kNcclUniqueIdBytes)}, TensorOptions(kUInt8));
  if (rank == 0) {
    const std::string id = make_nccl_unique_id();
    std::memcpy(id_bytes.data_ptr(), id.data(), id.size());
  }
  bootstrap->broadcast(id_bytes, 0);
  NcclUniqueId id;
  std::memcpy(id.data(), id_bytes.data_ptr(), id.size());
  return start_communicator(rank, world, device, id, options, std::move(bootstrap));
}

std::vector<std::shared_ptr<Communicator>> make_nccl_communicators(const std::vector<int>& devices,
                                                                   const CommunicatorOptions& options) {
  EMBER_CHECK(!devices.empty(), "make_nccl_communicators: no devices given");
  EMBER_CHECK(std::set<int>(devices.begin(), devices.end()).size() == devices.size(),
              "make_nccl_communicators: a device is listed twice (one communicator per GPU)");
  for (int d : devices) check_device(d, "make_nccl_communicators");
  const int n = static_cast<int>(devices.size());
  const NcclUniqueId id = unique_id_from_bytes(make_nccl_unique_id(), "make_nccl_communicators");
  std::vector<std::shared_ptr<NcclCommunicator>> comms;
  for (int i = 0; i < n; ++i) comms.push_back(std::make_shared<NcclCommunicator>(i, n, devices[i], options, nullptr));
  // One thread starts every rank's init, so they go in one group (NCCL's rule for a thread that
  // drives several GPUs); with nonblocking communicators ncclGroupEnd returns ncclInProgress and
  // each init is then polled by its own guard.
  EMBER_CUDA_CHECK(ncclGroupStart());
  try {
    for (auto& c : comms) c->guard().start_init(id);
  } catch (...) {
    (void)ncclGroupEnd();
    throw;  // the communicators are destroyed: each guard aborts its own
  }
  const ncclResult_t group = ncclGroupEnd();
  EMBER_CHECK(group == ncclSuccess || group == ncclInProgress, "make_nccl_communicators: ncclGroupEnd: ",
              ncclGetErrorString(group));
  try {
    for (auto& c : comms) c->guard().finish_init();
  } catch (const std::exception& e) {
    // Abort every rank now: a rank whose init did finish would otherwise try to finalize with
    // peers that are gone, and wait out its timeout first.
    for (auto& c : comms) c->guard().fail(std::string("make_nccl_communicators: another rank's init failed: ") + e.what(),
                                          /*print=*/false);
    throw;
  }
  std::vector<std::shared_ptr<Communicator>> result;
  for (auto& c : comms) {
    c->mark_started();
    result.push_back(c);
  }
  return result;
}

}  // namespace ember::distributed
