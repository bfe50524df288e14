// Reductions. (stub: being written)
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace ember {
Tensor sum(const Tensor&, const std::vector<int64_t>&, bool) { EMBER_FAIL("sum: not implemented yet"); }
Tensor mean(const Tensor&, const std::vector<int64_t>&, bool) { EMBER_FAIL("mean: not implemented yet"); }
Tensor max(const Tensor&, const std::vector<int64_t>&, bool) { EMBER_FAIL("max: not implemented yet"); }
Tensor min(const Tensor&, const std::vector<int64_t>&, bool) { EMBER_FAIL("min: not implemented yet"); }
Tensor var(const Tensor&, const std::vector<int64_t>&, bool, bool) { EMBER_FAIL("var: not implemented yet"); }
Tensor logsumexp(const Tensor&, const std::vector<int64_t>&, bool) { EMBER_FAIL("logsumexp: not implemented yet"); }
Tensor argmax(const Tensor&, int64_t, bool) { EMBER_FAIL("argmax: not implemented yet"); }
Tensor argmin(const Tensor&, int64_t, bool) { EMBER_FAIL("argmin: not implemented yet"); }
Tensor sum_to(const Tensor&, const Shape&) { EMBER_FAIL("sum_to: not implemented yet"); }
}  // namespace ember
