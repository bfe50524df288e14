// Matrix products, with PyTorch's matmul rules, and linear (x · Wᵀ + b, at the end of the file):
//   [K] x [K] -> []                      (dot product)
//   [M, K] x [K, N] -> [M, N]
//   [K] x [.., K, N] -> [.., N]          (a vector is promoted to a matrix, then squeezed away)
//   [.., M, K] x [K] -> [.., M]
//   [.., M, K] x [.., K, N] -> [.., M, N] (batch dims `..` broadcast against each other)
// Every case reduces to one batched product (matmul_nd) whose backward is
//   dA = g · Bᵀ,  dB = Aᵀ · g
// written with transposed views: the kernel reads them as BLAS transposes, so nothing is copied.
// Where a batch dim was broadcast these give one gradient per batch entry; the engine sums them
// back to the input's shape. Vector promotion uses unsqueeze/squeeze views, which carry their own
// (reshape) backward.
#include <algorithm>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

namespace {

// Batch dims of a matmul operand: all but the last two (a vector has none).
Shape batch_dims(const Tensor& t) {
  Shape s;
  for (int d = 0; d + 2 < t.dim(); ++d) s.push_back(t.size(d));
  return s;
}

// Every check happens here, on the shapes the caller passed, so messages name those shapes.
void check_args(const Tensor& a, const Tensor& b) {
  EMBER_CHECK(a.defined() && b.defined(), "matmul: undefined tensor argument");
  EMBER_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: ", a.shape(), " x ", b.shape(),
              ": both arguments need at least 1 dimension (for a 0-d scalar use mul)");
  EMBER_CHECK(a.dtype() == b.dtype(), "matmul: ", a.shape(), " x ", b.shape(), ": dtype mismatch (",
              dtype_name(a.dtype()), " and ", dtype_name(b.dtype()), ")");
  EMBER_CHECK(is_floating(a.dtype()), "matmul: ", a.shape(), " x ", b.shape(),
              ": expected floating-point tensors, got ", dtype_name(a.dtype()),
              " (integer matmul is not supported; convert with .to(kFloat32))");
  EMBER_CHECK(a.device() == b.device(), "matmul: ", a.shape(), " x ", b.shape(), ": device mismatch (", a.device(),
              " and ", b.device(), ")");
  const int64_t ka = a.size(-1), kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  EMBER_CHECK(ka == kb, "matmul: ", a.shape(), " x ", b.shape(), ": inner dimensions differ (", ka, " vs ", kb, ")");
  const Shape ba = batch_dims(a), bb = batch_dims(b);
  for (int i = 1; i <= std::min(ba.size(), bb.size()); ++i) {
    const int64_t x = ba[ba.size() - i], y = bb[bb.size() - i];
    EMBER_CHECK(x == y || x == 1 || y == 1, "matmul: ", a.shape(), " x ", b.shape(),
                ": batch dimensions cannot be broadcast (", x, " vs ", y, ")");
  }
}

// True when dims [lo, hi) of t can be read as one dim with a single stride, without a copy:
// each dim's stride spans the whole of the next-inner one (size-1 dims do not matter). This
// holds for contiguous runs and for runs of broadcast (stride 0) dims.
bool dims_collapse(const Tensor& t, int lo, int hi) {
  int64_t want = -1;  // the stride the next outer dim of size > 1 must have
  for (int d = hi - 1; d >= lo; --d) {
    if (t.size(d) == 1) continue;
    if (want >= 0 && t.stride(d) != want) return false;
    want = t.stride(d) * t.size(d);
  }
  return true;
}

// The stride of dims [lo, hi) read as one dim (see dims_collapse): the innermost real one's.
int64_t collapsed_stride(const Tensor& t, int lo, int hi) {
  for (int d = hi - 1; d >= lo; --d)
    if (t.size(d) != 1) return t.stride(d);
  return 0;
}

// Runs the backend kernel, which takes exactly one batch dim, on a [.., M, K], b [.., K, N] and
// out [.., M, N] with identical (already broadcast) batch dims. The innermost batch dims that
// collapse into one for both inputs go to the kernel in one call (that is all of them for
// contiguous inputs and for the common broadcasts); outer ones that do not are looped over here.
void batched_kernel(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int nb = out.dim() - 2;
  int split = nb;
  while (split > 0 && dims_collapse(a, split - 1, nb) && dims_collapse(b, split - 1, nb)) --split;
  int64_t inner = 1, outer = 1;
  for (int d = 0; d < nb; ++d) (d < split ? outer : inner) *= out.size(d);

  auto view3 = [&](const Tensor& t, int64_t offset) {
    return make_tensor(t.storage(), Shape{inner, t.size(-2), t.size(-1)},
                       Shape{collapsed_stride(t, split, nb), t.stride(-2), t.stride(-1)}, offset, t.dtype());
  };
  Backend& be = backend_of(out);
  for (int64_t o = 0; o < outer; ++o) {
    // Offsets of outer batch entry o in each operand (row-major index over dims [0, split)).
    int64_t oa = a.offset(), ob = b.offset(), oc = out.offset(), rem = o;
    for (int d = split - 1; d >= 0; --d) {
      const int64_t i = rem % out.size(d);
      rem /= out.size(d);
      oa += i * a.stride(d);
      ob += i * b.stride(d);
      oc += i * out.stride(d);
    }
    be.matmul(view3(a, oa), view3(b, ob), view3(out, oc));
  }
}

// a [.., M, K] x b [.., K, N], both at least 2-D, already checked.
Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);

  // [.., M, K] x [K, N] (a linear layer on a batch): when a's leading dims flatten into rows
  // without a copy, it is one large 2-D product — faster, and its backward then computes dB as
  // one product too instead of a batch of partial dBs summed afterwards.
  if (a.dim() > 2 && b.dim() == 2 && dims_collapse(a, 0, a.dim() - 1)) {
    Shape out_shape = a.shape();
    out_shape[out_shape.size() - 1] = N;
    int64_t rows = 1;
    for (int d = 0; d + 1 < a.dim(); ++d) rows *= a.size(d);
    return matmul_nd(a.reshape(Shape{rows, K}), b).view(out_shape);
  }

  Shape batch = broadcast_shapes("matmul", batch_dims(a), batch_dims(b));
  Shape a_shape = batch, b_shape = batch, out_shape = batch;
  a_shape.push_back(M), a_shape.push_back(K);
  b_shape.push_back(K), b_shape.push_back(N);
  out_shape.push_back(M), out_shape.push_back(N);
  Tensor out = empty(out_shape, TensorOptions(a.dtype()).device(a.device()));
  batched_kernel(a.detach().expand(a_shape), b.detach().expand(b_shape), out);

  if (grad_needed({a, b})) {
    // Each gradient needs only the other input: save just what will be used.
    record("matmul", out, {a, b},
           [sa = b.requires_grad() ? SavedTensor(a) : SavedTensor(),
            sb = a.requires_grad() ? SavedTensor(b) : SavedTensor()](const Tensor& g, NeedsGrad n) -> Grads {
             return {n[0] ? matmul(g, sb.get().transpose(-2, -1)) : Tensor(),
                     n[1] ? matmul(sa.get().transpose(-2, -1), g) : Tensor()};
           });
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  // Autocast's lower-precision list (core/autocast.h): a no-op unless a guard is active.
  const Tensor a = autocast::to_lower(a_in), b = autocast::to_lower(b_in);
  EMBER_OP_SCOPE("matmul", a, b);
  check_args(a, b);
  if (a.dim() == 1 && b.dim() == 1) return matmul_nd(a.unsqueeze(0), b.unsqueeze(1)).reshape(Shape{});
  if (a.dim() == 1) return matmul_nd(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul_nd(a, b.unsqueeze(1)).squeeze(-1);
  return matmul_nd(a, b);
}


// ---------------- linear: a matmul with a bias, one node of its own ----------------
//
// linear is one node of its own rather than matmul + add: the GEMM writes a fresh buffer that
// nothing else references yet, so the bias can be added into it in place (no second [rows, out]
// tensor), and the backward is the three textbook products
//   dx = g · W      dW = gᵀ · x      db = sum of g over the rows
// with the transposes read in place by the GEMM.

namespace {

// linear, or linear_relu when `relu` (op is the name errors and the profiler give).
Tensor linear_op(const char* op, const Tensor& input_in, const Tensor& weight_in, const Tensor& bias_in, bool relu) {
  // Autocast's lower-precision list (core/autocast.h): a no-op unless a guard is active.
  const Tensor input = autocast::to_lower(input_in), weight = autocast::to_lower(weight_in),
               bias = autocast::to_lower(bias_in);
  EMBER_OP_SCOPE(op, input, weight, bias);
  EMBER_CHECK(input.defined() && weight.defined(), op, ": undefined input or weight");
  EMBER_CHECK(weight.dim() == 2, op, ": weight must be 2-D [out_features, in_features], got ", weight.shape());
  EMBER_CHECK(input.dim() >= 1, op, ": input must have at least 1 dim, got a 0-d tensor");
  const int64_t in_f = weight.size(1), out_f = weight.size(0);
  EMBER_CHECK(input.size(-1) == in_f, op, ": input ", input.shape(), " has ", input.size(-1),
              " features in its last dim but weight ", weight.shape(), " expects ", in_f);
  EMBER_CHECK(input.dtype() == weight.dtype(), op, ": dtype mismatch: input ", dtype_name(input.dtype()), ", weight ",
              dtype_name(weight.dtype()));
  EMBER_CHECK(is_floating(input.dtype()), op, ": expected floating-point tensors, got ", dtype_name(input.dtype()));
  EMBER_CHECK(input.device() == weight.device(), op, ": device mismatch: input on ", input.device(), ", weight on ",
              weight.device());
  if (bias.defined()) {
    EMBER_CHECK(bias.dim() == 1 && bias.size(0) == out_f, op, ": bias ", bias.shape(), " must be [", out_f,
                "] to match weight ", weight.shape());
    EMBER_CHECK(bias.dtype() == input.dtype() && bias.device() == input.device(),
                op, ": bias must have the input's dtype and device");
  }

  // Fold the leading dims into rows: [.., in] -> [rows, in] (a view when the layout allows).
  int64_t R = 1;
  for (int d = 0; d + 1 < input.dim(); ++d) R *= input.size(d);
  const Tensor x2 = input.detach().reshape({R, in_f});
  Tensor out = empty({R, out_f}, TensorOptions(input.dtype()).device(input.device()));
  Backend& be = backend_of(input);
  if (out.numel() > 0) {
    if (in_f == 0) {
      be.fill(out, 0.0);
    } else {
      be.matmul(x2.unsqueeze(0), weight.detach().t().unsqueeze(0), out.unsqueeze(0));
    }
    // The bias, and linear_relu's ReLU, in one pass over the output while it is in cache.
    if (bias.defined())
      be.binary(relu ? BinaryOp::AddRelu : BinaryOp::Add, out, bias.detach().expand(out.shape()), out);
    else if (relu)
      be.unary(UnaryOp::Relu, out, out, Scalars{});
  }

  if (grad_needed({input, weight, bias})) {
    // Each gradient needs only the other operand: save just what will be used. The originals are
    // saved (not the detached x2), so when the backward is recorded (create_graph) these matmuls
    // link back to them and the gradients differentiate again.
    // linear_relu's backward is relu's (through the saved output), then linear's.
    record(op, out, {input, weight, bias},
           [sx = weight.requires_grad() ? SavedTensor(input) : SavedTensor(),
            sw = input.requires_grad() ? SavedTensor(weight) : SavedTensor(),
            sout = relu ? SavedTensor::output(out) : SavedTensor(), relu, R, in_f,
            in_shape = input.shape()](const Tensor& g_out, NeedsGrad n) -> Grads {
             const Tensor g = relu ? relu_backward(g_out, sout.get()) : g_out;
             // g [R, out]: dx = g · W [R, in] -> input's shape;  dW = gᵀ · x [out, in];  db = Σ_rows g [out]
             Tensor gx = n[0] ? matmul(g, sw.get()).reshape(in_shape) : Tensor();
             Tensor gw;
             if (n[1]) {
               const Tensor& xv = sx.get();  // [.., in] -> [R, in]; a 2-D input is used as it is
               gw = matmul(g.t(), xv.dim() == 2 ? xv : xv.reshape({R, in_f}));
             }
             Tensor gb = n[2] ? sum(g, {0}) : Tensor();
             return {gx, gw, gb};
           });
  }
  if (input.dim() == 2) return out;
  Shape out_shape = input.shape();
  out_shape[out_shape.size() - 1] = out_f;
  return out.view(out_shape);
}

}  // namespace

Tensor linear(const Tensor& input, const Tensor& weight, const Tensor& bias) {
  return linear_op("linear", input, weight, bias, false);
}

Tensor linear_relu(const Tensor& input, const Tensor& weight, const Tensor& bias) {
  return linear_op("linear_relu", input, weight, bias, true);
}

}  // namespace ember
