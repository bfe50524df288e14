// PLACEHOLDER: stubs until this family's kernels are written (replace this whole file).
#include "cuda/cuda_backend.h"

namespace ember::cuda {

void CudaBackend::sgd_step(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&, const SGDStep&) {
  EMBER_FAIL("sgd_step: not implemented on CUDA yet");
}
void CudaBackend::adam_step(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&, const AdamStep&) {
  EMBER_FAIL("adam_step: not implemented on CUDA yet");
}

}  // namespace ember::cuda
