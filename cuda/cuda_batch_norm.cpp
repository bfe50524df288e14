// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::batch_norm(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, double, double) {
  EMBER_FAIL("batch_norm: not implemented on CUDA yet");
}
void CudaBackend::batch_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool) {
  EMBER_FAIL("batch_norm_backward: not implemented on CUDA yet");
}

}  // namespace ember::cuda
