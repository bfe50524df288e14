// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::cross_entropy(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, double) {
  EMBER_FAIL("cross_entropy: not implemented on CUDA yet");
}
void CudaBackend::cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, double) {
  EMBER_FAIL("cross_entropy_backward: not implemented on CUDA yet");
}

}  // namespace ember::cuda
