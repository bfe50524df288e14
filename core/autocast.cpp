// Autocast's per-thread state and its two casts (see core/autocast.h).
#include "core/autocast.h"

#include "core/error.h"

namespace ember {

namespace {
thread_local bool t_enabled = false;
thread_local DType t_dtype = kBFloat16;
}  // namespace

namespace autocast {

bool is_enabled() { return t_enabled; }
DType dtype() { return t_dtype; }

Tensor to_lower(const Tensor& t) {
  if (!t_enabled || !t.defined() || !is_floating(t.dtype()) || t.dtype() == kFloat64) return t;
  return t.to(t_dtype);
}

Tensor to_float32(const Tensor& t) {
  if (!t_enabled || !t.defined() || !is_reduced_floating(t.dtype())) return t;
  return t.to(kFloat32);
}

}  // namespace autocast

AutocastGuard::AutocastGuard(DType dtype, bool enabled) : prev_enabled_(t_enabled), prev_dtype_(t_dtype) {
  // A disabled region takes any dtype (as PyTorch), so AutocastGuard g(config_dtype, config_enabled)
  // works with float32 when mixed precision is off; it keeps the enclosing region's dtype.
  EMBER_CHECK(!enabled || is_reduced_floating(dtype), "AutocastGuard: dtype must be bfloat16 or float16, got ",
              dtype_name(dtype));
  t_enabled = enabled;
  if (enabled) t_dtype = dtype;
}

AutocastGuard::~AutocastGuard() {
  t_enabled = prev_enabled_;
  t_dtype = prev_dtype_;
}

}  // namespace ember
