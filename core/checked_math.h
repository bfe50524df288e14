// Checked size arithmetic: the one place where element counts, strides and byte sizes are
// multiplied and added. Every factory, reader and loader that turns untrusted numbers (a user's
// shape, an IDX or safetensors header, a --batch-size flag) into a size goes through these, so an
// overflow is an error that names what was being computed instead of a wrapped count, a zero-byte
// buffer and a crash later. The builtins compile to a multiply and a branch on the overflow flag.
#pragma once

#include <cstdint>
#include <limits>

#include "core/error.h"
#include "core/shape.h"

namespace ember {

// a * b for non-negative sizes; throws "<what>: size overflow: a * b exceeds 2^63-1".
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  EMBER_CHECK(!__builtin_mul_overflow(a, b, &r), what, ": size overflow: ", a, " * ", b, " exceeds 2^63-1");
  return r;
}

// a + b for non-negative sizes; throws on overflow like checked_mul.
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  EMBER_CHECK(!__builtin_add_overflow(a, b, &r), what, ": size overflow: ", a, " + ", b, " exceeds 2^63-1");
  return r;
}

// The element count of `shape`, checking that no dim is negative and that the product fits in
// int64 even when another dim is 0 (a shape like [0, 2^62, 2^62] is rejected: its strides would
// overflow, and a reader must not accept from a header what a factory would refuse).
inline int64_t checked_numel(const Shape& shape, const char* what) {
  int64_t n = 1;
  bool zero = false;
  for (int64_t d : shape) {
    EMBER_CHECK(d >= 0, what, ": negative dimension ", d, " in shape ", shape);
    if (d == 0) {
      zero = true;
      continue;
    }
    EMBER_CHECK(!__builtin_mul_overflow(n, d, &n), what, ": shape ", shape,
                " has more than 2^63-1 elements");
  }
  return zero ? 0 : n;
}

// checked_numel(shape) * element_size, also bounded by 2^63-1 bytes.
inline int64_t checked_nbytes(const Shape& shape, int64_t element_size, const char* what) {
  const int64_t n = checked_numel(shape, what);
  int64_t bytes;
  EMBER_CHECK(!__builtin_mul_overflow(n, element_size, &bytes), what, ": shape ", shape, " of ", element_size,
              "-byte elements needs more than 2^63-1 bytes");
  return bytes;
}

}  // namespace ember
