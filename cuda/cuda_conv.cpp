// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::conv2d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Window2d, int64_t) {
  EMBER_FAIL("conv2d: not implemented on CUDA yet");
}
void CudaBackend::conv2d_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, Window2d, int64_t) {
  EMBER_FAIL("conv2d_backward: not implemented on CUDA yet");
}

}  // namespace ember::cuda
