// MpiCommunicator: see mpi_communicator.h.
//
// Thread safety: every MPI call goes through one process-wide mutex, so the library only needs
// MPI_THREAD_SERIALIZED, and a DDP gradient hook may start collectives from another thread than
// the one that waits on them.
#include "distributed/mpi_communicator.h"

#include <mpi.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/ember.h"
#include "core/error.h"
#include "distributed/rendezvous.h"

namespace ember::distributed {

namespace {

std::mutex& mpi_mutex() {
  static std::mutex m;
  return m;
}

// Set when a collective timed out: its peers may be blocked in it forever, and MPI_Finalize would
// wait for them, so the exit handler aborts the job instead of finalising.
std::atomic<bool> g_job_broken{false};
std::once_flag g_init_once;
bool g_we_initialised = false;

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, len);
}

// Every MPI call returns an error code (the communicators below use MPI_ERRORS_RETURN).
#define EMBER_MPI_CHECK(call)                                                    \
  do {                                                                           \
    const int ember_mpi_rc_ = (call);                                            \
    if (ember_mpi_rc_ != MPI_SUCCESS) [[unlikely]]                               \
      EMBER_FAIL("MPI error in ", #call, ": ", mpi_error_text(ember_mpi_rc_));   \
  } while (0)

int world_rank_or_minus_one() {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (!initialised || finalised) return -1;
  int r = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

[[noreturn]] void abort_job(const std::string& reason) {
  std::fprintf(stderr, "%s\n", reason.c_str());
  std::fflush(stderr);
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (initialised && !finalised) MPI_Abort(MPI_COMM_WORLD, 1);  // no lock: another thread may hold it
  std::abort();
}

// An uncaught exception on one rank must stop the others, which may be blocked in a collective.
[[noreturn]] void terminate_handler() {
  std::string what = "terminate called without an active exception";
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
      what = "unknown exception";
    }
  }
  abort_job("rank " + std::to_string(world_rank_or_minus_one()) + " failed: " + what);
}

void finalize_at_exit() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (finalised) return;
  if (g_job_broken.load()) {
    std::fprintf(stderr, "rank %d: a collective timed out earlier; aborting the job instead of finalising MPI\n",
                 world_rank_or_minus_one());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}

MPI_Datatype mpi_type(DType t, const char* op) {
  switch (t) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int64: return MPI_INT64_T;
    case DType::UInt8: return MPI_UINT8_T;
    default: EMBER_FAIL(op, ": dtype ", dtype_name(t), " is not supported by the MPI communicator "
                            "(supported: float32, float64, int64, uint8)");
  }
}

// Mean is a sum followed by a division on each rank (MPI has no average).
MPI_Op mpi_op(ReduceOp op, DType t, const std::string& name) {
  check_collective_op(name, op, t);
  switch (op) {
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
    default: return MPI_SUM;  // Sum, and Mean before its division
  }
}

void divide_in_place(const Tensor& t, int world_size) {
  const int64_t n = t.numel();
  if (t.dtype() == DType::Float32) {
    float* p = static_cast<float*>(t.data_ptr());
    for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<float>(world_size);
  } else if (t.dtype() == DType::Float64) {
    double* p = static_cast<double*>(t.data_ptr());
    for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<double>(world_size);
  }
}

int checked_count(int64_t n, const char* op) {
  EMBER_CHECK(n <= INT_MAX, op, ": ", n, " elements exceed MPI's int count limit (", INT_MAX, ")");
  return static_cast<int>(n);
}

// One non-blocking collective. Holds the tensors so their storage outlives the operation.
class MpiWork : public Work {
 public:
  MpiWork(std::string op, int rank, std::chrono::milliseconds timeout, std::vector<Tensor> keep_alive,
          std::function<void()> on_complete = {})
      : op_(std::move(op)), rank_(rank), timeout_(timeout), tensors_(std::move(keep_alive)),
        on_complete_(std::move(on_complete)) {}

  ~MpiWork() override {
    // MPI forbids freeing an active collective request, and the buffers must outlive it.
    if (!done_ && !failed_) {
      try {
        wait();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
      }
    }
  }

  MPI_Request* request() { return &request_; }

  bool is_completed() override {
    if (done_) return true;
    if (failed_) return false;
    int flag = 0;
    {
      std::lock_guard<std::mutex> lock(mpi_mutex());
      EMBER_MPI_CHECK(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE));
    }
    if (flag) finish();
    return done_;
  }

  void wait() override {
    EMBER_CHECK(!failed_, op_, " on rank ", rank_, ": waited on again after it timed out");
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + timeout_;
    // MPI progresses non-blocking collectives only inside MPI calls (each fragment of a large
    // message needs a call on both sides), so poll without sleeping, as MPI_Wait does; yield
    // between polls so an oversubscribed core goes to the peer this rank is waiting for.
    while (!is_completed()) {
      if (std::chrono::steady_clock::now() > deadline) {
        failed_ = true;
        g_job_broken = true;
        const std::string msg = detail::str_cat(
            op_, " timed out on rank ", rank_, " after ", timeout_.count(),
            " ms (CommunicatorOptions::timeout): a peer rank has not called the same collective "
            "(it failed, hangs, or called collectives in another order or with other sizes); "
            "the job will be aborted");
        std::fprintf(stderr, "%s\n", msg.c_str());
        std::fflush(stderr);
        EMBER_FAIL(msg);
      }
      std::this_thread::yield();
    }
  }

 private:
  void finish() {
    done_ = true;
    if (on_complete_) on_complete_();
    tensors_.clear();
  }

  std::string op_;
  int rank_;
  std::chrono::milliseconds timeout_;
  std::vector<Tensor> tensors_;
  std::function<void()> on_complete_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool done_ = false;
  bool failed_ = false;
};

// ---- start-up: nothing here may block without a deadline ----
//
// MPI_Comm_dup is a blocking collective over MPI_COMM_WORLD: a rank that failed before making its
// communicator (bad flags, missing data) and went on to exit would leave the others spinning in it
// forever, outside any collective timeout. So the communicator is made in two polled steps:
//  1. An arrival check: every rank sends "arrived" to rank 0, which answers "all arrived" once it
//     has heard from everyone. Rank 0 knows exactly who is missing when its deadline passes.
//  2. MPI_Comm_idup, polled against the same deadline.
// A timeout throws an Error naming the step, this rank and the missing ranks, and marks the job
// broken, so it is aborted (run_guarded, the terminate handler, or at exit) instead of hanging.

constexpr int kArrivalTag = 32123;  // on MPI_COMM_WORLD, used only here; below MPI's guaranteed tag bound 32767

// Polls `requests` until all complete (true) or `deadline` passes (false); the requests still
// pending then are left in place (the job is aborted, so they are never completed or freed).
bool poll_until(std::vector<MPI_Request>& requests, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    int all_done = 0;
    {
      std::lock_guard<std::mutex> lock(mpi_mutex());
      EMBER_MPI_CHECK(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &all_done,
                                  MPI_STATUSES_IGNORE));
    }
    if (all_done) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
}

// The ranks whose request has not completed (requests[i] belongs to ranks[i]).
std::string pending_ranks(std::vector<MPI_Request>& requests, const std::vector<int>& ranks) {
  std::string out;
  std::lock_guard<std::mutex> lock(mpi_mutex());
  for (size_t i = 0; i < requests.size(); ++i) {
    int done = 0;
    MPI_Test(&requests[i], &done, MPI_STATUS_IGNORE);
    if (!done) out += (out.empty() ? "" : ", ") + std::to_string(ranks[i]);
  }
  return out;
}

[[noreturn]] void startup_timed_out(const std::string& what, int rank, std::chrono::milliseconds timeout,
                                    const std::string& why) {
  g_job_broken = true;
  const std::string msg = detail::str_cat("communicator start-up (", what, ") timed out on rank ", rank, " after ",
                                          timeout.count(), " ms (CommunicatorOptions::timeout): ", why,
                                          "; the job will be aborted");
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
  EMBER_FAIL(msg);
}

// The buffers of requests that may still be pending when a deadline passes: MPI may write into
// them until the job is aborted, so on a timeout they are deliberately leaked, never freed.
template <typename T>
class StartupBuffer {
 public:
  explicit StartupBuffer(size_t n, T fill = {}) : data_(new std::vector<T>(n, fill)) {}
  ~StartupBuffer() { delete data_; }
  StartupBuffer(const StartupBuffer&) = delete;
  StartupBuffer& operator=(const StartupBuffer&) = delete;
  T* at(size_t i) { return &(*data_)[i]; }
  void leak() { data_ = nullptr; }

 private:
  std::vector<T>* data_;
};

// Step 1: returns once every rank has arrived, or throws naming the ranks that did not.
void wait_for_every_rank(int rank, int world_size, std::chrono::milliseconds timeout) {
  if (world_size == 1) return;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  StartupBuffer<char> tokens(world_size, 1);  // one byte sent to or received from each peer
  auto fail = [&](const std::string& why) {
    tokens.leak();
    startup_timed_out("arrival check before MPI_Comm_dup", rank, timeout, why);
  };
  if (rank == 0) {
    std::vector<MPI_Request> arrivals(world_size - 1, MPI_REQUEST_NULL), answers(world_size - 1, MPI_REQUEST_NULL);
    std::vector<int> peers;
    {
      std::lock_guard<std::mutex> lock(mpi_mutex());
      for (int r = 1; r < world_size; ++r) {
        peers.push_back(r);
        EMBER_MPI_CHECK(MPI_Irecv(tokens.at(r), 1, MPI_CHAR, r, kArrivalTag, MPI_COMM_WORLD, &arrivals[r - 1]));
      }
    }
    if (!poll_until(arrivals, deadline))
      fail("rank(s) " + pending_ranks(arrivals, peers) +
           " never arrived (they failed before making their communicator, hang, or run another program)");
    {
      std::lock_guard<std::mutex> lock(mpi_mutex());
      for (int r = 1; r < world_size; ++r)
        EMBER_MPI_CHECK(MPI_Isend(tokens.at(r), 1, MPI_CHAR, r, kArrivalTag, MPI_COMM_WORLD, &answers[r - 1]));
    }
    if (!poll_until(answers, deadline))
      fail("rank(s) " + pending_ranks(answers, peers) + " did not take rank 0's answer");
    return;
  }
  std::vector<MPI_Request> both(2, MPI_REQUEST_NULL);
  {
    std::lock_guard<std::mutex> lock(mpi_mutex());
    EMBER_MPI_CHECK(MPI_Isend(tokens.at(0), 1, MPI_CHAR, 0, kArrivalTag, MPI_COMM_WORLD, &both[0]));
    EMBER_MPI_CHECK(MPI_Irecv(tokens.at(1), 1, MPI_CHAR, 0, kArrivalTag, MPI_COMM_WORLD, &both[1]));
  }
  if (!poll_until(both, deadline))
    fail("rank 0 did not confirm that every rank arrived (rank 0 or another rank failed before making its "
         "communicator, or hangs)");
}

// Step 2: this rank's duplicate of MPI_COMM_WORLD, made without blocking past the deadline.
MPI_Comm duplicate_world(int rank, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  StartupBuffer<MPI_Comm> comm(1, MPI_COMM_NULL);  // written by MPI when the duplicate completes
  std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
  {
    std::lock_guard<std::mutex> lock(mpi_mutex());
    EMBER_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, comm.at(0), &request[0]));
  }
  if (!poll_until(request, deadline)) {
    comm.leak();
    startup_timed_out("MPI_Comm_idup", rank, timeout, "a peer rank has not joined (it failed or hangs)");
  }
  return *comm.at(0);
}

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(const CommunicatorOptions& options) : options_(options) {
    const int world_rank = MpiEnvironment::rank();
    wait_for_every_rank(world_rank, MpiEnvironment::world_size(), options_.timeout);
    comm_ = duplicate_world(world_rank, options_.timeout);
    std::lock_guard<std::mutex> lock(mpi_mutex());
    // Errors come back as codes (turned into ember::Error) instead of killing the process.
    EMBER_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    EMBER_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    EMBER_MPI_CHECK(MPI_Comm_size(comm_, &world_size_));
  }

  ~MpiCommunicator() override {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised && !g_job_broken) {
      std::lock_guard<std::mutex> lock(mpi_mutex());
      MPI_Comm_free(&comm_);
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  Device device() const override { return kCPU; }
  std::string name() const override { return "mpi"; }

  WorkHandle all_reduce_async(const Tensor& t, ReduceOp op) override {
    const std::string name = std::string("all_reduce(") + reduce_op_name(op) + ")";
    check_tensor(t, name.c_str());
    MPI_Op mop = mpi_op(op, t.dtype(), name);
    std::function<void()> then;
    if (op == ReduceOp::Mean) then = [t, n = world_size_] { divide_in_place(t, n); };
    auto work = make_work(name, {t}, std::move(then));
    start(name, [&] {
      return MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), checked_count(t.numel(), name.c_str()),
                            mpi_type(t.dtype(), name.c_str()), mop, comm_, work->request());
    });
    return work;
  }

  WorkHandle broadcast_async(const Tensor& t, int root) override {
    check_tensor(t, "broadcast");
    EMBER_CHECK(root >= 0 && root < world_size_, "broadcast: root ", root, " is not a rank (world size ",
                world_size_, ")");
    auto work = make_work("broadcast", {t});
    start("broadcast", [&] {
      return MPI_Ibcast(t.data_ptr(), checked_count(t.numel(), "broadcast"), mpi_type(t.dtype(), "broadcast"), root,
                        comm_, work->request());
    });
    return work;
  }

  WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    check_tensor(in, "all_gather (in)");
    check_tensor(out, "all_gather (out)");
    check_world_sized("all_gather", in, out, world_size_, /*out_is_larger=*/true);
    auto work = make_work("all_gather", {in, out});
    start("all_gather", [&] {
      const MPI_Datatype type = mpi_type(in.dtype(), "all_gather");
      const int n = checked_count(in.numel(), "all_gather");
      checked_count(out.numel(), "all_gather");
      return MPI_Iallgather(in.data_ptr(), n, type, out.data_ptr(), n, type, comm_, work->request());
    });
    return work;
  }

  WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    const std::string name = check_reduce_scatter_args(
        in, out, op, world_size_, [this](const Tensor& t, const std::string& what) { check_tensor(t, what.c_str()); });
    MPI_Op mop = mpi_op(op, in.dtype(), name);
    std::function<void()> then;
    if (op == ReduceOp::Mean) then = [out, n = world_size_] { divide_in_place(out, n); };
    auto work = make_work(name, {in, out}, std::move(then));
    start(name, [&] {
      checked_count(in.numel(), name.c_str());
      return MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), checked_count(out.numel(), name.c_str()),
                                       mpi_type(in.dtype(), name.c_str()), mop, comm_, work->request());
    });
    return work;
  }

  void barrier() override {
    auto work = make_work("barrier", {});
    start("barrier", [&] { return MPI_Ibarrier(comm_, work->request()); });
    work->wait();
  }

  [[noreturn]] void abort(const std::string& reason) override { abort_job(reason); }

 private:
  void check_tensor(const Tensor& t, const char* op) const {
    EMBER_CHECK(!g_job_broken, op, " on rank ", rank_,
                ": the communicator is unusable after an earlier collective timed out");
    EMBER_CHECK(t.device().is_cpu(), op, ": the MPI communicator takes CPU tensors, got one on ", t.device(),
                " (use the NCCL communicator for CUDA tensors)");
    EMBER_CHECK(t.is_contiguous(), op, ": the tensor must be contiguous (shape ", t.shape(),
                "); call .contiguous() and copy the result back");
    mpi_type(t.dtype(), op);
  }

  std::shared_ptr<MpiWork> make_work(const std::string& op, std::vector<Tensor> tensors,
                                     std::function<void()> then = {}) {
    return std::make_shared<MpiWork>(op, rank_, options_.timeout, std::move(tensors), std::move(then));
  }

  template <typename Call>
  void start(const std::string& op, Call&& call) {
    std::lock_guard<std::mutex> lock(mpi_mutex());
    const int rc = call();
    EMBER_CHECK(rc == MPI_SUCCESS, op, " on rank ", rank_, ": MPI error: ", mpi_error_text(rc));
  }

  CommunicatorOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int world_size_ = 1;
};

void require_init(const char* fn) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  EMBER_CHECK(initialised, "MpiEnvironment::", fn, ": MPI is not initialised; call MpiEnvironment::init() first");
}

}  // namespace

void MpiEnvironment::init(int* argc, char*** argv) {
  std::call_once(g_init_once, [&] {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      int provided = MPI_THREAD_SINGLE;
      EMBER_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided));
      g_we_initialised = true;
      if (provided < MPI_THREAD_SERIALIZED)
        std::fprintf(stderr, "ember: warning: MPI provides thread level %d < MPI_THREAD_SERIALIZED; "
                             "use the communicator from one thread only\n", provided);
      std::atexit(finalize_at_exit);
    }
    std::set_terminate(terminate_handler);
  });
}

bool MpiEnvironment::available() { return true; }

int MpiEnvironment::rank() {
  require_init("rank");
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int MpiEnvironment::world_size() {
  require_init("world_size");
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

int MpiEnvironment::local_rank() {
  require_init("local_rank");
  if (const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) return std::atoi(s);
  if (const char* s = std::getenv("MPI_LOCALRANKID")) return std::atoi(s);  // MPICH's Hydra
  static int local = [] {
    std::lock_guard<std::mutex> lock(mpi_mutex());
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    int r = 0;
    MPI_Comm_rank(node, &r);
    MPI_Comm_free(&node);
    return r;
  }();
  return local;
}

void MpiEnvironment::abort(const std::string& reason) { abort_job(reason); }

void fail_startup(const std::string& what) {
  const int rank = world_rank_or_minus_one();
  if (rank < 0) {  // MPI not (or no longer) running: no peers to stop
    std::fprintf(stderr, "error: %s\n", what.c_str());
    std::exit(1);
  }
  abort_job("rank " + std::to_string(rank) + " failed during start-up: " + what);
}

void check_same_on_all_ranks(Communicator& cpu_comm, const std::string& what, const std::vector<int64_t>& values) {
  const int n = cpu_comm.world_size();
  // The lengths must agree before the values can be gathered side by side.
  Tensor len = from_vector<int64_t>({static_cast<int64_t>(values.size())}, {1});
  Tensor lens = empty({n}, TensorOptions(kInt64));
  cpu_comm.all_gather(len, lens);
  const std::vector<int64_t> all_lens = lens.to_vector<int64_t>();
  for (int r = 0; r < n; ++r)
    EMBER_CHECK(all_lens[r] == all_lens[0], "communicator start-up: ranks disagree on ", what, ": rank 0 sends ",
                all_lens[0], " values, rank ", r, " sends ", all_lens[r]);
  const int64_t k = all_lens[0];
  if (k == 0) return;
  Tensor mine = from_vector<int64_t>(values, {k});
  Tensor all = empty({n * k}, TensorOptions(kInt64));
  cpu_comm.all_gather(mine, all);
  const std::vector<int64_t> v = all.to_vector<int64_t>();
  bool same = true;
  for (int64_t i = 0; i < n * k; ++i) same = same && v[i] == v[i % k];
  if (same) return;
  std::ostringstream os;
  for (int r = 0; r < n; ++r) {
    os << (r ? "; " : "") << "rank " << r << ": [";
    for (int64_t i = 0; i < k; ++i) os << (i ? ", " : "") << v[r * k + i];
    os << "]";
  }
  EMBER_FAIL("communicator start-up: ranks disagree on ", what, " (", os.str(), ")");
}

std::shared_ptr<Communicator> make_mpi_communicator(const CommunicatorOptions& options) {
  MpiEnvironment::init();
  auto comm = std::make_shared<MpiCommunicator>(options);
  // A process started by ember-run, torchrun or srun (WORLD_SIZE=2, SLURM_NTASKS=2) but not by
  // mpirun is a world of one to MPI: refuse it rather than let each rank train alone.
  check_world_size_matches_launch(comm->world_size(), "MPI start-up");
  check_same_on_all_ranks(*comm, "world size and device type",
                          {comm->world_size(), static_cast<int64_t>(DeviceType::CPU)});
  return comm;
}

}  // namespace ember::distributed
