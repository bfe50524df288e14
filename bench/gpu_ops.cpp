// bench/gpu_ops.cpp: ember's two heaviest GPU ops, timed the way bench/gpu_ops_pytorch.py times
// PyTorch's, so scripts/gpu_check.sh can put them side by side from one run on one card.
//
//   matmul_4096_tf32    float32 [4096,4096] x [4096,4096] with TF32 allowed: 2*4096^3 FLOP
//   conv_fwd            conv2d 64->64, 3x3, stride 1, padding 1, on [256,64,56,56] (ResNet-50's
//                       first stage at batch 256), no bias, TF32 allowed: 2*N*Cout*H*W*Cin*9 FLOP
//   conv_fwd_bwd        the same forward plus backward to input and weight: 3x the forward FLOP
//
// Each is timed with CUDA events recorded on ember's compute stream around every repetition, after
// a warm-up (which also lets cuDNN time and cache its algorithms: set_cudnn_benchmark(true), as
// PyTorch's cudnn.benchmark); the median is reported. Before
// timing, each TF32 result is compared with the full-float32 result of the same op, so a fast
// kernel that computes something else cannot pass: ||tf32 - fp32|| / ||fp32|| must stay under 1e-2
// (TF32 rounding lands near 3e-4).
//
// Prints one JSON line per op: {"kind":"op","framework":"ember","op":...,"ms":...,"tflops":...,...}
// Exit status 1 when no GPU is visible or a check fails.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/ember.h"
#include "cuda/error.h"
#include "cuda/runtime.h"
#include "nn/functional.h"

using namespace ember;
namespace F = ember::nn::functional;

namespace {

// Median over `reps` repetitions of the device time of `fn`, measured by an event pair per
// repetition on ember's compute stream (all ember work runs there). Repetitions are queued back to
// back so the GPU never waits for the host between them.
double median_ms(const std::function<void()>& fn, int warmup, int reps) {
  const cudaStream_t stream = cuda::compute_stream(0);
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<cudaEvent_t> start(reps), stop(reps);
  for (int i = 0; i < reps; ++i) {
    EMBER_CUDA_CHECK(cudaEventCreate(&start[i]));
    EMBER_CUDA_CHECK(cudaEventCreate(&stop[i]));
  }
  for (int i = 0; i < reps; ++i) {
    EMBER_CUDA_CHECK(cudaEventRecord(start[i], stream));
    fn();
    EMBER_CUDA_CHECK(cudaEventRecord(stop[i], stream));
  }
  backend(Device("cuda:0")).synchronize();
  std::vector<double> ms(reps);
  for (int i = 0; i < reps; ++i) {
    float t = 0;
    EMBER_CUDA_CHECK(cudaEventElapsedTime(&t, start[i], stop[i]));
    ms[i] = t;
    EMBER_CUDA_CHECK(cudaEventDestroy(start[i]));
    EMBER_CUDA_CHECK(cudaEventDestroy(stop[i]));
  }
  std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
  return ms[reps / 2];
}

double rel_err(const Tensor& got, const Tensor& ref) {
  NoGradGuard no_grad;
  const Tensor g = got.to(kFloat64), r = ref.to(kFloat64);
  return (g - r).pow(2).sum().sqrt().item() / r.pow(2).sum().sqrt().item();
}

bool report(const char* op, double ms, double flop, double err, const char* shape) {
  const bool ok = err < 1e-2;  // NaN fails too
  std::printf(
      "{\"kind\":\"op\",\"framework\":\"ember\",\"op\":\"%s\",\"shape\":\"%s\",\"ms\":%.4f,\"tflops\":%.2f,"
      "\"rel_err_tf32_vs_fp32\":%.2e,\"check\":\"%s\"}\n",
      op, shape, ms, flop / (ms * 1e-3) / 1e12, err, ok ? "ok" : "FAIL");
  std::fflush(stdout);
  return ok;
}

}  // namespace

int main() {
  try {
    if (cuda_device_count() == 0) {
      std::fprintf(stderr, "ember_gpu_ops: no CUDA device visible; nothing to time\n");
      return 1;
    }
    // As bench/gpu_ops_pytorch.py's cudnn.benchmark = True: the first call of each convolution
    // times cuDNN's candidates and keeps the fastest (the warm-up pays for it).
    set_cudnn_benchmark(true);
    const Device dev("cuda:0");
    const auto on_gpu = TensorOptions(kFloat32).device(dev);
    manual_seed(0);
    bool ok = true;

    {  // matmul 4096^3
      const int64_t n = 4096;
      const Tensor a = randn({n, n}, on_gpu), b = randn({n, n}, on_gpu);
      set_allow_tf32(false);
      const Tensor ref = matmul(a, b);
      set_allow_tf32(true);
      const double err = rel_err(matmul(a, b), ref);
      const double ms = median_ms([&] { (void)matmul(a, b); }, 10, 50);
      ok &= report("matmul_4096_tf32", ms, 2.0 * n * n * n, err, "[4096,4096]x[4096,4096]");
    }

    {  // conv2d 64->64 3x3 pad 1 on [256,64,56,56]
      const int64_t N = 256, C = 64, H = 56, W = 56, K = 64;
      const double flop = 2.0 * N * K * H * W * C * 3 * 3;
      const char* shape = "x[256,64,56,56] w[64,64,3,3] pad 1";
      Tensor x = randn({N, C, H, W}, on_gpu).requires_grad_();
      Tensor w = (randn({K, C, 3, 3}, on_gpu) * 0.05).detach().requires_grad_();
      const Tensor g = randn({N, K, H, W}, on_gpu);

      set_allow_tf32(false);
      Tensor ref;
      {
        NoGradGuard no_grad;
        ref = F::conv2d(x, w, Tensor(), 1, 1);
      }
      set_allow_tf32(true);
      Tensor y;
      {
        NoGradGuard no_grad;
        y = F::conv2d(x, w, Tensor(), 1, 1);
      }
      const double err = rel_err(y, ref);
      const double fwd = median_ms([&] { NoGradGuard no_grad; (void)F::conv2d(x, w, Tensor(), 1, 1); }, 5, 30);
      ok &= report("conv_fwd", fwd, flop, err, shape);

      const auto fwd_bwd = [&] {
        x.zero_grad();  // set to none, as PyTorch's side does: backward writes fresh gradients
        w.zero_grad();
        F::conv2d(x, w, Tensor(), 1, 1).backward(g);
      };
      fwd_bwd();
      // The weight gradient is the largest reduction here (N*H*W terms per element): check it too.
      const Tensor dw_tf32 = w.grad().detach();
      set_allow_tf32(false);
      fwd_bwd();
      const Tensor dw_fp32 = w.grad().detach();
      set_allow_tf32(true);
      const double err_bwd = std::max(err, rel_err(dw_tf32, dw_fp32));
      const double both = median_ms(fwd_bwd, 5, 20);
      ok &= report("conv_fwd_bwd", both, 3 * flop, err_bwd, shape);
    }
    const AllocatorStats s = backend(dev).allocator().stats();
    std::printf("# ember_gpu_ops: peak device memory %.0f MiB, %s\n", s.peak_bytes / 1048576.0,
                ok ? "all checks ok" : "A CHECK FAILED");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_gpu_ops: %s\n", e.what());
    return 1;
  }
}
