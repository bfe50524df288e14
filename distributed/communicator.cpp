// The parts of the Communicator interface that every implementation shares.
#include "distributed/communicator.h"

#include "core/error.h"

namespace ember::distributed {

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Average: return "average";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

void check_world_sized(const std::string& op, const Tensor& in, const Tensor& out, int world_size,
                       bool out_is_larger) {
  EMBER_CHECK(in.dtype() == out.dtype(), op, ": in is ", dtype_name(in.dtype()), " but out is ",
              dtype_name(out.dtype()));
  const Tensor& small = out_is_larger ? in : out;
  const Tensor& large = out_is_larger ? out : in;
  const char* small_name = out_is_larger ? "in" : "out";
  const char* large_name = out_is_larger ? "out" : "in";
  EMBER_CHECK(large.numel() == small.numel() * world_size, op, ": ", large_name, " has ", large.numel(),
              " elements; expected world_size * ", small_name, ".numel() = ", world_size, " * ", small.numel(), " = ",
              small.numel() * world_size, " (in ", in.shape(), ", out ", out.shape(), ")");
}

}  // namespace ember::distributed
