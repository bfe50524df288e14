// ember_gemm_sweep: the engine sweep behind ember's CPU GEMM choice. For every linear and
// convolution layer of the benchmark networks (bench/model_shapes.h: mlp, lenet, cnn at their
// training batch sizes, ResNet-20 at batch 128 and 32), it times the GEMMs of a training step —
// forward, grad input, grad weight, with their transposes — on OpenBLAS, Eigen, oneDNN's sgemm and
// oneDNN's matmul primitive at each thread count (median of --reps samples after a warm-up, the
// engines interleaved sample by sample; bench/interleaved.h makes a sample of a few-microsecond
// call a run of calls) and
// prints GFLOP/s per engine and the fastest, one markdown row per GEMM and thread count.
//
//   build/bench/ember_gemm_sweep [--threads 1,2] [--reps 7] [--model cnn] [--csv sweep.csv]
//
// At the end it prints each network's FLOPs per training step summed over these GEMMs, which
// bench/roofline.py's per-layer formulas must reproduce (run `python3 bench/roofline.py` beside it).
// A `slowest/fastest` column shows how far the worst engine is from the best on each shape. For the
// linear layers (products ember's matmul kernel runs as such; convolutions take the paths of
// bench/conv_sweep), `auto` names the engine GemmEngine::Auto (or, with EMBER_GEMM=measured,
// GemmEngine::Measured) gives that product, `ember` is the
// GFLOP/s of ember's own CPU matmul kernel on it (interleaved with the engines: Auto's engine, with
// ember's threading, such as splitting a long sum across threads) and `ember/fastest` how far that
// is from the fastest engine; the last line counts the products where it exceeds 1.1. The sweep
// times warm caches (one shape called over and over); Auto's OpenBLAS rule for AVX2 CPUs rests
// on the in-step comparison of bench/step_profile --engines.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "bench/gemm_engines.h"
#include "bench/model_shapes.h"
#include "core/backend.h"
#include "core/cpu/cpu_matmul.h"
#include "core/cpu/onednn_matmul.h"
#include "core/ember.h"

using namespace ember::bench;

namespace {

struct Options {
  std::vector<int> threads = {1, 2};
  int reps = 7;
  std::string model;  // empty: all
  std::string csv;
};

const Args kArgs("ember_gemm_sweep", "ember_gemm_sweep [--threads 1,2] [--reps 7] [--model NAME] [--csv FILE]");

Options parse(int argc, char** argv, const std::vector<Layer>& layers) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const std::string value = kArgs.value(argc, argv, i);
    if (flag == "--threads") o.threads = kArgs.thread_list(flag, value);
    else if (flag == "--reps") o.reps = static_cast<int>(kArgs.positive(flag, value));
    else if (flag == "--model") o.model = value;
    else if (flag == "--csv") o.csv = value;
    else kArgs.fail("unknown option " + flag);
  }
  std::set<std::string> models;
  for (const Layer& l : layers) models.insert(l.model);
  if (!o.model.empty() && !models.count(o.model)) kArgs.fail("unknown --model '" + o.model + "'");
  return o;
}

// Room for the largest operands of any GEMM in the list.
GemmBuffers buffers_for(const std::vector<Gemm>& gemms) {
  size_t a = 1, b = 1, c = 1;
  for (const Gemm& g : gemms) {
    a = std::max(a, static_cast<size_t>(g.m * g.k));
    b = std::max(b, static_cast<size_t>(g.k * g.n));
    c = std::max(c, static_cast<size_t>(g.m * g.n));
  }
  return GemmBuffers(a, b, c);
}

std::string transposes(const Gemm& g) {
  return std::string(g.trans_a ? "T" : "N") + (g.trans_b ? "T" : "N");
}

// The index in kEngines of the engine ember's setting (Auto or Measured) runs this float32 product on.
// `threads` as ember's kernel runs it (a tiny product on one thread).
int auto_engine_index(const Gemm& g, int threads) {
  const int product_threads = ember::gemm_runs_on_one_thread(1, g.m, g.n, g.k) ? 1 : threads;
  switch (ember::gemm_engine_for(ember::kFloat32, g.m, g.n, g.k, g.trans_a, g.trans_b, product_threads)) {
    case ember::GemmEngine::Blas: return 0;
    case ember::GemmEngine::Eigen: return 1;
    default:  // oneDNN: its matmul primitive where ember's kernel calls it (core/cpu/onednn_matmul.h)
      return g.trans_b && ember::onednn_matmul_kernel(g.m, g.n, g.k, g.trans_a, g.trans_b).rfind("brg", 0) == 0 ? 3 : 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Layer> layers = benchmark_layers();
  const Options o = parse(argc, argv, layers);
  std::vector<Gemm> gemms;
  for (const Layer& l : layers)
    if (o.model.empty() || o.model == l.model)
      for (const Gemm& g : gemms_of(l)) gemms.push_back(g);
  GemmBuffers buffers = buffers_for(gemms);

  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    if (!csv) {
      std::fprintf(stderr, "ember_gemm_sweep: cannot open --csv %s for writing\n", o.csv.c_str());
      return 1;
    }
    csv << "model,layer,role,m,n,k,trans,threads,openblas_gflops,eigen_gflops,dnnl_gflops,dnnl_matmul_gflops,"
           "fastest,auto,ember_gflops,ember_vs_fastest\n";
  }

  std::printf("GFLOP/s, median of %d samples; M x N x K, row-major, op(A) op(B) (N = as stored, T = transposed)\n\n", o.reps);
  std::printf("| model | layer | gemm | M x N x K | op | threads | openblas | eigen | dnnl | dnnl_matmul | fastest "
              "| slowest/fastest | auto | ember | ember/fastest |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  // An ember built without oneDNN has no Auto (the columns are "-").
  const bool have_auto = ember::cpu_onednn_available();
  // Auto, unless EMBER_GEMM=measured asked for the measured choice (then `auto` names its pick).
  if (have_auto && ember::cpu_gemm_engine() != ember::GemmEngine::Measured)
    ember::set_cpu_gemm_engine(ember::GemmEngine::Auto);
  int ember_misses = 0, linear_products = 0;
  for (int t : o.threads) {
    set_threads(t);
    ember::set_num_threads(t);
    for (const Gemm& g : gemms) {
      const GemmArgs args = buffers.args(g.m, g.n, g.k, g.trans_a, g.trans_b);
      const bool linear = have_auto && g.layer->kind == LayerKind::Linear;
      // ember's matmul kernel on the same product and the same memory as the raw engines (tensors
      // over the shared buffers): [1, M, K] x [1, K, N], transposed views where the GEMM reads an
      // operand transposed (as nn::linear hands it weight.t()). On tensors of its own, ember read
      // its operands from further out in the cache hierarchy than the engine timed before it.
      std::function<void()> ember_matmul;
      ember::Tensor ta, tb, tc;
      if (linear) {
        auto over = [](float* p, int64_t rows, int64_t cols, bool transposed) {
          const ember::Shape stored = transposed ? ember::Shape{1, cols, rows} : ember::Shape{1, rows, cols};
          const ember::Tensor t = ember::from_blob(p, stored, ember::kFloat32);
          return transposed ? t.transpose(1, 2) : t;
        };
        ta = over(const_cast<float*>(args.a), g.m, g.k, g.trans_a);
        tb = over(const_cast<float*>(args.b), g.k, g.n, g.trans_b);
        tc = ember::from_blob(args.c, {1, g.m, g.n}, ember::kFloat32);
        ember_matmul = [&] { ember::backend(ember::kCPU).matmul(ta, tb, tc); };
      }
      const std::vector<double> seconds = engine_median_seconds(args, o.reps, ember_matmul);
      double rate[std::size(kEngines)];
      int best = 0, worst = 0;
      for (int e = 0; e < static_cast<int>(std::size(kEngines)); ++e) {
        rate[e] = g.flops() / seconds[static_cast<size_t>(e)] / 1e9;
        if (rate[e] > rate[best]) best = e;
        if (rate[e] < rate[worst]) worst = e;
      }
      std::string auto_name = "-", ember_rate = "-", ember_ratio = "-";
      if (linear) {
        auto_name = engine_name(kEngines[auto_engine_index(g, t)]);
        const double ember_gflops = g.flops() / seconds[std::size(kEngines)] / 1e9;
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f", ember_gflops);
        ember_rate = buf;
        std::snprintf(buf, sizeof buf, "%.2f", rate[best] / ember_gflops);
        ember_ratio = buf;
        ++linear_products;
        if (rate[best] / ember_gflops > 1.1) ++ember_misses;
      }
      std::printf("| %s | %s | %s | %lldx%lldx%lld | %s | %d | %.1f | %.1f | %.1f | %.1f | %s | %.2f | %s | %s | %s |\n",
                  g.layer->model, g.layer->name, role_name(g.role), static_cast<long long>(g.m),
                  static_cast<long long>(g.n), static_cast<long long>(g.k), transposes(g).c_str(), t, rate[0], rate[1],
                  rate[2], rate[3], engine_name(kEngines[best]), rate[best] / rate[worst], auto_name.c_str(), ember_rate.c_str(),
                  ember_ratio.c_str());
      std::fflush(stdout);
      if (csv)
        csv << g.layer->model << ',' << g.layer->name << ',' << role_name(g.role) << ',' << g.m << ',' << g.n << ','
            << g.k << ',' << transposes(g) << ',' << t << ',' << rate[0] << ',' << rate[1] << ',' << rate[2] << ',' << rate[3]
            << ',' << engine_name(kEngines[best]) << ',' << auto_name << ',' << ember_rate << ',' << ember_ratio << '\n';
    }
  }

  std::printf("\nember_misses=%d of %d linear-layer products (thread counts included) where ember's matmul is more than "
              "1.1x slower than the fastest engine here\n",
              ember_misses, linear_products);
  std::printf("\nGEMM FLOPs per training step (forward + backward; compare bench/roofline.py):\n");
  std::set<std::string> printed;
  for (const Layer& l : layers)
    if ((o.model.empty() || o.model == l.model) && printed.insert(l.model).second)
      std::printf("step_flops model=%s gflop=%.4f\n", l.model, step_flops(layers, l.model) / 1e9);
  return 0;
}
