#include "core/memory_overlap.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace ember {

namespace {

// Byte range [begin, end) that a view can touch, from its offset and its farthest element.
struct ByteRange {
  uintptr_t begin = 0, end = 0;
};

ByteRange byte_range(const Tensor& t) {
  const auto elem = static_cast<int64_t>(t.element_size());
  int64_t last = 0;  // offset in elements of the farthest element from element 0
  for (int d = 0; d < t.dim(); ++d) last += (t.shape()[d] - 1) * t.strides()[d];
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  return {begin, begin + static_cast<uintptr_t>((last + 1) * elem)};
}

bool same_view(const Tensor& a, const Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.shape() == b.shape() && a.strides() == b.strides() &&
         a.dtype() == b.dtype();
}

}  // namespace

bool has_internal_overlap(const Tensor& t) {
  if (t.is_contiguous()) return false;
  // Dims that actually step through memory, innermost (smallest stride) first.
  std::array<std::pair<int64_t, int64_t>, kMaxDims> dims{};  // (stride, size)
  int n = 0;
  for (int d = 0; d < t.dim(); ++d) {
    if (t.shape()[d] <= 1) continue;
    if (t.strides()[d] == 0) return true;  // an expanded dim: every index lands on one element
    dims[n++] = {std::abs(t.strides()[d]), t.shape()[d]};
  }
  // Insertion sort by stride: at most kMaxDims entries (and std::sort here makes GCC 12 warn,
  // wrongly, about reading past the array in its 16-element insertion-sort step).
  for (int i = 1; i < n; ++i)
    for (int j = i; j > 0 && dims[j] < dims[j - 1]; --j) std::swap(dims[j], dims[j - 1]);
  // Nested strides never collide: each stride must step past everything the inner dims reach.
  int64_t reach = 0;  // farthest element offset reachable with the inner dims
  for (int i = 0; i < n; ++i) {
    const auto [stride, size] = dims[i];
    if (stride <= reach) return true;
    reach += stride * (size - 1);
  }
  return false;
}

void check_no_internal_overlap(const Tensor& dst, const char* op) {
  EMBER_CHECK(!has_internal_overlap(dst), op,
              ": unsupported operation: more than one element of the written-to tensor refers to a single memory "
              "location (shape ",
              dst.shape(), ", strides ", dst.strides(), "); clone() the tensor before writing to it in place");
}

void check_no_partial_overlap(const Tensor& dst, const Tensor& src, const char* op) {
  if (dst.numel() == 0 || src.numel() == 0 || dst.storage() != src.storage()) return;
  if (same_view(dst, src)) return;
  const ByteRange d = byte_range(dst), s = byte_range(src);
  const bool disjoint = d.end <= s.begin || s.end <= d.begin;
  EMBER_CHECK(disjoint, op,
              ": unsupported operation: some elements of the input tensor and the written-to tensor refer to a single "
              "memory location (written-to: shape ",
              dst.shape(), ", strides ", dst.strides(), ", offset ", dst.offset(), "; input: shape ", src.shape(),
              ", strides ", src.strides(), ", offset ", src.offset(), "); clone() the input first");
}

}  // namespace ember
