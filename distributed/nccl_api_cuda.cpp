// The real NcclApi: see nccl_api.h for what each call promises and nccl_api_cuda.h for its use.
// Each call first makes its device current (cuda::DeviceGuard), because the watchdog thread calls
// some of them too.
#include "distributed/nccl_api_cuda.h"

#include <nccl.h>

#include <cstring>
#include <string>

#include "core/error.h"
#include "cuda/cuda_backend.h"

// Nonblocking communicators (config.blocking), ncclCommFinalize and ncclGetLastError came in 2.14.
#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "ember's NCCL communicator needs NCCL 2.14 or newer (nonblocking communicators)"
#endif

namespace ember::distributed {

static_assert(sizeof(ncclUniqueId) == kNcclUniqueIdBytes, "NcclUniqueId must hold exactly an ncclUniqueId");

namespace {

ncclComm_t nccl(NcclApi::Comm comm) { return static_cast<ncclComm_t>(comm); }

// NCCL's result as an NcclStatus; an error carries NCCL's own last message when it has one.
NcclStatus status_of(ncclResult_t rc, ncclComm_t comm) {
  if (rc == ncclSuccess) return NcclStatus::success();
  if (rc == ncclInProgress) return NcclStatus::in_progress();
  std::string text = ncclGetErrorString(rc);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') text += std::string(" (") + last + ")";
  return NcclStatus::error(text);
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Int64: return ncclInt64;
    case DType::UInt8: return ncclUint8;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Float16: return ncclFloat16;
  }
  EMBER_FAIL("NCCL: dtype ", dtype_name(t), " has no NCCL type");
}

// The communicator checked the op already (check_collective_op): ArgMax/ArgMin never get here.
ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
    case ReduceOp::Mean: return ncclAvg;  // NCCL >= 2.10 divides by the world size itself
    default: break;
  }
  EMBER_FAIL("NCCL: ReduceOp ", reduce_op_name(op), " has no NCCL reduction");
}

class CudaNcclApi final : public NcclApi {
 public:
  CudaNcclApi(int device, cudaStream_t stream) : device_(device), stream_(stream) {}

  NcclStatus init_rank(Comm* comm, int world_size, const NcclUniqueId& id, int rank) override {
    cuda::DeviceGuard guard(device_);
    ncclUniqueId nccl_id;
    std::memcpy(&nccl_id, id.data(), sizeof(nccl_id));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // every call returns at once; ncclInProgress is polled (NcclGuard)
    ncclComm_t c = nullptr;
    const ncclResult_t rc = ncclCommInitRankConfig(&c, world_size, nccl_id, rank, &config);
    *comm = c;
    return status_of(rc, c);
  }

  NcclStatus get_async_error(Comm comm) override {
    cuda::DeviceGuard guard(device_);
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(nccl(comm), &state);
    if (rc != ncclSuccess) return status_of(rc, nccl(comm));
    return status_of(state, nccl(comm));
  }

  NcclStatus enqueue(Comm comm, const NcclCall& call) override {
    cuda::DeviceGuard guard(device_);
    const ncclDataType_t type = nccl_type(call.dtype);
    ncclResult_t rc = ncclSuccess;
    switch (call.kind) {
      case NcclCall::Kind::AllReduce:
        rc = ncclAllReduce(call.send, call.recv, call.count, type, nccl_op(call.op), nccl(comm), stream_);
        break;
      case NcclCall::Kind::Broadcast:
        rc = ncclBroadcast(call.send, call.recv, call.count, type, call.root, nccl(comm), stream_);
        break;
      case NcclCall::Kind::AllGather:
        rc = ncclAllGather(call.send, call.recv, call.count, type, nccl(comm), stream_);
        break;
      case NcclCall::Kind::ReduceScatter:
        rc = ncclReduceScatter(call.send, call.recv, call.count, type, nccl_op(call.op), nccl(comm), stream_);
        break;
    }
    return status_of(rc, nccl(comm));
  }

  std::shared_ptr<NcclEvent> record_event() override {
    cuda::DeviceGuard guard(device_);
    auto done = std::make_shared<CudaNcclEvent>();
    done->event.record(stream_);
    return done;
  }

  NcclStatus finalize(Comm comm) override {
    cuda::DeviceGuard guard(device_);
    return status_of(ncclCommFinalize(nccl(comm)), nccl(comm));
  }

  NcclStatus destroy(Comm comm) override {
    cuda::DeviceGuard guard(device_);
    return status_of(ncclCommDestroy(nccl(comm)), nullptr);  // the handle is gone: no last error
  }

  NcclStatus abort(Comm comm) override {
    cuda::DeviceGuard guard(device_);
    return status_of(ncclCommAbort(nccl(comm)), nullptr);
  }

 private:
  int device_;
  cudaStream_t stream_;
};

}  // namespace

std::shared_ptr<NcclApi> make_cuda_nccl_api(int device, cudaStream_t stream) {
  return std::make_shared<CudaNcclApi>(device, stream);
}

}  // namespace ember::distributed
