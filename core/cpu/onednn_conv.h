// CPU convolution on oneDNN's primitives (onednn_conv.cpp). Each function runs the convolution and
// returns true when oneDNN takes it (built with oneDNN, matmul engine oneDNN, float32); otherwise
// it returns false and does nothing, and the caller runs the im2col + GEMM path (cpu_conv.cpp).
// Arguments are exactly CpuBackend::conv2d's and conv2d_backward's (contiguous NCHW tensors).
#pragma once

#include <cstdint>

#include "core/backend.h"
#include "core/kernels/window.h"
#include "core/tensor.h"

namespace ember {

bool onednn_conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                   int64_t groups);
bool onednn_conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& grad_in,
                            const Tensor& grad_weight, const Tensor& grad_bias, Window2d w, int64_t groups);

}  // namespace ember
