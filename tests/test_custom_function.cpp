// Custom autograd ops (autograd::Function, core/custom_function.h): gradients by finite
// differences (first and second order), saved tensors and values, needs_input_grad, and the
// errors a wrong backward or an in-place write produce.
#include "tests/test_util.h"

using namespace ember;
using autograd::AutogradContext;
using V = std::vector<Tensor>;

namespace {

// a * sin(b) * scale, saving its inputs; backward written with ops (twice differentiable).
struct MulSin : autograd::Function<MulSin> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b, double scale) {
    ctx->save_for_backward({a, b});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["calls"] = 1;
    return a * sin(b) * scale;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    auto s = ctx->get_saved_variables();
    const double scale = ctx->saved_data["scale"].toDouble();
    EMBER_CHECK(ctx->saved_data["calls"].toInt() == 1, "saved int lost");
    Tensor ga = ctx->needs_input_grad(0) ? g[0] * sin(s[1]) * scale : Tensor();
    Tensor gb = ctx->needs_input_grad(1) ? g[0] * s[0] * cos(s[1]) * scale : Tensor();
    return {ga, gb, Tensor()};
  }
};

// exp(x), saving its OUTPUT (like the built-in exp): the second derivative must still flow through it.
struct MyExp : autograd::Function<MyExp> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    Tensor y = exp(x);
    ctx->save_for_backward({y});
    return y;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {g[0] * ctx->get_saved_variables()[0]};
  }
};

struct WrongCount : autograd::Function<WrongCount> {
  static Tensor forward(AutogradContext*, const Tensor& x, double) { return x * 2.0; }
  static std::vector<Tensor> backward(AutogradContext*, std::vector<Tensor> g) { return {g[0]}; }  // needs 2
};

int g_needs_calls = 0;
struct RecordsNeeds : autograd::Function<RecordsNeeds> {
  static Tensor forward(AutogradContext*, const Tensor& a, const Tensor& b) { return a + b; }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    ++g_needs_calls;
    EXPECT_FALSE(ctx->needs_input_grad(0));
    EXPECT_TRUE(ctx->needs_input_grad(1));
    return {Tensor(), g[0]};
  }
};

}  // namespace

EMBER_DEVICE_SUITE(CustomFunction);

TEST_P(CustomFunction, GradcheckAndGradgradcheck) {
  auto fn = [](const V& x) { return MulSin::apply(x[0], x[1], 1.5); };
  V inputs{test::rand_f64({3, 4}, -1, 1, 1), test::rand_f64({4}, -1, 1, 2)};  // b broadcasts
  test::expect_gradcheck(fn, inputs, device());
  test::expect_gradgradcheck(fn, inputs, device());
  test::expect_gradgradcheck([](const V& x) { return MyExp::apply(x[0]); }, {test::rand_f64({5})}, device());
}

TEST(CustomFunctionEngine, NodeIsNamedAfterTheTypeAndRecordsOnlyWhenNeeded) {
  Tensor a = ones({2}, kFloat64), b = ones({2}, kFloat64).requires_grad_();
  Tensor y = MulSin::apply(a, b, 2.0);
  ASSERT_TRUE(y.grad_fn());
  EXPECT_NE(std::string(y.grad_fn()->name()).find("MulSin"), std::string::npos) << y.grad_fn()->name();
  EXPECT_FALSE(MulSin::apply(a, a, 2.0).requires_grad());
  NoGradGuard no_grad;
  EXPECT_FALSE(MulSin::apply(a, b, 2.0).requires_grad());
}

TEST(CustomFunctionEngine, NeedsInputGradFollowsRequiresGrad) {
  g_needs_calls = 0;
  Tensor a = ones({2}, kFloat64), b = ones({2}, kFloat64).requires_grad_();
  RecordsNeeds::apply(a, b).sum().backward();
  EXPECT_EQ(g_needs_calls, 1);
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{1, 1}));
}

TEST(CustomFunctionEngine, WrongNumberOfGradientsIsAnError) {
  Tensor x = ones({2}, kFloat64).requires_grad_();
  test::expect_error([&] { WrongCount::apply(x, 1.0).sum().backward(); },
                     {"WrongCount", "returned 1 gradients", "one per forward argument (2)"});
}

TEST(CustomFunctionEngine, InPlaceWriteToASavedInputIsDetected) {
  Tensor a = ones({2}, kFloat64).requires_grad_();
  Tensor b = ones({2}, kFloat64);
  Tensor y = MulSin::apply(a, b, 1.0);
  b.add_(1.0);
  test::expect_error([&] { y.sum().backward(); }, {"MulSin", "modified by an in-place operation"});
}

TEST(CustomFunctionEngine, SavedDataTypeMismatchIsAnError) {
  autograd::SavedValue v = std::string("text");
  test::expect_error([&] { v.toDouble(); }, {"toDouble", "a string"});
  EXPECT_EQ(autograd::SavedValue(3).toDouble(), 3.0);
}
