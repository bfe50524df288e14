// Shared by the DDP test files of ember_dist_tests: the DDP_TEST macro (one body, run on a fake
// 2-thread world and on the MPI world) and small helpers (a seeded MLP, a global batch, comparisons).
// The bodies run on every rank and must reach the same collectives in the same order on all of
// them, so they use EXPECT_* (never ASSERT_*, which would return early and leave the other ranks
// waiting) before any later collective.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "core/ember.h"
#include "nn/nn.h"
#include "tests/distributed/dist_test_util.h"
#include "tests/distributed/fake_communicator.h"

namespace ember::test::ddp {

using distributed::Communicator;
namespace F = ember::nn::functional;

// The job's MPI communicator (main.cpp owns it), as the shared_ptr DDP takes; null without MPI.
inline std::shared_ptr<Communicator> mpi_world() {
  Communicator* comm = ::ember::test::mpi_comm();
  if (comm == nullptr) return nullptr;
  return std::shared_ptr<Communicator>(comm, [](Communicator*) {});
}

// One test body, two worlds: DDPFake.Name on 2 threads of this process, DDPMpi.Name on the MPI world
// this binary was launched in (skipped without MPI).
#define DDP_TEST(Name)                                                                     \
  void Name##_body(std::shared_ptr<::ember::distributed::Communicator> comm);              \
  TEST(DDPFake, Name) { ::ember::testing::run_fake_world(2, Name##_body); }                \
  TEST(DDPMpi, Name) {                                                                     \
    auto comm = ::ember::test::ddp::mpi_world();                                           \
    if (!comm) GTEST_SKIP() << "ember was built without MPI";                              \
    Name##_body(comm);                                                                     \
  }                                                                                        \
  void Name##_body(std::shared_ptr<::ember::distributed::Communicator> comm)

// 6 -> 16 -> 16 -> 3. Parameters, in registration order: 0 w1, 1 b1, 2 w2, 3 b2, 4 w3, 5 b3.
inline std::shared_ptr<nn::Sequential> make_mlp(uint64_t seed) {
  Generator g(seed);
  return std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 16, true, &g), std::make_shared<nn::ReLU>(),
                                          std::make_shared<nn::Linear>(16, 16, true, &g), std::make_shared<nn::ReLU>(),
                                          std::make_shared<nn::Linear>(16, 3, true, &g));
}

struct Data {
  Tensor x, y;
  Data rows(int64_t start, int64_t n) const { return {x.narrow(0, start, n), y.narrow(0, start, n)}; }
};
// The global batch of step `step` (every rank makes the same one; rank r uses its r-th slice).
inline Data global_batch(int step, int64_t n) {
  Generator g(1000 + step);
  return {randn({n, 6}, {}, &g), randint(0, 3, {n}, TensorOptions(kInt64), &g)};
}

inline Tensor loss_of(nn::Module& m, const Data& d) { return F::cross_entropy(m.forward(d.x), d.y); }

inline std::vector<float> flatten_all(const std::vector<Tensor>& ts) {
  std::vector<float> out;
  for (const Tensor& t : ts) {
    std::vector<float> v = t.contiguous().to_vector<float>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}
inline std::vector<Tensor> grads_of(const nn::Module& m) {
  std::vector<Tensor> out;
  for (const Tensor& p : m.parameters()) out.push_back(p.grad().defined() ? p.grad() : zeros_like(p));
  return out;
}
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::abs(double(a[i]) - double(b[i])));
  return d;
}

// All ranks hold bit-identical `v` (all_gather, then compare every rank's copy with rank 0's).
inline bool same_on_all_ranks(Communicator& comm, const std::vector<float>& v) {
  const auto n = static_cast<int64_t>(v.size());
  Tensor in = from_vector<float>(v, {n});
  Tensor out = empty({comm.world_size() * n});
  comm.all_gather(in, out);
  std::vector<float> all = out.to_vector<float>();
  for (int r = 1; r < comm.world_size(); ++r)
    if (std::memcmp(all.data(), all.data() + r * n, n * sizeof(float)) != 0) return false;
  return true;
}

}  // namespace ember::test::ddp
