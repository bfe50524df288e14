// The CPU backend. Its kernels are split by family: cpu_elementwise.cpp (copy, fill, random,
// unary/binary/where), cpu_reduce.cpp, cpu_softmax.cpp, cpu_matmul.cpp, cpu_index.cpp.
#pragma once

#include "core/backend.h"

namespace ember {

class CpuBackend final : public Backend {
 public:
  Allocator& allocator() override { return cpu_allocator(); }
  void copy(const Tensor& src, const Tensor& dst) override;
  void copy_from_host(const void* host, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* host) override;
  void fill(const Tensor& out, double value) override;
  void arange(const Tensor& out, double start, double step) override;
  void random(RandomOp op, const Tensor& out, PhiloxState state, double a, double b) override;
  void unary(UnaryOp op, const Tensor& in, const Tensor& out, Scalars s) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void reduce(ReduceOp op, const Tensor& in, const Tensor& out, uint32_t dims) override;
  void softmax(const Tensor& in, const Tensor& out, int dim, bool log) override;
  void softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in, int dim, bool log) override;
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void index_select(const Tensor& in, int dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& in, int dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;
};

}  // namespace ember
