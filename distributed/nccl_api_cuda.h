// The real NcclApi (distributed/nccl_api.h): NCCL and CUDA events on one device and one stream.
// Compiled only with CUDA; included only by files compiled with CUDA.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "cuda/runtime.h"
#include "distributed/nccl_api.h"

namespace ember::distributed {

// What NcclApi::record_event returns here: a CUDA event, which Work::wait also makes the compute
// stream wait for.
class CudaNcclEvent final : public NcclEvent {
 public:
  bool query() override { return event.query(); }
  cuda::Event event;
};

// NCCL calls on cuda:`device`, collectives and events on `stream` (owned by the caller, which
// must keep it alive as long as the table). Every communicator it makes is nonblocking.
std::shared_ptr<NcclApi> make_cuda_nccl_api(int device, cudaStream_t stream);

}  // namespace ember::distributed
