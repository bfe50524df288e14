// CPU softmax. (stub: being written)
#include "core/cpu/cpu_backend.h"

namespace ember {
void CpuBackend::softmax(const Tensor&, const Tensor&, int, bool) { EMBER_FAIL("softmax: not implemented yet"); }
void CpuBackend::softmax_backward(const Tensor&, const Tensor&, const Tensor&, int, bool) {
  EMBER_FAIL("softmax_backward: not implemented yet");
}
}  // namespace ember
