// oneDNN's matmul primitive for float32 products C = op(A) · Bᵀ.
//
// Why the primitive and not dnnl_sgemm, which runs every other product: for B read transposed
// oneDNN's matmul picks its brgemm kernels (batch-reduce GEMM, the kernels its AVX-512 convolutions
// are built on), which need no packing pass over a small operand and split a long sum across threads
// themselves. Measured on the Zen 5 (AVX-512, oneDNN 2.6, both called in turn on the same buffers):
//   ResNet-20's classifier at batch 32, [32, 64] x [64, 10]ᵀ, 1 thread:  0.65 vs 0.86 µs
//   LeNet's fc1 forward, [64, 320] x [320, 50]ᵀ, 1 thread:                14.4 vs 21.4 µs
//   the mlp's fc2 forward, [128, 512] x [512, 512]ᵀ, 2 threads:            0.20 vs 0.27 ms
//   the cnn's fc1 forward, [64, 9216] x [9216, 128]ᵀ, 2 threads:           0.51 vs 1.21 ms
//   im2col's ResNet stage-2 weight gradient, [32, 32768] x [32768, 144]ᵀ:  2.0 vs 4.7 ms
//     (2 threads; ember's own split of the sum, 1.56 ms, still runs that one: cpu_matmul.cpp)
// For B read as stored (the input gradient g · W, the weight gradient gᵀ · x) dnnl_sgemm tied or
// won (10x512x128 gᵀ·x: 8.9 vs 9.9 µs), so those stay on it. bench/gemm_sweep times both raw.
//
// Inside a parallel region (ember's kernels sharing out images or a batch over threads, such as the
// im2col weight gradient's per-thread GEMMs) each thread's product runs on a one-thread plan:
// oneDNN splits a primitive's work for the thread count current when it is made, so the count is
// one around it. Dense operands only: with a row stride wider than the row (a slice of a longer
// sum) oneDNN 2.6 offers no brgemm kernel, and such products stay on dnnl_sgemm.
//
// Plans: one per product shape, layout and thread count, made on first use (choosing a kernel and
// JIT-compiling it took about 0.2 ms a shape in the 520-shape test, a call well under that) and
// kept per thread: a plan's
// memory objects get the call's pointers on every call, so threads must not share one, and none
// needs a lock. At most kMaxPlans per thread (a process feeding ever-new shapes starts over).
// The scratchpad is one buffer per thread from ember's CPU allocator, grown to the largest plan's.
#include "core/cpu/onednn_matmul.h"

#if EMBER_HAVE_ONEDNN

#include <omp.h>

#include <array>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "core/cpu/onednn_context.h"
#include "core/cpu/parallel.h"
#include "core/error.h"
#include "core/ops.h"

namespace ember {

namespace {

using dnnl::memory;

using MatmulKey = PlanKey<8>;  // M, N, K, lda, ldb, transposes, accumulate, threads

struct MatmulPlan {
  bool brgemm = false;  // oneDNN chose a brgemm kernel; otherwise the product goes back to dnnl_sgemm
  std::string kernel;
  dnnl::matmul primitive;
  memory a, b, c, scratchpad;  // fixed descriptors; each call sets the data pointers
  size_t scratchpad_bytes = 0;
  std::array<dnnl_exec_arg_t, 4> args{};
  int nargs = 0;
  std::array<const void*, 4> pointers{};  // what each memory object holds now (a call with the same skips setting it)
};

constexpr size_t kMaxPlans = 512;

// op(X) as a [rows, cols] memory descriptor with element strides: a matrix stored row-major with
// leading dimension ld, or (trans) the transpose of one stored [cols, rows].
memory::desc matrix(int64_t rows, int64_t cols, bool trans, int64_t ld) {
  return memory::desc({rows, cols}, memory::data_type::f32, trans ? memory::dims{1, ld} : memory::dims{ld, 1});
}

std::unique_ptr<MatmulPlan> make_plan(int64_t M, int64_t N, int64_t K, bool a_trans, int64_t lda, bool b_trans,
                                      int64_t ldb, bool accumulate) {
  auto plan = std::make_unique<MatmulPlan>();
  const dnnl::engine& engine = onednn_cpu_engine();
  const memory::desc a = matrix(M, K, a_trans, lda), b = matrix(K, N, b_trans, ldb), c = matrix(M, N, false, N);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // ember's allocator provides it
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);  // C += A · B: the kernel adds the old C as it stores
    attr.set_post_ops(ops);
  }
  // Whatever oneDNN refuses here (no implementation for the layout, no memory for the JIT code)
  // leaves a plan without brgemm, and dnnl_sgemm runs the product.
  try {
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, engine);
    plan->kernel = pd.impl_info_str();
    if (plan->kernel.rfind("brg", 0) != 0) return plan;
    plan->primitive = dnnl::matmul(pd);
    plan->a = memory(a, engine, DNNL_MEMORY_NONE);
    plan->b = memory(b, engine, DNNL_MEMORY_NONE);
    plan->c = memory(c, engine, DNNL_MEMORY_NONE);
    plan->args[0] = {DNNL_ARG_SRC, plan->a.get()};
    plan->args[1] = {DNNL_ARG_WEIGHTS, plan->b.get()};
    plan->args[2] = {DNNL_ARG_DST, plan->c.get()};
    plan->nargs = 3;
    plan->scratchpad_bytes = pd.scratchpad_desc().get_size();
    if (plan->scratchpad_bytes > 0) {
      plan->scratchpad = memory(pd.scratchpad_desc(), engine, DNNL_MEMORY_NONE);
      plan->args[3] = {DNNL_ARG_SCRATCHPAD, plan->scratchpad.get()};
      plan->nargs = 4;
    }
  } catch (const dnnl::error&) {
    return plan;
  }
  plan->brgemm = true;
  return plan;
}

using Plans = std::unordered_map<MatmulKey, std::unique_ptr<MatmulPlan>, MatmulKey::Hash>;
Plans& thread_plans() {
  thread_local Plans plans;
  return plans;
}

// In front of the map, a few recently used plans by a cheap hash of the key: a training step's
// handful of shapes then costs a compare per call instead of a hash-map lookup (the lookup was the
// largest share of ember's own time on a 0.7 µs classifier product).
constexpr size_t kRecentSlots = 16;
struct Recent {
  MatmulKey key{};
  MatmulPlan* plan = nullptr;
};

MatmulPlan& plan_for(int64_t M, int64_t N, int64_t K, bool a_trans, int64_t lda, bool b_trans, int64_t ldb,
                     bool accumulate) {
  const int threads = omp_get_max_threads();  // the primitive splits its work for this many
  const MatmulKey key{{M, N, K, lda, ldb, (a_trans ? 1 : 0) | (b_trans ? 2 : 0), accumulate ? 1 : 0, threads}};
  thread_local std::array<Recent, kRecentSlots> recent;
  Recent& slot = recent[static_cast<size_t>(M * 7 + N * 3 + K + lda + ldb) % kRecentSlots];
  if (slot.plan && slot.key == key) return *slot.plan;
  Plans& plans = thread_plans();
  auto it = plans.find(key);
  if (it == plans.end()) {
    if (plans.size() >= kMaxPlans) {
      plans.clear();
      recent.fill(Recent{});  // their plans are gone
    }
    it = plans.emplace(key, make_plan(M, N, K, a_trans, lda, b_trans, ldb, accumulate)).first;
  }
  slot = {key, it->second.get()};
  return *it->second;
}

// This thread's scratchpad, at least `bytes` long (grown by replacing it; plans only borrow it).
void* scratchpad(size_t bytes) {
  thread_local Tensor buffer;
  if (!buffer.defined() || static_cast<size_t>(buffer.numel()) * 4 < bytes)
    buffer = empty({static_cast<int64_t>((bytes + 3) / 4)}, TensorOptions(kFloat32));
  return buffer.data<float>();
}

}  // namespace

bool onednn_matmul(int64_t M, int64_t N, int64_t K, const float* A, bool a_trans, int64_t lda, const float* B,
                   bool b_trans, int64_t ldb, float* C, bool accumulate) {
  const OneThread alone(omp_in_parallel());  // inside a parallel region: a one-thread plan, run alone
  MatmulPlan& plan = plan_for(M, N, K, a_trans, lda, b_trans, ldb, accumulate);
  if (!plan.brgemm) return false;
  // Layers call with the same weights, and the allocator hands out the same blocks step after
  // step, so most pointers are the ones already set.
  auto point = [&](int i, memory& m, const void* p) {
    if (plan.pointers[i] != p) m.set_data_handle(const_cast<void*>(p)), plan.pointers[i] = p;
  };
  point(0, plan.a, A);
  point(1, plan.b, B);
  point(2, plan.c, C);
  if (plan.scratchpad_bytes > 0) point(3, plan.scratchpad, scratchpad(plan.scratchpad_bytes));
  // The C API takes the arguments as an array: the C++ API's std::unordered_map would allocate.
  dnnl::stream& stream = onednn_cpu_stream();
  const dnnl_status_t st = dnnl_primitive_execute(plan.primitive.get(), stream.get(), plan.nargs, plan.args.data());
  EMBER_CHECK(st == dnnl_success, "matmul: oneDNN matmul primitive failed (status ", static_cast<int>(st), ") for [",
              M, ", ", K, "] x [", K, ", ", N, "]");
  return true;
}

std::string onednn_matmul_kernel(int64_t M, int64_t N, int64_t K, bool a_trans, bool b_trans) {
  return plan_for(M, N, K, a_trans, a_trans ? M : K, b_trans, b_trans ? K : N, false).kernel;
}

size_t onednn_matmul_plan_count() { return thread_plans().size(); }

}  // namespace ember

#else  // built without oneDNN

namespace ember {
bool onednn_matmul(int64_t, int64_t, int64_t, const float*, bool, int64_t, const float*, bool, int64_t, float*, bool) {
  return false;
}
std::string onednn_matmul_kernel(int64_t, int64_t, int64_t, bool, bool) { return ""; }
size_t onednn_matmul_plan_count() { return 0; }
}  // namespace ember

#endif
