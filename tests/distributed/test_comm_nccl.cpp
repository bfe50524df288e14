// The NCCL communicator. Needs a CUDA build and a GPU; otherwise each test skips with the reason
// (or, in a build without CUDA, checks that the factories say so). At world size 1 every
// collective is an identity or a copy, which still checks the argument handling, the stream
// ordering (inputs written by kernels on the compute stream, results read back through it) and
// the Work handles. Several GPUs in one process, or one per MPI rank, check real reductions.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/ember.h"
#include "distributed/nccl_communicator.h"
#include "tests/distributed/dist_test_util.h"
#include "tests/test_util.h"

namespace ember::test {
namespace {

using distributed::Communicator;

const Device kCuda0(DeviceType::CUDA, 0);

#define EMBER_REQUIRE_NCCL_GPUS(n)                                                                  \
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device available; the NCCL communicator needs one"; \
  if (cuda_device_count() < (n)) GTEST_SKIP() << "needs " << (n) << " GPUs, " << cuda_device_count() << " visible"

#ifndef EMBER_WITH_CUDA
TEST(NcclComm, BuiltWithoutCudaSaysSo) {
  expect_error([] { distributed::make_nccl_communicator(); }, {"make_nccl_communicator", "built without CUDA"});
  expect_error([] { distributed::make_nccl_communicators({0}); }, {"make_nccl_communicators", "built without CUDA"});
  expect_error([] { distributed::make_nccl_unique_id(); }, {"make_nccl_unique_id", "built without CUDA"});
  expect_error([] { distributed::make_nccl_communicator(0, 1, 0, std::string(128, '\0')); },
               {"make_nccl_communicator", "built without CUDA"});
}
#endif

// Rank r's input at element i, made by kernels on the compute stream (not uploaded), exact in float32.
Tensor rank_input(int rank, int64_t n, DType dtype, Device device) {
  return (arange(static_cast<double>(n), TensorOptions(dtype).device(device)) * 0.5 + (rank * 3.0 - 1.0));
}

TEST(NcclComm, WorldSizeOneEveryCollectiveIsACopy) {
  EMBER_REQUIRE_NCCL_GPUS(1);
  std::shared_ptr<Communicator> comm = distributed::make_nccl_communicators({0}).front();
  EXPECT_EQ(comm->name(), "nccl");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_EQ(comm->device(), kCuda0);
  for (DType dtype : {kFloat32, kFloat64})
    for (int64_t n : {0, 1, 7, 65537}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " n=" << n);
      const Tensor want = rank_input(0, n, dtype, kCPU);
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min}) {
        Tensor t = rank_input(0, n, dtype, kCuda0);
        comm->all_reduce(t, op);
        expect_close(t.to(kCPU), want, 0, 0);
      }
      Tensor b = rank_input(0, n, dtype, kCuda0);
      comm->broadcast(b, 0);
      expect_close(b.to(kCPU), want, 0, 0);
      Tensor in = rank_input(0, n, dtype, kCuda0);
      Tensor out = full({n}, -7.0, TensorOptions(dtype).device(kCuda0));
      comm->all_gather(in, out);
      expect_close(out.to(kCPU), want, 0, 0);
      Tensor scattered = full({n}, -7.0, TensorOptions(dtype).device(kCuda0));
      comm->reduce_scatter(in, scattered, ReduceOp::Sum);
      expect_close(scattered.to(kCPU), want, 0, 0);
    }
  comm->barrier();
}

TEST(NcclComm, AsyncWorkOrdersTheComputeStream) {
  EMBER_REQUIRE_NCCL_GPUS(1);
  std::shared_ptr<Communicator> comm = distributed::make_nccl_communicators({0}).front();
  Tensor in_a = rank_input(0, 1 << 20, kFloat32, kCuda0);
  Tensor in_b = rank_input(0, 1000, kFloat64, kCuda0);
  Tensor out_a = empty({1 << 20}, TensorOptions(kFloat32).device(kCuda0));
  Tensor out_b = empty({1000}, TensorOptions(kFloat64).device(kCuda0));
  distributed::WorkHandle wa = comm->all_gather_async(in_a, out_a);
  distributed::WorkHandle wb = comm->all_gather_async(in_b, out_b);
  wb->wait();  // reverse order
  wa->wait();
  // Kernels queued after wait() on the compute stream see the results.
  expect_close((out_a * 2.0).to(kCPU), (rank_input(0, 1 << 20, kFloat32, kCPU) * 2.0), 0, 0);
  expect_close((out_b + 1.0).to(kCPU), (rank_input(0, 1000, kFloat64, kCPU) + 1.0), 0, 0);
  EXPECT_TRUE(wa->is_completed());  // the host read above waited for everything
  EXPECT_TRUE(wb->is_completed());
}

TEST(NcclComm, BadArgumentsNameTheOp) {
  EMBER_REQUIRE_NCCL_GPUS(1);
  std::shared_ptr<Communicator> comm = distributed::make_nccl_communicators({0}).front();
  expect_error([&] { comm->all_reduce(zeros({4})); }, {"all_reduce(sum)", "cuda:0", "cpu"});
  expect_error([&] { comm->all_reduce(zeros({3, 4}, TensorOptions().device(kCuda0)).t()); },
               {"all_reduce(sum)", "contiguous"});
  expect_error([&] { comm->all_reduce(zeros({2}, TensorOptions(kInt64).device(kCuda0)), ReduceOp::Mean); },
               {"all_reduce(mean)", "floating-point", "int64"});
  expect_error([&] { comm->all_reduce(zeros({2}, TensorOptions().device(kCuda0)), ReduceOp::ArgMax); },
               {"all_reduce(argmax)", "not a collective reduction"});
  expect_error([&] { comm->broadcast(zeros({2}, TensorOptions().device(kCuda0)), 1); }, {"broadcast", "root 1"});
  expect_error([&] { comm->all_gather(zeros({2}, TensorOptions().device(kCuda0)), zeros({3}, TensorOptions().device(kCuda0))); },
               {"all_gather", "world_size * in.numel()"});
  expect_error([] { distributed::make_nccl_communicators({0, 0}); }, {"make_nccl_communicators", "twice"});
  expect_error([] { distributed::make_nccl_communicators({cuda_device_count()}); },
               {"make_nccl_communicators", "does not exist"});
}

// Started without a launcher (ctest's dist_tests_nccl_np1): world size 1 on cuda:0, no MPI needed.
TEST(NcclComm, FactoryWithoutALauncherIsWorldSizeOne) {
  EMBER_REQUIRE_NCCL_GPUS(1);
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"))
    GTEST_SKIP() << "started by mpirun; this case is for a process started on its own";
  std::shared_ptr<Communicator> comm = distributed::make_nccl_communicator();
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->device(), kCuda0);
  Tensor t = rank_input(0, 7, kFloat32, kCuda0);
  comm->all_reduce(t, ReduceOp::Mean);
  expect_close(t.to(kCPU), rank_input(0, 7, kFloat32, kCPU), 0, 0);
  comm->barrier();
}

// Several GPUs in one process: one communicator per GPU, each used from its own thread.
TEST(NcclComm, OneProcessSeveralGpusReduces) {
  EMBER_REQUIRE_NCCL_GPUS(2);
  const int n = cuda_device_count();
  std::vector<int> devices(n);
  for (int i = 0; i < n; ++i) devices[i] = i;
  std::vector<std::shared_ptr<Communicator>> comms = distributed::make_nccl_communicators(devices);
  std::vector<std::vector<float>> sums(n), gathered(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      const Device dev(DeviceType::CUDA, r);
      Tensor t = rank_input(r, 65537, kFloat32, dev);
      comms[r]->all_reduce(t, ReduceOp::Sum);
      sums[r] = t.to(kCPU).to_vector<float>();
      Tensor out = empty({n * 7}, TensorOptions(kFloat32).device(dev));
      comms[r]->all_gather(rank_input(r, 7, kFloat32, dev), out);
      gathered[r] = out.to(kCPU).to_vector<float>();
      comms[r]->barrier();
    });
  for (std::thread& t : threads) t.join();
  std::vector<float> want_sum(65537, 0.0f);
  for (int r = 0; r < n; ++r) {
    const std::vector<float> x = rank_input(r, 65537, kFloat32, kCPU).to_vector<float>();
    for (size_t i = 0; i < x.size(); ++i) want_sum[i] += x[i];
  }
  std::vector<float> want_gathered;
  for (int r = 0; r < n; ++r)
    for (float v : rank_input(r, 7, kFloat32, kCPU).to_vector<float>()) want_gathered.push_back(v);
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(sums[r], want_sum) << "rank " << r;
    EXPECT_EQ(gathered[r], want_gathered) << "rank " << r;
  }
}

// One GPU per MPI rank (ctest's mpirun -np 2 on a machine with 2+ GPUs).
TEST(NcclComm, OneGpuPerMpiRankReduces) {
  EMBER_REQUIRE_MPI(mpi);
  EMBER_REQUIRE_NCCL_GPUS(mpi->world_size());
  std::shared_ptr<Communicator> comm = distributed::make_nccl_communicator();
  ASSERT_EQ(comm->world_size(), mpi->world_size());
  ASSERT_EQ(comm->rank(), mpi->rank());
  const Device dev = comm->device();
  Tensor t = rank_input(comm->rank(), 65537, kFloat64, dev);
  comm->all_reduce(t, ReduceOp::Mean);
  Tensor want = zeros({65537}, TensorOptions(kFloat64));
  for (int r = 0; r < comm->world_size(); ++r) want = want + rank_input(r, 65537, kFloat64, kCPU);
  expect_close(t.to(kCPU), want / static_cast<double>(comm->world_size()), 1e-15, 0);
  comm->barrier();
}

// The factory a launcher uses (a TCP store carries the id): checked before any GPU is touched.
TEST(NcclComm, UniqueIdOfTheWrongSizeIsRejected) {
#ifndef EMBER_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#endif
  expect_error([] { distributed::make_nccl_communicator(0, 1, 0, std::string(3, 'x')); },
               {"make_nccl_communicator", "3 bytes, expected 128", "make_nccl_unique_id"});
  expect_error([] { distributed::make_nccl_communicator(2, 2, 0, std::string(128, '\0')); },
               {"make_nccl_communicator", "rank 2", "world size 2"});
}

// World size 1 through the id factory: nonblocking init, a collective, the barrier, and (at the
// end of the scope) finalize then destroy, all within a timeout short enough for the GPU check.
TEST(NcclComm, UniqueIdFactoryWorldSizeOne) {
  EMBER_REQUIRE_NCCL_GPUS(1);
  const std::string id = distributed::make_nccl_unique_id();
  EXPECT_EQ(id.size(), distributed::kNcclUniqueIdBytes);
  distributed::CommunicatorOptions options;
  options.timeout = std::chrono::seconds(20);
  std::shared_ptr<Communicator> comm = distributed::make_nccl_communicator(0, 1, 0, id, options);
  EXPECT_EQ(comm->world_size(), 1);
  Tensor t = rank_input(0, 1000, kFloat32, kCuda0);
  comm->all_reduce(t, ReduceOp::Sum);
  expect_close(t.to(kCPU), rank_input(0, 1000, kFloat32, kCPU), 0, 0);
  comm->barrier();
}

// The abort path on one GPU: a world of 2 whose rank 1 never comes. The nonblocking init is polled
// until the timeout, then aborted, and the error names the rank and the timeout; the GPU is then
// free for a new communicator.
TEST(NcclComm, InitWithAPeerThatNeverComesTimesOutAndAborts) {
  EMBER_REQUIRE_NCCL_GPUS(1);
  distributed::CommunicatorOptions options;
  options.timeout = std::chrono::seconds(3);
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { distributed::make_nccl_communicator(0, 2, 0, distributed::make_nccl_unique_id(), options); },
               {"NCCL communicator init timed out on rank 0 of 2 (cuda:0) after 3000 ms", "aborted"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  std::shared_ptr<Communicator> comm = distributed::make_nccl_communicators({0}, options).front();
  Tensor t = rank_input(0, 7, kFloat32, kCuda0);
  comm->broadcast(t, 0);
  expect_close(t.to(kCPU), rank_input(0, 7, kFloat32, kCPU), 0, 0);
}

}  // namespace
}  // namespace ember::test
