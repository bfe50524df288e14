// A 2-D sliding window (convolution or pooling) over NCHW tensors: kernel size, stride, zero
// padding on each side, and dilation, for the height (h) and width (w) dims. The ops compute the
// output size; kernels read it from the output tensor's shape.
#pragma once

#include <cstdint>

namespace ember {

struct Window2d {
  int64_t kh = 1, kw = 1;  // kernel
  int64_t sh = 1, sw = 1;  // stride
  int64_t ph = 0, pw = 0;  // padding
  int64_t dh = 1, dw = 1;  // dilation
};

}  // namespace ember
