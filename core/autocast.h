// Automatic mixed precision (libtorch's autocast): inside an AutocastGuard, the ops that gain most
// from 16-bit math (matmul, linear, conv2d) cast their floating inputs to the guard's dtype, and the
// ops that need float32's range and precision (softmax, log_softmax, the losses, sum and mean,
// batch_norm, layer_norm) cast 16-bit inputs up to float32. Every other op runs in the dtype of its
// inputs (binary ops promote: bfloat16 + float32 is float32).
//
//   {
//     AutocastGuard autocast(kBFloat16);
//     Tensor loss = cross_entropy(model.forward(x), y);  // linear/conv in bf16, the loss in float32
//   }
//   loss.backward();  // parameters stay float32: their gradients arrive in float32
//
// The casts are ordinary differentiable Tensor::to calls, so parameters stay float32 ("master
// weights") and each gradient flows back through the cast into the parameter's own dtype. The
// backward pass runs with autocast off (the engine turns it off): each backward formula works in
// the dtypes its forward saw. Like PyTorch, float64 tensors are never cast, and the state is per
// thread. Unlike PyTorch, casts of the same weight are not cached within a region (one cast per use).
#pragma once

#include "core/dtype.h"
#include "core/tensor.h"

namespace ember {

namespace autocast {

bool is_enabled();
DType dtype();  // the 16-bit dtype of the current region (meaningful only when enabled)

// For the ops of the lower-precision list: a float32 or 16-bit tensor cast to dtype() when autocast
// is on; anything else (float64, integers, undefined, autocast off) as it is.
Tensor to_lower(const Tensor& t);
// For the ops of the float32 list: a 16-bit tensor cast to float32 when autocast is on.
Tensor to_float32(const Tensor& t);

}  // namespace autocast

// Turns autocast on (or off, enabled = false) until the guard goes out of scope; the previous
// state comes back then, so guards nest. dtype: kBFloat16 or kFloat16.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype = kBFloat16, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
};

}  // namespace ember
