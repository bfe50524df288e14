// One table of the differentiable core ops: each entry names an op, says how to make its float64
// inputs, and calls it. The same table drives the first-order gradcheck, the second-order
// gradgradcheck (tests/test_op_table.cpp) and adds its cases to the CPU/CUDA parity test
// (tests/test_cuda_parity.cpp), so a new op is one line here, not one line in each test.
//
// The table is also the one list of differentiable ops that the PyTorch goldens are tied to
// (tests/test_op_table_goldens.cpp): every op an entry covers (OpCase::ops) needs at least one
// golden case in tests/data/reference_{core,nn,nn_backward}.json, and every golden case must
// belong to an op of this table (or, without gradients, to non_differentiable_core_ops()). A golden
// case belongs to the op whose name is its longest prefix ("softmax_large" -> softmax).
// Rule — add an op: one table entry here + its golden case in scripts/make_reference*.py (regenerate
// the JSON with /usr/bin/python3, add the case's ember lambda in the matching test_*reference.cpp).
//
// To add ops from another library part (nn ops, say): write a function returning their cases
// (e.g. `std::vector<OpCase> nn_ops()` in tests/op_table_nn.cpp, declared below) and append it in
// all_ops() in tests/op_table.cpp.
#pragma once

#include <string>
#include <vector>

#include "tests/test_util.h"

namespace ember::test {

struct OpCase {
  std::string name;           // op and variant, letters, digits and '_' (it becomes part of a test name)
  std::vector<Shape> shapes;  // one float64 input per shape, drawn uniformly from [lo, hi)
  GradFn fn;                  // the call; inputs arrive on the device under test, as in expect_gradcheck
  double lo = -1, hi = 1;     // keep inputs inside the op's domain and away from kinks
  // Piecewise ops are twice differentiable away from their kinks; an op whose first derivative is
  // itself not differentiable would set this false (none of the core ops does).
  bool gradgrad = true;
  double eps = 1e-6, atol = 1e-6, rtol = 1e-5;
  // The ops (ember's names) this entry exercises, the keys of its PyTorch golden cases; empty means
  // just the op called `name`. Set with .covers({...}) where the name is a variant ("sum_dims").
  std::vector<std::string> ops;

  std::vector<std::string> covered_ops() const { return ops.empty() ? std::vector<std::string>{name} : ops; }
  OpCase covers(std::vector<std::string> op_names) && {
    ops = std::move(op_names);
    return std::move(*this);
  }

  // The inputs: contiguous float64 CPU tensors, the same every run (seeded by `seed` and position).
  std::vector<Tensor> inputs(uint64_t seed = 1) const;
};

// An entry in one line: op_case("softmax", {{3, 4}}, [](const std::vector<Tensor>& x) { return softmax(x[0], 1); }, -2, 2).
OpCase op_case(std::string name, std::vector<Shape> shapes, GradFn fn, double lo = -1, double hi = 1);

std::vector<OpCase> core_ops();  // tests/op_table.cpp
std::vector<OpCase> nn_ops();    // tests/op_table_nn.cpp: linear, conv, pooling, norms, losses and their backward ops
std::vector<OpCase> all_ops();   // core_ops() and whatever other parts add

// Ops of core/ops.h that have no gradient (integer or boolean results, or zero almost everywhere):
// their outputs never require grad. Listed so that "every core op" is accounted for.
std::vector<std::string> non_differentiable_core_ops();

}  // namespace ember::test
