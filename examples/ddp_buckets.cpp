// DistributedDataParallel from the inside: how parameters fall into buckets, that every replica
// starts from rank 0's weights, and that after backward each .grad is the average of the ranks'
// local gradients. docs/internals/06-data-parallel.md quotes the regions between the `// [name]`
// markers (scripts/check_docs.py keeps the quotes identical). ctest runs it as example.ddp_buckets:
// as 2 MPI ranks when ember is built with MPI, otherwise as a world of one.
//
//   bash tests/distributed/mpirun_local.sh 2 build/examples/ember_ddp_buckets
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/ember.h"
#include "distributed/ddp.h"
#include "distributed/mpi_communicator.h"
#include "examples/scaling/local_communicator.h"
#include "nn/nn.h"

using namespace ember;

namespace {

int g_failures = 0;

void expect(int rank, const std::string& what, bool ok) {
  std::printf("rank %d: %-62s %s\n", rank, what.c_str(), ok ? "yes" : "NO (FAILED)");
  if (!ok) ++g_failures;
}

std::shared_ptr<distributed::Communicator> make_communicator() {
  if (distributed::MpiEnvironment::available()) return distributed::make_mpi_communicator();
  return std::make_shared<examples::LocalCommunicator>(kCPU);
}

int run(distributed::Communicator& comm, std::shared_ptr<distributed::Communicator> comm_ptr) {
  const int rank = comm.rank(), world = comm.world_size();

  // [buckets]
  // Each rank seeds differently, so each builds different initial weights.
  manual_seed(100 + rank);
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(8, 16), std::make_shared<nn::ReLU>(),
                                                std::make_shared<nn::Linear>(16, 4));
  // parameters(): 0 = 0.weight [16, 8] (512 B), 1 = 0.bias (64 B), 2 = 2.weight [4, 16] (256 B),
  // 3 = 2.bias (16 B). A bucket closes once it holds at least the cap: 256 bytes here.
  auto ddp = std::make_shared<nn::DistributedDataParallel>(model, comm_ptr,
                                                          nn::DDPOptions().bucket_cap(256.0 / (1024 * 1024)));
  // Buckets are filled in reverse registration order, the order backward produces gradients.
  const std::vector<std::vector<int64_t>> expected = {{3, 2}, {1, 0}};
  expect(rank, "buckets are {3, 2} then {1, 0}", ddp->bucket_parameters() == expected);
  // [/buckets]

  // [broadcast]
  // Construction broadcast rank 0's parameters: every replica now starts from the same weights.
  Tensor w = ddp->parameters()[0].detach().clone();
  Tensor w_rank0 = w.clone();
  comm.broadcast(w_rank0, 0);
  expect(rank, "0.weight equals rank 0's after construction", allclose(w, w_rank0, 0, 0));
  // [/broadcast]

  // [average]
  // Each rank its own batch. First the local gradient alone: no_sync() skips the communication.
  manual_seed(200 + rank);
  Tensor x = randn({32, 8});
  Tensor y = randint(0, 4, {32});
  {
    auto guard = ddp->no_sync();
    nn::functional::cross_entropy(ddp->forward(x), y).backward();
  }
  Tensor local = ddp->parameters()[0].grad().clone();
  // Then a synced backward on the same batch: the hooks fill the buckets and all-reduce them.
  ddp->zero_grad();
  nn::functional::cross_entropy(ddp->forward(x), y).backward();
  Tensor averaged = ddp->parameters()[0].grad();
  comm.all_reduce(local);  // sum of the local gradients over the ranks
  expect(rank, "0.weight.grad == mean over ranks of the local gradients", allclose(averaged, local / world, 1e-5, 1e-6));
  expect(rank, "one all-reduce per bucket in the synced step",
         ddp->stats().last_step_reductions == std::vector<int>{1, 1});
  // [/average]

  std::printf("rank %d of %d (%s): %s\n", rank, world, comm.name().c_str(), g_failures ? "FAILED" : "ok");
  return g_failures == 0 ? 0 : 1;
}

}  // namespace

int main() {
  auto comm = make_communicator();
  return distributed::run_guarded(*comm, [&] { return run(*comm, comm); });
}
