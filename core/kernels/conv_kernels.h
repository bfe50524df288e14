// Convolution kernels (core/ops/conv.cpp calls them; core/cpu/cpu_conv.cpp and cuda/cuda_conv.cpp
// implement them). A kernel table: see core/kernels/registry.h.
//
// Activations (in, out, grad_out, grad_in) are contiguous NCHW or, on a table whose
// takes_channels_last() says so, may be channels-last (MemoryFormat::ChannelsLast) all together;
// weights and biases are contiguous. Optional tensors may be undefined. A backward kernel writes
// (never accumulates into) each gradient that is defined and skips the undefined ones. Tensors
// passed in are already on the table's device and already checked.
#pragma once

#include <cstdint>

#include "core/error.h"
#include "core/kernels/registry.h"
#include "core/kernels/window.h"
#include "core/tensor.h"

namespace ember {

struct ConvKernels {
  virtual ~ConvKernels() = default;

  // weight [Cout, Cin/groups, kh, kw], bias [Cout] (optional). The backward reads `in` only for
  // grad_weight: it may be undefined otherwise (the input's shape is grad_in's).
  virtual void conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                      int64_t groups) {
    EMBER_FAIL("conv2d: not implemented on this device (", in.device(), ")");
  }
  // relu(conv2d(...)) written once (conv2d_relu). A device that has it says so; elsewhere the op
  // runs conv2d and relu (the backward needs no kernel of its own: relu's mask, then conv2d's).
  virtual bool fuses_conv2d_relu() const { return false; }
  // Whether the kernels take channels-last activations (else the op makes them contiguous NCHW).
  virtual bool takes_channels_last() const { return false; }
  virtual void conv2d_relu(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                           int64_t groups) {
    EMBER_FAIL("conv2d_relu: not fused on this device (", in.device(), ")");
  }
  virtual void conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& grad_in,
                               const Tensor& grad_weight, const Tensor& grad_bias, Window2d w, int64_t groups) {
    EMBER_FAIL("conv2d_backward: not implemented on this device (", grad_out.device(), ")");
  }

  // A saving a device may offer when the weight will need a gradient: the forward keeps what it
  // computed from the input for the backward's weight gradient (the CPU's im2col path keeps its
  // column matrices, within a memory budget), and returns it for the op to save in the graph;
  // undefined when it kept nothing. The backward takes it back (undefined: compute it again).
  // Devices that keep nothing need not override either: these defaults run the plain kernels.
  virtual Tensor conv2d_keeping_columns(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out,
                                        Window2d w, int64_t groups, bool relu) {
    if (relu)
      conv2d_relu(in, weight, bias, out, w, groups);
    else
      conv2d(in, weight, bias, out, w, groups);
    return Tensor();
  }
  virtual void conv2d_backward_with_columns(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                            const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                            Window2d w, int64_t groups, const Tensor& columns) {
    conv2d_backward(grad_out, in, weight, grad_in, grad_weight, grad_bias, w, groups);
  }
};

inline ConvKernels& conv_kernels(Device d) { return KernelRegistry<ConvKernels>::get(d); }

}  // namespace ember
