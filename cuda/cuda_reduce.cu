// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::reduce(ReduceOp, const Tensor&, const Tensor&, uint32_t) {
  EMBER_FAIL("reduce: not implemented on CUDA yet");
}

}  // namespace ember::cuda
