// ember_peak: this machine's measured fp32 GEMM peak, per thread count, the denominator of the
// roofline table (bench/roofline.py). Times a large square sgemm (default 2048, C = A * B) on
// oneDNN's dnnl_sgemm and OpenBLAS's cblas_sgemm at each thread count and prints GFLOP/s = 2 n^3 / t,
// the median of --reps calls and the best one. The peak of a thread count is the best engine's
// best call: the most this machine has been seen to do, which is what a fraction of peak is of.
//
//   build/bench/ember_peak [--n 2048] [--reps 7] [--threads 1,2]
//
// Output: a markdown table, then one machine-readable line per thread count:
//   peak threads=1 gflops=201.3 engine=dnnl n=2048
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "bench/gemm_engines.h"

using namespace ember::bench;

namespace {

struct Options {
  int64_t n = 2048;
  int reps = 7;
  std::vector<int> threads = {1, 2};
};

const Args kArgs("ember_peak", "ember_peak [--n N] [--reps R] [--threads 1,2]");

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const std::string value = kArgs.value(argc, argv, i);
    if (flag == "--n") o.n = kArgs.positive(flag, value, 8192);  // three n x n float matrices: 768 MiB at 8192
    else if (flag == "--reps") o.reps = static_cast<int>(kArgs.positive(flag, value));
    else if (flag == "--threads") o.threads = kArgs.thread_list(flag, value);
    else kArgs.fail("unknown option " + flag);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const size_t square = static_cast<size_t>(o.n) * static_cast<size_t>(o.n);
  GemmBuffers buffers(square, square, square);
  const GemmArgs g = buffers.args(o.n, o.n, o.n, false, false);
  const double flops = 2.0 * static_cast<double>(o.n) * static_cast<double>(o.n) * static_cast<double>(o.n);
  const Engine engines[] = {Engine::Dnnl, Engine::OpenBlas};

  std::printf("fp32 sgemm %lld^3, %d calls each (GFLOP/s: median / best)\n\n", static_cast<long long>(o.n), o.reps);
  std::printf("| threads | dnnl_sgemm | cblas_sgemm (OpenBLAS) | peak |\n|---|---|---|---|\n");
  std::vector<std::string> machine_lines;
  for (int t : o.threads) {
    set_threads(t);
    double peak = 0;
    const char* peak_engine = "";
    std::printf("| %d ", t);
    for (Engine e : engines) {
      sgemm(e, g);  // warm-up
      std::vector<double> rate;
      for (int r = 0; r < o.reps; ++r) {
        const auto start = std::chrono::steady_clock::now();
        sgemm(e, g);
        rate.push_back(flops / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 1e9);
      }
      std::sort(rate.begin(), rate.end());
      std::printf("| %.1f / %.1f ", rate[rate.size() / 2], rate.back());
      if (rate.back() > peak) peak = rate.back(), peak_engine = engine_name(e);
    }
    std::printf("| %.1f (%s) |\n", peak, peak_engine);
    char line[160];
    std::snprintf(line, sizeof line, "peak threads=%d gflops=%.1f engine=%s n=%lld", t, peak, peak_engine,
                  static_cast<long long>(o.n));
    machine_lines.emplace_back(line);
  }
  std::printf("\n");
  for (const auto& l : machine_lines) std::printf("%s\n", l.c_str());
  return 0;
}
