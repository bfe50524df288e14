// The CUDA caching allocators on a real GPU (the policy itself is tested on the CPU in
// test_block_pool.cpp): reuse without cudaMalloc, stream safety through record_stream, recovery
// from out-of-memory, asynchronous uploads from pinned memory, and a training loop that stops
// calling cudaMalloc after its first steps. Every test skips, saying why, without a GPU.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/ember.h"
#include "tests/test_util.h"

#ifdef EMBER_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/caching_allocator.h"
#include "data/dataloader.h"
#include "nn/nn.h"
#include "optim/optim.h"
#endif

using namespace ember;

#ifndef EMBER_WITH_CUDA

TEST(CudaAllocator, NeedsCudaBuild) { GTEST_SKIP() << "built without CUDA: the CUDA allocators are not compiled"; }

#else

namespace {

const Device kCuda0(DeviceType::CUDA, 0);
constexpr size_t MiB = size_t{1} << 20;


// Stops the test on a failed CUDA call (the macro's ASSERT returns from the test body).
#define CUDA_OK(call)                                                   \
  do {                                                                  \
    const cudaError_t status_ = (call);                                 \
    ASSERT_EQ(status_, cudaSuccess) << #call << ": " << cudaGetErrorString(status_); \
  } while (0)

// A host function for cudaLaunchHostFunc that holds its stream until *flag is set (or 20 s have
// passed, so that a failing test cannot hang). It makes no CUDA call, as host functions must not.
void CUDART_CB hold_stream(void* flag) {
  const auto start = std::chrono::steady_clock::now();
  auto* go = static_cast<std::atomic<bool>*>(flag);
  while (!go->load() && std::chrono::steady_clock::now() - start < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

TensorOptions on_gpu(DType t = kFloat32) { return TensorOptions(t).device(kCuda0); }

}  // namespace

TEST(CudaAllocator, FreedBlocksAreReusedWithoutCudaMalloc) {
  EMBER_REQUIRE_GPU();
  Allocator& alloc = backend(kCuda0).allocator();
  EXPECT_EQ(&alloc, &cuda::device_allocator(0));
  const AllocatorStats before = alloc.stats();
  for (const int64_t n : {int64_t{1000}, int64_t{3} << 20}) {  // small pool (4 KB) and large pool (12 MB)
    SCOPED_TRACE(n);
    { Tensor a = empty({n}, on_gpu()); }
    const int64_t system_calls = alloc.stats().system_allocations;
    for (int i = 0; i < 5; ++i) {
      Tensor b = empty({n}, on_gpu());
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data_ptr()) % 256, 0u) << "as aligned as cudaMalloc's own";
    }
    EXPECT_EQ(alloc.stats().system_allocations, system_calls) << "the same size again: no new cudaMalloc";
  }
  const AllocatorStats after = alloc.stats();
  EXPECT_EQ(after.live_allocations, before.live_allocations);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(after.total_allocations - before.total_allocations, 12);
  EXPECT_GE(after.reserved_bytes, static_cast<int64_t>(12 * MiB)) << "freed blocks stay cached";

  // empty_cache gives the cached segments back; the next request needs cudaMalloc again.
  cuda::empty_cache(0);
  EXPECT_LT(alloc.stats().reserved_bytes, after.reserved_bytes);
  const int64_t system_calls = alloc.stats().system_allocations;
  { Tensor c = empty({int64_t{3} << 20}, on_gpu()); }
  EXPECT_EQ(alloc.stats().system_allocations, system_calls + 1);
}

// A side stream reads x after x's last tensor is freed. With record_stream the freed block is not
// handed out (and overwritten on the compute stream) until the side stream's read has run.
TEST(CudaAllocator, RecordStreamKeepsBlockUntilOtherStreamIsDone) {
  EMBER_REQUIRE_GPU();
  const int64_t n = 4 << 20;  // 16 MB of float: the large pool
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  cuda::empty_cache(0);
  // Two cached blocks of exactly this size, so nothing below needs cudaMalloc (which must not run
  // while the side stream is held) and x gets the lower one.
  {
    Tensor w1 = empty({n}, on_gpu()), w2 = empty({n}, on_gpu());
  }
  Allocator& alloc = backend(kCuda0).allocator();
  const int64_t system_calls = alloc.stats().system_allocations;

  cudaStream_t side = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  float* copy = nullptr;
  if (cudaMalloc(&copy, bytes) != cudaSuccess) {
    (void)cudaStreamDestroy(side);
    FAIL() << "cudaMalloc of " << bytes << " bytes failed";
  }
  std::atomic<bool> go{false};
  // Holds the side stream until `go` (or 20 s, so a failing test cannot hang), then cleans up.
  struct Cleanup {
    std::atomic<bool>& go;
    cudaStream_t side;
    float* copy;
    ~Cleanup() {
      go = true;
      (void)cudaStreamSynchronize(side);
      (void)cudaStreamDestroy(side);
      (void)cudaFree(copy);
    }
  } cleanup{go, side, copy};

  Tensor x = full({n}, 7.0, on_gpu());
  backend(kCuda0).synchronize();  // x is written before the side stream reads it
  void* px = x.data_ptr();
  CUDA_OK(cudaLaunchHostFunc(side, hold_stream, &go));
  CUDA_OK(cudaMemcpyAsync(copy, px, bytes, cudaMemcpyDeviceToDevice, side));
  cuda::record_stream(x, side);
  x = Tensor();  // freed while the side stream has not read it yet

  Tensor y = full({n}, -1.0, on_gpu());  // would overwrite x's memory if the block were reused
  EXPECT_NE(y.data_ptr(), px);
  backend(kCuda0).synchronize();
  go = true;
  CUDA_OK(cudaStreamSynchronize(side));
  std::vector<float> seen(static_cast<size_t>(n));
  CUDA_OK(cudaMemcpy(seen.data(), copy, bytes, cudaMemcpyDeviceToHost));
  int64_t wrong = 0;
  for (float v : seen) wrong += v != 7.0f;
  EXPECT_EQ(wrong, 0) << "the side stream read memory that was reused before it finished";

  // The side stream is done: the block is reusable now (y still holds the other cached one).
  Tensor z = empty({n}, on_gpu());
  EXPECT_EQ(z.data_ptr(), px);
  EXPECT_EQ(alloc.stats().system_allocations, system_calls);

  // Errors: CPU tensors and memory ember did not allocate.
  test::expect_error([&] { cuda::record_stream(ones({2}), side); }, {"record_stream", "expected a CUDA tensor", "cpu"});
  Tensor foreign = from_blob(copy, {4}, kFloat32, kCuda0, nullptr);
  test::expect_error([&] { cuda::record_stream(foreign, side); }, {"record_stream", "caching allocator"});
}

TEST(CudaAllocator, OutOfMemoryThrowsAndAllocatorRecovers) {
  EMBER_REQUIRE_GPU();
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_OK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const int64_t too_many = static_cast<int64_t>((total_bytes + (size_t{1} << 30)) / sizeof(float));
  try {
    Tensor huge = empty({too_many}, on_gpu());
    FAIL() << "allocating more than the card's " << total_bytes << " bytes succeeded";
  } catch (const OutOfMemoryError& e) {
    const std::string msg = e.what();
    for (const std::string& part : {std::string("cuda:0: out of memory allocating"), std::to_string(too_many * 4) + " bytes",
                                   std::string("Allocated by ember"), std::string("reserved by its caching allocator"),
                                   std::string("free of")})
      EXPECT_NE(msg.find(part), std::string::npos) << "missing '" << part << "' in: " << msg;
  }
  // A normal allocation works afterwards, and so does a kernel on it.
  Tensor ok = full({1000}, 2.5, on_gpu());
  EXPECT_EQ(ok.to(kCPU).to_vector<float>(), std::vector<float>(1000, 2.5f));
}

TEST(CudaAllocator, PinnedUploadRoundTrip) {
  EMBER_REQUIRE_GPU();
  Allocator& pinned = cuda::pinned_allocator();
  EXPECT_EQ(ember::pinned_allocator(), &pinned) << "registered for DataLoader's pin_memory";
  EXPECT_TRUE(pinned.device().is_cpu());
  int not_pinned = 0;
  EXPECT_FALSE(cuda::record_pinned_use(&not_pinned, 0, nullptr));

  const AllocatorStats before = pinned.stats();
  const int64_t n = 1 << 18;  // 1 MB of float
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  auto pinned_tensor = [&](float first) {
    void* p = pinned.allocate(bytes);
    Tensor t = from_blob(p, {n}, kFloat32, kCPU, [&pinned, bytes](void* q) { pinned.deallocate(q, bytes); });
    float* f = t.data<float>();
    for (int64_t i = 0; i < n; ++i) f[i] = first + static_cast<float>(i % 1000);
    return t;
  };
  std::vector<Tensor> uploaded;
  for (int round = 0; round < 4; ++round) {
    Tensor host = pinned_tensor(static_cast<float>(round));
    EXPECT_TRUE(cuda::record_pinned_use(host.data<float>() + 5, 0, nullptr)) << "any address inside the block";
    uploaded.push_back(host.to(kCuda0));  // asynchronous: the host does not wait for the copy
    host = Tensor();  // freed at once; its block must not be rewritten before the copy ran
    Tensor scribble = pinned_tensor(-1000.0f);  // would be what the copy reads if it were reused too early
  }
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(round);
    const std::vector<float> v = uploaded[round].to(kCPU).to_vector<float>();
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += v[i] != static_cast<float>(round) + static_cast<float>(i % 1000);
    EXPECT_EQ(wrong, 0);
  }
  const AllocatorStats after = pinned.stats();
  EXPECT_EQ(after.live_allocations, before.live_allocations);
  EXPECT_EQ(after.total_allocations - before.total_allocations, 8);
  EXPECT_LE(after.system_allocations - before.system_allocations, 8);

  // Uploads from ordinary (pageable) memory wait for the copy and are just as right.
  Tensor pageable = arange(0.0, 5000.0, 1.0);
  test::expect_close(pageable.to(kCuda0).to(kCPU), pageable, 0, 0);
}

// A small model trained on the GPU: once the first steps have filled the cache, a step allocates
// only cached blocks — no cudaMalloc (which would also synchronise the device) in steady state.
TEST(CudaAllocator, TrainingStepsStopCallingCudaMalloc) {
  EMBER_REQUIRE_GPU();
  namespace F = nn::functional;
  manual_seed(0);
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(64, 128), std::make_shared<nn::ReLU>(),
                                                std::make_shared<nn::Linear>(128, 10));
  model->to(kCuda0);
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  const Tensor x = randn({32, 64}).to(kCuda0);
  const Tensor y = randint(0, 10, {32}).to(kCuda0);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = F::cross_entropy(model->forward(x), y);
    loss.backward();
    opt.step();
    return loss.item();
  };

  Allocator& alloc = backend(kCuda0).allocator();
  const double first_loss = step();
  step();
  step();
  const AllocatorStats warm = alloc.stats();
  double last_loss = 0;
  for (int i = 0; i < 10; ++i) last_loss = step();
  const AllocatorStats after = alloc.stats();
  EXPECT_EQ(after.system_allocations, warm.system_allocations) << "steady-state steps called cudaMalloc";
  EXPECT_GT(after.total_allocations, warm.total_allocations) << "the steps did allocate (from the cache)";
  EXPECT_EQ(after.live_allocations, warm.live_allocations) << "a step leaks device memory";
  EXPECT_LT(last_loss, first_loss) << "the model did not learn";
}

#endif  // EMBER_WITH_CUDA
