// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::softmax(const Tensor&, const Tensor&, int, bool) {
  EMBER_FAIL("softmax: not implemented on CUDA yet");
}
void CudaBackend::softmax_backward(const Tensor&, const Tensor&, const Tensor&, int, bool) {
  EMBER_FAIL("softmax_backward: not implemented on CUDA yet");
}

}  // namespace ember::cuda
