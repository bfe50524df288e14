// Softmax family. (stub: being written)
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace ember {
Tensor softmax(const Tensor&, int64_t) { EMBER_FAIL("softmax: not implemented yet"); }
Tensor log_softmax(const Tensor&, int64_t) { EMBER_FAIL("log_softmax: not implemented yet"); }
}  // namespace ember
