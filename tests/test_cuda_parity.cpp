// CPU/CUDA parity. Every op in core/ops.h (with the cases of the gradcheck op table, tests/op_table.h), every nn::functional op and every layer in nn/layers.h
// runs forward and backward on the CPU and on CUDA from the same inputs; the outputs, every input
// gradient (for layers also every parameter gradient and buffer) and every input after the run
// (ops that update buffers in place) must agree to float32 tolerances, and in float64 where the op
// supports it. Elementwise ops, reductions, softmax, matmul, indexing and the row-wise nn ops run
// at odd sizes (1, 7, 1023 and 65537 elements), and most ops also on a broadcast and on a
// non-contiguous (transposed, sliced) input.
//
// The cases are tables: one line adds an op ({name, inputs, fn}) or a layer ({name, module, input}).
// Test names say the case, e.g. Cases/CudaParityOps.MatchesTheCpu/exp_n65537 (float32, then float64).
//
// Without a GPU each case still runs its CPU half (finite values, a gradient for every
// differentiable input: the table itself is checked) and then skips, saying why. Also here:
// dropout masks on CUDA (reproducible from the seed, equal to the CPU's, the right keep rate) and
// casting copies between every pair of dtypes from non-contiguous sources.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "nn/nn.h"
#include "tests/op_table.h"
#include "tests/test_util.h"

using namespace ember;
namespace F = ember::nn::functional;
using nn::Reduction;

namespace {

const Device kCuda(DeviceType::CUDA, 0);
const std::vector<int64_t> kSizes = {1, 7, 1023, 65537};

std::string no_gpu_reason() {
  return "no CUDA device available (" + std::to_string(cuda_device_count()) + " visible); CPU half checked only";
}

// Allowed |cuda - cpu| <= atol + rtol * |cpu|. float32: a few ulps, because the two backends may
// sum in different orders and use different libm; a wrong index or stride is off by O(1).
struct Tol {
  double rtol, atol;
};
constexpr Tol kTol32{1e-4, 1e-5};
constexpr Tol kTol64{1e-9, 1e-11};
// Long float32 sums of terms of either sign (tens of thousands): the result can land near zero
// while each backend's rounding error grows with the number of terms.
constexpr Tol kSum32{1e-4, 5e-3};
constexpr Tol kSoftmax32{1e-4, 1e-8};  // outputs as small as 1/65537

// ---------------------------------------------------------------- inputs

// How one input is made: on the CPU, contiguous, from a seed (the same values for both devices).
// Floating inputs built from float64 draws, then cast to the case's dtype. `grad`: a leaf that
// requires grad, whose gradient is compared.
struct Arg {
  std::function<Tensor(DType dtype, uint64_t seed)> make;
  bool grad = true;
};

// Uniform values in [lo, hi); differentiable.
Arg real(Shape s, double lo = -1, double hi = 1) {
  return {[=](DType t, uint64_t seed) {
            Generator g(seed);
            return uniform(s, lo, hi, kFloat64, &g).to(t);
          },
          true};
}
// The same, not differentiable (running statistics, in-place targets).
Arg constant(Shape s, double lo = -1, double hi = 1) {
  Arg a = real(std::move(s), lo, hi);
  a.grad = false;
  return a;
}
// Whole numbers 0..k-1 in the case's dtype, not differentiable: comparisons see ties.
Arg ties(Shape s, int64_t k = 3) {
  return {[=](DType t, uint64_t seed) {
            Generator g(seed);
            return randint(0, k, s, TensorOptions(kInt64), &g).to(t);
          },
          false};
}
// The same, differentiable: ops must route the gradient of tied values (maxima, kinks) alike.
Arg tied_real(Shape s, int64_t k = 3) {
  Arg a = ties(std::move(s), k);
  a.grad = true;
  return a;
}
// Int64 indices in [0, high).
Arg indices(Shape s, int64_t high) {
  return {[=](DType, uint64_t seed) {
            Generator g(seed);
            return randint(0, high, s, TensorOptions(kInt64), &g);
          },
          false};
}
// Fixed int64 values (targets with ignore_index, repeated indices).
Arg int64s(std::vector<int64_t> v, Shape s) {
  return {[=](DType, uint64_t) { return from_vector<int64_t>(v, s); }, false};
}
// A uint8 mask (0/1) in [0, 2).
Arg mask(Shape s) {
  return {[=](DType, uint64_t seed) {
            Generator g(seed);
            return randint(0, 2, s, TensorOptions(kInt64), &g).to(kUInt8);
          },
          false};
}

using X = const std::vector<Tensor>&;
using Fn = std::function<Tensor(X)>;
// FN(expr): a case body reading its inputs x[0], x[1], ...
#define FN(...) [](X x) -> Tensor { return __VA_ARGS__; }

// The device the inputs are on (factories in a case make their tensors there).
TensorOptions opts_of(const Tensor& t) { return TensorOptions(t.dtype()).device(t.device()); }

struct OpCase {
  std::string name;
  std::vector<Arg> args;
  Fn fn;
  Tol tol32 = kTol32;
  bool float64 = true;  // also run in float64
  Tol tol64 = kTol64;
};
using OpCases = std::vector<OpCase>;

// One case per size in kSizes: make(n) gives the inputs for n elements.
void sized(OpCases& cs, const std::string& name, const std::function<std::vector<Arg>(int64_t)>& make, const Fn& fn,
           Tol tol32 = kTol32) {
  for (int64_t n : kSizes) cs.push_back({name + "_n" + std::to_string(n), make(n), fn, tol32});
}

using ArgOf = std::function<Arg(const Shape&)>;
ArgOf in(double lo = -1, double hi = 1) {
  return [=](const Shape& s) { return real(s, lo, hi); };
}
ArgOf tied(int64_t k = 3) {
  return [=](const Shape& s) { return ties(s, k); };
}

// A unary op at every size, on a transposed, a sliced (offset, step 2) and an expanded (stride 0,
// so the gradient is summed back) input.
void unary(OpCases& cs, const std::string& name, const std::function<Tensor(const Tensor&)>& f, const ArgOf& a = in(),
           Tol tol32 = kTol32) {
  const Fn fn = [f](X x) { return f(x[0]); };
  sized(cs, name, [a](int64_t n) { return std::vector<Arg>{a({n})}; }, fn, tol32);
  cs.push_back({name + "_transposed", {a({33, 65})}, [f](X x) { return f(x[0].t()); }, tol32});
  cs.push_back({name + "_sliced", {a({9, 131})}, [f](X x) { return f(x[0].slice(0, 1, 9).slice(1, 1, 131, 2)); }, tol32});
  cs.push_back({name + "_expanded", {a({1, 65})}, [f](X x) { return f(x[0].expand({33, 65})); }, tol32});
}

// A binary op at every size, with row and outer-product broadcasts, a 0-d operand, and transposed
// and sliced operands.
void binary(OpCases& cs, const std::string& name, const std::function<Tensor(const Tensor&, const Tensor&)>& f,
            const ArgOf& a = in(), const ArgOf& b = in()) {
  const Fn fn = [f](X x) { return f(x[0], x[1]); };
  sized(cs, name, [a, b](int64_t n) { return std::vector<Arg>{a({n}), b({n})}; }, fn);
  cs.push_back({name + "_broadcast_row", {a({33, 65}), b({65})}, fn});
  cs.push_back({name + "_broadcast_outer", {a({33, 1}), b({1, 65})}, fn});
  cs.push_back({name + "_broadcast_0d", {a({1023}), b({})}, fn});
  cs.push_back({name + "_transposed", {a({65, 33}), b({33, 65})}, [f](X x) { return f(x[0].t(), x[1]); }});
  cs.push_back({name + "_sliced", {a({9, 131}), b({65})},
                [f](X x) { return f(x[0].slice(0, 1, 9).slice(1, 1, 131, 2), x[1]); }});
}

// ---------------------------------------------------------------- core/ops.h

OpCases core_cases() {
  OpCases cs;

  // Factories (no differentiable inputs; x[0] only says the dtype and the device).
  cs.push_back({"zeros_ones_full", {constant({7})}, FN(cat({zeros({7}, opts_of(x[0])), ones({7}, opts_of(x[0])),
                                                             full({7}, -2.5, opts_of(x[0])), x[0]}))});
  cs.push_back({"like_factories", {constant({3, 5})},
                FN(stack({zeros_like(x[0].t()), ones_like(x[0]).t(), full_like(x[0], 3.25).t()}))});
  cs.push_back({"scalar_tensor", {constant({1})}, FN(scalar_tensor(4.5, opts_of(x[0])) + x[0].sum())});
  sized(cs, "arange", [](int64_t n) { return std::vector<Arg>{constant({n})}; },
        FN(arange(0.5, 0.5 + 0.25 * x[0].numel(), 0.25, opts_of(x[0])) + x[0]));
  cs.push_back({"arange_int64", {constant({1})}, FN(arange(3.0, 1030.0, 2.0, TensorOptions(kInt64).device(x[0].device())))});
  // Random factories: one Philox stream, so a seed gives the same numbers on both devices.
  sized(cs, "rand", [](int64_t n) { return std::vector<Arg>{constant({n})}; }, [](X x) {
    Generator g(3);
    return rand(x[0].shape(), opts_of(x[0]), &g);
  });
  sized(cs, "randn", [](int64_t n) { return std::vector<Arg>{constant({n})}; }, [](X x) {
    Generator g(4);
    return randn(x[0].shape(), opts_of(x[0]), &g);
  });
  cs.push_back({"uniform_normal", {constant({1023})}, [](X x) {
                  Generator g(5);
                  return cat({uniform({1023}, -3, 2, opts_of(x[0]), &g), normal({1023}, 1, 0.5, opts_of(x[0]), &g)});
                }});
  cs.push_back({"randint", {constant({1})}, [](X x) {
                  Generator g(6);
                  return randint(-7, 1000, {65537}, TensorOptions(kInt64).device(x[0].device()), &g);
                }});

  // Elementwise, tensor-tensor.
  binary(cs, "add", [](const Tensor& a, const Tensor& b) { return add(a, b); });
  binary(cs, "sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); });
  binary(cs, "mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); });
  binary(cs, "div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, in(), in(0.5, 2));
  binary(cs, "pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, in(0.5, 2), in(-2, 2));
  binary(cs, "maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); });
  binary(cs, "minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); });
  binary(cs, "eq", [](const Tensor& a, const Tensor& b) { return eq(a, b); }, tied(), tied());
  binary(cs, "ne", [](const Tensor& a, const Tensor& b) { return ne(a, b); }, tied(), tied());
  binary(cs, "lt", [](const Tensor& a, const Tensor& b) { return lt(a, b); }, tied(), tied());
  binary(cs, "le", [](const Tensor& a, const Tensor& b) { return le(a, b); }, tied(), tied());
  binary(cs, "gt", [](const Tensor& a, const Tensor& b) { return gt(a, b); }, tied(), tied());
  binary(cs, "ge", [](const Tensor& a, const Tensor& b) { return ge(a, b); }, tied(), tied());

  cs.push_back({"maximum_ties", {tied_real({33, 65}), tied_real({65})}, FN(maximum(x[0], x[1]))});
  cs.push_back({"minimum_ties", {tied_real({33, 65}), tied_real({33, 1})}, FN(minimum(x[0], x[1]))});

  // Elementwise, with a scalar.
  unary(cs, "add_scalar", [](const Tensor& a) { return add(a, 2.5); });
  unary(cs, "sub_scalar", [](const Tensor& a) { return sub(a, 2.5); });
  unary(cs, "rsub_scalar", [](const Tensor& a) { return rsub(a, 2.5); });
  unary(cs, "mul_scalar", [](const Tensor& a) { return mul(a, -1.5); });
  unary(cs, "div_scalar", [](const Tensor& a) { return div(a, 3.0); });
  unary(cs, "rdiv_scalar", [](const Tensor& a) { return rdiv(a, 3.0); }, in(0.5, 2));
  unary(cs, "pow_scalar", [](const Tensor& a) { return pow(a, 2.5); }, in(0.1, 2));
  unary(cs, "pow_scalar_square", [](const Tensor& a) { return pow(a, 2.0); });
  unary(cs, "eq_scalar", [](const Tensor& a) { return eq(a, 1.0); }, tied());
  unary(cs, "ne_scalar", [](const Tensor& a) { return ne(a, 1.0); }, tied());
  unary(cs, "lt_scalar", [](const Tensor& a) { return lt(a, 1.0); }, tied());
  unary(cs, "le_scalar", [](const Tensor& a) { return le(a, 1.0); }, tied());
  unary(cs, "gt_scalar", [](const Tensor& a) { return gt(a, 1.0); }, tied());
  unary(cs, "ge_scalar", [](const Tensor& a) { return ge(a, 1.0); }, tied());

  // Elementwise, unary.
  unary(cs, "neg", [](const Tensor& a) { return neg(a); });
  unary(cs, "exp", [](const Tensor& a) { return exp(a); }, in(-3, 3));
  unary(cs, "log", [](const Tensor& a) { return log(a); }, in(0.1, 3));
  unary(cs, "sqrt", [](const Tensor& a) { return sqrt(a); }, in(0.1, 3));
  unary(cs, "abs", [](const Tensor& a) { return abs(a); });
  unary(cs, "tanh", [](const Tensor& a) { return tanh(a); }, in(-3, 3));
  unary(cs, "sigmoid", [](const Tensor& a) { return sigmoid(a); }, in(-4, 4));
  unary(cs, "relu", [](const Tensor& a) { return relu(a); });
  unary(cs, "gelu", [](const Tensor& a) { return gelu(a); }, in(-3, 3));
  unary(cs, "clamp", [](const Tensor& a) { return clamp(a, -0.5, 0.25); });
  unary(cs, "sign", [](const Tensor& a) { return sign(a); });

  cs.push_back({"clamp_relu_abs_at_kinks", {tied_real({1023})},
                FN(clamp(x[0], 0.0, 2.0) + relu(x[0] - 1.0) + abs(x[0] - 1.0))});

  // where / masked_fill: cond and mask broadcast against the values.
  sized(cs, "where", [](int64_t n) { return std::vector<Arg>{mask({n}), real({n}), real({n})}; },
        FN(where(x[0], x[1], x[2])));
  cs.push_back({"where_broadcast", {mask({33, 1}), real({33, 65}), real({65})}, FN(where(x[0], x[1], x[2]))});
  cs.push_back({"where_transposed", {mask({65, 33}), real({65, 33}), real({33, 65})},
                FN(where(x[0].t(), x[1].t(), x[2]))});
  sized(cs, "masked_fill", [](int64_t n) { return std::vector<Arg>{real({n}), mask({n})}; },
        FN(masked_fill(x[0], x[1], -7.5)));
  cs.push_back({"masked_fill_broadcast", {real({33, 65}), mask({65})}, FN(masked_fill(x[0], x[1], 2.0))});
  cs.push_back({"masked_fill_transposed", {real({65, 33}), mask({33, 1})}, FN(masked_fill(x[0].t(), x[1], 2.0))});
  cs.push_back({"allclose", {constant({1023}), constant({1023})},
                FN(full({2}, 0.0, opts_of(x[0])) + double(allclose(x[0], x[0] + 1e-9)) +
                   2.0 * double(allclose(x[0], x[1])))});

  // In-place ops into contiguous, sliced and transposed targets (inputs that do not need grad).
  cs.push_back({"inplace_add_sub_mul_div", {constant({33, 65}), constant({65}), constant({33, 1}, 0.5, 2)}, [](X x) {
                  Tensor y = x[0].clone();
                  y.add_(x[1], 0.5).sub_(x[2]).mul_(x[1]).div_(x[2]);
                  y.add_(1.25).mul_(-2.0).div_(4.0);
                  return y;
                }});
  cs.push_back({"inplace_on_sliced_view", {constant({9, 131}), constant({65})}, [](X x) {
                  Tensor y = x[0].clone();
                  y.slice(0, 1, 9).slice(1, 1, 131, 2).add_(x[1]).clamp_(-0.75, 0.5);
                  y.select(1, 4).fill_(3.0);
                  return y;
                }});
  cs.push_back({"inplace_on_transposed_view", {constant({65, 33}), constant({33, 65})}, [](X x) {
                  Tensor y = x[0].clone();
                  y.t().mul_(x[1]).add_(x[1].slice(0, 0, 1));
                  return y;
                }});
  sized(cs, "copy_cast_broadcast", [](int64_t n) { return std::vector<Arg>{constant({3, n}), constant({n})}; },
        [](X x) {
          Tensor y = x[0].clone();
          y.copy_(x[1].to(x[1].dtype() == kFloat64 ? kFloat32 : kFloat64));
          return y;
        });

  // Views and copies: the backward of each writes into zeros of the input's shape.
  cs.push_back({"transpose", {real({33, 65})}, FN(x[0].transpose(0, 1) * 2.0)});
  cs.push_back({"permute", {real({5, 7, 9})}, FN(x[0].permute({2, 0, 1}).contiguous())});
  cs.push_back({"slice_step", {real({9, 131})}, FN(x[0].slice(1, 1, 131, 3).slice(0, 2, 9, 2) * 2.0)});
  cs.push_back({"narrow", {real({9, 131})}, FN(x[0].narrow(1, 5, 64).contiguous())});
  cs.push_back({"select", {real({9, 131})}, FN(x[0].select(1, 17) * 3.0 + x[0].select(0, 8).sum())});
  cs.push_back({"expand", {real({7, 1})}, FN(x[0].expand({3, 7, 65}).contiguous())});
  cs.push_back({"squeeze_unsqueeze", {real({7, 1, 9})}, FN(x[0].squeeze(1).unsqueeze(0).unsqueeze(-1) * 2.0)});
  cs.push_back({"view_reshape_flatten", {real({6, 35})}, FN(x[0].view({2, 3, 35}).transpose(0, 2).reshape({35, 6}).flatten() * 1.0)});
  cs.push_back({"reshape_of_transposed", {real({33, 65})}, FN(x[0].t().reshape({65 * 33}))});
  sized(cs, "contiguous_of_sliced", [](int64_t n) { return std::vector<Arg>{real({2 * n + 1})}; },
        FN(x[0].slice(0, 1, x[0].numel(), 2).contiguous()));
  cs.push_back({"clone_transposed", {real({33, 65})}, FN(x[0].t().clone())});
  cs.push_back({"to_other_float_dtype", {real({33, 65})},
                FN(x[0].t().to(x[0].dtype() == kFloat32 ? kFloat64 : kFloat32) * 2.0)});
  cs.push_back({"to_int64_uint8", {constant({33, 65}, 0, 200)},
                FN(x[0].t().to(kInt64) + x[0].to(kUInt8).to(kInt64).t())});
  cs.push_back({"cat", {real({7, 5}), real({3, 7}), real({7, 1})}, FN(cat({x[0], x[1].t(), x[2]}, 1))});
  sized(cs, "cat_dim0", [](int64_t n) { return std::vector<Arg>{real({n}), real({n + 1})}; },
        FN(cat({x[0], x[1], x[0]}, 0)));
  cs.push_back({"stack", {real({7, 65}), real({65, 7})}, FN(stack({x[0], x[1].t()}, 1))});
  cs.push_back({"stack_last_dim", {real({1023}), real({1023})}, FN(stack({x[0], x[1]}, -1))});

  // Reductions: over everything at every size, then over dims of strided and broadcast inputs.
  sized(cs, "sum_all", [](int64_t n) { return std::vector<Arg>{real({n})}; }, FN(sum(x[0])), kSum32);
  sized(cs, "mean_all", [](int64_t n) { return std::vector<Arg>{real({n})}; }, FN(mean(x[0])));
  sized(cs, "max_all", [](int64_t n) { return std::vector<Arg>{real({n})}; }, FN(max(x[0])));
  sized(cs, "min_all", [](int64_t n) { return std::vector<Arg>{real({n})}; }, FN(min(x[0])));
  sized(cs, "var_all", [](int64_t n) { return std::vector<Arg>{real({n + 1})}; }, FN(var(x[0])));
  sized(cs, "logsumexp_all", [](int64_t n) { return std::vector<Arg>{real({n})}; }, FN(logsumexp(x[0], {0})));
  sized(cs, "argmax", [](int64_t n) { return std::vector<Arg>{real({3, n})}; }, FN(argmax(x[0], 1)));
  sized(cs, "argmin", [](int64_t n) { return std::vector<Arg>{real({3, n})}; }, FN(argmin(x[0], 1)));
  sized(cs, "sum_rows", [](int64_t n) { return std::vector<Arg>{real({3, n})}; }, FN(sum(x[0], {1})), kSum32);
  sized(cs, "sum_columns", [](int64_t n) { return std::vector<Arg>{real({n, 3})}; }, FN(sum(x[0], {0})), kSum32);
  cs.push_back({"sum_dim0_transposed", {real({65, 33})}, FN(sum(x[0].t(), {0}))});
  cs.push_back({"sum_dims02_keepdim", {real({5, 7, 9})}, FN(sum(x[0], {0, 2}, true))});
  cs.push_back({"sum_permuted", {real({5, 7, 9})}, FN(sum(x[0].permute({1, 2, 0}), {1, 2}))});
  cs.push_back({"sum_expanded", {real({1, 65})}, FN(sum(x[0].expand({33, 65}), {1}))});
  cs.push_back({"mean_dims", {real({5, 7, 9})}, FN(mean(x[0].transpose(0, 2), {1}, true))});
  cs.push_back({"max_dim", {real({33, 65})}, FN(max(x[0].t(), {1}))});
  cs.push_back({"min_dims_keepdim", {real({5, 7, 9})}, FN(min(x[0], {0, 1}, true))});
  cs.push_back({"max_with_ties", {tied_real({33, 65}, 4)}, FN(max(x[0], {1}))});
  cs.push_back({"var_dims", {real({5, 7, 9})}, FN(var(x[0].permute({2, 1, 0}), {0, 2}, false, true))});
  cs.push_back({"var_unbiased_dim", {real({33, 65})}, FN(var(x[0].t(), {0}))});
  cs.push_back({"logsumexp_dims", {real({5, 7, 9}, -20, 20)}, FN(logsumexp(x[0].transpose(0, 1), {0, 2}))});
  cs.push_back({"argmax_transposed", {real({33, 65})}, FN(argmax(x[0].t(), 0, true))});
  cs.push_back({"argmin_dim0", {real({5, 7, 9})}, FN(argmin(x[0], 0))});
  cs.push_back({"argmax_ties_take_first", {ties({33, 65}, 3)}, FN(argmax(x[0], 1))});
  cs.push_back({"sum_to", {real({5, 7, 9})}, FN(sum_to(x[0], {7, 1}))});
  cs.push_back({"sum_to_transposed", {real({5, 7, 9})}, FN(sum_to(x[0].transpose(0, 2), {1, 7, 1}))});

  // Softmax family: rows of every size, other dims, strided input.
  sized(cs, "softmax_rows", [](int64_t n) { return std::vector<Arg>{real({2, n}, -5, 5)}; }, FN(softmax(x[0], 1)),
        kSoftmax32);
  sized(cs, "log_softmax_rows", [](int64_t n) { return std::vector<Arg>{real({2, n}, -5, 5)}; },
        FN(log_softmax(x[0], 1)));
  cs.push_back({"softmax_dim0", {real({65, 33}, -5, 5)}, FN(softmax(x[0], 0))});
  cs.push_back({"softmax_transposed", {real({65, 33}, -5, 5)}, FN(softmax(x[0].t(), 1))});
  cs.push_back({"log_softmax_middle_dim", {real({5, 7, 9}, -5, 5)}, FN(log_softmax(x[0].permute({2, 0, 1}), 1))});
  cs.push_back({"log_softmax_expanded", {real({1, 65}, -5, 5)}, FN(log_softmax(x[0].expand({3, 65}), 1))});

  // Matmul: every shape rule, odd sizes, transposed and broadcast operands.
  sized(cs, "matmul_dot", [](int64_t n) { return std::vector<Arg>{real({n}), real({n})}; }, FN(matmul(x[0], x[1])),
        kSum32);
  cs.push_back({"matmul_2d", {real({33, 65}), real({65, 17})}, FN(matmul(x[0], x[1]))});
  cs.push_back({"matmul_1x1", {real({1, 1}), real({1, 1})}, FN(matmul(x[0], x[1]))});
  cs.push_back({"matmul_transposed", {real({65, 33}), real({17, 65})}, FN(matmul(x[0].t(), x[1].t()))});
  cs.push_back({"matmul_sliced", {real({33, 130}), real({65, 7})}, FN(matmul(x[0].slice(1, 0, 130, 2), x[1]))});
  cs.push_back({"matmul_vec_mat", {real({65}), real({65, 17})}, FN(matmul(x[0], x[1]))});
  cs.push_back({"matmul_mat_vec", {real({33, 65}), real({65})}, FN(matmul(x[0], x[1]))});
  cs.push_back({"matmul_batched", {real({3, 7, 9}), real({3, 9, 5})}, FN(matmul(x[0], x[1]))});
  cs.push_back({"matmul_batch_broadcast", {real({3, 1, 5, 7}), real({4, 7, 6})}, FN(matmul(x[0], x[1]))});
  cs.push_back({"matmul_batch_expanded", {real({5, 7}), real({3, 7, 6})}, FN(matmul(x[0].expand({3, 5, 7}), x[1]))});
  cs.push_back({"matmul_batched_transposed", {real({3, 9, 7}), real({3, 5, 9})},
                FN(matmul(x[0].transpose(1, 2), x[1].transpose(1, 2)))});
  cs.push_back({"matmul_large_k", {real({3, 65537}), real({65537, 2})}, FN(matmul(x[0], x[1])), kSum32});

  // Indexing, with repeated indices (their gradients accumulate).
  sized(cs, "index_select", [](int64_t n) { return std::vector<Arg>{real({7, 33}), indices({n}, 7)}; },
        FN(index_select(x[0], 0, x[1])), kSum32);
  cs.push_back({"index_select_dim1_transposed", {real({33, 7}), int64s({6, 0, 6, 3}, {4})},
                FN(index_select(x[0].t(), 1, x[1]))});
  cs.push_back({"index_select_sliced_index", {real({9, 5}), int64s({8, 100, 0, 100, 8, 100}, {6})},
                FN(index_select(x[0], 0, x[1].slice(0, 0, 6, 2)))});
  sized(cs, "gather", [](int64_t n) { return std::vector<Arg>{real({3, 17}), indices({3, n}, 17)}; },
        FN(gather(x[0], 1, x[1])), kSum32);
  cs.push_back({"gather_dim0_transposed", {real({9, 5}), indices({3, 9}, 9)}, FN(gather(x[0], 0, x[1].t()))});
  sized(cs, "embedding", [](int64_t n) { return std::vector<Arg>{real({11, 9}), indices({n}, 11)}; },
        FN(embedding(x[0], x[1])), kSum32);
  cs.push_back({"embedding_2d_indices", {real({11, 9}), indices({5, 7}, 11)}, FN(embedding(x[0], x[1]))});
  sized(cs, "one_hot", [](int64_t n) { return std::vector<Arg>{indices({n}, 13)}; }, FN(one_hot(x[0], 13)));
  sized(cs, "dropout", [](int64_t n) { return std::vector<Arg>{real({n})}; }, [](X x) {
    Generator g(8);
    return dropout(x[0], 0.3, true, &g);
  });
  cs.push_back({"dropout_transposed", {real({65, 33})}, [](X x) {
                  Generator g(9);
                  return dropout(x[0].t(), 0.5, true, &g);
                }});
  cs.push_back({"dropout_all_dropped_and_eval", {real({7, 5})}, [](X x) {
                  return dropout(x[0], 1.0, true) + dropout(x[0].t(), 0.5, false).t();
                }});
  return cs;
}

// ---------------------------------------------------------------- nn::functional

OpCases functional_cases() {
  OpCases cs;
  // linear
  cs.push_back({"linear", {real({5, 7, 33}), real({17, 33}), real({17})}, FN(F::linear(x[0], x[1], x[2]))});
  cs.push_back({"linear_no_bias_transposed", {real({33, 5}), real({33, 17})}, FN(F::linear(x[0].t(), x[1].t()))});
  cs.push_back({"linear_1x1", {real({1, 1}), real({1, 1}), real({1})}, FN(F::linear(x[0], x[1], x[2]))});
  cs.push_back({"linear_vector_input", {real({65}), real({7, 65}), real({7})}, FN(F::linear(x[0], x[1], x[2]))});
  sized(cs, "F_dropout", [](int64_t n) { return std::vector<Arg>{real({n})}; }, [](X x) {
    Generator g(10);
    return F::dropout(x[0], 0.25, true, &g);
  });

  // conv2d: plain, stride/padding/dilation, groups, depthwise, 1x1, one image, strided input.
  cs.push_back({"conv2d", {real({2, 3, 9, 11}), real({4, 3, 3, 3}), real({4})}, FN(F::conv2d(x[0], x[1], x[2]))});
  cs.push_back({"conv2d_stride_pad_dilation", {real({2, 3, 13, 10}), real({5, 3, 3, 2}), real({5})},
                FN(F::conv2d(x[0], x[1], x[2], {2, 1}, {1, 2}, {2, 1}))});
  cs.push_back({"conv2d_groups", {real({2, 4, 7, 7}), real({6, 2, 3, 3}), real({6})},
                FN(F::conv2d(x[0], x[1], x[2], 1, 1, 1, 2))});
  cs.push_back({"conv2d_depthwise", {real({2, 3, 8, 7}), real({6, 1, 3, 3})},
                FN(F::conv2d(x[0], x[1], Tensor(), 2, 1, 1, 3))});
  cs.push_back({"conv2d_1x1", {real({3, 5, 6, 7}), real({4, 5, 1, 1}), real({4})}, FN(F::conv2d(x[0], x[1], x[2]))});
  cs.push_back({"conv2d_single_pixel", {real({1, 1, 1, 1}), real({1, 1, 1, 1}), real({1})},
                FN(F::conv2d(x[0], x[1], x[2]))});
  cs.push_back({"conv2d_unbatched", {real({3, 7, 7}), real({2, 3, 7, 7}), real({2})}, FN(F::conv2d(x[0], x[1], x[2], 1, 3))});
  cs.push_back({"conv2d_transposed_input", {real({2, 3, 11, 9}), real({4, 3, 3, 3}), real({4})},
                FN(F::conv2d(x[0].transpose(2, 3), x[1].transpose(2, 3), x[2], 1, 1))});
  cs.push_back({"conv2d_large_plane", {real({1, 2, 181, 181}), real({3, 2, 3, 3})},  // 65522 pixels a plane
                FN(F::conv2d(x[0], x[1], Tensor(), 1, 1)), kSum32});

  // Pooling.
  cs.push_back({"max_pool2d", {real({2, 3, 8, 9})}, FN(F::max_pool2d(x[0], 2))});
  cs.push_back({"max_pool2d_overlap_pad_ceil", {real({2, 3, 9, 10})}, FN(F::max_pool2d(x[0], 3, 2, 1, 1, true))});
  cs.push_back({"max_pool2d_dilation", {real({2, 2, 11, 9})}, FN(F::max_pool2d(x[0], {3, 2}, nn::Size2{2, 1}, {1, 0}, 2))});
  cs.push_back({"max_pool2d_transposed", {real({2, 3, 9, 8})}, FN(F::max_pool2d(x[0].transpose(2, 3), 3, 2, 1))});
  cs.push_back({"max_pool2d_indices", {real({2, 3, 9, 10})}, FN(F::max_pool2d_with_indices(x[0], 3, 2, 1).second)});
  cs.push_back({"max_pool2d_ties", {ties({2, 3, 8, 8}, 2)}, FN(F::max_pool2d_with_indices(x[0], 3, 1, 1).second)});
  cs.push_back({"max_pool2d_ties_gradient", {tied_real({2, 3, 8, 8}, 2)}, FN(F::max_pool2d(x[0], 3, 1, 1))});
  cs.push_back({"avg_pool2d", {real({2, 3, 8, 9})}, FN(F::avg_pool2d(x[0], 2))});
  cs.push_back({"avg_pool2d_pad_ceil", {real({2, 3, 9, 10})}, FN(F::avg_pool2d(x[0], 3, 2, 1, true))});
  cs.push_back({"avg_pool2d_exclude_pad", {real({2, 3, 9, 10})}, FN(F::avg_pool2d(x[0], 3, 2, 1, true, false))});
  cs.push_back({"avg_pool2d_transposed", {real({2, 3, 9, 8})}, FN(F::avg_pool2d(x[0].transpose(2, 3), {3, 2}, 1, 1))});
  cs.push_back({"adaptive_avg_pool2d_global", {real({2, 3, 9, 10})}, FN(F::adaptive_avg_pool2d(x[0], 1))});
  cs.push_back({"adaptive_avg_pool2d_uneven", {real({2, 3, 7, 5})}, FN(F::adaptive_avg_pool2d(x[0], {3, 2}))});
  cs.push_back({"adaptive_avg_pool2d_upsample", {real({1, 2, 3, 2})}, FN(F::adaptive_avg_pool2d(x[0], {5, 3}))});
  cs.push_back({"adaptive_avg_pool2d_transposed", {real({2, 3, 9, 8})},
                FN(F::adaptive_avg_pool2d(x[0].transpose(2, 3), {4, 3}))});

  // Batch norm: training (batch statistics, running statistics updated in place: they are inputs,
  // compared after the run), without running statistics, evaluation; 2-D, 3-D and 4-D inputs.
  cs.push_back({"batch_norm_train",
                {real({4, 3, 5, 6}), constant({3}), constant({3}, 0.5, 2), real({3}), real({3})},
                FN(F::batch_norm(x[0], x[1], x[2], x[3], x[4], true, 0.1))});
  cs.push_back({"batch_norm_train_2d_no_stats", {real({7, 5})}, FN(F::batch_norm(x[0], {}, {}, {}, {}, true))});
  cs.push_back({"batch_norm_train_3d_transposed", {real({4, 9, 3}), constant({3}), constant({3}, 0.5, 2)},
                FN(F::batch_norm(x[0].transpose(1, 2), x[1], x[2], {}, {}, true, 0.3, 1e-3))});
  // A large eps makes a backward that ignores the forward's eps (issue 19 item 6) visibly wrong.
  cs.push_back({"batch_norm_train_large_eps", {real({4, 3, 5}), constant({3}), constant({3}, 0.5, 2)},
                FN(F::batch_norm(x[0], x[1], x[2], {}, {}, true, 0.1, 0.5))});
  cs.push_back({"batch_norm_train_large_batch", {real({65537, 2}), constant({2}), constant({2}, 0.5, 2), real({2})},
                FN(F::batch_norm(x[0], x[1], x[2], x[3], {}, true)), kSum32});
  cs.push_back({"batch_norm_eval", {real({4, 3, 5, 6}), constant({3}), constant({3}, 0.5, 2), real({3}), real({3})},
                FN(F::batch_norm(x[0], x[1], x[2], x[3], x[4], false))});

  // Layer norm: rows of every size, several trailing dims, no affine, strided input.
  sized(cs, "layer_norm_rows", [](int64_t n) { return std::vector<Arg>{real({3, n}), real({n}), real({n})}; },
        FN(F::layer_norm(x[0], {x[0].size(1)}, x[1], x[2])));
  cs.push_back({"layer_norm_two_dims", {real({2, 3, 5, 7}), real({5, 7}), real({5, 7})},
                FN(F::layer_norm(x[0], {5, 7}, x[1], x[2]))});
  cs.push_back({"layer_norm_no_affine_transposed", {real({7, 33})}, FN(F::layer_norm(x[0].t(), {7}))});
  cs.push_back({"layer_norm_weight_only", {real({5, 9}), real({9})}, FN(F::layer_norm(x[0], {9}, x[1], {}, 1e-3))});

  // Losses.
  cs.push_back({"cross_entropy", {real({5, 7}, -3, 3), indices({5}, 7)}, FN(F::cross_entropy(x[0], x[1]))});
  sized(cs, "cross_entropy_classes",
        [](int64_t n) { return std::vector<Arg>{real({3, n}, -3, 3), indices({3}, n)}; },
        FN(F::cross_entropy(x[0], x[1])));
  sized(cs, "cross_entropy_batch", [](int64_t n) { return std::vector<Arg>{real({n, 5}, -3, 3), indices({n}, 5)}; },
        FN(F::cross_entropy(x[0], x[1], {.reduction = Reduction::Sum})), kSum32);
  cs.push_back({"cross_entropy_none_ignore_smoothing", {real({6, 4}, -3, 3), int64s({1, -100, 3, 0, -100, 2}, {6})},
                FN(F::cross_entropy(x[0], x[1],
                                    {.reduction = Reduction::None, .ignore_index = -100, .label_smoothing = 0.1}))});
  cs.push_back({"cross_entropy_mean_ignore", {real({6, 4}, -3, 3), int64s({1, 2, 3, 0, 2, 2}, {6})},
                FN(F::cross_entropy(x[0], x[1], {.ignore_index = 2, .label_smoothing = 0.2}))});
  cs.push_back({"cross_entropy_spatial", {real({2, 5, 3, 4}, -3, 3), indices({2, 3, 4}, 5)},
                FN(F::cross_entropy(x[0], x[1], {.label_smoothing = 0.05}))});
  cs.push_back({"cross_entropy_unbatched", {real({7}, -3, 3), int64s({4}, {})}, FN(F::cross_entropy(x[0], x[1]))});
  cs.push_back({"cross_entropy_transposed", {real({7, 5}, -3, 3), indices({5}, 7)}, FN(F::cross_entropy(x[0].t(), x[1]))});
  cs.push_back({"nll_loss", {real({5, 7}, -3, 0), indices({5}, 7)}, FN(F::nll_loss(x[0], x[1]))});
  cs.push_back({"nll_loss_sum_ignore", {real({6, 4}, -3, 0), int64s({1, -100, 3, 0, -100, 2}, {6})},
                FN(F::nll_loss(x[0], x[1], {.reduction = Reduction::Sum}))});
  cs.push_back({"nll_loss_none_transposed", {real({7, 5}, -3, 0), indices({5}, 7)},
                FN(F::nll_loss(x[0].t(), x[1], {.reduction = Reduction::None}))});
  cs.push_back({"nll_loss_unbatched", {real({7}, -3, 0), int64s({6}, {})}, FN(F::nll_loss(x[0], x[1]))});
  sized(cs, "mse_loss", [](int64_t n) { return std::vector<Arg>{real({n}), real({n})}; },
        FN(F::mse_loss(x[0], x[1])));
  cs.push_back({"mse_loss_sum_transposed", {real({33, 65}), real({65, 33})},
                FN(F::mse_loss(x[0].t(), x[1], Reduction::Sum)), kSum32});
  cs.push_back({"mse_loss_none", {real({7, 5}), real({7, 5})}, FN(F::mse_loss(x[0], x[1], Reduction::None))});
  return cs;
}

// ---------------------------------------------------------------- nn/layers.h

using ModulePtr = std::shared_ptr<nn::Module>;

struct LayerCase {
  std::string name;
  std::function<ModulePtr(Generator*)> make;  // built on the CPU from the generator
  Arg input;
  bool train = true;
  Tol tol32 = kTol32;
  bool float64 = true;
  Tol tol64 = kTol64;
};
using LayerCases = std::vector<LayerCase>;

#define MODULE(...) [](Generator * g) -> ModulePtr { (void)g; return __VA_ARGS__; }

LayerCases layer_cases() {
  using std::make_shared;
  LayerCases cs;
  cs.push_back({"Linear", MODULE(make_shared<nn::Linear>(33, 17, true, g)), real({5, 7, 33})});
  cs.push_back({"Linear_no_bias", MODULE(make_shared<nn::Linear>(7, 1, false, g)), real({1023, 7})});
  cs.push_back({"Embedding", MODULE(make_shared<nn::Embedding>(11, 9, g)), indices({5, 7}, 11)});
  cs.push_back({"Embedding_many", MODULE(make_shared<nn::Embedding>(3, 5, g)), indices({65537}, 3), true, kSum32});
  cs.push_back({"Conv2d", MODULE(make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions{.stride = 2, .padding = 1}, g)),
                real({2, 3, 9, 8})});
  cs.push_back({"Conv2d_groups_no_bias",
                MODULE(make_shared<nn::Conv2d>(4, 6, nn::Size2{3, 1},
                                               nn::Conv2dOptions{.padding = {1, 0}, .dilation = 2, .groups = 2,
                                                                 .bias = false},
                                               g)),
                real({2, 4, 9, 7})});
  cs.push_back({"MaxPool2d", MODULE(make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions{.stride = 2, .padding = 1})),
                real({2, 3, 9, 8})});
  cs.push_back({"AvgPool2d", MODULE(make_shared<nn::AvgPool2d>(2, nn::AvgPool2dOptions{.stride = 2, .padding = 0, .ceil_mode = true})),
                real({2, 3, 9, 8})});
  cs.push_back({"AdaptiveAvgPool2d", MODULE(make_shared<nn::AdaptiveAvgPool2d>(nn::Size2{3, 2})), real({2, 3, 7, 9})});
  cs.push_back({"BatchNorm1d_train", MODULE(make_shared<nn::BatchNorm1d>(5)), real({7, 5})});
  cs.push_back({"BatchNorm1d_3d_cumulative",
                MODULE(make_shared<nn::BatchNorm1d>(3, nn::BatchNormOptions{.momentum = std::nullopt})),
                real({4, 3, 9})});
  cs.push_back({"BatchNorm1d_eval", MODULE(make_shared<nn::BatchNorm1d>(5)), real({7, 5}), false});
  cs.push_back({"BatchNorm2d_train", MODULE(make_shared<nn::BatchNorm2d>(3)), real({4, 3, 5, 6})});
  cs.push_back({"BatchNorm2d_eval", MODULE(make_shared<nn::BatchNorm2d>(3)), real({4, 3, 5, 6}), false});
  cs.push_back({"BatchNorm2d_untracked_eval",
                MODULE(make_shared<nn::BatchNorm2d>(3, nn::BatchNormOptions{.affine = false, .track_running_stats = false})),
                real({4, 3, 5, 6}), false});
  cs.push_back({"LayerNorm", MODULE(make_shared<nn::LayerNorm>(std::vector<int64_t>{5, 7})), real({2, 3, 5, 7})});
  cs.push_back({"LayerNorm_no_affine",
                MODULE(make_shared<nn::LayerNorm>(std::vector<int64_t>{1023},
                                                  nn::LayerNormOptions{.elementwise_affine = false})),
                real({3, 1023}), true, kSum32});
  cs.push_back({"Dropout", MODULE(make_shared<nn::Dropout>(0.4, g)), real({1023})});
  cs.push_back({"Dropout_eval", MODULE(make_shared<nn::Dropout>(0.4, g)), real({7, 5}), false});
  cs.push_back({"Flatten", MODULE(make_shared<nn::Flatten>(1, 2)), real({2, 3, 5, 7})});
  cs.push_back({"ReLU", MODULE(make_shared<nn::ReLU>()), real({65537})});
  cs.push_back({"GELU", MODULE(make_shared<nn::GELU>()), real({65537}, -3, 3)});
  cs.push_back({"Tanh", MODULE(make_shared<nn::Tanh>()), real({65537}, -3, 3)});
  cs.push_back({"Sigmoid", MODULE(make_shared<nn::Sigmoid>()), real({65537}, -4, 4)});
  cs.push_back({"Sequential_mlp",
                MODULE(make_shared<nn::Sequential>(make_shared<nn::Flatten>(), make_shared<nn::Linear>(48, 17, true, g),
                                                   make_shared<nn::BatchNorm1d>(17), make_shared<nn::GELU>(),
                                                   make_shared<nn::Dropout>(0.2, g),
                                                   make_shared<nn::Linear>(17, 3, true, g))),
                real({9, 3, 4, 4})});
  cs.push_back({"Sequential_cnn",
                MODULE(make_shared<nn::Sequential>(
                    make_shared<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.padding = 1}, g), make_shared<nn::BatchNorm2d>(8),
                    make_shared<nn::ReLU>(), make_shared<nn::MaxPool2d>(2), make_shared<nn::AdaptiveAvgPool2d>(1),
                    make_shared<nn::Flatten>(), make_shared<nn::Linear>(8, 4, true, g))),
                real({2, 3, 9, 9})});
  cs.push_back({"ResidualBlock", MODULE(make_shared<nn::ResidualBlock>(4, 4, 1, g)), real({2, 4, 6, 6})});
  cs.push_back({"ResidualBlock_downsample", MODULE(make_shared<nn::ResidualBlock>(4, 8, 2, g)), real({2, 4, 7, 7})});
  cs.push_back({"ResidualBlock_downsample_eval", MODULE(make_shared<nn::ResidualBlock>(4, 8, 2, g)), real({2, 4, 7, 7}),
                false});
  return cs;
}

// ---------------------------------------------------------------- running and comparing

// "" when `gpu` (on CUDA) matches `cpu`, else what differs: the worst element and how many are off.
std::string mismatch(const Tensor& gpu, const Tensor& cpu, Tol tol) {
  std::ostringstream msg;
  if (gpu.defined() != cpu.defined()) return gpu.defined() ? "undefined on the CPU only" : "undefined on CUDA only";
  if (!cpu.defined()) return "";
  if (gpu.device() != kCuda) msg << "on " << gpu.device() << ", not " << kCuda << "; ";
  if (gpu.dtype() != cpu.dtype()) msg << "dtype " << gpu.dtype() << ", the CPU's is " << cpu.dtype() << "; ";
  if (gpu.shape() != cpu.shape()) return msg.str() + "shape " + gpu.shape().str() + ", the CPU's is " + cpu.shape().str();
  const bool exact = !is_floating(cpu.dtype());
  const double rtol = exact ? 0 : tol.rtol, atol = exact ? 0 : tol.atol;
  const auto g = gpu.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  const auto c = cpu.detach().to(kFloat64).contiguous().to_vector<double>();
  int64_t bad = 0, worst = -1;
  double worst_excess = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const double err = std::abs(g[i] - c[i]), allowed = atol + rtol * std::abs(c[i]);
    if (err <= allowed && !std::isnan(g[i]) && !std::isnan(c[i])) continue;
    ++bad;
    const double excess = std::isnan(err) ? INFINITY : err - allowed;
    if (worst < 0 || excess > worst_excess) worst = static_cast<int64_t>(i), worst_excess = excess;
  }
  if (bad > 0)
    msg << bad << " of " << c.size() << " elements differ (shape " << cpu.shape() << "); worst: element " << worst
        << " is " << g[worst] << " on CUDA, " << c[worst] << " on the CPU (rtol " << rtol << ", atol " << atol << ")";
  return msg.str();
}

// "" when every value of a floating CPU result is finite (the case's inputs are in its op's domain).
std::string nonfinite(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype())) return "";
  const auto v = t.detach().to(kFloat64).contiguous().to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) return "element " + std::to_string(i) + " is " + std::to_string(v[i]);
  return "";
}

// A fixed random upstream gradient for `out`, made on the CPU (the same on both devices).
Tensor upstream(const Tensor& out) {
  Generator g(99);
  return uniform(out.shape(), -1, 1, kFloat64, &g).to(out.dtype()).to(out.device());
}

uint64_t seed_of(size_t input) { return 1234 + 17 * input; }

struct OpRun {
  std::vector<Tensor> inputs;  // after the run: gradients in .grad(), in-place updates in the values
  Tensor out;
};

OpRun run_op(const OpCase& c, DType dtype, Device device) {
  OpRun r;
  for (size_t i = 0; i < c.args.size(); ++i) {
    Tensor t = c.args[i].make(dtype, seed_of(i)).to(device);
    if (c.args[i].grad) t.requires_grad_();
    r.inputs.push_back(t);
  }
  r.out = c.fn(r.inputs);
  if (r.out.requires_grad()) r.out.backward(upstream(r.out));
  return r;
}

// The gradcheck op table (tests/op_table.h) at its small shapes: every differentiable op there,
// the backward ops (tanh_backward, softmax_backward, ...) included, also runs here.
OpCases op_table_cases() {
  OpCases cs;
  for (const ember::test::OpCase& t : ember::test::all_ops()) {
    std::vector<Arg> args;
    for (const Shape& s : t.shapes) args.push_back(real(s, t.lo, t.hi));
    cs.push_back({"optable_" + t.name, std::move(args), t.fn});
  }
  return cs;
}

const OpCases& all_op_cases() {
  static const OpCases cases = [] {
    OpCases all = core_cases();
    for (OpCase& c : functional_cases()) all.push_back(std::move(c));
    for (OpCase& c : op_table_cases()) all.push_back(std::move(c));
    return all;
  }();
  return cases;
}

const LayerCases& all_layer_cases() {
  static const LayerCases cases = layer_cases();
  return cases;
}

// One test per case (one process under ctest); it runs float32, then float64 where supported.
std::vector<DType> dtypes_of(bool float64) {
  if (float64) return {kFloat32, kFloat64};
  return {kFloat32};
}

template <typename Case>
std::vector<const Case*> pointers_to(const std::vector<Case>& cases) {
  std::vector<const Case*> ps;
  for (const Case& c : cases) ps.push_back(&c);
  return ps;
}

void PrintTo(const OpCase* c, std::ostream* os) { *os << c->name; }
void PrintTo(const LayerCase* c, std::ostream* os) { *os << c->name; }

template <typename Case>
std::string case_name(const ::testing::TestParamInfo<const Case*>& info) {
  return info.param->name;
}

// The CPU half checks the case itself: finite values, a gradient for every differentiable input.
void check_cpu_run(const OpCase& c, const OpRun& cpu) {
  ASSERT_TRUE(cpu.out.defined());
  EXPECT_EQ(nonfinite(cpu.out), "") << "CPU output: the case's inputs are outside its op's domain";
  for (size_t i = 0; i < c.args.size(); ++i) {
    if (!c.args[i].grad || !cpu.out.requires_grad()) continue;
    ASSERT_TRUE(cpu.inputs[i].grad().defined()) << "input " << i << " is marked differentiable but got no gradient";
    EXPECT_EQ(nonfinite(cpu.inputs[i].grad()), "") << "CPU gradient of input " << i;
  }
}

void expect_same_run(const OpCase& c, const OpRun& gpu, const OpRun& cpu, Tol tol) {
  EXPECT_EQ(mismatch(gpu.out, cpu.out, tol), "") << "output";
  EXPECT_EQ(gpu.out.requires_grad(), cpu.out.requires_grad());
  for (size_t i = 0; i < c.args.size(); ++i) {
    EXPECT_EQ(mismatch(gpu.inputs[i], cpu.inputs[i], tol), "") << "input " << i << " after the run";
    if (c.args[i].grad) {
      EXPECT_EQ(mismatch(gpu.inputs[i].grad(), cpu.inputs[i].grad(), tol), "") << "gradient of input " << i;
    }
  }
}

class CudaParityOps : public ::testing::TestWithParam<const OpCase*> {};

}  // namespace

TEST_P(CudaParityOps, MatchesTheCpu) {
  const OpCase& c = *GetParam();
  std::vector<std::pair<DType, OpRun>> cpu_runs;
  for (DType dtype : dtypes_of(c.float64)) {
    SCOPED_TRACE(dtype_name(dtype));
    cpu_runs.emplace_back(dtype, run_op(c, dtype, kCPU));
    check_cpu_run(c, cpu_runs.back().second);
  }
  if (!cuda_is_available()) GTEST_SKIP() << no_gpu_reason();

  for (const auto& [dtype, cpu] : cpu_runs) {
    SCOPED_TRACE(dtype_name(dtype));
    expect_same_run(c, run_op(c, dtype, kCuda), cpu, dtype == kFloat64 ? c.tol64 : c.tol32);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaParityOps, ::testing::ValuesIn(pointers_to(all_op_cases())), case_name<OpCase>);

// ---------------------------------------------------------------- layers

namespace {

// Parameters and running statistics get seeded values (not the constant ones/zeros some layers
// start with), so every term of the forward and backward shows up in the comparison.
void randomize(nn::Module& m, Generator* g) {
  NoGradGuard ng;
  for (const auto& [name, p] : m.named_parameters()) Tensor(p).copy_(uniform(p.shape(), -1, 1, kFloat64, g));
  for (const auto& [name, b] : m.named_buffers()) {
    if (name.ends_with("running_mean")) Tensor(b).copy_(uniform(b.shape(), -0.5, 0.5, kFloat64, g));
    if (name.ends_with("running_var")) Tensor(b).copy_(uniform(b.shape(), 0.5, 2, kFloat64, g));
  }
}

struct LayerRun {
  std::unique_ptr<Generator> gen;  // the module's own (Dropout keeps a pointer to it)
  ModulePtr module;
  Tensor input, out;
};

LayerRun run_layer(const LayerCase& c, DType dtype, Device device) {
  LayerRun r;
  r.gen = std::make_unique<Generator>(77);
  r.module = c.make(r.gen.get());
  randomize(*r.module, r.gen.get());
  r.module->to(dtype);
  r.module->to(device);
  r.module->train(c.train);
  r.input = c.input.make(dtype, seed_of(0)).to(device);
  if (c.input.grad) r.input.requires_grad_();
  r.out = r.module->forward(r.input);
  r.out.backward(upstream(r.out));
  return r;
}

void check_cpu_run(const LayerCase& c, const LayerRun& cpu) {
  EXPECT_EQ(nonfinite(cpu.out), "") << "CPU output";
  if (c.input.grad) {
    EXPECT_TRUE(cpu.input.grad().defined()) << "the input got no gradient";
  }
  for (const auto& [name, p] : cpu.module->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << "parameter " << name << " got no gradient";
    EXPECT_EQ(nonfinite(p.grad()), "") << "CPU gradient of " << name;
  }
}

void expect_same_run(const LayerCase& c, const LayerRun& gpu, const LayerRun& cpu, Tol tol) {
  EXPECT_EQ(mismatch(gpu.out, cpu.out, tol), "") << "output";
  if (c.input.grad) {
    EXPECT_EQ(mismatch(gpu.input.grad(), cpu.input.grad(), tol), "") << "gradient of the input";
  }
  const nn::NamedTensors gp = gpu.module->named_parameters();
  for (const auto& [name, p] : cpu.module->named_parameters())
    EXPECT_EQ(mismatch(gp.at(name).grad(), p.grad(), tol), "") << "gradient of " << name;
  // Parameters unchanged, running statistics updated alike, num_batches_tracked counted alike.
  const nn::NamedTensors gs = gpu.module->state_dict();
  for (const auto& [name, t] : cpu.module->state_dict()) EXPECT_EQ(mismatch(gs.at(name), t, tol), "") << name;
}

class CudaParityLayers : public ::testing::TestWithParam<const LayerCase*> {};

}  // namespace

TEST_P(CudaParityLayers, MatchesTheCpu) {
  const LayerCase& c = *GetParam();
  std::vector<std::pair<DType, LayerRun>> cpu_runs;
  for (DType dtype : dtypes_of(c.float64)) {
    SCOPED_TRACE(dtype_name(dtype));
    cpu_runs.emplace_back(dtype, run_layer(c, dtype, kCPU));
    check_cpu_run(c, cpu_runs.back().second);
  }
  if (!cuda_is_available()) GTEST_SKIP() << no_gpu_reason();

  for (const auto& [dtype, cpu] : cpu_runs) {
    SCOPED_TRACE(dtype_name(dtype));
    expect_same_run(c, run_layer(c, dtype, kCuda), cpu, dtype == kFloat64 ? c.tol64 : c.tol32);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaParityLayers, ::testing::ValuesIn(pointers_to(all_layer_cases())),
                         case_name<LayerCase>);

// ---------------------------------------------------------------- bfloat16 and float16

// Every op and layer case again in the two 16-bit dtypes: CUDA against the CPU in the same dtype,
// from the same 16-bit inputs. Both backends widen to float32, compute and round back, so the
// results differ by the last bits of float32 sums taken in other orders, and then by one rounding
// of the narrow type (2^-8 relative for bfloat16, 2^-11 for float16), which a backward pass can
// compound over a few ops. The CPU decides what a case supports: a case whose CPU run rejects the
// dtype, or gives non-finite values (float16 overflows past 65504), is not compared in it. These
// cases run only with a GPU (their CPU half is what the CPU's own half-precision tests cover).
namespace {

struct HalfTol {
  DType dtype;
  Tol tol;
};
// Unverified on a GPU (written without one): widen them only with a reason from a real run.
constexpr HalfTol kHalfDtypes[] = {{kBFloat16, {2e-2, 2e-2}}, {kFloat16, {4e-3, 4e-3}}};

// The looser of the 16-bit tolerance and the case's own float32 one (long sums keep their atol).
Tol half_tol(Tol narrow, Tol case32) {
  return {std::max(narrow.rtol, case32.rtol), std::max(narrow.atol, case32.atol)};
}

// Stores run()'s result in `out`; false (and the message in `why`) when it throws an ember::Error,
// i.e. when the CPU rejects the case's dtype.
template <typename Run, typename Result>
bool cpu_supports(Run&& run, Result& out, std::string& why) {
  try {
    out = run();
  } catch (const Error& e) {
    why = e.what();
    return false;
  }
  return true;
}

// One case in each 16-bit dtype on CUDA against the CPU in the same dtype; a dtype the CPU rejects
// for this case, or where its result is not finite, is not compared.
template <class Run, class Case, class RunFn>
void expect_half_parity(const Case& c, RunFn run) {
  for (const HalfTol& h : kHalfDtypes) {
    SCOPED_TRACE(dtype_name(h.dtype));
    Run cpu;
    std::string why;
    if (!cpu_supports([&] { return run(c, h.dtype, kCPU); }, cpu, why) || !nonfinite(cpu.out).empty()) continue;
    expect_same_run(c, run(c, h.dtype, kCuda), cpu, half_tol(h.tol, c.tol32));
  }
}

class CudaParityHalfOps : public ::testing::TestWithParam<const OpCase*> {};
class CudaParityHalfLayers : public ::testing::TestWithParam<const LayerCase*> {};

}  // namespace

TEST_P(CudaParityHalfOps, MatchesTheCpuInTheSameDtype) {
  EMBER_REQUIRE_GPU();
  expect_half_parity<OpRun>(*GetParam(), [](const OpCase& c, DType t, Device d) { return run_op(c, t, d); });
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaParityHalfOps, ::testing::ValuesIn(pointers_to(all_op_cases())), case_name<OpCase>);

TEST_P(CudaParityHalfLayers, MatchesTheCpuInTheSameDtype) {
  EMBER_REQUIRE_GPU();
  expect_half_parity<LayerRun>(*GetParam(),
                               [](const LayerCase& c, DType t, Device d) { return run_layer(c, t, d); });
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaParityHalfLayers, ::testing::ValuesIn(pointers_to(all_layer_cases())),
                         case_name<LayerCase>);

// The ops the narrow types exist for must run in them on the CPU, so the half suites above
// compare them rather than skip them: elementwise math, matmul, reductions, softmax, conv2d.
TEST(CudaParity, HalfSuitesCoverTheCoreOpsOnTheCpu) {
  const std::vector<std::string> required = {"Linear", "Conv2d", "BatchNorm2d_train", "Sequential_cnn"};
  for (const HalfTol& h : kHalfDtypes) {
    for (const LayerCase& c : all_layer_cases()) {
      if (std::find(required.begin(), required.end(), c.name) == required.end()) continue;
      SCOPED_TRACE(c.name + " in " + dtype_name(h.dtype));
      LayerRun cpu;
      std::string why;
      EXPECT_TRUE(cpu_supports([&] { return run_layer(c, h.dtype, kCPU); }, cpu, why)) << why;
      EXPECT_EQ(nonfinite(cpu.out), "");
      EXPECT_EQ(cpu.out.dtype(), h.dtype);
    }
  }
}

// Autocast on CUDA: a small cnn's forward and backward under AutocastGuard (conv and linear in the
// 16-bit dtype, batch norm, softmax and the loss in float32) against the same on the CPU. The
// parameters stay float32 on both devices, so their gradients are float32 and compared as such,
// to the 16-bit tolerance (they flow back through 16-bit activations).
TEST(CudaParity, AutocastCnnForwardAndBackwardMatchTheCpu) {
  EMBER_REQUIRE_GPU();
  using std::make_shared;
  for (const HalfTol& h : kHalfDtypes) {
    SCOPED_TRACE(dtype_name(h.dtype));
    struct Run {
      ModulePtr model;
      Tensor loss;
    };
    auto run = [&](Device device) {
      Generator g(3);
      Run r;
      r.model = make_shared<nn::Sequential>(
          make_shared<nn::Conv2d>(1, 8, 3, nn::Conv2dOptions{.padding = 1}, &g), make_shared<nn::BatchNorm2d>(8),
          make_shared<nn::ReLU>(), make_shared<nn::MaxPool2d>(2),
          make_shared<nn::Conv2d>(8, 16, 3, nn::Conv2dOptions{.padding = 1}, &g), make_shared<nn::ReLU>(),
          make_shared<nn::AdaptiveAvgPool2d>(1), make_shared<nn::Flatten>(), make_shared<nn::Linear>(16, 10, true, &g));
      r.model->to(device);
      Generator gx(4);
      const Tensor x = uniform({8, 1, 12, 12}, -1, 1, kFloat32, &gx).to(device);
      const Tensor y = from_vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7}).to(device);
      {
        AutocastGuard autocast(h.dtype);
        const Tensor logits = r.model->forward(x);
        EXPECT_EQ(logits.dtype(), h.dtype) << "the last linear runs in the 16-bit dtype";
        r.loss = F::cross_entropy(logits, y);
      }
      EXPECT_EQ(r.loss.dtype(), kFloat32) << "the loss runs in float32";
      r.loss.backward();
      return r;
    };
    const Run cpu = run(kCPU), gpu = run(kCuda);
    EXPECT_EQ(mismatch(gpu.loss, cpu.loss, h.tol), "") << "loss";
    const nn::NamedTensors gp = gpu.model->named_parameters();
    for (const auto& [name, p] : cpu.model->named_parameters()) {
      EXPECT_EQ(p.grad().dtype(), kFloat32) << name;
      EXPECT_EQ(mismatch(gp.at(name).grad(), p.grad(), h.tol), "") << "gradient of " << name;
    }
  }
}

// ---------------------------------------------------------------- dropout and casting copies

namespace {

template <typename T>
std::vector<T> host_values(const Tensor& t) {
  return t.detach().to(kCPU).contiguous().to_vector<T>();
}

}  // namespace

TEST(CudaParity, DropoutMaskIsReproducibleMatchesTheCpuAndKeepsTheRightFraction) {
  EMBER_REQUIRE_GPU();
  const double p = 0.3;
  for (DType dtype : {kFloat32, kFloat64}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1023}, int64_t{65537}, int64_t{1} << 20}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + ", " + std::to_string(n) + " elements");
      Tensor x = ones({n}, TensorOptions(dtype).device(kCuda)).requires_grad_();
      Generator g1(21), g2(21), gc(21);
      Tensor y = dropout(x, p, true, &g1);
      // The same seed gives the same mask, run to run and on the CPU (one Philox stream).
      EXPECT_EQ(mismatch(dropout(x, p, true, &g2), y, {0, 0}), "");
      EXPECT_EQ(mismatch(y, dropout(ones({n}, dtype), p, true, &gc), {0, 0}), "");
      // The generator moved on: the next mask differs (for more than a handful of elements).
      if (n >= 1023) {
        EXPECT_NE(mismatch(dropout(x, p, true, &g1), y, {0, 0}), "");
      }
      // Every element is dropped or scaled by 1/(1-p); the kept fraction is 1-p within 5 sigma.
      const auto v = host_values<double>(y.to(kFloat64));
      const double scale = dtype == kFloat32 ? double(float(1 / (1 - p))) : 1 / (1 - p);
      int64_t kept = 0;
      for (double e : v) {
        ASSERT_TRUE(e == 0 || e == scale) << e;
        kept += e != 0;
      }
      EXPECT_NEAR(double(kept) / n, 1 - p, 5 * std::sqrt(p * (1 - p) / n) + 1.0 / n);
      // The gradient is the same scaled mask.
      y.backward(ones({n}, TensorOptions(dtype).device(kCuda)));
      EXPECT_EQ(mismatch(x.grad(), y.detach().to(kCPU), {0, 0}), "");
    }
  }
  // The default generator: manual_seed makes a CUDA mask repeat.
  Tensor x = ones({4099}, TensorOptions().device(kCuda));
  manual_seed(123);
  Tensor a = dropout(x, 0.5);
  manual_seed(123);
  EXPECT_EQ(mismatch(dropout(x, 0.5), a.to(kCPU), {0, 0}), "");
  // A non-contiguous input gets the mask of its own shape, as on the CPU.
  Tensor base = test::rand_f64({129, 65});
  Generator gd(5), gc(5);
  EXPECT_EQ(mismatch(dropout(base.to(kCuda).t(), 0.5, true, &gd), dropout(base.t(), 0.5, true, &gc), {0, 0}), "");
}

TEST(CudaParity, CastingCopiesMatchTheCpuForEveryDtypePairFromStridedSources) {
  EMBER_REQUIRE_GPU();
  // The dtypes every kernel dispatches over (EMBER_DISPATCH_ALL_AND_HALF in core/dtype.h): casts to
  // and from bfloat16 and float16 round to nearest even with core/half.h's one definition on both
  // devices, so they too must match bit for bit.
  const DType dtypes[] = {kFloat32, kFloat64, kInt64, kUInt8, kBFloat16, kFloat16};
  // Values with fractions (float -> integer truncates toward zero), in [0, 200) when uint8 is
  // involved (out-of-range casts to uint8 are undefined), else in [-100, 100).
  auto values = [](int64_t numel, bool unsigned_range) {
    Generator g(31);
    return unsigned_range ? uniform({numel}, 0, 200, kFloat64, &g) : uniform({numel}, -100, 100, kFloat64, &g);
  };
  for (DType from : dtypes) {
    for (DType to : dtypes) {
      const bool u8 = from == kUInt8 || to == kUInt8;
      // 1-D sources with step 2 and offset 1 at every size, and a transposed 2-D one.
      struct Layout {
        std::string name;
        Tensor base;  // contiguous, on the CPU, in `from`
        std::function<Tensor(const Tensor&)> view;
      };
      std::vector<Layout> layouts;
      for (int64_t n : kSizes)
        layouts.push_back({"sliced " + std::to_string(n), values(2 * n + 1, u8).to(from),
                           [](const Tensor& b) { return b.slice(0, 1, b.numel(), 2); }});
      layouts.push_back({"transposed 257x255", values(257 * 255, u8).to(from).view({257, 255}),
                         [](const Tensor& b) { return b.t(); }});
      for (const Layout& l : layouts) {
        SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to) + ", " + l.name);
        const Tensor cpu_src = l.view(l.base);
        const Tensor gpu_src = l.view(l.base.to(kCuda));
        ASSERT_FALSE(gpu_src.is_contiguous() && gpu_src.numel() > 1);
        const Tensor expected = cpu_src.to(to);
        EXPECT_EQ(mismatch(gpu_src.to(to), expected, {0, 0}), "") << "to(dtype) on the device";
        Tensor d = empty(cpu_src.shape(), TensorOptions(to).device(kCuda));
        d.copy_(gpu_src);
        EXPECT_EQ(mismatch(d, expected, {0, 0}), "") << "copy_ device -> device";
        Tensor h2d = empty(cpu_src.shape(), TensorOptions(to).device(kCuda));
        h2d.copy_(cpu_src);
        EXPECT_EQ(mismatch(h2d, expected, {0, 0}), "") << "copy_ host -> device";
        Tensor d2h = empty(cpu_src.shape(), TensorOptions(to));
        d2h.copy_(gpu_src);
        EXPECT_EQ(mismatch(d2h.to(kCuda), expected, {0, 0}), "") << "copy_ device -> host";
        // Into a strided destination: the gaps keep their values.
        if (cpu_src.dim() == 1) {
          const int64_t n = cpu_src.numel();
          Tensor buf = full({2 * n}, 7.0, TensorOptions(to).device(kCuda));
          buf.slice(0, 0, 2 * n, 2).copy_(gpu_src);
          EXPECT_EQ(mismatch(buf.slice(0, 0, 2 * n, 2), expected, {0, 0}), "") << "copy_ into a strided destination";
          EXPECT_EQ(mismatch(buf.slice(0, 1, 2 * n, 2), full({n}, 7.0, to), {0, 0}), "") << "the gaps";
        }
      }
    }
  }
}

// The table has no two cases with one name (GoogleTest would refuse them) and covers each size.
TEST(CudaParity, CaseNamesAreUniqueAndEverySizeIsCovered) {
  std::set<std::string> names;
  std::set<std::string> sizes;
  for (const OpCase& c : all_op_cases()) {
    EXPECT_TRUE(names.insert(c.name).second) << "two cases are called " << c.name;
    for (int64_t n : kSizes)
      if (c.name.ends_with("_n" + std::to_string(n))) sizes.insert(std::to_string(n));
  }
  EXPECT_EQ(sizes.size(), kSizes.size());
  EXPECT_GT(names.size(), 300u);
  std::set<std::string> layer_names;
  for (const LayerCase& c : all_layer_cases())
    EXPECT_TRUE(layer_names.insert(c.name).second) << "two layer cases are called " << c.name;
}
