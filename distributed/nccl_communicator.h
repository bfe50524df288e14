// NcclCommunicator: collectives on CUDA tensors over NCCL.
//
// Three ways to make one:
//   - one process per GPU, launched by `mpirun -np N`: make_nccl_communicator(). Rank 0 makes the
//     ncclUniqueId and broadcasts it over MPI; each rank uses GPU local_rank (its index on its node).
//   - world size 1 (a one-GPU machine, MPI not needed or not installed): make_nccl_communicator()
//     when the process was not started by mpirun (or by mpirun -np 1).
//   - one process driving several GPUs: make_nccl_communicators({0, 1, ...}) returns one
//     communicator per GPU (rank i on devices[i]); use each from its own thread.
//
// Collectives run on a dedicated NCCL stream per communicator, which first waits for the work
// already queued on the compute stream (cuda/runtime.h), so the tensor is ready. Work::wait() makes
// the compute stream wait for the collective without blocking the host; is_completed() queries.
// barrier() does block the host; while it waits a watchdog checks ncclCommGetAsyncError and the
// timeout, and on either aborts the communicator (ncclCommAbort) and throws an Error naming the op.
//
// Built only with CUDA; otherwise nccl_communicator_stub.cpp makes both factories throw
// "built without CUDA".
#pragma once

#include <memory>
#include <vector>

#include "distributed/communicator.h"

namespace ember::distributed {

std::shared_ptr<Communicator> make_nccl_communicator(const CommunicatorOptions& options = {});

// Single process, several GPUs (ncclCommInitAll). devices must be distinct and valid.
std::vector<std::shared_ptr<Communicator>> make_nccl_communicators(const std::vector<int>& devices,
                                                                   const CommunicatorOptions& options = {});

}  // namespace ember::distributed
