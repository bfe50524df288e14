// Gradient clipping by global norm — PyTorch's torch.nn.utils.clip_grad_norm_.
#pragma once

#include <limits>
#include <vector>

#include "core/tensor.h"

namespace ember::optim {

inline constexpr double kInfNorm = std::numeric_limits<double>::infinity();

// Computes the norm of all gradients of `parameters` taken together (as if concatenated into one
// vector; parameters without a gradient are skipped), and when it exceeds max_norm scales every
// gradient in place by max_norm / (total_norm + 1e-6). Returns the total norm from before clipping
// (0 when no parameter has a gradient). norm_type is p > 0 for the p-norm, or kInfNorm for the
// largest absolute value. With error_if_nonfinite, a NaN or infinite total norm is an error instead
// of being applied (which would turn every gradient into NaN).
double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

}  // namespace ember::optim
