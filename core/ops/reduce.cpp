// Reductions: sum, mean, max, min, var, logsumexp, argmax, argmin, and sum_to (the engine's
// reverse of broadcasting). Each op resolves `dims` into a bit mask (empty = every dim, negative
// dims count from the end, duplicates rejected), runs the backend's reduce kernel into a
// keepdim-shaped output, drops the reduced dims unless keepdim, and records its backward formula.
// Backward formulas first bring the gradient back to the keepdim shape, where it broadcasts
// against the input.
#include <cmath>
#include <limits>
#include <sstream>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/reduce_math.h"
#include "core/profiler.h"

namespace ember {

namespace {

std::string dims_str(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  os << ']';
  return os.str();
}

// `dims` as a bit mask of a's dims (bit d set = dim d reduced). Throws on out-of-range or repeated dims.
uint32_t reduce_mask(const char* op, const Tensor& a, const std::vector<int64_t>& dims) {
  EMBER_CHECK(a.defined(), op, ": undefined tensor argument");
  const int nd = a.dim();
  if (dims.empty()) return (1u << nd) - 1;  // every dim (none for a 0-d tensor)
  uint32_t seen = 0;
  for (int64_t d : dims) {
    const int w = wrap_dim(op, d, nd);
    EMBER_CHECK(!((seen >> w) & 1u), op, ": dim ", d, " appears more than once in dims ", dims_str(dims),
                " (tensor of shape ", a.shape(), ")");
    seen |= 1u << w;
  }
  return nd == 0 ? 0u : seen;  // a 0-d tensor accepts dim 0 / -1, which reduce nothing
}

std::vector<int64_t> mask_dims(uint32_t mask, int nd) {
  std::vector<int64_t> dims;
  for (int d = 0; d < nd; ++d)
    if ((mask >> d) & 1u) dims.push_back(d);
  return dims;
}

// a's shape with the reduced dims set to 1: the shape the kernels write and gradients broadcast from.
Shape keepdim_shape(const Shape& s, uint32_t mask) {
  Shape k = s;
  for (int d = 0; d < s.size(); ++d)
    if ((mask >> d) & 1u) k[d] = 1;
  return k;
}

Shape dropped_shape(const Shape& s, uint32_t mask) {
  Shape r;
  for (int d = 0; d < s.size(); ++d)
    if (!((mask >> d) & 1u)) r.push_back(s[d]);
  return r;
}

// Number of input elements that reduce into each output.
int64_t reduced_count(const Shape& s, uint32_t mask) {
  int64_t n = 1;
  for (int d = 0; d < s.size(); ++d)
    if ((mask >> d) & 1u) n *= s[d];
  return n;
}

// Runs the backend kernel; the result has the keepdim shape.
Tensor reduce_kernel(ReduceOp op, const Tensor& a, uint32_t mask, DType out_dtype) {
  Tensor out = empty(keepdim_shape(a.shape(), mask), TensorOptions(out_dtype).device(a.device()));
  if (out.numel() > 0) backend_of(a).reduce(op, a, out, mask);
  return out;
}

// The op's result: the keepdim-shaped kernel output, or a view of it without the reduced dims.
Tensor drop_dims(const Tensor& kept, uint32_t mask, bool keepdim) {
  return keepdim ? kept : kept.view(dropped_shape(kept.shape(), mask));
}

void require_float(const char* op, const Tensor& a) {
  EMBER_CHECK(a.defined(), op, ": undefined tensor argument");
  EMBER_CHECK(is_floating(a.dtype()), op, ": expected a floating-point tensor, got ", dtype_name(a.dtype()),
              " of shape ", a.shape());
}

// max/min/argmax/argmin have no identity: every reduced dim must be non-empty.
void require_nonempty(const char* op, const Tensor& a, uint32_t mask) {
  for (int d = 0; d < a.dim(); ++d)
    EMBER_CHECK(!((mask >> d) & 1u) || a.size(d) > 0, op, ": cannot reduce over dim ", d,
                " of size 0 (tensor of shape ", a.shape(), "): ", op, " of no elements is undefined");
}

Tensor extremum(ReduceOp op, const char* name, const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  const uint32_t mask = reduce_mask(name, a, dims);
  require_nonempty(name, a, mask);
  Tensor kept = reduce_kernel(op, a, mask, a.dtype());
  Tensor out = drop_dims(kept, mask, keepdim);
  if (grad_needed(a))
    record(name, out, {a},
           // The extremum only picks which elements get the gradient (through eq, not differentiable):
           // saved as a constant (when keepdim it is the output itself, which must not be kept with its graph).
           [sa = SavedTensor(a), sk = SavedTensor(kept.detach()), mask](const Tensor& g, NeedsGrad) -> Grads {
             const Tensor& x = sa.get();
             const Tensor& m = sk.get();
             // Every element equal to the extremum gets an equal share of the gradient (like amax).
             Tensor hit = eq(x, m).to(x.dtype());
             Tensor count = sum(hit, mask_dims(mask, x.dim()), /*keepdim=*/true);
             return {hit * (g.reshape(m.shape()) / count)};
           });
  return out;
}

Tensor arg_extremum(ReduceOp op, const char* name, const Tensor& a, int64_t dim, bool keepdim) {
  EMBER_CHECK(a.defined(), name, ": undefined tensor argument");
  const int d = wrap_dim(name, dim, a.dim());
  if (a.dim() == 0) return zeros({}, TensorOptions(kInt64).device(a.device()));  // the only element
  EMBER_CHECK(a.size(d) > 0, name, ": cannot take the ", name, " over dim ", dim, " of size 0 (tensor of shape ",
              a.shape(), ")");
  const uint32_t mask = 1u << d;
  return drop_dims(reduce_kernel(op, a, mask, kInt64), mask, keepdim);
}

}  // namespace

Tensor sum(const Tensor& a_in, const std::vector<int64_t>& dims, bool keepdim) {
  const Tensor a = autocast::to_float32(a_in);  // autocast's float32 list (core/autocast.h)
  EMBER_OP_SCOPE("sum", a);
  const uint32_t mask = reduce_mask("sum", a, dims);
  // uint8 sums into int64 (like PyTorch) so that counting a mask cannot overflow: core/reduce_math.h.
  const DType out_dtype = reduction::output_dtype(ReduceOp::Sum, a.dtype());
  Tensor out = drop_dims(reduce_kernel(ReduceOp::Sum, a, mask, out_dtype), mask, keepdim);
  if (grad_needed(a))
    record("sum", out, {a},
           [shape = a.shape(), keep = keepdim_shape(a.shape(), mask)](const Tensor& g, NeedsGrad) -> Grads {
             return {g.reshape(keep).expand(shape)};  // every input element gets the gradient of its sum
           });
  return out;
}

Tensor mean(const Tensor& a_in, const std::vector<int64_t>& dims, bool keepdim) {
  const Tensor a = autocast::to_float32(a_in);  // autocast's float32 list (core/autocast.h)
  EMBER_OP_SCOPE("mean", a);
  require_float("mean", a);
  const uint32_t mask = reduce_mask("mean", a, dims);
  Tensor out = drop_dims(reduce_kernel(ReduceOp::Mean, a, mask, a.dtype()), mask, keepdim);
  if (grad_needed(a))
    record("mean", out, {a},
           [shape = a.shape(), keep = keepdim_shape(a.shape(), mask),
            n = reduced_count(a.shape(), mask)](const Tensor& g, NeedsGrad) -> Grads {
             return {(g / static_cast<double>(n)).reshape(keep).expand(shape)};
           });
  return out;
}

Tensor max(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  EMBER_OP_SCOPE("max", a);
  return extremum(ReduceOp::Max, "max", a, dims, keepdim);
}

Tensor min(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  EMBER_OP_SCOPE("min", a);
  return extremum(ReduceOp::Min, "min", a, dims, keepdim);
}

// Two passes (mean, then the sum of squared deviations): no cancellation, unlike E[x^2] - E[x]^2.
Tensor var(const Tensor& a, const std::vector<int64_t>& dims, bool unbiased, bool keepdim) {
  EMBER_OP_SCOPE("var", a);
  require_float("var", a);
  const uint32_t mask = reduce_mask("var", a, dims);
  // Divide by N - 1 (Bessel's correction) or N. N <= correction gives NaN, as in PyTorch.
  const int64_t n = reduced_count(a.shape(), mask);
  const double denom = static_cast<double>(std::max<int64_t>(n - (unbiased ? 1 : 0), 0));
  Tensor mu, kept;
  {
    NoGradGuard no_grad;  // the forward is a composite; its own backward is recorded below
    mu = reduce_kernel(ReduceOp::Mean, a, mask, a.dtype());
    Tensor dev = a - mu;
    dev.mul_(dev);
    kept = reduce_kernel(ReduceOp::Sum, dev, mask, a.dtype());
    kept.div_(denom);
  }
  Tensor out = drop_dims(kept, mask, keepdim);
  if (grad_needed(a))
    // The mean is recomputed from x (not saved from the forward) so that, under create_graph, the
    // gradient is differentiable in x through the mean as well.
    record("var", out, {a}, [sa = SavedTensor(a), dims = mask_dims(mask, a.dim()), denom](const Tensor& g,
                                                                                          NeedsGrad) -> Grads {
      const Tensor x = sa.get();
      const Tensor m = mean(x, dims, /*keepdim=*/true);
      return {(x - m) * (g.reshape(m.shape()) * (2.0 / denom))};  // d var / dx = 2 (x - mean) / (N - c)
    });
  return out;
}

namespace {
// sqrt with the gradient at 0 taken as 0 instead of 1 / 0: a std of 0 means a constant input,
// where PyTorch's std_backward gives 0 (then var's 2 (x - mean) / (N - c) is 0 as well).
Tensor sqrt_of_variance(const Tensor& v) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = sqrt(v);
  }
  if (grad_needed(v))
    record("std", out, {v}, [so = SavedTensor::output(out)](const Tensor& g, NeedsGrad) -> Grads {
      const Tensor& s = so.get();
      return {where(eq(s, 0.0), zeros_like(g), g / (s * 2.0))};
    });
  return out;
}
}  // namespace

Tensor std(const Tensor& a, const std::vector<int64_t>& dims, bool unbiased, bool keepdim) {
  EMBER_OP_SCOPE("std", a);
  require_float("std", a);
  return sqrt_of_variance(var(a, dims, unbiased, keepdim));
}

// log(sum(exp(x))) = m + log(sum(exp(x - m))) with m the max: no exp overflows, the largest term is 1.
// The sum is left to the fused log_softmax kernel (one vectorised pass): its output is
// y = (x - m) - log(sum), and at the max element x - m is exactly 0, so max(y) = -log(sum) exactly
// and logsumexp = m - max(y) with a single rounding. The reduced dims are first moved last and
// flattened into one (a view when the layout allows), since the kernel works along one dim.
Tensor logsumexp(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  EMBER_OP_SCOPE("logsumexp", a);
  require_float("logsumexp", a);
  const uint32_t mask = reduce_mask("logsumexp", a, dims);
  const Shape keep = keepdim_shape(a.shape(), mask);
  Tensor kept;
  {
    NoGradGuard no_grad;
    const int64_t n = reduced_count(a.shape(), mask);
    if (n == 0) {  // log of an empty sum
      kept = full(keep, -std::numeric_limits<double>::infinity(), TensorOptions(a.dtype()).device(a.device()));
    } else {
      std::vector<int64_t> perm;
      Shape rows_shape;
      for (int d = 0; d < a.dim(); ++d)
        if (!((mask >> d) & 1u)) perm.push_back(d), rows_shape.push_back(a.size(d));
      for (int d = 0; d < a.dim(); ++d)
        if ((mask >> d) & 1u) perm.push_back(d);
      rows_shape.push_back(n);
      const Tensor x = a.detach().permute(perm).reshape(rows_shape);  // [kept dims..., n]
      const Tensor m = max(x, {-1}, /*keepdim=*/true);
      const Tensor lse = m - max(log_softmax(x, -1), {-1}, /*keepdim=*/true);
      // A row of -inf sums to 0 (log: -inf) and a +inf dominates: the result is m itself there, where
      // log_softmax would give NaN (inf - inf).
      kept = where(eq(abs(m), std::numeric_limits<double>::infinity()), m, lse).reshape(keep);
    }
  }
  Tensor out = drop_dims(kept, mask, keepdim);
  if (grad_needed(a))
    record("logsumexp", out, {a}, [sa = SavedTensor(a), so = SavedTensor::output(out), keep](const Tensor& g,
                                                                                           NeedsGrad) -> Grads {
      const Tensor lse = so.get().reshape(keep);
      return {g.reshape(lse.shape()) * exp(sa.get() - lse)};  // the gradient is g * softmax(x)
    });
  return out;
}

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) {
  EMBER_OP_SCOPE("argmax", a);
  return arg_extremum(ReduceOp::ArgMax, "argmax", a, dim, keepdim);
}
Tensor argmin(const Tensor& a, int64_t dim, bool keepdim) {
  EMBER_OP_SCOPE("argmin", a);
  return arg_extremum(ReduceOp::ArgMin, "argmin", a, dim, keepdim);
}

// The reverse of broadcasting `shape` to a's shape: sum the extra leading dims, and the dims where
// `shape` has 1 and `a` does not. Differentiable (sum and reshape are). Used by the autograd engine on
// every broadcast gradient, so the common case — nothing to do — returns `a` itself.
Tensor sum_to(const Tensor& a, const Shape& shape) {
  EMBER_OP_SCOPE("sum_to", a);
  EMBER_CHECK(a.defined(), "sum_to: undefined tensor argument");
  if (a.shape() == shape) return a;
  const int lead = a.dim() - shape.size();
  bool ok = lead >= 0;
  for (int i = 0; ok && i < shape.size(); ++i) ok = shape[i] == a.size(lead + i) || shape[i] == 1;
  EMBER_CHECK(ok, "sum_to: cannot sum a tensor of shape ", a.shape(), " to shape ", shape, " (", shape,
              " does not broadcast to ", a.shape(), ")");
  std::vector<int64_t> dims;
  for (int d = 0; d < lead; ++d) dims.push_back(d);
  for (int i = 0; i < shape.size(); ++i)
    if (shape[i] == 1 && a.size(lead + i) != 1) dims.push_back(lead + i);
  // keepdim, so only leading size-1 dims remain to drop: a view.
  Tensor r = dims.empty() ? a : sum(a, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

}  // namespace ember
