// Every tensor operation, as free functions (the Tensor methods forward here).
// Each op validates its inputs (the error names the op and the shapes), runs the device backend's
// kernel, and — when grad mode is on and an input requires grad — records its backward formula
// right next to the forward, in the matching core/ops/*.cpp file.
//
// The rule: core/ops holds every differentiable op, forward and backward side by side, and every
// backward is written with ops (so gradients can be differentiated again); nn/ holds modules only
// (nn::functional re-exports the neural-network ops of core/ops/nn_ops.h under libtorch's names).
// core never includes nn.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/generator.h"
#include "core/tensor.h"

namespace ember {

// ---------------- factories (core/ops/factories.cpp) ----------------
Tensor empty(const Shape& shape, TensorOptions opts = {});
Tensor empty(const Shape& shape, TensorOptions opts, MemoryFormat format);  // strides laid out as `format`
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor scalar_tensor(double value, TensorOptions opts = {});  // 0-d
Tensor arange(double end, TensorOptions opts = {});
Tensor arange(double start, double end, double step = 1.0, TensorOptions opts = {});
// Random factories draw from `gen` (default: the global generator, see manual_seed).
Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);   // U[0, 1)
Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);  // N(0, 1)
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opts = TensorOptions(kInt64),
               Generator* gen = nullptr);  // uniform integers in [low, high)
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, TensorOptions opts = {}, Generator* gen = nullptr);
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opts = TensorOptions(dtype_of<T>::value));
template <typename T>
Tensor from_vector(const std::vector<T>& values) { return from_vector(values, Shape{static_cast<int64_t>(values.size())}); }
// Wraps memory the caller owns (no copy). `deleter`, if given, is called when the last view dies.
Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device = kCPU,
                 std::function<void(void*)> deleter = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);

// ---------------- elementwise (core/ops/elementwise.cpp) ----------------
// Binary ops broadcast (NumPy rules), require equal devices, and compute in the promoted dtype of
// their operands (PyTorch's table: uint8 < int64 < float32 < float64; a 0-d tensor only promotes a
// tensor with dims to a higher category, integer -> float). A double scalar never widens a tensor's
// dtype, except that a non-integral value beside an integer tensor gives float32 (int64 + 2.5).
// Float math (div, exp, log, sqrt, sin, ...) on integer tensors computes in float32, PyTorch's
// default dtype: int64 / int64 is true division.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// Division rounded toward -inf (PyTorch's floor_divide, Python's //); integer division by zero is an
// error. Not differentiable.
Tensor floor_divide(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor rsub(const Tensor& a, double s);  // s - a
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rdiv(const Tensor& a, double s);  // s / a
Tensor pow(const Tensor& a, double exponent);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor sin(const Tensor& a);
Tensor cos(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
// relu(a + b) in one pass over memory (a and b broadcast as in add): the end of a residual block,
// relu(branch + shortcut), as nn::ResidualBlock calls it. The gradient of each is g where the output
// is positive.
Tensor add_relu(const Tensor& a, const Tensor& b);
Tensor gelu(const Tensor& a);  // exact (erf) form, PyTorch's default
Tensor clamp(const Tensor& a, double lo, double hi);
Tensor sign(const Tensor& a);  // not differentiable (zero gradient)
// where(cond, a, b): cond is uint8 (nonzero = take a); all three broadcast. Differentiable in a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Comparisons return uint8 (1/0) and are not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double s);
Tensor ne(const Tensor& a, double s);
Tensor lt(const Tensor& a, double s);
Tensor le(const Tensor& a, double s);
Tensor gt(const Tensor& a, double s);
Tensor ge(const Tensor& a, double s);
// masked_fill(a, mask, v): v where mask (uint8, broadcast to a) is nonzero. Differentiable in a.
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);
// True when every element of a and b is within atol + rtol*|b| (shapes must match). Host-side helper.
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

// ---------------- backward ops ----------------
// Backward formulas that are ops of their own (libtorch's names): each runs a fused kernel and
// records its own backward, so that gradients computed with create_graph differentiate again.
// elementwise.cpp:
Tensor tanh_backward(const Tensor& grad, const Tensor& output);     // grad * (1 - output^2)
Tensor sigmoid_backward(const Tensor& grad, const Tensor& output);  // grad * output * (1 - output)
Tensor relu_backward(const Tensor& grad, const Tensor& output);     // grad where output > 0, else 0
Tensor gelu_backward(const Tensor& grad, const Tensor& input);      // grad * (Phi(x) + x phi(x))
// softmax.cpp (y = the forward's output):
Tensor softmax_backward(const Tensor& grad, const Tensor& output, int64_t dim);      // y * (g - sum(g * y))
Tensor log_softmax_backward(const Tensor& grad, const Tensor& output, int64_t dim);  // g - exp(y) * sum(g)
// index.cpp: zeros of `input_shape` with grad's slices added where index_select / gather read them.
Tensor index_select_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, const Tensor& index);
Tensor gather_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, const Tensor& index);
// shape_ops.cpp: zeros of `input_shape` with grad written where slice / select took their view.
Tensor slice_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, int64_t start, int64_t end,
                      int64_t step);
Tensor select_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, int64_t index);

// ---------------- shape and views (core/ops/shape_ops.cpp) ----------------
// Method forms live on Tensor (view, reshape, transpose, permute, slice, narrow, select, expand,
// squeeze, unsqueeze, flatten). Joining ops:
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);

// ---------------- reductions (core/ops/reduce.cpp) ----------------
// `dims` empty means all dims. keepdim keeps reduced dims with size 1.
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// max/min over dims: values only; the gradient is shared evenly among tied maxima (like amax).
Tensor max(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor min(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor var(const Tensor& a, const std::vector<int64_t>& dims = {}, bool unbiased = true, bool keepdim = false);
// sqrt(var): same arguments; the gradient where the std is 0 (a constant input) is 0, as in PyTorch.
Tensor std(const Tensor& a, const std::vector<int64_t>& dims = {}, bool unbiased = true, bool keepdim = false);
Tensor logsumexp(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);  // int64, not differentiable
Tensor argmin(const Tensor& a, int64_t dim, bool keepdim = false);
// Sums a broadcast gradient back down to `shape` (the reverse of broadcasting). Used by autograd.
Tensor sum_to(const Tensor& a, const Shape& shape);

// ---------------- softmax family (core/ops/softmax.cpp) ----------------
Tensor softmax(const Tensor& a, int64_t dim);
Tensor log_softmax(const Tensor& a, int64_t dim);

// ---------------- linear algebra (core/ops/matmul.cpp) ----------------
// PyTorch's matmul rules: 1-D·1-D dot, 2-D·2-D, 1-D promoted on either side, batched N-D with
// broadcast batch dims. Transposed views are passed to BLAS as transposes (no copy).
Tensor matmul(const Tensor& a, const Tensor& b);

// ---------------- indexing (core/ops/index.cpp) ----------------
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);  // index: 1-D int64
Tensor gather(const Tensor& a, int64_t dim, const Tensor& index);        // index: int64, same ndim as a
Tensor embedding(const Tensor& weight, const Tensor& indices);           // weight [V, D], indices int64 any shape
Tensor one_hot(const Tensor& indices, int64_t num_classes);              // int64 in, int64 out, not differentiable
// Zeroes each element with probability p and scales the rest by 1/(1-p) when `train`; identity otherwise.
Tensor dropout(const Tensor& a, double p, bool train = true, Generator* gen = nullptr);

}  // namespace ember

// Linear, convolution, pooling, normalisation and losses.
#include "core/ops/nn_ops.h"  // IWYU pragma: export
