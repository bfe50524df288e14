// ember_conv_sweep: the sweep behind ember's CPU convolution engine choice. For every convolution of
// the benchmark networks (bench/model_shapes.h), it times ember's CPU kernel for the forward, the
// input gradient and the weight gradient (with the bias gradient, as a layer with a bias needs) on
// each convolution path: oneDNN's direct primitives, oneDNN's Winograd primitives (where oneDNN
// has none, the direct ones run, and the column repeats them), im2col + the GEMM engine, and Auto
// (the rule, pass by pass). Calls interleave the paths, one call each in turn, so a machine that
// speeds up or slows down during the sweep moves every column alike. It prints the median
// milliseconds of --reps calls after a warm-up, which path is fastest, its GFLOP/s (as direct
// convolution FLOPs), and how far Auto is from it.
//
//   build/bench/ember_conv_sweep [--threads 2] [--reps 7] [--model cnn]
//
// It calls the backend kernels directly (conv_kernels(kCPU).conv2d / conv2d_backward), the same code the
// autograd ops call, so what it times includes the layout reorders oneDNN needs around each call.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "bench/interleaved.h"
#include "bench/model_shapes.h"
#include "core/backend.h"
#include "core/kernels/conv_kernels.h"
#include "core/cpu/cpu_matmul.h"
#include "core/ember.h"

using namespace ember;
using namespace ember::bench;

namespace {

const Args kArgs("ember_conv_sweep", "ember_conv_sweep [--threads N] [--reps N] [--model NAME]");

constexpr int kPaths = 4;
const ConvEngine kEngines[kPaths] = {ConvEngine::OneDnn, ConvEngine::Winograd, ConvEngine::Im2col, ConvEngine::Auto};
const char* const kPathNames[kPaths] = {"direct", "winograd", "im2col", "auto"};

// Median ms per path of `reps` calls, the paths taking turns call by call (bench/interleaved.h).
std::vector<double> path_median_ms(int reps, const std::function<void()>& call) {
  std::vector<double> ms = interleaved_median_seconds(kPaths, reps, [&](size_t e) {
    set_cpu_conv_engine(kEngines[e]);
    call();
  });
  set_cpu_conv_engine(ConvEngine::Auto);
  for (double& m : ms) m *= 1e3;
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const auto [threads, reps, model] = kArgs.sweep_flags(argc, argv);
  if (!cpu_onednn_available() || !cpu_gemm_uses_onednn()) {
    std::fprintf(stderr, "ember_conv_sweep: needs ember built with oneDNN as its GEMM engine (%s)\n",
                 cpu_gemm_info().c_str());
    return 1;
  }
  set_num_threads(threads);
  std::printf("ms per call, median of %d after a warm-up, %d thread(s); %s\n\n", reps, threads, cpu_gemm_info().c_str());
  std::printf("| model | layer | pass | direct ms | winograd ms | im2col ms | auto ms | fastest | fastest GFLOP/s | auto/fastest |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  bool any = false;
  ConvKernels& cpu = conv_kernels(kCPU);
  for (const Layer& l : benchmark_layers()) {
    if (l.kind != LayerKind::Conv2d || (!model.empty() && model != l.model)) continue;
    any = true;
    const Window2d w{l.kernel, l.kernel, l.stride, l.stride, l.pad, l.pad, 1, 1};
    const Tensor x = randn({l.batch, l.in, l.height, l.width});
    const Tensor wt = randn({l.out, l.in, l.kernel, l.kernel}) * 0.1;
    const Tensor b = randn({l.out});
    const Tensor y = empty({l.batch, l.out, l.out_height(), l.out_width()});
    const Tensor gy = randn(y.shape());
    const Tensor gx = empty(x.shape()), gw = empty(wt.shape()), gb = empty(b.shape());
    const double gemm_flops = 2.0 * l.out * (l.in * l.kernel * l.kernel) * (l.batch * l.out_height() * l.out_width());
    struct Pass {
      const char* name;
      std::function<void()> run;
    };
    std::vector<Pass> passes = {{"fwd", [&] { cpu.conv2d(x, wt, b, y, w, 1); }}};
    if (!l.first) passes.push_back({"grad_in", [&] { cpu.conv2d_backward(gy, Tensor(), wt, gx, Tensor(), Tensor(), w, 1); }});
    passes.push_back({"grad_w", [&] { cpu.conv2d_backward(gy, x, wt, Tensor(), gw, gb, w, 1); }});
    for (const Pass& p : passes) {
      const std::vector<double> ms = path_median_ms(reps, p.run);
      const int best = static_cast<int>(std::min_element(ms.begin(), ms.begin() + 3) - ms.begin());
      std::printf("| %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %s | %.1f | %.2f |\n", l.model, l.name, p.name, ms[0],
                  ms[1], ms[2], ms[3], kPathNames[best], gemm_flops / ms[best] * 1e-6, ms[3] / ms[best]);
      std::fflush(stdout);
    }
  }
  if (!any) kArgs.fail("no convolution in model '" + model + "'");
  return 0;
}
