// CPU micro-benchmarks: ember's two hottest CPU paths against the ceiling each one has.
//   (a) sgemm 1024^3 through ember::matmul vs cblas_sgemm called directly (same OpenBLAS file,
//       same thread count) -> GFLOP/s of both and the ratio (goal: >= 0.80).
//   (b) elementwise add of 16M floats (64 MiB per array): ember::add (out of place, allocates its
//       result) and add_ (in place), vs memcpy of the same 64 MiB on the same threads. add reads two
//       arrays and writes one, so its effective bandwidth is 3*N*4 bytes / time; memcpy's is
//       2*N*4 / time (one read, one write) -> ratio (goal: >= 0.70). A diagnostic run of the add
//       kernel into a preallocated output separates the kernel from the cost of a fresh allocation.
//   (c) cross entropy over [256, 1000] float32 logits, forward and backward (autograd), ms per
//       call: the per-class loops are exp-bound (bench/micro_pytorch.py times PyTorch on the same).
// After the usual Google Benchmark output, a table prints each ratio against its goal.
//
//   ember_bench_micro [--threads=N] [Google Benchmark flags, e.g. --benchmark_filter=sgemm]
// --threads defaults to every core (ember::get_num_threads()).
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "core/backend.h"
#include "core/cpu/cpu_matmul.h"
#include "core/cpu/parallel.h"
#include "core/ember.h"
#include "nn/functional.h"

using namespace ember;

namespace {

constexpr int64_t kGemmN = 1024;
constexpr int64_t kAddN = int64_t{16} << 20;  // floats per array: 64 MiB
constexpr double kGemmFlops = 2.0 * kGemmN * kGemmN * kGemmN;

// ---------------- (a) sgemm ----------------

// ember::matmul as a user calls it: it allocates its 4 MiB result every time.
// `engine`: -1 = ember's own choice, otherwise forced (to compare both engines).
void sgemm_ember(benchmark::State& state, int engine) {
  const GemmEngine saved = cpu_gemm_engine();
  if (engine >= 0) {
    if (engine == static_cast<int>(GemmEngine::Blas) && !cpu_blas_available()) {
      state.SkipWithError("ember was built without OpenBLAS");
      return;
    }
    set_cpu_gemm_engine(static_cast<GemmEngine>(engine));
  }
  Tensor a = randn({kGemmN, kGemmN}), b = randn({kGemmN, kGemmN});
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["FLOP/s"] = benchmark::Counter(kGemmFlops, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(gemm_engine_name(cpu_gemm_engine()));
  set_cpu_gemm_engine(saved);
}

// The baseline: OpenBLAS directly, output preallocated. OpenBLAS's OpenMP build takes its thread
// count from OpenMP, which --threads set for both sides.
void sgemm_cblas(benchmark::State& state) {
  Tensor a = randn({kGemmN, kGemmN}), b = randn({kGemmN, kGemmN}), c = zeros({kGemmN, kGemmN});
  const int n = static_cast<int>(kGemmN);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data<float>(), n, b.data<float>(), n, 0.0f,
                c.data<float>(), n);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["FLOP/s"] = benchmark::Counter(kGemmFlops, benchmark::Counter::kIsIterationInvariantRate);
}

// ---------------- (b) add vs memcpy ----------------

constexpr int64_t kAddBytes = kAddN * 4;

// Minor page faults so far (first touches of freshly mapped memory), to show where time goes.
int64_t page_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}
void report_faults(benchmark::State& state, int64_t before) {
  state.counters["faults/iter"] =
      benchmark::Counter(static_cast<double>(page_faults() - before), benchmark::Counter::kAvgIterations);
}

void add_out_of_place(benchmark::State& state) {
  Tensor a = randn({kAddN}), b = randn({kAddN});
  const int64_t faults = page_faults();
  for (auto _ : state) {
    Tensor c = add(a, b);  // a fresh 64 MiB result each iteration, as in real use
    benchmark::DoNotOptimize(c.data_ptr());
  }
  report_faults(state, faults);
  state.SetBytesProcessed(state.iterations() * 3 * kAddBytes);
}

void add_in_place(benchmark::State& state) {
  Tensor a = randn({kAddN}), b = randn({kAddN});
  const int64_t faults = page_faults();
  for (auto _ : state) {
    a.add_(b);
    benchmark::DoNotOptimize(a.data_ptr());
  }
  report_faults(state, faults);
  state.SetBytesProcessed(state.iterations() * 3 * kAddBytes);
}

// Diagnostic: the same kernel ember::add runs, into an output allocated once (memory already
// mapped). The gap to add_out_of_place is what a fresh allocation per call costs.
void add_kernel_preallocated(benchmark::State& state) {
  Tensor a = randn({kAddN}), b = randn({kAddN}), c = zeros({kAddN});
  const int64_t faults = page_faults();
  for (auto _ : state) {
    backend(kCPU).binary(BinaryOp::Add, a, b, c);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  report_faults(state, faults);
  state.SetBytesProcessed(state.iterations() * 3 * kAddBytes);
}

// The bandwidth ceiling: memcpy of 64 MiB, split over the same threads the same way ember's
// kernels split work (parallel_for), into a buffer that stays mapped.
void memcpy_baseline(benchmark::State& state) {
  Tensor src = randn({kAddN}), dst = zeros({kAddN});
  char* d = static_cast<char*>(dst.data_ptr());
  const char* s = static_cast<const char*>(src.data_ptr());
  const int64_t faults = page_faults();
  for (auto _ : state) {
    parallel_for(kAddBytes, 1 << 20, [&](int64_t lo, int64_t hi) { std::memcpy(d + lo, s + lo, hi - lo); });
    benchmark::DoNotOptimize(d);
  }
  report_faults(state, faults);
  state.SetBytesProcessed(state.iterations() * 2 * kAddBytes);
}

// ---------------- summary ----------------

// Prints the usual console output and remembers each benchmark's best rate (over repetitions).
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  SummaryReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred || r.run_type != Run::RT_Iteration) continue;
      for (const char* key : {"FLOP/s", "bytes_per_second"}) {
        auto it = r.counters.find(key);
        if (it == r.counters.end()) continue;
        double& best = rate_[r.run_name.function_name];
        best = std::max(best, it->second.value);
      }
    }
  }
  // 0 when the benchmark did not run (filtered out).
  double rate(const std::string& name) const {
    auto it = rate_.find(name);
    return it == rate_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> rate_;
};

void print_row(const char* what, double ember, double base, const char* base_name, double goal) {
  if (ember <= 0 || base <= 0) return;
  const double ratio = ember / base;
  std::printf("%-40s %9.1f %9.1f  %-7s %6.2f", what, ember / 1e9, base / 1e9, base_name, ratio);
  if (goal > 0)
    std::printf("  >= %.2f  %s\n", goal, ratio >= goal ? "PASS" : "MISS");
  else
    std::printf("  (diagnostic)\n");
}

// ---------------- (c) cross entropy ----------------

// Forward and backward of a mean cross entropy over [256, 1000] logits, as a training step runs it.
void cross_entropy_1000(benchmark::State& state) {
  const int64_t N = 256, C = 1000;
  const Tensor logits = randn({N, C}).mul_(4.0).requires_grad_();
  const Tensor target = randint(0, C, {N});
  for (auto _ : state) {
    logits.zero_grad();
    Tensor loss = nn::functional::cross_entropy(logits, target);
    loss.backward();
    benchmark::DoNotOptimize(logits.grad().data_ptr());
  }
}

}  // namespace

BENCHMARK(cross_entropy_1000)->Name("xent_256x1000/ember")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgemm_ember, chosen, -1)->Name("sgemm_1024/ember")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(sgemm_cblas)->Name("sgemm_1024/cblas_sgemm")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgemm_ember, eigen, static_cast<int>(GemmEngine::Eigen))
    ->Name("sgemm_1024/ember_eigen")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgemm_ember, openblas, static_cast<int>(GemmEngine::Blas))
    ->Name("sgemm_1024/ember_openblas")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(memcpy_baseline)->Name("add_16M/memcpy")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(add_out_of_place)->Name("add_16M/ember_add")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(add_in_place)->Name("add_16M/ember_add_")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(add_kernel_preallocated)->Name("add_16M/kernel_prealloc")->UseRealTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  // Our one flag; everything else goes to Google Benchmark.
  int threads = get_num_threads();
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0)
      threads = std::atoi(argv[i] + 10);
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  set_num_threads(threads);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("ember threads", std::to_string(get_num_threads()));
  benchmark::AddCustomContext("ember matmul", cpu_gemm_info());
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  auto r = [&](const char* name) { return reporter.rate(name); };
  std::printf("\nSummary (%d threads; best of the runs above; rates in GFLOP/s or GB/s)\n", get_num_threads());
  std::printf("%-40s %9s %9s  %-7s %6s  %s\n", "", "ember", "baseline", "", "ratio", "goal");
  print_row("sgemm 1024^3 (GFLOP/s)", r("sgemm_1024/ember"), r("sgemm_1024/cblas_sgemm"), "cblas", 0.80);
  print_row("  engine Eigen (GFLOP/s)", r("sgemm_1024/ember_eigen"), r("sgemm_1024/cblas_sgemm"), "cblas", 0);
  print_row("  engine OpenBLAS (GFLOP/s)", r("sgemm_1024/ember_openblas"), r("sgemm_1024/cblas_sgemm"), "cblas", 0);
  print_row("add 16M f32, out of place (GB/s)", r("add_16M/ember_add"), r("add_16M/memcpy"), "memcpy", 0.70);
  print_row("add_ 16M f32, in place (GB/s)", r("add_16M/ember_add_"), r("add_16M/memcpy"), "memcpy", 0.70);
  print_row("  add kernel, preallocated out (GB/s)", r("add_16M/kernel_prealloc"), r("add_16M/memcpy"), "memcpy", 0);
  return 0;
}
