// Custom autograd ops from user code (autograd::Function, core/custom_function.h): a forward and
// a backward written by hand, saved tensors and values in a context, and a check of the gradients
// against finite differences. Built as ember_custom_op; ctest runs it.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/ember.h"

using namespace ember;
using autograd::AutogradContext;

// y = x^3. The backward is written with ember ops, so it can itself be differentiated (see the
// second derivative below).
// [cube]
struct Cube : autograd::Function<Cube> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    return x * x * x;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> grad_outputs) {
    Tensor x = ctx->get_saved_variables()[0];
    return {grad_outputs[0] * x * x * 3.0};  // dy/dx = 3 x^2
  }
};
// [/cube]

// y = a * b + alpha: two tensors and a number. Only the inputs that need a gradient get one.
struct MulAdd : autograd::Function<MulAdd> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b, double alpha) {
    ctx->save_for_backward({a, b});
    ctx->saved_data["alpha"] = alpha;  // not needed by backward; kept to show saved_data
    return a * b + alpha;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const Tensor& g = grad_outputs[0];
    Tensor ga = ctx->needs_input_grad(0) ? g * saved[1] : Tensor();
    Tensor gb = ctx->needs_input_grad(1) ? g * saved[0] : Tensor();
    return {ga, gb, Tensor()};  // one per forward argument; alpha has none
  }
};

// Central difference of the scalar f at x, element k.
double numeric_grad(const std::function<double(const Tensor&)>& f, Tensor x, int64_t k, double eps = 1e-6) {
  NoGradGuard no_grad;
  double* p = x.data<double>();
  const double orig = p[k];
  p[k] = orig + eps;
  const double fp = f(x);
  p[k] = orig - eps;
  const double fm = f(x);
  p[k] = orig;
  return (fp - fm) / (2 * eps);
}

int main() {
  manual_seed(0);
  const TensorOptions f64 = TensorOptions(kFloat64);
  Tensor x = randn({4}, f64).requires_grad_();
  Tensor b = randn({4}, f64).requires_grad_();

  // loss = sum(MulAdd(Cube(x), b, 0.5)) = sum(x^3 * b + 0.5)
  Tensor loss = MulAdd::apply(Cube::apply(x), b, 0.5).sum();
  loss.backward();

  auto f = [&](const Tensor& xv) { return MulAdd::apply(Cube::apply(xv), b, 0.5).sum().item(); };
  auto fb = [&](const Tensor& bv) { return MulAdd::apply(Cube::apply(x), bv, 0.5).sum().item(); };
  double worst = 0;
  std::vector<double> gx = x.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
  for (int64_t k = 0; k < 4; ++k) {
    const double nx = numeric_grad(f, x.detach(), k), nb = numeric_grad(fb, b.detach(), k);
    std::printf("x[%ld]: autograd %+.8f  finite difference %+.8f   b[%ld]: autograd %+.8f  finite difference %+.8f\n",
                static_cast<long>(k), gx[k], nx, static_cast<long>(k), gb[k], nb);
    worst = std::max({worst, std::abs(gx[k] - nx), std::abs(gb[k] - nb)});
  }

  // The backward is made of ops, so the custom op differentiates twice: d2/dx2 sum(x^3) = 6 x.
  // [twice]
  Tensor g = autograd::grad({Cube::apply(x).sum()}, {x}, {}, std::nullopt, /*create_graph=*/true)[0];
  Tensor h = autograd::grad({g.sum()}, {x})[0];
  // [/twice]
  std::vector<double> hv = h.to_vector<double>(), xv = x.detach().to_vector<double>();
  for (int64_t k = 0; k < 4; ++k) worst = std::max(worst, std::abs(hv[k] - 6 * xv[k]));
  std::printf("second derivative of sum(Cube(x)): [%.6f, %.6f, %.6f, %.6f] (6x: [%.6f, %.6f, %.6f, %.6f])\n", hv[0],
              hv[1], hv[2], hv[3], 6 * xv[0], 6 * xv[1], 6 * xv[2], 6 * xv[3]);

  const bool ok = worst < 1e-6;
  std::printf("largest difference %.3g: %s\n", worst, ok ? "custom op gradients OK" : "MISMATCH");
  return ok ? 0 : 1;
}
