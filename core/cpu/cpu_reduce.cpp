// CPU reductions. (stub: being written)
#include "core/cpu/cpu_backend.h"

namespace ember {
void CpuBackend::reduce(ReduceOp, const Tensor&, const Tensor&, uint32_t) { EMBER_FAIL("reduce: not implemented yet"); }
}  // namespace ember
