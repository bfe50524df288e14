// ember_conv_sweep: the sweep behind ember's CPU convolution engine choice. For every convolution of
// the benchmark networks (bench/model_shapes.h), it times ember's CPU kernel for the forward, the
// input gradient and the weight gradient (with the bias gradient, as a layer with a bias needs) on
// both convolution engines, oneDNN's primitives and im2col + the GEMM engine, and prints the median
// milliseconds of --reps calls after a warm-up, the GFLOP/s and which engine is faster.
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
#include "bench/model_shapes.h"
#include "core/backend.h"
#include "core/kernels/conv_kernels.h"
#include "core/cpu/cpu_matmul.h"
#include "core/ember.h"

using namespace ember;
using namespace ember::bench;

namespace {

const Args kArgs("ember_conv_sweep", "ember_conv_sweep [--threads N] [--reps N] [--model NAME]");

template <typename F>
double median_ms(int reps, F&& call) {
  call();  // warm-up: plans, JIT, allocator blocks
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto a = std::chrono::steady_clock::now();
    call();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
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
  std::printf("| model | layer | pass | onednn ms | im2col ms | onednn GFLOP/s | im2col GFLOP/s | faster | slower/faster |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
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
      double ms[2];
      const ConvEngine engines[2] = {ConvEngine::OneDnn, ConvEngine::Im2col};
      for (int e = 0; e < 2; ++e) {
        set_cpu_conv_engine(engines[e]);
        ms[e] = median_ms(reps, p.run);
      }
      set_cpu_conv_engine(ConvEngine::Auto);
      const bool onednn_faster = ms[0] <= ms[1];
      std::printf("| %s | %s | %s | %.3f | %.3f | %.1f | %.1f | %s | %.2f |\n", l.model, l.name, p.name, ms[0], ms[1],
                  gemm_flops / ms[0] * 1e-6, gemm_flops / ms[1] * 1e-6, onednn_faster ? "onednn" : "im2col",
                  onednn_faster ? ms[1] / ms[0] : ms[0] / ms[1]);
      std::fflush(stdout);
    }
  }
  if (!any) kArgs.fail("no convolution in model '" + model + "'");
  return 0;
}
