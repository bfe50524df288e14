// RAII wrappers for the cuDNN descriptors the convolution and batch-norm kernels use
// (cuda_conv.cpp, cuda_batch_norm.cu). A descriptor is a small host-side object that tells cuDNN
// a tensor's dtype and shape, or a convolution's geometry; each wrapper creates it in its
// constructor and destroys it in its destructor, so an exception thrown half-way through a kernel
// launcher leaks nothing.
//
// ember's tensors here are contiguous NCHW, so every tensor descriptor is a packed 4-D NCHW one.
// cuDNN takes int sizes: to_cudnn_int fails with a clear message instead of truncating.
#pragma once

#include <cudnn.h>

#include <climits>
#include <cstddef>
#include <cstdint>

#include "core/backend.h"
#include "core/kernels/window.h"
#include "core/dtype.h"
#include "core/error.h"
#include "cuda/error.h"

namespace ember::cuda {

// Entries in the convolution algorithm cache (cuda_conv.cpp): one per distinct (direction, shapes,
// window, groups, dtype, TF32, deterministic, device). Tests read it to check that a repeated call
// reuses its algorithm instead of choosing again.
size_t conv_algorithm_cache_size();

// The element type of a tensor or filter descriptor. The batch-norm kernels only ever see float32
// and float64 (16-bit data reaches them as float32 copies, cuda_batch_norm.cu).
inline cudnnDataType_t cudnn_data_type(DType t, const char* op) {
  switch (t) {
    case DType::Float32: return CUDNN_DATA_FLOAT;
    case DType::Float64: return CUDNN_DATA_DOUBLE;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    case DType::Float16: return CUDNN_DATA_HALF;
    default: EMBER_FAIL(op, ": expected a floating-point tensor on CUDA, got ", dtype_name(t));
  }
}

// The type a convolution accumulates in: double for double data, float for float and for the 16-bit
// types (cuDNN's "pseudo half" configurations: 16-bit data, float32 math, as PyTorch asks for).
inline cudnnDataType_t cudnn_compute_type(DType t, const char* op) {
  if (t == DType::Float64) return CUDNN_DATA_DOUBLE;
  (void)cudnn_data_type(t, op);  // rejects a dtype cuDNN cannot take, with the same message
  return CUDNN_DATA_FLOAT;
}

// cuDNN's alpha / beta scaling factors: double for double data, float for every other dtype.
class ScalingFactors {
 public:
  explicit ScalingFactors(DType t) : double_(t == DType::Float64) {}
  const void* one() const { return double_ ? static_cast<const void*>(&one64_) : &one32_; }
  const void* zero() const { return double_ ? static_cast<const void*>(&zero64_) : &zero32_; }

 private:
  bool double_;
  float one32_ = 1, zero32_ = 0;
  double one64_ = 1, zero64_ = 0;
};

inline int to_cudnn_int(int64_t v, const char* op, const char* what) {
  EMBER_CHECK(v >= 0 && v <= INT_MAX, op, ": ", what, " = ", v, " does not fit cuDNN's 32-bit sizes");
  return static_cast<int>(v);
}

// Owns one descriptor made by Create and released by Destroy.
template <typename Handle, cudnnStatus_t (*Create)(Handle*), cudnnStatus_t (*Destroy)(Handle)>
class CudnnDescriptor {
 public:
  CudnnDescriptor() { EMBER_CUDA_CHECK(Create(&desc_)); }
  ~CudnnDescriptor() {
    if (desc_) (void)Destroy(desc_);  // destructors must not throw
  }
  CudnnDescriptor(const CudnnDescriptor&) = delete;
  CudnnDescriptor& operator=(const CudnnDescriptor&) = delete;
  Handle get() const { return desc_; }

 private:
  Handle desc_ = nullptr;
};

// A packed NCHW tensor [n, c, h, w] of dtype t; default-constructed, it is left for a cuDNN call
// (cudnnDeriveBNTensorDescriptor) to fill in.
class TensorDescriptor
    : public CudnnDescriptor<cudnnTensorDescriptor_t, &cudnnCreateTensorDescriptor, &cudnnDestroyTensorDescriptor> {
 public:
  TensorDescriptor() = default;
  TensorDescriptor(DType t, int64_t n, int64_t c, int64_t h, int64_t w, const char* op) {
    EMBER_CUDA_CHECK(cudnnSetTensor4dDescriptor(get(), CUDNN_TENSOR_NCHW, cudnn_data_type(t, op),
                                                to_cudnn_int(n, op, "batch size"), to_cudnn_int(c, op, "channels"),
                                                to_cudnn_int(h, op, "height"), to_cudnn_int(w, op, "width")));
  }
};

// Convolution weights [out_channels, in_channels / groups, kh, kw], NCHW-packed.
class FilterDescriptor
    : public CudnnDescriptor<cudnnFilterDescriptor_t, &cudnnCreateFilterDescriptor, &cudnnDestroyFilterDescriptor> {
 public:
  FilterDescriptor(DType t, int64_t k, int64_t c, int64_t h, int64_t w, const char* op) {
    EMBER_CUDA_CHECK(cudnnSetFilter4dDescriptor(get(), cudnn_data_type(t, op), CUDNN_TENSOR_NCHW,
                                                to_cudnn_int(k, op, "output channels"),
                                                to_cudnn_int(c, op, "input channels per group"),
                                                to_cudnn_int(h, op, "kernel height"),
                                                to_cudnn_int(w, op, "kernel width")));
  }
};

// A 2-D cross-correlation (what deep learning calls convolution) with ember's Window2d geometry,
// `groups` groups, accumulating in float for float and 16-bit data, in double for double.
class ConvolutionDescriptor
    : public CudnnDescriptor<cudnnConvolutionDescriptor_t, &cudnnCreateConvolutionDescriptor,
                             &cudnnDestroyConvolutionDescriptor> {
 public:
  ConvolutionDescriptor(DType t, const Window2d& w, int64_t groups, const char* op) {
    EMBER_CUDA_CHECK(cudnnSetConvolution2dDescriptor(
        get(), to_cudnn_int(w.ph, op, "padding"), to_cudnn_int(w.pw, op, "padding"), to_cudnn_int(w.sh, op, "stride"),
        to_cudnn_int(w.sw, op, "stride"), to_cudnn_int(w.dh, op, "dilation"), to_cudnn_int(w.dw, op, "dilation"),
        CUDNN_CROSS_CORRELATION, cudnn_compute_type(t, op)));
    EMBER_CUDA_CHECK(cudnnSetConvolutionGroupCount(get(), to_cudnn_int(groups, op, "groups")));
  }
  void set_math_type(cudnnMathType_t m) { EMBER_CUDA_CHECK(cudnnSetConvolutionMathType(get(), m)); }
};

}  // namespace ember::cuda
