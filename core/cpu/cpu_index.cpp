// CPU indexing kernels. (stub: being written)
#include "core/cpu/cpu_backend.h"

namespace ember {
void CpuBackend::index_select(const Tensor&, int, const Tensor&, const Tensor&) { EMBER_FAIL("index_select: not implemented yet"); }
void CpuBackend::index_add(const Tensor&, int, const Tensor&, const Tensor&) { EMBER_FAIL("index_add: not implemented yet"); }
void CpuBackend::gather(const Tensor&, int, const Tensor&, const Tensor&) { EMBER_FAIL("gather: not implemented yet"); }
void CpuBackend::scatter_add(const Tensor&, int, const Tensor&, const Tensor&) { EMBER_FAIL("scatter_add: not implemented yet"); }
}  // namespace ember
