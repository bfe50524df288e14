// Higher-order gradients with autograd::grad(create_graph=true): a Hessian-vector product, and a
// gradient penalty (WGAN-GP: (||grad_x D(x)|| - 1)^2, differentiated with respect to D's weights).
// Each result is checked against finite differences. Built as ember_higher_order; ctest runs it.
#include <cmath>
#include <cstdio>

#include "core/ember.h"

using namespace ember;

namespace {

// The largest |a - b| over two tensors of one shape.
double max_diff(const Tensor& a, const Tensor& b) {
  NoGradGuard no_grad;
  return max(abs(a.detach() - b.detach())).item();
}

// ---- 1. Hessian-vector product ----
// f(x) = sum(tanh(A x)^2) + sum(x^4) / 4. H v without ever forming H: differentiate (grad f . v).
Tensor f(const Tensor& A, const Tensor& x) { return tanh(matmul(A, x)).pow(2.0).sum() + x.pow(4.0).sum() / 4.0; }

Tensor grad_f(const Tensor& A, const Tensor& x, bool create_graph) {
  return autograd::grad({f(A, x)}, {x}, {}, std::nullopt, create_graph)[0];
}

double hessian_vector_product() {
  const TensorOptions f64(kFloat64);
  Tensor A = randn({5, 4}, f64);
  Tensor x = randn({4}, f64).requires_grad_();
  Tensor v = randn({4}, f64);

  Tensor g = grad_f(A, x, /*create_graph=*/true);           // has a graph: g depends on x
  Tensor hv = autograd::grad({(g * v).sum()}, {x})[0];     // d/dx (g . v) = H v

  // Finite differences of the gradient along v: (grad f(x + eps v) - grad f(x - eps v)) / 2 eps.
  const double eps = 1e-5;
  Tensor xp = (x.detach() + v * eps).requires_grad_(), xm = (x.detach() - v * eps).requires_grad_();
  Tensor numeric = (grad_f(A, xp, false) - grad_f(A, xm, false)) / (2 * eps);
  const double d = max_diff(hv, numeric);
  std::printf("Hessian-vector product: autograd %s\n                        finite differences %s\n", hv.str().c_str(),
              numeric.str().c_str());
  return d;
}

// ---- 2. Gradient penalty ----
// A small critic D(x) = w2 . tanh(W1 x + b1) on a batch of points; the penalty is the mean over the
// batch of (||grad_x D(x_i)|| - 1)^2, and training needs its gradient with respect to W1.
struct Critic {
  Tensor W1, b1, w2;
  Tensor operator()(const Tensor& x) const { return matmul(tanh(matmul(x, W1.t()) + b1), w2); }  // [batch]
};

Tensor gradient_penalty(const Critic& D, const Tensor& points) {
  Tensor x = points.detach().requires_grad_();
  Tensor scores = D(x);
  // One backward for the whole batch: each score depends only on its own row of x.
  Tensor gx = autograd::grad({scores.sum()}, {x}, {}, std::nullopt, /*create_graph=*/true)[0];  // [batch, in]
  Tensor norms = gx.pow(2.0).sum({1}).sqrt();
  return (norms - 1.0).pow(2.0).mean();
}

double gradient_penalty_check() {
  const TensorOptions f64(kFloat64);
  Critic D{randn({6, 3}, f64).requires_grad_(), randn({6}, f64).requires_grad_(), randn({6}, f64).requires_grad_()};
  Tensor points = randn({8, 3}, f64);

  Tensor gp = gradient_penalty(D, points);
  gp.backward();  // through the first gradient into W1, b1 and w2
  Tensor analytic = D.W1.grad();

  // Finite differences on every entry of W1.
  const double eps = 1e-6;
  Tensor numeric = zeros({6, 3}, f64);
  double* w = D.W1.data<double>();
  double* out = numeric.data<double>();
  for (int64_t k = 0; k < 18; ++k) {
    const double orig = w[k];
    w[k] = orig + eps;
    const double plus = gradient_penalty(D, points).item();
    w[k] = orig - eps;
    const double minus = gradient_penalty(D, points).item();
    w[k] = orig;
    out[k] = (plus - minus) / (2 * eps);
  }
  const double d = max_diff(analytic, numeric);
  std::printf("gradient penalty %.6f; d penalty / d W1[0]: autograd [%.8f, %.8f, %.8f]\n", gp.item(),
              analytic.data<double>()[0], analytic.data<double>()[1], analytic.data<double>()[2]);
  std::printf("                          finite differences [%.8f, %.8f, %.8f]\n", out[0], out[1], out[2]);
  return d;
}

}  // namespace

int main() {
  manual_seed(0);
  const double hvp = hessian_vector_product();
  const double gp = gradient_penalty_check();
  const bool ok = hvp < 1e-6 && gp < 1e-6;
  std::printf("largest differences: Hessian-vector product %.3g, gradient penalty %.3g: %s\n", hvp, gp,
              ok ? "higher-order gradients OK" : "MISMATCH");
  return ok ? 0 : 1;
}
