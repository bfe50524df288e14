// A tour of the CPU backend from the outside: a kernel called directly through the dispatch point,
// the allocator's block cache, the GEMM engines and the thread count. docs/internals/04-cpu-backend.md
// quotes the regions between the `// [name]` markers (scripts/check_docs.py keeps the quotes
// identical) and ctest runs it (example.cpu_backend_tour), so every claim it prints is checked.
#include <cstdio>
#include <string>
#include <vector>

#include "core/cpu/cpu_matmul.h"
#include "core/ember.h"

using namespace ember;

namespace {

int g_failures = 0;

void expect(const char* what, bool ok) {
  std::printf("%-60s %s\n", what, ok ? "yes" : "NO (FAILED)");
  if (!ok) ++g_failures;
}

}  // namespace

int main() {
  manual_seed(0);

  // [dispatch]
  // An op checks its inputs, promotes, broadcasts and allocates; then it calls one virtual
  // function on the device's Backend. Called directly, the kernel contract shows: inputs are
  // already broadcast (here b is a [1, 4] row expanded to [3, 4] with stride 0) and `out` is
  // written, never resized.
  Tensor a = randn({3, 4});
  Tensor b = randn({1, 4});
  Tensor out = empty({3, 4});
  backend(kCPU).binary(BinaryOp::Add, a, b.expand({3, 4}), out);
  expect("backend(kCPU).binary(Add) == a + b", allclose(out, a + b, 0, 0));
  // [/dispatch]

  // [allocator]
  // Blocks of 64 KiB and more go back to a cache when their tensor dies, and the next request
  // of (nearly) the same size gets the same block: no page faults on the next training step.
  void* first = nullptr;
  {
    Tensor t = empty({1 << 18});  // 1 MiB of float32
    first = t.data_ptr();
  }  // t's Storage is freed here: its block goes to the cache, not to the system
  Tensor u = empty({1 << 18});
  expect("a freed 1 MiB block is reused by the next 1 MiB tensor", u.data_ptr() == first);
  // [/allocator]

  // [gemm]
  // Every engine built in computes the same product (to float32 rounding); the choice is speed.
  Tensor x = randn({64, 96});
  Tensor w = randn({96, 32});
  const GemmEngine chosen = cpu_gemm_engine();  // Auto if oneDNN is built in, unless EMBER_GEMM says otherwise
  set_cpu_gemm_engine(GemmEngine::Eigen);
  Tensor reference = x.matmul(w);
  for (GemmEngine e : available_gemm_engines()) {
    set_cpu_gemm_engine(e);
    std::printf("%s\n", cpu_gemm_info().c_str());
    expect((std::string(gemm_engine_name(e)) + " matches Eigen").c_str(),
           allclose(x.matmul(w), reference, 1e-5, 1e-4));
  }
  set_cpu_gemm_engine(chosen);
  // [/gemm]

  // [threads]
  // Elementwise kernels split the flat index range into disjoint chunks, so the result does not
  // depend on the thread count: bit-identical with 1 thread and with all of them.
  const int all_threads = get_num_threads();
  Tensor big = randn({1 << 20});  // far above the elementwise grain: runs in parallel
  set_num_threads(1);
  Tensor one_thread = big.exp();
  set_num_threads(all_threads);
  expect("exp() with 1 thread == exp() with all threads", allclose(big.exp(), one_thread, 0, 0));
  // [/threads]

  if (g_failures) std::printf("%d check(s) failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
