// The Gloo communicator (distributed/gloo_communicator.h) with 2 and 3 ranks, each rank a thread of
// this process with its own communicator, all meeting through one store on loopback. Values are
// multiples of 0.5 small enough that every sum is exact, so results must match bit for bit.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "core/ember.h"
#include "distributed/gloo_communicator.h"
#include "distributed/store.h"
#include "tests/test_util.h"

namespace ember::test {
namespace {

using distributed::Communicator;
using distributed::CommunicatorOptions;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

#define EMBER_REQUIRE_GLOO() \
  if (!distributed::gloo_available()) GTEST_SKIP() << "ember was built without Gloo (libgloo-dev)"

double value(int rank, int64_t i) { return static_cast<double>(i % 101) * 0.5 - 3.0 * rank + (rank % 2 ? 7 : 0); }

Tensor rank_tensor(int rank, int64_t n, DType dtype, int64_t offset = 0) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = value(rank, offset + i);
  return from_vector<double>(v, {n}).to(dtype);
}

double reduce_by_hand(int world, int64_t i, ReduceOp op) {
  double acc = value(0, i);
  for (int r = 1; r < world; ++r)
    acc = op == ReduceOp::Max ? std::max(acc, value(r, i)) : op == ReduceOp::Min ? std::min(acc, value(r, i)) : acc + value(r, i);
  return op == ReduceOp::Mean ? acc / world : acc;
}

// Runs body(comm) on `world` threads, each with its own Gloo communicator; failures of any rank
// are reported with the rank.
void run_world(int world, const std::function<void(Communicator&)>& body, CommunicatorOptions options = {}) {
  distributed::TcpStoreServer server("127.0.0.1", 0);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        auto store = std::make_shared<distributed::TcpStore>("127.0.0.1", server.port());
        auto comm = distributed::make_gloo_communicator(store, r, world, options, "127.0.0.1");
        body(*comm);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

class Gloo : public ::testing::TestWithParam<int> {};

TEST_P(Gloo, AllReduceEveryOpDtypeAndSize) {
  EMBER_REQUIRE_GLOO();
  const int world = GetParam();
  run_world(world, [&](Communicator& comm) {
    EXPECT_EQ(comm.name(), "gloo");
    EXPECT_EQ(comm.world_size(), world);
    EXPECT_TRUE(comm.device().is_cpu());
    for (DType dtype : {kFloat32, kFloat64})
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min})
        for (int64_t n : {0, 1, 7, 65537}) {
          Tensor t = rank_tensor(comm.rank(), n, dtype);
          comm.all_reduce(t, op);
          const std::vector<double> got = t.to(kFloat64).to_vector<double>();
          for (int64_t i = 0; i < n; ++i) {
            double want = reduce_by_hand(world, i, op);
            if (dtype == kFloat32) want = static_cast<float>(want);
            if (got[i] != want) {
              ADD_FAILURE() << dtype_name(dtype) << " " << reduce_op_name(op) << " n=" << n << " element " << i
                            << ": got " << got[i] << " want " << want;
              break;
            }
          }
        }
    Tensor ints = from_vector<int64_t>({comm.rank() + 1, 10 * comm.rank()}, {2});
    comm.all_reduce(ints, ReduceOp::Sum);
    EXPECT_EQ(ints.to_vector<int64_t>(), (std::vector<int64_t>{world * (world + 1) / 2, 10 * world * (world - 1) / 2}));
  });
}

TEST_P(Gloo, BroadcastAllGatherReduceScatterBarrier) {
  EMBER_REQUIRE_GLOO();
  const int world = GetParam();
  run_world(world, [&](Communicator& comm) {
    const int r = comm.rank();
    for (int root = 0; root < world; ++root) {
      Tensor t = rank_tensor(r, 33, kFloat32);
      comm.broadcast(t, root);
      EXPECT_EQ(t.to_vector<float>(), rank_tensor(root, 33, kFloat32).to_vector<float>()) << "root " << root;
    }
    Tensor out = empty({5 * world}, TensorOptions(kFloat64));
    comm.all_gather(rank_tensor(r, 5, kFloat64), out);
    const std::vector<double> gathered = out.to_vector<double>();
    for (int q = 0; q < world; ++q)
      for (int i = 0; i < 5; ++i) EXPECT_EQ(gathered[q * 5 + i], value(q, i));
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
      Tensor in = rank_tensor(r, 4 * world, kFloat64);
      Tensor slice = empty({4}, TensorOptions(kFloat64));
      comm.reduce_scatter(in, slice, op);
      const std::vector<double> got = slice.to_vector<double>();
      for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], reduce_by_hand(world, r * 4 + i, op)) << reduce_op_name(op);
    }
    // The barrier holds every rank until the slowest (rank 0 sleeps) arrives.
    const auto start = Clock::now();
    if (r == 0) std::this_thread::sleep_for(300ms);
    comm.barrier();
    EXPECT_GE(Clock::now() - start, 250ms);
  });
}

TEST_P(Gloo, AsyncWorkCompletesInOrderAndWaitsInAnyOrder) {
  EMBER_REQUIRE_GLOO();
  const int world = GetParam();
  run_world(world, [&](Communicator& comm) {
    std::vector<Tensor> ts;
    std::vector<distributed::WorkHandle> works;
    for (int k = 0; k < 6; ++k) {
      ts.push_back(full({1000}, static_cast<double>(comm.rank() + k)));
      works.push_back(comm.all_reduce_async(ts.back(), ReduceOp::Sum));
    }
    for (int k = 5; k >= 0; --k) {
      works[k]->wait();
      EXPECT_TRUE(works[k]->is_completed());
      EXPECT_EQ(ts[k].to_vector<float>()[999], static_cast<float>(world * (world - 1) / 2 + world * k));
    }
  });
}

// Once wait() returns, the communicator holds no reference to the tensor: dropping the caller's
// last reference frees it at once. (The worker used to release its closure after signalling done,
// so a rank leaving main() right after wait() raced it: UBSan saw a tensor freed through an
// allocator already destroyed.)
TEST_P(Gloo, WaitedWorkHoldsNoReferenceToItsTensor) {
  EMBER_REQUIRE_GLOO();
  const int world = GetParam();
  run_world(world, [&](Communicator& comm) {
    for (int round = 0; round < 50; ++round) {
      std::vector<float> data(64, 1.0f);
      std::atomic<bool> freed{false};
      Tensor t = from_blob(data.data(), {64}, kFloat32, kCPU, [&](void*) { freed = true; });
      auto work = comm.all_reduce_async(t, ReduceOp::Sum);
      work->wait();
      t = Tensor();
      ASSERT_TRUE(freed.load()) << "round " << round << ": the worker still held the tensor after wait()";
      EXPECT_EQ(data[0], static_cast<float>(world));
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, Gloo, ::testing::Values(2, 3), [](const auto& info) {
  return std::to_string(info.param) + "ranks";
});

TEST(GlooErrors, BadArgumentsNameTheOp) {
  EMBER_REQUIRE_GLOO();
  run_world(2, [&](Communicator& comm) {
    expect_error([&] { comm.all_reduce(ones({2, 3}).transpose(0, 1), ReduceOp::Sum); },
                 {"all_reduce(sum)", "must be contiguous"});
    expect_error([&] { comm.all_reduce(ones({2}), ReduceOp::ArgMax); }, {"not a collective reduction"});
    expect_error([&] { comm.all_reduce(ones({2}, TensorOptions(kInt64)), ReduceOp::Mean); },
                 {"mean needs a floating-point tensor"});
    expect_error([&] { comm.broadcast(ones({2}), 2); }, {"broadcast: root 2 is not a rank"});
    expect_error([&] { comm.all_gather(ones({2}), empty({5})); }, {"all_gather: out has 5 elements"});
    comm.barrier();  // the communicator is fine after argument errors
  });
}

TEST(GlooErrors, APeerThatNeverCallsTimesOutNamingTheOpAndRank) {
  EMBER_REQUIRE_GLOO();
  CommunicatorOptions options;
  options.timeout = 1000ms;
  run_world(2, [&](Communicator& comm) {
    if (comm.rank() == 1) {
      std::this_thread::sleep_for(2500ms);  // never calls, but stays connected
      return;
    }
    Tensor t = ones({4});
    const auto start = Clock::now();
    expect_error([&] { comm.all_reduce(t); }, {"all_reduce(sum) timed out on rank 0 after 1000 ms"});
    EXPECT_LT(Clock::now() - start, 8s);
    expect_error([&] { comm.all_reduce(t); }, {"unusable after an earlier failure"});
  }, options);
}

TEST(GlooErrors, AMissingRankFailsStartUpWithinTheTimeout) {
  EMBER_REQUIRE_GLOO();
  distributed::TcpStoreServer server("127.0.0.1", 0);
  distributed::StoreOptions so;
  so.timeout = 1000ms;
  auto store = std::make_shared<distributed::TcpStore>("127.0.0.1", server.port(), so);
  CommunicatorOptions options;
  options.timeout = 1000ms;
  const auto start = Clock::now();
  expect_error([&] { distributed::make_gloo_communicator(store, 0, 2, options, "127.0.0.1"); },
               {"Gloo start-up on rank 0 of 2", "store at 127.0.0.1:"});
  EXPECT_LT(Clock::now() - start, 8s);
}

}  // namespace
}  // namespace ember::test
