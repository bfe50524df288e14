// CPU convolution on oneDNN's primitives (onednn_conv.cpp). Each function runs the convolution and
// returns true when oneDNN takes it (built with oneDNN, matmul engine oneDNN, float32); otherwise
// it returns false and does nothing, and the caller runs the im2col + GEMM path (cpu_conv.cpp).
// Arguments are exactly CpuBackend::conv2d's and conv2d_backward's (contiguous NCHW tensors).
#pragma once

#include <cstdint>
#include <string>

#include "core/backend.h"
#include "core/kernels/window.h"
#include "core/tensor.h"

namespace ember {

// Each returns what it did; the rest falls to cpu_conv.cpp's im2col path. They take float32
// only, and only when the GEMM engine is oneDNN; under ConvEngine::Auto each pass goes to oneDNN
// only where bench/conv_sweep measured its primitive faster (see onednn_conv.cpp).
// With `relu`, the output gets a ReLU inside the primitive (an eltwise post-op: conv2d_relu).
bool onednn_conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                   int64_t groups, bool relu = false);

struct OneDnnBackwardDone {
  bool grad_in = false;      // grad_in written
  bool grad_weight = false;  // grad_weight and grad_bias (where defined) written
};
OneDnnBackwardDone onednn_conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                          const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                          Window2d w, int64_t groups);

// Which oneDNN kernels this float32 convolution runs under the current engines, by oneDNN's names
// for them ("jit:avx512_core", "jit_wino_4x3:avx512_core", ...), "" for a pass the im2col path
// takes: for tests and tools (it makes the plan, as a first call would).
// forward_relu is conv2d_relu's forward (the primitive with its ReLU post-op).
struct OneDnnConvKernels {
  std::string forward, forward_relu, grad_input, grad_weight;
};
OneDnnConvKernels onednn_conv2d_kernels(const Shape& in, const Shape& weight, Window2d w, int64_t groups);

}  // namespace ember
