// Matrix products. (stub: being written)
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace ember {
Tensor matmul(const Tensor&, const Tensor&) { EMBER_FAIL("matmul: not implemented yet"); }
}  // namespace ember
