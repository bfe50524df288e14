// NcclApi: every NCCL (and CUDA event) call the NCCL communicator makes, as a small table of
// virtual functions over host-only types, so that the state machine which keeps those calls from
// hanging (distributed/nccl_guard.h) runs on the CPU against a fake in the tests
// (tests/fake_nccl_api.h), and against NCCL itself in distributed/nccl_api_cuda.cpp.
//
// The real table makes every communicator nonblocking (ncclCommInitRankConfig with
// config.blocking = 0): no call below waits for a peer. A call that cannot finish at once returns
// InProgress, and the caller polls get_async_error() until it says Success or Error, or until its
// own deadline passes. Only abort() and destroy() may take a moment, and neither waits for peers.
//
// NCCL's thread-safety rule (one thread at a time on a communicator, ncclCommGetAsyncError and
// ncclCommAbort included) is the caller's to keep: NcclGuard makes every call on a handle under
// one mutex.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/reduce_op.h"

namespace ember::distributed {

// ncclUniqueId as plain bytes (NCCL_UNIQUE_ID_BYTES; checked against nccl.h where it is used).
inline constexpr size_t kNcclUniqueIdBytes = 128;
using NcclUniqueId = std::array<uint8_t, kNcclUniqueIdBytes>;

// What an NCCL call said: done, still running (poll get_async_error), or failed with NCCL's text.
struct NcclStatus {
  enum class Code { Success, InProgress, Error };
  Code code = Code::Success;
  std::string message;  // Error only

  static NcclStatus success() { return {}; }
  static NcclStatus in_progress() { return {Code::InProgress, ""}; }
  static NcclStatus error(std::string message) { return {Code::Error, std::move(message)}; }
  bool is_success() const { return code == Code::Success; }
  bool is_in_progress() const { return code == Code::InProgress; }
  bool is_error() const { return code == Code::Error; }
};

// One collective, as NCCL takes it: buffers on the communicator's device, the per-rank element
// count NCCL expects (the input count of all_gather, the output count of reduce_scatter).
struct NcclCall {
  enum class Kind { AllReduce, Broadcast, AllGather, ReduceScatter };
  Kind kind = Kind::AllReduce;
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  DType dtype = DType::Float32;
  ReduceOp op = ReduceOp::Sum;  // AllReduce, ReduceScatter
  int root = 0;                 // Broadcast
};

// The point in the NCCL stream right after an enqueued collective (a CUDA event).
class NcclEvent {
 public:
  virtual ~NcclEvent() = default;
  // True once the collective has finished on the device. Never blocks. Throws ember::Error on a
  // CUDA error; after a sticky one (a device assert, an illegal address) every query throws.
  virtual bool query() = 0;
};

class NcclApi {
 public:
  using Comm = void*;  // ncclComm_t
  virtual ~NcclApi() = default;

  // ncclCommInitRankConfig(comm, world_size, id, rank) with config.blocking = 0, on this table's
  // device. Usually InProgress: poll get_async_error until the communicator is ready.
  virtual NcclStatus init_rank(Comm* comm, int world_size, const NcclUniqueId& id, int rank) = 0;
  // ncclCommGetAsyncError: Success (idle and healthy), InProgress (init, an enqueue or finalize
  // still running), or the error that broke the communicator.
  virtual NcclStatus get_async_error(Comm comm) = 0;
  // ncclAllReduce / ncclBroadcast / ncclAllGather / ncclReduceScatter on the NCCL stream.
  // InProgress means the collective is not on the stream yet: poll get_async_error until Success
  // before recording anything after it, and before the next call on this communicator.
  virtual NcclStatus enqueue(Comm comm, const NcclCall& call) = 0;
  // cudaEventRecord on the NCCL stream: marks the end of the collective enqueued last.
  virtual std::shared_ptr<NcclEvent> record_event() = 0;
  // ncclCommFinalize: flushes the collectives issued (InProgress until they are done everywhere).
  virtual NcclStatus finalize(Comm comm) = 0;
  // ncclCommDestroy: frees a finalized communicator.
  virtual NcclStatus destroy(Comm comm) = 0;
  // ncclCommAbort: stops every collective of the communicator (their kernels return) and frees it.
  virtual NcclStatus abort(Comm comm) = 0;
};

}  // namespace ember::distributed
