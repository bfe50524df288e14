// CPU matmul. (stub: being written)
#include "core/cpu/cpu_backend.h"

namespace ember {
void CpuBackend::matmul(const Tensor&, const Tensor&, const Tensor&) { EMBER_FAIL("matmul: not implemented yet"); }
}  // namespace ember
