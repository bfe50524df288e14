// Memory-overlap checks for in-place writes (PyTorch's rules, core/memory_overlap.cpp).
// An in-place op writes each destination element once while reading its inputs. That is only
// well defined when no two destination elements share an address (an expanded view would
// accumulate into one element) and when every input either is exactly the destination or shares
// none of its memory (x.add_(x.t()) would read values it has already overwritten).
#pragma once

#include "core/tensor.h"

namespace ember {

// True when two elements of `t` may share one memory location: a dim of size > 1 with stride 0,
// or strides that do not nest (conservative: ember's views never produce overlap any other way).
bool has_internal_overlap(const Tensor& t);

// Throws "<op>: unsupported operation: more than one element of the written-to tensor refers to a
// single memory location" when `dst` has internal overlap.
void check_no_internal_overlap(const Tensor& dst, const char* op);

// Throws "<op>: unsupported operation: some elements of the input tensor and the written-to tensor
// refer to a single memory location" when `src` and `dst` share bytes without being the same view
// (same start, shape, strides and dtype); an identical view, as in x.add_(x), is fine.
void check_no_partial_overlap(const Tensor& dst, const Tensor& src, const char* op);

}  // namespace ember
