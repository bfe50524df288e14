#include "tests/test_util.h"

#include <cmath>

namespace ember::test {

namespace {
double weighted_sum(const Tensor& out, const std::vector<double>& v) {
  auto o = out.to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += o[i] * v[i];
  return s;
}
std::vector<Tensor> on_device(const std::vector<Tensor>& xs, Device d) {
  std::vector<Tensor> r;
  for (const Tensor& x : xs) r.push_back(x.to(d));
  return r;
}
}  // namespace

void expect_gradcheck(const GradFn& fn, std::vector<Tensor> inputs, Device device, double eps, double atol,
                      double rtol) {
  for (Tensor& x : inputs) {
    ASSERT_EQ(x.dtype(), kFloat64) << "gradcheck inputs must be float64";
    ASSERT_TRUE(x.device().is_cpu() && x.is_contiguous());
    x = x.detach().clone().requires_grad_();
  }
  Tensor out = fn(on_device(inputs, device));
  ASSERT_TRUE(out.requires_grad()) << "output does not require grad: no graph was recorded";
  Tensor v = rand_f64(out.shape(), -1.0, 1.0, 99);
  std::vector<double> vv = v.to_vector<double>();
  out.backward(v.to(out.dtype()).to(out.device()));

  NoGradGuard ng;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor x = inputs[i];
    Tensor analytic = x.grad().defined() ? x.grad() : zeros_like(x);
    auto a = analytic.to_vector<double>();
    double* p = x.data<double>();
    for (int64_t k = 0; k < x.numel(); ++k) {
      double orig = p[k];
      p[k] = orig + eps;
      double fp = weighted_sum(fn(on_device(inputs, device)), vv);
      p[k] = orig - eps;
      double fm = weighted_sum(fn(on_device(inputs, device)), vv);
      p[k] = orig;
      double numeric = (fp - fm) / (2 * eps);
      EXPECT_NEAR(a[k], numeric, atol + rtol * std::abs(numeric))
          << "input " << i << " (shape " << x.shape() << ") element " << k << " on " << device;
    }
  }
}

void expect_gradgradcheck(const GradFn& fn, std::vector<Tensor> inputs, Device device, double eps, double atol,
                          double rtol) {
  const size_t n = inputs.size();
  Shape out_shape;
  {
    NoGradGuard ng;
    std::vector<Tensor> probe;
    for (const Tensor& x : inputs) probe.push_back(x.to(device));
    out_shape = fn(probe).shape();
  }
  // G(x, v): the first gradients, flattened and joined into one tensor (zeros for an input the
  // output does not depend on). Grad mode is forced on: expect_gradcheck evaluates it for the
  // finite differences under NoGradGuard.
  GradFn first_grads = [fn, n](const std::vector<Tensor>& xv) {
    AutoGradMode grad_on(true);
    std::vector<Tensor> x(xv.begin(), xv.begin() + static_cast<std::ptrdiff_t>(n));
    Tensor y = fn(x);
    std::vector<Tensor> g = autograd::grad({y}, x, {xv[n].to(y.dtype())}, std::nullopt, /*create_graph=*/true,
                                           /*allow_unused=*/true);
    std::vector<Tensor> flat;
    for (size_t i = 0; i < n; ++i) flat.push_back((g[i].defined() ? g[i] : zeros_like(x[i])).reshape({-1}));
    Tensor out = cat(flat, 0);
    // A first gradient that recorded no graph (pow(x, 0): zeros) is constant, so its analytic
    // derivatives are all zero. Tying it to v with weight 0 lets expect_gradcheck compare those
    // zeros against finite differences, which would show any real dependence on x or v.
    if (!out.requires_grad()) out = out + xv[n].sum() * 0.0;
    return out;
  };
  inputs.push_back(rand_f64(out_shape, -1.0, 1.0, 4321));  // v
  expect_gradcheck(first_grads, inputs, device, eps, atol, rtol);
}

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message '" << msg << "' lacks '" << p << "'";
    return;
  }
  ADD_FAILURE() << "expected an ember::Error";
}

void expect_close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  ASSERT_EQ(actual.shape(), expected.shape());
  auto a = actual.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  auto e = expected.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_NEAR(a[i], e[i], atol + rtol * std::abs(e[i])) << "element " << i << " of shape " << actual.shape();
}

}  // namespace ember::test
