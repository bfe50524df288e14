// Channels-last operands for the CPU kernels that walk NCHW memory only (the im2col convolution,
// batch norm's per-plane loops on devices without a channels-last path). Such a kernel runs once
// more on NCHW stand-ins: each channels-last (or otherwise non-contiguous) input is copied
// contiguous, each such output gets a contiguous buffer, and finish() copies the buffers back —
// the same shape as Float32Operands (core/cpu/float32_operands.h), applied at the kernel boundary.
// Outputs are buffers the kernel writes whole; their old values are not copied in.
//
//   if (!onednn_conv2d(in, ...) && has_strided({&in, &out})) {
//     NchwOperands c;
//     conv2d_forward(c.in(in), ..., c.out(out));  // the NCHW kernel
//     return c.finish();
//   }
#pragma once

#include <initializer_list>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/ops.h"

namespace ember {

// Whether any defined tensor among `ts` is not plainly contiguous.
inline bool has_strided(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined() && !t->is_contiguous()) return true;
  return false;
}

class NchwOperands {
 public:
  // A contiguous copy of t when it is not contiguous; t itself (or an undefined tensor) otherwise.
  Tensor in(const Tensor& t) const {
    if (!t.defined() || t.is_contiguous()) return t;
    Tensor c = empty(t.shape(), TensorOptions(t.dtype()).device(t.device()));
    backend_of(t).copy(t, c);
    return c;
  }
  // A contiguous buffer for a non-contiguous output, copied into `t` by finish().
  Tensor out(const Tensor& t) {
    if (!t.defined() || t.is_contiguous()) return t;
    Tensor c = empty(t.shape(), TensorOptions(t.dtype()).device(t.device()));
    outs_.emplace_back(c, t);
    return c;
  }
  void finish() {
    for (auto& [buffer, target] : outs_) backend_of(target).copy(buffer, target);
    outs_.clear();
  }

 private:
  std::vector<std::pair<Tensor, Tensor>> outs_;  // (contiguous buffer, output)
};

}  // namespace ember
