// ember_grain_sweep: where two threads start to pay, per kind of CPU loop (core/cpu/parallel.h's
// Grain). For each kind, one op that runs such a loop is timed at sizes from 2^10 to 2^21 elements
// on two threads with that kind's grain above the size (the loop runs on the calling thread) and at
// 1 (always split), the two interleaved sample by sample (bench/interleaved.h). A kind's grain is the smallest size from which two threads are at
// least 1.1x faster at that size and every larger one, halved: parallel_for's grain counts elements
// per thread. The defaults in core/cpu/parallel.h come from this table (bench/RESULTS.md).
//
//   build/bench/ember_grain_sweep [--reps 9]
//
// Kinds and their ops: elementwise relu(x); reduction sum(x); row-wise softmax over rows of 100;
// normalization batch_norm (training) over [N, 16, 64]; pooling max_pool2d 2x2 over planes of 24x24;
// optimizer one SGD step with momentum on an n-element parameter.
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "bench/interleaved.h"
#include "core/cpu/parallel.h"
#include "core/ember.h"
#include "optim/sgd.h"

namespace {

using namespace ember;
using ember::bench::Args;

const Args kArgs("ember_grain_sweep", "ember_grain_sweep [--reps N]");

struct Kind {
  const char* name;
  Grain grain;
  // Makes the inputs for about n elements and returns the call to time.
  std::function<std::function<void()>(int64_t n)> make;
};

std::vector<Kind> kinds() {
  return {
      {"elementwise (relu)", Grain::Elementwise,
       [](int64_t n) {
         Tensor x = randn({n});
         return std::function<void()>([x] { (void)relu(x); });
       }},
      {"reduction (sum)", Grain::Reduction,
       [](int64_t n) {
         Tensor x = randn({n});
         return std::function<void()>([x] { (void)x.sum(); });
       }},
      {"row-wise (softmax, rows of 100)", Grain::RowWise,
       [](int64_t n) {
         Tensor x = randn({std::max<int64_t>(1, n / 100), 100});
         return std::function<void()>([x] { (void)softmax(x, 1); });
       }},
      {"normalization (batch_norm [N,16,64])", Grain::Normalization,
       [](int64_t n) {
         Tensor x = randn({std::max<int64_t>(2, n / (16 * 64)), 16, 64});
         return std::function<void()>([x] { (void)batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true); });
       }},
      {"pooling (max_pool2d 2x2, 24x24 planes)", Grain::Pooling,
       [](int64_t n) {
         Tensor x = randn({std::max<int64_t>(1, n / (24 * 24)), 1, 24, 24});
         return std::function<void()>([x] { (void)max_pool2d(x, {2, 2}); });
       }},
      {"optimizer (SGD momentum step)", Grain::Optimizer,
       [](int64_t n) {
         Tensor p = randn({n}).requires_grad_(true);
         p.set_grad(randn({n}));
         auto opt = std::make_shared<optim::SGD>(std::vector<Tensor>{p}, optim::SGDOptions(0.01).momentum(0.9));
         return std::function<void()>([opt, p] { opt->step(); });
       }},
  };
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 9;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string v = kArgs.value(argc, argv, i);
    if (a == "--reps") reps = static_cast<int>(kArgs.positive(a, v));
    else kArgs.fail("unknown flag " + a);
  }
  if (reps < 5) kArgs.fail("--reps needs at least 5 (the median of fewer is noise on a shared machine)");
  NoGradGuard no_grad;
  set_num_threads(2);
  std::printf("us per call, median of %d samples, 2 threads; the kind's grain set above n (1 thread) and at 1 (2 threads)\n\n", reps);
  std::printf("| kind | elements | 1 thread us | 2 threads us | 1t / 2t |\n|---|---|---|---|---|\n");
  for (const Kind& k : kinds()) {
    const int64_t saved = grain_size(k.grain);  // restored after the kind
    std::vector<int64_t> sizes;
    std::vector<double> speedup;
    for (int64_t n = 1 << 10; n <= (int64_t{1} << 21); n *= 2) {
      const std::function<void()> call = k.make(n);
      // One thread count throughout (changing OpenMP's between calls made libgomp resize its team);
      // the grain alone decides: above n, one thread; 1, every thread.
      const std::vector<double> s = bench::interleaved_median_seconds(2, reps, [&](size_t way) {
        set_grain_size(k.grain, way == 0 ? int64_t{1} << 40 : 1);
        call();
      });
      sizes.push_back(n);
      speedup.push_back(s[0] / s[1]);
      std::printf("| %s | %lld | %.2f | %.2f | %.2f |\n", k.name, static_cast<long long>(n), s[0] * 1e6, s[1] * 1e6,
                  s[0] / s[1]);
    }
    set_grain_size(k.grain, saved);
    // The smallest size from which two threads win by 1.1x at every size.
    int64_t from = -1;
    for (size_t i = sizes.size(); i-- > 0;) {
      if (speedup[i] < 1.1) break;
      from = sizes[i];
    }
    if (from < 0) std::printf("grain kind=\"%s\" never_faster_on_2_threads\n", k.name);
    else std::printf("grain kind=\"%s\" two_threads_from=%lld grain=%lld\n", k.name, static_cast<long long>(from),
                     static_cast<long long>(from / 2));
  }
  return 0;
}
