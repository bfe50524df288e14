// MpiCommunicator: collectives on CPU tensors over MPI (OpenMPI or MPICH), one process per rank.
//
//   int main(int argc, char** argv) {
//     ember::distributed::MpiEnvironment::init(&argc, &argv);   // optional: the factory does it too
//     auto comm = ember::distributed::make_mpi_communicator();
//     return ember::distributed::run_guarded(*comm, [&] { train(*comm); return 0; });
//   }
//   $ mpirun -np 4 ./train
//
// Collectives are MPI's non-blocking ones (MPI_Iallreduce, MPI_Ibcast, ...); Work::wait() drives
// them with MPI_Test until they finish or CommunicatorOptions::timeout passes. A timeout prints
// and throws an Error naming the op, this rank and the timeout, and marks the communicator broken:
// the job is then aborted (MPI_Abort) by run_guarded, by the terminate handler, or at the latest
// when the process exits, so no rank waits forever for a peer that is gone.
//
// Built only when CMake finds MPI; otherwise mpi_communicator_stub.cpp makes every function here
// throw "built without MPI".
#pragma once

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "distributed/communicator.h"

namespace ember::distributed {

// The process's MPI library: initialised once (MPI_Init_thread), finalised at exit (or, when a
// collective timed out and peers may still be blocked in it, the job is aborted instead).
class MpiEnvironment {
 public:
  // Idempotent and thread-safe. Also installs a std::terminate handler that prints
  // "rank R failed: <what>" and calls MPI_Abort, so an uncaught exception on one rank stops all.
  static void init(int* argc = nullptr, char*** argv = nullptr);
  static bool available();  // false when ember was built without MPI
  static int rank();        // in MPI_COMM_WORLD; init() first
  static int world_size();
  // This process's index among the ranks on its node (OMPI_COMM_WORLD_LOCAL_RANK, or an MPI
  // shared-memory split when the launcher does not set it): the GPU a rank should use.
  static int local_rank();
  // Kills the whole job after printing `reason` (MPI_Abort(MPI_COMM_WORLD, 1)).
  [[noreturn]] static void abort(const std::string& reason);
};

// A communicator over every rank of MPI_COMM_WORLD (its own duplicate, so several communicators
// never mix messages). Collective: every rank must call it. Nothing in it blocks past
// options.timeout: every rank first reports to rank 0 (a rank that never arrives is a timeout
// error on rank 0 naming it), then the duplicate is made with MPI_Comm_idup, polled. Checks that
// all ranks agree on world size and device type, with an error listing each rank's values otherwise,
// and that MPI's world size is the one the launcher announced (rendezvous.h,
// check_world_size_matches_launch): a process started by ember-run or srun, not mpirun, is a world
// of one to MPI, and is refused instead of training alone.
std::shared_ptr<Communicator> make_mpi_communicator(const CommunicatorOptions& options = {});

// Collective start-up check over a CPU communicator: every rank passes `values` (e.g. world size,
// device type, a library version) and all must be equal; otherwise every rank throws an Error
// saying `what` differs and listing each rank's values. Used by the communicator factories.
void check_same_on_all_ranks(Communicator& cpu_comm, const std::string& what, const std::vector<int64_t>& values);

// Runs fn; if it throws, prints "rank R failed: <what>" to stderr and aborts the whole job
// (comm.abort), so ranks blocked in a collective with this one stop instead of hanging.
// Returns fn's result.
template <typename Fn>
auto run_guarded(Communicator& comm, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    comm.abort("rank " + std::to_string(comm.rank()) + " failed: " + e.what());
  } catch (...) {
    comm.abort("rank " + std::to_string(comm.rank()) + " failed: unknown exception");
  }
  std::abort();  // not reached: abort() does not return (the compiler cannot see that through virtual)
}

// Ends the program for a failure before a communicator exists (bad flags, missing data, a
// communicator that could not be made). Under MPI it prints "rank R failed during start-up: <what>"
// and aborts the whole job (MPI_Abort), so ranks already waiting in their communicator's start-up
// stop within a second instead of hanging; without MPI it prints "error: <what>" and exits 1.
[[noreturn]] void fail_startup(const std::string& what);

// run_guarded for the code before a communicator exists: if fn throws, fail_startup(what).
// Returns fn's result.
template <typename Fn>
auto run_guarded_startup(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    fail_startup(e.what());
  } catch (...) {
    fail_startup("unknown exception");
  }
}

}  // namespace ember::distributed
