// Shape and stride arithmetic. A Shape is a small inline vector (no heap allocation per op):
// tensors have at most kMaxDims dimensions.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace ember {

inline constexpr int kMaxDims = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }  // NOLINT: implicit by design
  template <typename It>
    requires(!std::is_integral_v<It>)
  Shape(It first, It last) { assign(first, last); }
  explicit Shape(int n, int64_t fill) { resize(n, fill); }

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t* begin() { return d_.data(); }
  int64_t* end() { return d_.data() + n_; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + n_; }
  int64_t back() const { return d_[n_ - 1]; }
  void push_back(int64_t v) {
    EMBER_CHECK(n_ < kMaxDims, "tensors have at most ", kMaxDims, " dimensions");
    d_[n_++] = v;
  }
  void insert(int pos, int64_t v);
  void erase(int pos);
  void resize(int n, int64_t fill = 0);
  int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n_; ++i) p *= d_[i];
    return p;
  }
  std::vector<int64_t> vec() const { return {begin(), end()}; }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[64, 784]"

 private:
  template <typename It>
  void assign(It first, It last) {
    n_ = 0;
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  std::array<int64_t, kMaxDims> d_{};
  int n_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

// Row-major (C-contiguous) strides, in elements.
Shape contiguous_strides(const Shape& shape);

// How a 4-D [N, C, H, W] tensor's elements lie in memory (libtorch's names). The shape and every
// value are the same either way; only the strides differ.
//   Contiguous:   row-major, [N][C][H][W]: one image's channel planes one after another.
//   ChannelsLast: [N][H][W][C] (strides C*H*W, 1, W*C, C): one pixel's channels side by side,
//                 the layout oneDNN's convolution kernels read directly (core/cpu/onednn_conv.cpp).
enum class MemoryFormat { Contiguous, ChannelsLast };

// Strides (in elements) of a fresh tensor of `shape` laid out as `format`; ChannelsLast needs 4 dims.
Shape strides_for(const Shape& shape, MemoryFormat format);

// Whether (shape, strides) lay the elements densely in `format`'s order (size-1 dims are free).
bool is_dense_in(const Shape& shape, const Shape& strides, MemoryFormat format);

// NumPy/PyTorch broadcasting of two shapes; throws "<op>: shapes [..] and [..] cannot be broadcast".
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

// Wraps a possibly negative dim into [0, ndim); throws "<op>: dim d out of range for a N-d tensor".
int wrap_dim(const char* op, int64_t dim, int ndim);

}  // namespace ember
