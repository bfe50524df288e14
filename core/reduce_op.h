// The reductions ember knows, one list for the whole framework: the tensor reductions
// (Backend::reduce, core/ops/reduce.cpp) and the collectives of distributed/ (all_reduce,
// reduce_scatter) take the same enum. Mean is the average (PyTorch's ReduceOp.AVG for collectives).
#pragma once

#include <cstdint>

namespace ember {

enum class ReduceOp : uint8_t { Sum, Mean, Max, Min, ArgMax, ArgMin };

// "sum", "mean", "max", "min", "argmax", "argmin": for error messages and collective names.
inline const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    case ReduceOp::ArgMax: return "argmax";
    case ReduceOp::ArgMin: return "argmin";
  }
  return "?";
}

}  // namespace ember
