// linear (dropout, its companion in nn::functional, lives in core/ops/index.cpp).
//
// linear is one node of its own rather than matmul + add: the GEMM writes a fresh buffer that
// nothing else references yet, so the bias can be added into it in place (no second [rows, out]
// tensor), and the backward is the three textbook products
//   dx = g · W      dW = gᵀ · x      db = sum of g over the rows
// with the transposes read in place by the GEMM.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

Tensor linear(const Tensor& input, const Tensor& weight, const Tensor& bias) {
  EMBER_OP_SCOPE("linear", input, weight, bias);
  EMBER_CHECK(input.defined() && weight.defined(), "linear: undefined input or weight");
  EMBER_CHECK(weight.dim() == 2, "linear: weight must be 2-D [out_features, in_features], got ", weight.shape());
  EMBER_CHECK(input.dim() >= 1, "linear: input must have at least 1 dim, got a 0-d tensor");
  const int64_t in_f = weight.size(1), out_f = weight.size(0);
  EMBER_CHECK(input.size(-1) == in_f, "linear: input ", input.shape(), " has ", input.size(-1),
              " features in its last dim but weight ", weight.shape(), " expects ", in_f);
  EMBER_CHECK(input.dtype() == weight.dtype(), "linear: dtype mismatch: input ", dtype_name(input.dtype()), ", weight ",
              dtype_name(weight.dtype()));
  EMBER_CHECK(is_floating(input.dtype()), "linear: expected floating-point tensors, got ", dtype_name(input.dtype()));
  EMBER_CHECK(input.device() == weight.device(), "linear: device mismatch: input on ", input.device(), ", weight on ",
              weight.device());
  if (bias.defined()) {
    EMBER_CHECK(bias.dim() == 1 && bias.size(0) == out_f, "linear: bias ", bias.shape(), " must be [", out_f,
                "] to match weight ", weight.shape());
    EMBER_CHECK(bias.dtype() == input.dtype() && bias.device() == input.device(),
                "linear: bias must have the input's dtype and device");
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
    if (bias.defined()) be.binary(BinaryOp::Add, out, bias.detach().expand(out.shape()), out);
  }

  if (grad_needed({input, weight, bias})) {
    // Each gradient needs only the other operand: save just what will be used. The originals are
    // saved (not the detached x2), so when the backward is recorded (create_graph) these matmuls
    // link back to them and the gradients differentiate again.
    record("linear", out, {input, weight, bias},
           [sx = weight.requires_grad() ? SavedTensor(input) : SavedTensor(),
            sw = input.requires_grad() ? SavedTensor(weight) : SavedTensor(), R, in_f,
            in_shape = input.shape()](const Tensor& g, NeedsGrad n) -> Grads {
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

}  // namespace ember
