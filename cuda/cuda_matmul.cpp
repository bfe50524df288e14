// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::matmul(const Tensor&, const Tensor&, const Tensor&) {
  EMBER_FAIL("matmul: not implemented on CUDA yet");
}

}  // namespace ember::cuda
