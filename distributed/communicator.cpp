// The parts of the Communicator interface that every implementation shares.
#include "distributed/communicator.h"

#include "core/error.h"

namespace ember::distributed {

void check_collective_op(const std::string& collective, ReduceOp op, DType dtype) {
  EMBER_CHECK(op != ReduceOp::ArgMax && op != ReduceOp::ArgMin, collective, ": ReduceOp ", reduce_op_name(op),
              " is not a collective reduction (collectives take sum, mean, max or min)");
  EMBER_CHECK(op != ReduceOp::Mean || is_floating(dtype), collective,
              ": ReduceOp mean needs a floating-point tensor, got ", dtype_name(dtype),
              " (an integer average would round; use sum and divide)");
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

std::string check_reduce_scatter_args(const Tensor& in, const Tensor& out, ReduceOp op, int world_size,
                                      const TensorCheck& check_tensor) {
  const std::string name = std::string("reduce_scatter(") + reduce_op_name(op) + ")";
  check_tensor(in, name + " (in)");
  check_tensor(out, name + " (out)");
  check_world_sized(name, in, out, world_size, /*out_is_larger=*/false);
  check_collective_op(name, op, in.dtype());
  return name;
}

}  // namespace ember::distributed
