// 16-bit float operands for the CPU kernels that have only float32/float64 loops (reductions,
// softmax, matmul, indexing, convolution, pooling, normalisation, losses). Such a kernel runs once
// more on float32 stand-ins: each 16-bit input is widened to a float32 copy, each 16-bit output gets
// a float32 buffer, and finish() rounds the buffers back into the outputs — "compute in float32,
// store the narrow type", applied at the kernel boundary. (The elementwise kernels need no copies:
// they convert per element, core/cpu/cpu_elementwise.cpp.) The copies cost memory traffic; this is
// the simple, correct path, chosen without measuring (oneDNN's bf16 GEMM would avoid them).
//
//   if (has_reduced_floating({&in, &out})) {
//     Float32Operands f;
//     reduce(op, f.in(in), f.out(out), dims);  // the float32 kernel
//     return f.finish();
//   }
#pragma once

#include <initializer_list>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/ops.h"

namespace ember {

// Whether any defined tensor among `ts` is bfloat16 or float16.
inline bool has_reduced_floating(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined() && is_reduced_floating(t->dtype())) return true;
  return false;
}
inline bool has_reduced_floating(const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts)
    if (t.defined() && is_reduced_floating(t.dtype())) return true;
  return false;
}

class Float32Operands {
 public:
  // A contiguous float32 copy of a 16-bit tensor; any other tensor (or an undefined one) as it is.
  Tensor in(const Tensor& t) const {
    if (!t.defined() || !is_reduced_floating(t.dtype())) return t;
    Tensor w = empty(t.shape(), TensorOptions(kFloat32).device(t.device()));
    backend_of(t).copy(t, w);
    return w;
  }
  // A float32 buffer for a 16-bit output, rounded back into `t` by finish(). It starts with t's
  // values, so kernels that accumulate into or update their output (index_add, running statistics)
  // see them; any other tensor is returned as it is.
  Tensor out(const Tensor& t) {
    if (!t.defined() || !is_reduced_floating(t.dtype())) return t;
    Tensor w = in(t);
    outs_.emplace_back(w, t);
    return w;
  }
  std::vector<Tensor> in(const std::vector<Tensor>& ts) const {
    std::vector<Tensor> r;
    for (const Tensor& t : ts) r.push_back(in(t));
    return r;
  }
  // Rounds every float32 output buffer back into its 16-bit tensor.
  void finish() {
    for (auto& [buffer, target] : outs_) backend_of(target).copy(buffer, target);
    outs_.clear();
  }

 private:
  std::vector<std::pair<Tensor, Tensor>> outs_;  // (float32 buffer, 16-bit output)
};

}  // namespace ember
