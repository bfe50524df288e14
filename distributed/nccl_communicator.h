// NcclCommunicator: collectives on CUDA tensors over NCCL.
//
// Four ways to make one:
//   - one process per GPU, launched by `mpirun -np N`: make_nccl_communicator(). Rank 0 makes the
//     ncclUniqueId and broadcasts it over MPI; each rank uses GPU local_rank (its index on its node).
//   - one process per GPU, started by any launcher that shares bytes between the ranks (a TCP
//     store): one rank calls make_nccl_unique_id(), every rank gets those bytes and calls
//     make_nccl_communicator(rank, world_size, device, id).
//   - world size 1 (a one-GPU machine, MPI not needed or not installed): make_nccl_communicator()
//     when the process was not started by mpirun (or by mpirun -np 1).
//   - one process driving several GPUs: make_nccl_communicators({0, 1, ...}) returns one
//     communicator per GPU (rank i on devices[i]); use each from its own thread.
//
// Collectives run on a dedicated NCCL stream per communicator, which first waits for the work
// already queued on the compute stream (cuda/runtime.h), so the tensor is ready. Work::wait() makes
// the compute stream wait for the collective without blocking the host; is_completed() queries.
// barrier() does block the host, within the timeout.
//
// Nothing waits forever (distributed/nccl_guard.h): the communicator is nonblocking; its init and
// every enqueue are polled under CommunicatorOptions::timeout, and a watchdog thread watches each
// collective until it finishes. A timeout, an NCCL error or a CUDA error aborts NCCL's
// communicator; the call that notices it, and every later call (Work::wait() included), throws an
// Error naming the op, the rank and the timeout; run_guarded (mpi_communicator.h) then ends the job
// from the calling thread. Destroying a healthy communicator finalizes it (ncclCommFinalize, polled)
// and destroys it; an unhealthy one is aborted.
//
// Built only with CUDA; otherwise nccl_communicator_stub.cpp makes every factory throw
// "built without CUDA".
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "distributed/nccl_api.h"  // kNcclUniqueIdBytes

namespace ember::distributed {

std::shared_ptr<Communicator> make_nccl_communicator(const CommunicatorOptions& options = {});

// A fresh NCCL unique id (ncclGetUniqueId): kNcclUniqueIdBytes (128) raw bytes in a string (as a
// key-value store carries them), made by one rank and given to all, by any means. It holds the
// address of the rank that made it, so make it on a rank whose host the others can reach.
std::string make_nccl_unique_id();

// Rank `rank` of `world_size` on cuda:`device`, all ranks calling it with the same `unique_id`.
// Returns when every rank has joined; otherwise throws, after options.timeout, an Error naming
// this rank and the timeout (the half-made NCCL communicator is aborted). Its abort() ends this
// process only (no MPI): the launcher ends the other ranks.
std::shared_ptr<Communicator> make_nccl_communicator(int rank, int world_size, int device,
                                                     const std::string& unique_id,
                                                     const CommunicatorOptions& options = {});

// Single process, several GPUs (one NCCL group). devices must be distinct and valid.
std::vector<std::shared_ptr<Communicator>> make_nccl_communicators(const std::vector<int>& devices,
                                                                   const CommunicatorOptions& options = {});

}  // namespace ember::distributed
