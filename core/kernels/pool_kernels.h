// Pooling kernels (core/ops/pool.cpp calls them; core/cpu/cpu_pool.cpp and cuda/cuda_pool.cu
// implement them, both with the window arithmetic of core/pool_math.h). A kernel table: see
// core/kernels/registry.h.
//
// All tensors are contiguous NCHW. A backward kernel writes (never accumulates into) grad_in.
// Tensors passed in are already on the table's device and already checked.
#pragma once

#include "core/error.h"
#include "core/kernels/registry.h"
#include "core/kernels/window.h"
#include "core/tensor.h"

namespace ember {

struct PoolKernels {
  virtual ~PoolKernels() = default;

  // max_pool2d also writes `indices` (int64, same shape as out): the flat position h*W + w of each
  // maximum inside its input plane, which is all its backward needs (like PyTorch's).
  virtual void max_pool2d(const Tensor& in, const Tensor& out, const Tensor& indices, Window2d w) {
    EMBER_FAIL("max_pool2d: not implemented on this device (", in.device(), ")");
  }
  virtual void max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Tensor& grad_in) {
    EMBER_FAIL("max_pool2d_backward: not implemented on this device (", grad_out.device(), ")");
  }
  // Window average; padded positions count in the divisor when count_include_pad.
  virtual void avg_pool2d(const Tensor& in, const Tensor& out, Window2d w, bool count_include_pad) {
    EMBER_FAIL("avg_pool2d: not implemented on this device (", in.device(), ")");
  }
  virtual void avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in, Window2d w, bool count_include_pad) {
    EMBER_FAIL("avg_pool2d_backward: not implemented on this device (", grad_out.device(), ")");
  }
  // Output cell (i, j) averages input rows [floor(i*H/OH), ceil((i+1)*H/OH)) and likewise columns.
  virtual void adaptive_avg_pool2d(const Tensor& in, const Tensor& out) {
    EMBER_FAIL("adaptive_avg_pool2d: not implemented on this device (", in.device(), ")");
  }
  virtual void adaptive_avg_pool2d_backward(const Tensor& grad_out, const Tensor& grad_in) {
    EMBER_FAIL("adaptive_avg_pool2d_backward: not implemented on this device (", grad_out.device(), ")");
  }
};

inline PoolKernels& pool_kernels(Device d) { return KernelRegistry<PoolKernels>::get(d); }

}  // namespace ember
