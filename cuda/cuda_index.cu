// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::index_select(const Tensor&, int, const Tensor&, const Tensor&) {
  EMBER_FAIL("index_select: not implemented on CUDA yet");
}
void CudaBackend::index_add(const Tensor&, int, const Tensor&, const Tensor&) {
  EMBER_FAIL("index_add: not implemented on CUDA yet");
}
void CudaBackend::gather(const Tensor&, int, const Tensor&, const Tensor&) {
  EMBER_FAIL("gather: not implemented on CUDA yet");
}
void CudaBackend::scatter_add(const Tensor&, int, const Tensor&, const Tensor&) {
  EMBER_FAIL("scatter_add: not implemented on CUDA yet");
}

}  // namespace ember::cuda
