// Argument checks shared by the neural-network ops in core/ops/{conv,pool,norm}.cpp (internal;
// not part of the API).
#pragma once

#include "core/ops/nn_ops.h"
#include "core/tensor.h"

namespace ember::detail {

// `other` (named `what`) must be a floating-point tensor with input's dtype and device.
inline void check_same_kind(const char* op, const Tensor& input, const Tensor& other, const char* what) {
  EMBER_CHECK(is_floating(input.dtype()), op, ": expected a floating-point input, got ", dtype_name(input.dtype()),
              " of shape ", input.shape());
  EMBER_CHECK(other.dtype() == input.dtype(), op, ": ", what, " ", other.shape(), " has dtype ",
              dtype_name(other.dtype()), " but the input has ", dtype_name(input.dtype()));
  EMBER_CHECK(other.device() == input.device(), op, ": ", what, " is on ", other.device(), " but the input is on ",
              input.device());
}

// Each of a window parameter's two values must be at least `min` ("conv2d: stride must be >= 1, got (0, 1)").
inline void check_window(const char* op, const char* what, Size2 v, int64_t min) {
  EMBER_CHECK(v.h >= min && v.w >= min, op, ": ", what, " must be >= ", min, ", got (", v.h, ", ", v.w, ")");
}

}  // namespace ember::detail
