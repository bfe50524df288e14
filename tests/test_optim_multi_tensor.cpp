// The multi-tensor optimizer steps (OptimKernels::sgd_step / adam_step, called by optim/sgd.cpp and
// optim/adam.cpp once per batch of contiguous float parameters):
//  * CPU: the batched step gives bit for bit what a hand-written per-parameter loop gives, and
//    agrees with the generic tensor-op path (strided parameters) to rounding, for SGD (plain,
//    momentum, dampening, Nesterov, weight decay), Adam, AdamW and amsgrad, with parameters that
//    miss their gradient on some steps, so one step mixes step counts and fresh momentum buffers;
//  * CUDA: the same results as the CPU within float32 tolerance, and a step over 20 parameters
//    costs at most 2 kernel launches.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/ember.h"
#include "optim/optim.h"
#include "tests/test_util.h"

using namespace ember;

namespace {

const Device kCuda0(DeviceType::CUDA, 0);


enum class Kind { SGD, Adam, AdamW };

struct Config {
  const char* name;
  Kind kind;
  double lr;
  double momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, amsgrad = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

const Config kConfigs[] = {
    {"sgd", Kind::SGD, 0.1},
    {"sgd weight decay", Kind::SGD, 0.1, 0, 0, 0.05},
    {"sgd momentum dampening", Kind::SGD, 0.1, 0.9, 0.1},
    {"sgd nesterov weight decay", Kind::SGD, 0.05, 0.8, 0, 0.01, /*nesterov=*/true},
    {"adam", Kind::Adam, 0.01},
    {"adam weight decay", Kind::Adam, 0.01, 0, 0, 0.1},
    {"adam amsgrad weight decay", Kind::Adam, 0.02, 0, 0, 0.1, false, /*amsgrad=*/true, 0.8, 0.9},
    {"adamw", Kind::AdamW, 0.01, 0, 0, 0.05},
    {"adamw amsgrad", Kind::AdamW, 0.01, 0, 0, 0.05, false, /*amsgrad=*/true},
};

std::unique_ptr<optim::Optimizer> make_optimizer(const Config& c, const std::vector<Tensor>& ps) {
  switch (c.kind) {
    case Kind::SGD:
      return std::make_unique<optim::SGD>(
          ps, optim::SGDOptions(c.lr).momentum(c.momentum).dampening(c.dampening).weight_decay(c.weight_decay).nesterov(
                  c.nesterov));
    case Kind::Adam:
      return std::make_unique<optim::Adam>(ps, optim::AdamOptions(c.lr)
                                                   .betas({c.beta1, c.beta2})
                                                   .eps(c.eps)
                                                   .weight_decay(c.weight_decay)
                                                   .amsgrad(c.amsgrad));
    case Kind::AdamW:
      return std::make_unique<optim::AdamW>(ps, optim::AdamWOptions(c.lr)
                                                    .betas({c.beta1, c.beta2})
                                                    .eps(c.eps)
                                                    .weight_decay(c.weight_decay)
                                                    .amsgrad(c.amsgrad));
  }
  return nullptr;
}

// Sizes from one element to more than a CPU grain (several threads) and more than one GPU chunk
// (8192), plus an empty parameter.
const std::vector<Shape> kShapes = {{3, 4}, {5}, {1}, {70001}, {0}, {2, 3, 2}, {9000}};
constexpr int kSteps = 6;

// Parameter k has no gradient on step s when (k + 2s) % 5 == 0: each parameter misses a different
// step, so later steps mix step counts (Adam) and fresh with old momentum buffers (SGD).
bool has_grad(size_t k, int s) { return (k + 2 * static_cast<size_t>(s)) % 5 != 0; }

Tensor initial_param(size_t k, DType dtype) {
  Generator gen(100 + k);
  return uniform(kShapes[k], -1, 1, TensorOptions(dtype), &gen);
}

Tensor grad_of(size_t k, int s, DType dtype) {
  Generator gen(1000 + 10 * k + s);
  return uniform(kShapes[k], -1, 1, TensorOptions(dtype), &gen);
}

// The same values in a non-contiguous layout (every other element of a longer buffer), which
// sends the optimizer down the generic tensor-op path.
Tensor strided_copy(const Tensor& t) {
  Shape big = t.shape();
  big[big.size() - 1] *= 2;
  Tensor view = zeros(big, TensorOptions(t.dtype()).device(t.device())).slice(-1, 0, big.back(), 2);
  view.copy_(t);
  return view;
}

enum class Layout { Contiguous, Strided };

// Runs kSteps steps of config c over the parameters of kShapes on `device`; returns them on the CPU.
std::vector<Tensor> run(const Config& c, DType dtype, Layout layout, Device device = kCPU) {
  std::vector<Tensor> ps;
  for (size_t k = 0; k < kShapes.size(); ++k) {
    Tensor p = initial_param(k, dtype).to(device);
    if (layout == Layout::Strided) p = strided_copy(p);
    ps.push_back(p.requires_grad_());
  }
  auto opt = make_optimizer(c, ps);
  for (int s = 0; s < kSteps; ++s) {
    opt->zero_grad();
    for (size_t k = 0; k < ps.size(); ++k)
      if (has_grad(k, s)) ps[k].set_grad(grad_of(k, s, dtype).to(device));
    opt->step();
  }
  std::vector<Tensor> out;
  for (const Tensor& p : ps) out.push_back(p.detach().to(kCPU).contiguous());
  return out;
}

// The update written out by hand, one parameter at a time, in T: PyTorch's _single_tensor_sgd /
// _single_tensor_adam with the constants computed as optim/ computes them.
template <typename T>
std::vector<std::vector<T>> reference_run(const Config& c) {
  struct State {
    int64_t step = 0;
    bool has_buf = false;
    std::vector<T> buf, m, v, vmax;
  };
  std::vector<std::vector<T>> ps;
  std::vector<State> st(kShapes.size());
  const DType dtype = dtype_of<T>::value;
  for (size_t k = 0; k < kShapes.size(); ++k) ps.push_back(initial_param(k, dtype).template to_vector<T>());
  for (int s = 0; s < kSteps; ++s) {
    for (size_t k = 0; k < kShapes.size(); ++k) {
      if (!has_grad(k, s)) continue;
      const std::vector<T> g = grad_of(k, s, dtype).template to_vector<T>();
      std::vector<T>& p = ps[k];
      State& S = st[k];
      const size_t n = p.size();
      if (c.kind == Kind::SGD) {
        const T lr = c.lr, mom = c.momentum, wd = c.weight_decay, keep = 1 - c.dampening;
        const bool first = c.momentum != 0 && !S.has_buf;
        if (first) {
          S.buf.assign(n, T(0));
          S.has_buf = true;
        }
        for (size_t i = 0; i < n; ++i) {
          T d = g[i];
          if (wd != 0) d = d + wd * p[i];
          if (c.momentum != 0) {
            T b = first ? d : S.buf[i] * mom + keep * d;
            S.buf[i] = b;
            d = c.nesterov ? d + mom * b : b;
          }
          p[i] = p[i] - lr * d;
        }
        continue;
      }
      if (S.step == 0) {  // zeros_like(p), as the optimizer creates its state
        S.m.assign(n, T(0));
        S.v.assign(n, T(0));
        S.vmax.assign(n, T(0));
      }
      S.step += 1;
      const double t = static_cast<double>(S.step);
      const double step_size = c.lr / (1 - std::pow(c.beta1, t)), bc2_sqrt = std::sqrt(1 - std::pow(c.beta2, t));
      const bool decoupled = c.kind == Kind::AdamW;
      const T b1 = c.beta1, b2 = c.beta2, one_b1 = 1 - c.beta1, one_b2 = 1 - c.beta2, eps = c.eps;
      const T wd = c.weight_decay, decay = 1 - c.lr * c.weight_decay, bc2 = bc2_sqrt, neg_step = -step_size;
      const bool l2 = !decoupled && c.weight_decay != 0, decay_p = decoupled && c.weight_decay != 0;
      for (size_t i = 0; i < n; ++i) {
        T grad = g[i];
        T param = p[i];
        if (l2) grad = grad + wd * param;
        if (decay_p) param = param * decay;
        T mi = S.m[i] * b1 + one_b1 * grad;
        T vi = S.v[i] * b2 + one_b2 * grad * grad;
        S.m[i] = mi;
        S.v[i] = vi;
        if (c.amsgrad) {
          vi = S.vmax[i] > vi ? S.vmax[i] : vi;
          S.vmax[i] = vi;
        }
        const T denom = std::sqrt(vi) / bc2 + eps;
        p[i] = param + neg_step * (mi / denom);
      }
    }
  }
  return ps;
}

// Bit-for-bit equality, reporting the first difference.
template <typename T>
void expect_identical(const Tensor& actual, const std::vector<T>& expected) {
  const std::vector<T> a = actual.to_vector<T>();
  ASSERT_EQ(a.size(), expected.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != expected[i]) {
      ADD_FAILURE() << "element " << i << " of " << a.size() << ": " << a[i] << " != " << expected[i];
      return;
    }
}

template <typename T>
void check_against_reference(DType dtype) {
  for (const Config& c : kConfigs) {
    SCOPED_TRACE(c.name);
    const std::vector<Tensor> batched = run(c, dtype, Layout::Contiguous);
    const std::vector<std::vector<T>> expected = reference_run<T>(c);
    for (size_t k = 0; k < kShapes.size(); ++k) {
      SCOPED_TRACE("parameter " + std::to_string(k));
      expect_identical<T>(batched[k], expected[k]);
    }
  }
}

}  // namespace

// ---------------- CPU ----------------

TEST(OptimMultiTensor, CpuMatchesHandWrittenLoopBitForBitFloat64) { check_against_reference<double>(kFloat64); }
TEST(OptimMultiTensor, CpuMatchesHandWrittenLoopBitForBitFloat32) { check_against_reference<float>(kFloat32); }

TEST(OptimMultiTensor, CpuMatchesGenericTensorOpPath) {
  // The generic path rounds after every tensor op where the fused loop may keep a * b + c in one
  // FMA, so the two agree to a few ulps, not bit for bit.
  for (DType dtype : {kFloat64, kFloat32}) {
    for (const Config& c : kConfigs) {
      SCOPED_TRACE(std::string(c.name) + " / " + dtype_name(dtype));
      const std::vector<Tensor> batched = run(c, dtype, Layout::Contiguous);
      const std::vector<Tensor> generic = run(c, dtype, Layout::Strided);
      const double tol = dtype == kFloat64 ? 1e-13 : 1e-5;
      for (size_t k = 0; k < kShapes.size(); ++k) test::expect_close(batched[k], generic[k], tol, tol);
      // The parameters did move (every one has had a gradient by the last step).
      EXPECT_GT(max(abs(batched[3] - initial_param(3, dtype))).item(), 1e-4);
    }
  }
}

TEST(OptimMultiTensor, MixedDtypesAndLayoutsInOneGroup) {
  // float32 and float64 parameters, and a strided one, in one group: each goes where it belongs
  // (two batches and the generic path) and moves exactly as it does alone.
  const Config& c = kConfigs[3];  // SGD with Nesterov momentum and weight decay
  Tensor a = initial_param(0, kFloat32).requires_grad_();
  Tensor b = initial_param(1, kFloat64).requires_grad_();
  Tensor d = strided_copy(initial_param(5, kFloat64)).requires_grad_();
  Tensor e = initial_param(6, kFloat32).requires_grad_();
  auto opt = make_optimizer(c, {a, b, d, e});
  for (int s = 0; s < 3; ++s) {
    a.set_grad(grad_of(0, s, kFloat32));
    b.set_grad(grad_of(1, s, kFloat64));
    d.set_grad(grad_of(5, s, kFloat64));
    e.set_grad(grad_of(6, s, kFloat32));
    opt->step();
  }
  auto alone = [&](size_t k, DType dtype) {
    Tensor p = initial_param(k, dtype).requires_grad_();
    auto o = make_optimizer(c, {p});
    for (int s = 0; s < 3; ++s) {
      p.set_grad(grad_of(k, s, dtype));
      o->step();
    }
    return p.detach();
  };
  expect_identical<float>(a.detach(), alone(0, kFloat32).to_vector<float>());
  expect_identical<double>(b.detach(), alone(1, kFloat64).to_vector<double>());
  test::expect_close(d, alone(5, kFloat64), 1e-13, 1e-13);
  expect_identical<float>(e.detach(), alone(6, kFloat32).to_vector<float>());
}

// ---------------- CUDA ----------------

TEST(OptimMultiTensor, CudaMatchesCpu) {
  EMBER_REQUIRE_GPU();
  for (DType dtype : {kFloat32, kFloat64}) {
    for (const Config& c : kConfigs) {
      SCOPED_TRACE(std::string(c.name) + " / " + dtype_name(dtype));
      const std::vector<Tensor> cpu = run(c, dtype, Layout::Contiguous, kCPU);
      const std::vector<Tensor> gpu = run(c, dtype, Layout::Contiguous, kCuda0);
      const double tol = dtype == kFloat64 ? 1e-12 : 2e-5;
      for (size_t k = 0; k < kShapes.size(); ++k) {
        SCOPED_TRACE("parameter " + std::to_string(k));
        test::expect_close(gpu[k], cpu[k], tol, tol);
      }
    }
  }
}

TEST(OptimMultiTensor, CudaStridedParametersTakeTheGenericPath) {
  EMBER_REQUIRE_GPU();
  for (const Config& c : {kConfigs[3], kConfigs[6]}) {
    SCOPED_TRACE(c.name);
    const std::vector<Tensor> cpu = run(c, kFloat32, Layout::Contiguous, kCPU);
    const std::vector<Tensor> gpu = run(c, kFloat32, Layout::Strided, kCuda0);
    for (size_t k = 0; k < kShapes.size(); ++k) test::expect_close(gpu[k], cpu[k], 2e-5, 2e-5);
  }
}

TEST(OptimMultiTensor, CudaStepOverTwentyParametersLaunchesAtMostTwoKernels) {
  EMBER_REQUIRE_GPU();
  const Config sgd{"sgd momentum", Kind::SGD, 0.1, 0.9};
  const Config adam{"adam", Kind::Adam, 0.01};
  const Config amsgrad{"adamw amsgrad", Kind::AdamW, 0.01, 0, 0, 0.01, false, true};
  for (const Config& c : {sgd, adam, amsgrad}) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> ps, grads;
    for (int k = 0; k < 20; ++k) {
      // Sizes from 1 element to several chunks.
      ps.push_back(zeros({1 + 997 * k}, TensorOptions(kFloat32).device(kCuda0)).requires_grad_());
      grads.push_back(ones({1 + 997 * k}, TensorOptions(kFloat32).device(kCuda0)));
    }
    auto opt = make_optimizer(c, ps);
    for (int step = 0; step < 2; ++step) {  // the first step also creates the state: count the second
      for (int k = 0; k < 20; ++k) ps[k].set_grad(grads[k]);
      const uint64_t before = backend(kCuda0).kernel_launches();
      opt->step();
      const uint64_t launches = backend(kCuda0).kernel_launches() - before;
      if (step == 1) {
        EXPECT_GE(launches, 1u);
        EXPECT_LE(launches, 2u);
      }
    }
    // Every parameter moved against its gradient of ones.
    for (const Tensor& p : ps) EXPECT_LT(max(p.detach()).to(kCPU).item(), 0.0);
  }
}
