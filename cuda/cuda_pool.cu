// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::max_pool2d(const Tensor&, const Tensor&, const Tensor&, Window2d) {
  EMBER_FAIL("max_pool2d: not implemented on CUDA yet");
}
void CudaBackend::max_pool2d_backward(const Tensor&, const Tensor&, const Tensor&) {
  EMBER_FAIL("max_pool2d_backward: not implemented on CUDA yet");
}
void CudaBackend::avg_pool2d(const Tensor&, const Tensor&, Window2d, bool) {
  EMBER_FAIL("avg_pool2d: not implemented on CUDA yet");
}
void CudaBackend::avg_pool2d_backward(const Tensor&, const Tensor&, Window2d, bool) {
  EMBER_FAIL("avg_pool2d_backward: not implemented on CUDA yet");
}
void CudaBackend::adaptive_avg_pool2d(const Tensor&, const Tensor&) {
  EMBER_FAIL("adaptive_avg_pool2d: not implemented on CUDA yet");
}
void CudaBackend::adaptive_avg_pool2d_backward(const Tensor&, const Tensor&) {
  EMBER_FAIL("adaptive_avg_pool2d_backward: not implemented on CUDA yet");
}

}  // namespace ember::cuda
