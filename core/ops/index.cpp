// Indexing ops. (stub: being written)
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace ember {
Tensor index_select(const Tensor&, int64_t, const Tensor&) { EMBER_FAIL("index_select: not implemented yet"); }
Tensor gather(const Tensor&, int64_t, const Tensor&) { EMBER_FAIL("gather: not implemented yet"); }
Tensor embedding(const Tensor&, const Tensor&) { EMBER_FAIL("embedding: not implemented yet"); }
Tensor one_hot(const Tensor&, int64_t) { EMBER_FAIL("one_hot: not implemented yet"); }
Tensor dropout(const Tensor&, double, bool, Generator*) { EMBER_FAIL("dropout: not implemented yet"); }
}  // namespace ember
