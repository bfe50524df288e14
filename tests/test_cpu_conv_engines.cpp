// The CPU convolution's two float32 paths give the same answers: oneDNN's primitives (when ember
// is built with oneDNN) and the im2col + GEMM fallback (every build; selected here with
// ConvEngine::Im2col or by switching the matmul engine to Eigen, and with OpenBLAS when built in),
// and ConvEngine::Auto's mix of the two. Each is compared, forward and all
// three gradients, with the float64 im2col result, over the configurations that change which
// kernel oneDNN picks or which layout it reorders to: channels that are or are not multiples of
// its 16-channel blocks, stride, padding, dilation, groups and depthwise, 1x1, one image, bias or
// none, and the MNIST and ResNet-20 layer shapes.
#include <gtest/gtest.h>

#include <tuple>
#include <vector>

#include "core/cpu/cpu_matmul.h"
#include "core/cpu/onednn_conv.h"
#include "nn/functional.h"
#include "tests/test_util.h"

namespace ember {
namespace {

namespace F = nn::functional;

struct ConvCase {
  const char* name;
  Shape x, w;
  bool bias;
  int64_t stride, pad, dil, groups;
};

const std::vector<ConvCase>& cases() {
  static const std::vector<ConvCase> cs = {
      {"plain", {2, 3, 9, 11}, {4, 3, 3, 3}, true, 1, 0, 1, 1},
      {"stride_pad_dilation", {2, 3, 13, 10}, {5, 3, 3, 2}, true, 2, 1, 2, 1},
      {"groups", {2, 4, 7, 7}, {6, 2, 3, 3}, true, 1, 1, 1, 2},
      {"depthwise_no_bias", {2, 3, 8, 7}, {6, 1, 3, 3}, false, 2, 1, 1, 3},
      {"one_by_one", {3, 5, 6, 7}, {4, 5, 1, 1}, true, 1, 0, 1, 1},
      {"one_image", {1, 2, 5, 5}, {3, 2, 3, 3}, true, 1, 1, 1, 1},
      {"mnist_cnn_conv1", {4, 1, 28, 28}, {32, 1, 3, 3}, true, 1, 0, 1, 1},
      {"mnist_cnn_conv2", {3, 32, 26, 26}, {64, 32, 3, 3}, true, 1, 0, 1, 1},
      {"mnist_lenet_conv2", {5, 10, 12, 12}, {20, 10, 5, 5}, true, 1, 0, 1, 1},
      {"resnet_3x3_16", {2, 16, 32, 32}, {16, 16, 3, 3}, false, 1, 1, 1, 1},
      {"resnet_downsample", {2, 16, 32, 32}, {32, 16, 3, 3}, false, 2, 1, 1, 1},
      {"resnet_3x3_32", {2, 32, 16, 16}, {32, 32, 3, 3}, false, 1, 1, 1, 1},  // Winograd, direct weight gradient
      {"resnet_shortcut_1x1_s2", {2, 32, 16, 16}, {64, 32, 1, 1}, false, 2, 0, 1, 1},
  };
  return cs;
}

struct Result {
  Tensor out, gx, gw, gb;
};

// Forward and backward of sum(conv(x, w, b) * v) in x's dtype on the current engine.
Result run(const ConvCase& c, DType dtype) {
  Tensor x = test::rand_f64(c.x, -1, 1, 11).to(dtype).requires_grad_();
  Tensor w = test::rand_f64(c.w, -1, 1, 12).to(dtype).requires_grad_();
  Tensor b = c.bias ? test::rand_f64({c.w[0]}, -1, 1, 13).to(dtype).requires_grad_() : Tensor();
  Tensor out = F::conv2d(x, w, b, c.stride, c.pad, c.dil, c.groups);
  Tensor v = test::rand_f64(out.shape(), -1, 1, 14).to(dtype);
  (out * v).sum().backward();
  return {out.detach(), x.grad(), w.grad(), c.bias ? b.grad() : Tensor()};
}

void expect_same(const Result& got, const Result& want) {
  // float32 sums of up to a few thousand products: relative error well under 1e-4.
  test::expect_close(got.out, want.out, 1e-4, 1e-4);
  test::expect_close(got.gx, want.gx, 1e-4, 1e-4);
  test::expect_close(got.gw, want.gw, 1e-4, 1e-4);
  if (want.gb.defined()) test::expect_close(got.gb, want.gb, 1e-4, 1e-4);
}

// A GEMM engine and, with oneDNN, which convolution path: its primitives for every pass, im2col +
// dnnl_sgemm for every pass, or Auto, where a backward can split between the two (oneDNN's input
// gradient and im2col's weight gradient in one call: mnist_cnn_conv2, mnist_lenet_conv2).
struct Engines {
  GemmEngine gemm;
  ConvEngine conv;
};

class CpuConvEngines : public ::testing::TestWithParam<Engines> {
 protected:
  void SetUp() override {
    if ((GetParam().gemm == GemmEngine::OneDnn || GetParam().gemm == GemmEngine::Auto) && !cpu_onednn_available())
      GTEST_SKIP() << "ember was built without oneDNN";
    if (GetParam().gemm == GemmEngine::Blas && !cpu_blas_available()) GTEST_SKIP() << "ember was built without OpenBLAS";
    saved_ = cpu_gemm_engine();
    saved_conv_ = cpu_conv_engine();
    set_cpu_gemm_engine(GetParam().gemm);
    set_cpu_conv_engine(GetParam().conv);
  }
  void TearDown() override {
    if (IsSkipped()) return;
    set_cpu_gemm_engine(saved_);
    set_cpu_conv_engine(saved_conv_);
  }
  GemmEngine saved_ = GemmEngine::Eigen;
  ConvEngine saved_conv_ = ConvEngine::Auto;
};

TEST_P(CpuConvEngines, Float32MatchesFloat64ForwardAndGradients) {
  for (const ConvCase& c : cases()) {
    SCOPED_TRACE(c.name);
    const Result want = run(c, kFloat64);
    for (int threads : {1, 2}) {
      SCOPED_TRACE(threads);
      const int saved = get_num_threads();
      set_num_threads(threads);
      expect_same(run(c, kFloat32), want);
      set_num_threads(saved);
    }
  }
}

TEST_P(CpuConvEngines, RepeatedCallsReuseThePlanAndAgree) {
  // The second call of a shape runs the cached primitives: the same numbers as the first.
  const ConvCase& c = cases()[1];
  const Result first = run(c, kFloat32), second = run(c, kFloat32);
  test::expect_close(second.out, first.out, 0, 0);
  test::expect_close(second.gw, first.gw, 0, 0);
}

TEST_P(CpuConvEngines, OnlyInputOrOnlyWeightGradient) {
  // A frozen layer asks for the input gradient alone; a first layer for the weight's alone.
  const ConvCase& c = cases()[0];
  Tensor x = test::rand_f64(c.x, -1, 1, 11), w = test::rand_f64(c.w, -1, 1, 12);
  for (bool input_grad : {true, false}) {
    SCOPED_TRACE(input_grad);
    Tensor x64 = x.clone().requires_grad_(input_grad), w64 = w.clone().requires_grad_(!input_grad);
    F::conv2d(x64, w64, Tensor(), 1, 1).sum().backward();
    Tensor x32 = x.to(kFloat32).requires_grad_(input_grad), w32 = w.to(kFloat32).requires_grad_(!input_grad);
    F::conv2d(x32, w32, Tensor(), 1, 1).sum().backward();
    if (input_grad)
      test::expect_close(x32.grad(), x64.grad(), 1e-4, 1e-4);
    else
      test::expect_close(w32.grad(), w64.grad(), 1e-4, 1e-4);
  }
}

TEST(CpuConvWinograd, AutoTakesItWhereTheSweepMeasuredItFaster) {
  // oneDNN has Winograd kernels for 3x3 stride-1 convolutions on AVX-512 CPUs only. Auto asks for
  // them with 32 or more input channels (the cnn's conv2, ResNet's stage 2 and 3), not with 16
  // (stage 1) or for strided or 1x1 layers; EMBER_CONV=onednn never, EMBER_CONV=winograd always.
  if (!cpu_onednn_available()) GTEST_SKIP() << "ember was built without oneDNN";
  const GemmEngine saved_gemm = cpu_gemm_engine();
  const ConvEngine saved_conv = cpu_conv_engine();
  set_cpu_gemm_engine(GemmEngine::Auto);
  const Window2d unpadded{3, 3, 1, 1, 0, 0, 1, 1}, padded{3, 3, 1, 1, 1, 1, 1, 1}, strided{3, 3, 2, 2, 1, 1, 1, 1};
  auto wino = [](const std::string& kernel) { return kernel.find("wino") != std::string::npos; };
  const bool has_wino = cpu_onednn_runs_avx512();
  set_cpu_conv_engine(ConvEngine::Auto);
  const OneDnnConvKernels cnn_conv2 = onednn_conv2d_kernels({2, 32, 26, 26}, {64, 32, 3, 3}, unpadded, 1);
  EXPECT_EQ(wino(cnn_conv2.forward), has_wino) << cnn_conv2.forward;
  EXPECT_EQ(wino(cnn_conv2.grad_input), has_wino) << cnn_conv2.grad_input;
  EXPECT_EQ(wino(cnn_conv2.grad_weight), has_wino) << cnn_conv2.grad_weight;
  EXPECT_EQ(wino(onednn_conv2d_kernels({2, 64, 8, 8}, {64, 64, 3, 3}, padded, 1).forward), has_wino);
  EXPECT_FALSE(wino(onednn_conv2d_kernels({2, 16, 32, 32}, {16, 16, 3, 3}, padded, 1).forward));
  EXPECT_FALSE(wino(onednn_conv2d_kernels({2, 32, 16, 16}, {64, 32, 3, 3}, strided, 1).forward));
  // ResNet's stage-2 3x3 (32 outputs): Winograd forward and input gradient, direct weight
  // gradient; with 64 outputs (stage 3, the cnn's conv2 above) every pass is Winograd.
  const OneDnnConvKernels stage2 = onednn_conv2d_kernels({2, 32, 16, 16}, {32, 32, 3, 3}, padded, 1);
  EXPECT_EQ(wino(stage2.forward), has_wino) << stage2.forward;
  EXPECT_EQ(wino(stage2.grad_input), has_wino) << stage2.grad_input;
  EXPECT_FALSE(wino(stage2.grad_weight)) << stage2.grad_weight;
  EXPECT_EQ(wino(onednn_conv2d_kernels({2, 64, 8, 8}, {64, 64, 3, 3}, padded, 1).grad_weight), has_wino);
  // conv2d_relu's forward (the ReLU as a post-op) gets the same kernel as conv2d's, Winograd
  // included, on every layer of the MNIST cnn and ResNet-20 that oneDNN runs: the fusion never
  // trades a kernel for a slower one.
  EXPECT_EQ(cnn_conv2.forward_relu, cnn_conv2.forward);
  for (const auto& [in, wt, win] : std::vector<std::tuple<Shape, Shape, Window2d>>{
           {{64, 32, 26, 26}, {64, 32, 3, 3}, unpadded}, {{128, 3, 32, 32}, {16, 3, 3, 3}, padded},
           {{128, 16, 32, 32}, {16, 16, 3, 3}, padded}, {{128, 16, 32, 32}, {32, 16, 3, 3}, strided},
           {{128, 32, 16, 16}, {32, 32, 3, 3}, padded}, {{128, 64, 8, 8}, {64, 64, 3, 3}, padded}}) {
    const OneDnnConvKernels k = onednn_conv2d_kernels(in, wt, win, 1);
    EXPECT_FALSE(k.forward.empty()) << in;
    EXPECT_EQ(k.forward_relu, k.forward) << in;
  }
  // One input channel, AVX-512: im2col takes the forward into 16 or more output channels (the
  // cnn's conv1), and on two threads oneDNN the forward into fewer (LeNet's conv1, 6), where
  // im2col's GEMM is 6 rows; on one thread im2col takes both. Both weight gradients stay on
  // oneDNN; with AVX2 kernels im2col takes every such pass.
  const Window2d five{5, 5, 1, 1, 0, 0, 1, 1};
  const int saved_threads = get_num_threads();
  set_num_threads(1);
  EXPECT_TRUE(onednn_conv2d_kernels({2, 1, 28, 28}, {6, 1, 5, 5}, five, 1).forward.empty());
  set_num_threads(2);
  const OneDnnConvKernels cnn_conv1 = onednn_conv2d_kernels({2, 1, 28, 28}, {32, 1, 3, 3}, unpadded, 1);
  const OneDnnConvKernels lenet_conv1 = onednn_conv2d_kernels({2, 1, 28, 28}, {6, 1, 5, 5}, five, 1);
  EXPECT_TRUE(cnn_conv1.forward.empty()) << cnn_conv1.forward;
  EXPECT_EQ(lenet_conv1.forward.empty(), !has_wino) << lenet_conv1.forward;
  EXPECT_EQ(cnn_conv1.grad_weight.empty(), !has_wino);
  EXPECT_EQ(lenet_conv1.grad_weight.empty(), !has_wino);
  set_num_threads(saved_threads);
  set_cpu_conv_engine(ConvEngine::OneDnn);
  const OneDnnConvKernels direct = onednn_conv2d_kernels({2, 32, 26, 26}, {64, 32, 3, 3}, unpadded, 1);
  EXPECT_FALSE(wino(direct.forward) || wino(direct.grad_input) || wino(direct.grad_weight)) << direct.forward;
  EXPECT_FALSE(direct.forward.empty());
  set_cpu_conv_engine(ConvEngine::Winograd);
  EXPECT_EQ(wino(onednn_conv2d_kernels({2, 16, 32, 32}, {16, 16, 3, 3}, padded, 1).forward), has_wino);
  EXPECT_EQ(wino(onednn_conv2d_kernels({2, 32, 16, 16}, {32, 32, 3, 3}, padded, 1).grad_weight), has_wino);
  set_cpu_conv_engine(ConvEngine::Im2col);
  EXPECT_TRUE(onednn_conv2d_kernels({2, 32, 26, 26}, {64, 32, 3, 3}, unpadded, 1).forward.empty());
  set_cpu_conv_engine(saved_conv);
  set_cpu_gemm_engine(saved_gemm);
}

INSTANTIATE_TEST_SUITE_P(Engines, CpuConvEngines,
                         ::testing::Values(Engines{GemmEngine::OneDnn, ConvEngine::Auto},
                                           Engines{GemmEngine::OneDnn, ConvEngine::OneDnn},
                                           Engines{GemmEngine::OneDnn, ConvEngine::Winograd},
                                           Engines{GemmEngine::OneDnn, ConvEngine::Im2col},
                                           Engines{GemmEngine::Auto, ConvEngine::Auto},
                                           Engines{GemmEngine::Auto, ConvEngine::Im2col},
                                           Engines{GemmEngine::Blas, ConvEngine::Auto},
                                           Engines{GemmEngine::Eigen, ConvEngine::Auto}),
                         [](const ::testing::TestParamInfo<Engines>& info) {
                           std::string conv = conv_engine_name(info.param.conv);
                           return std::string(gemm_engine_name(info.param.gemm)) + "_conv_" +
                                  (conv == "oneDNN" ? "oneDNN" : conv);
                         });

}  // namespace
}  // namespace ember
