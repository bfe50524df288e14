// examples/ddp_mnist: data-parallel MNIST training with DistributedDataParallel, one process per
// rank (per GPU with --device cuda).
//
//   bash scripts/fetch_mnist.sh                       # once
//   build/bin/ember-run --nproc-per-node 2 build/examples/ember_ddp_mnist --epochs 1   # Gloo, no MPI
//   mpirun -np 2 build/examples/ember_ddp_mnist --device cpu --epochs 1                # MPI
//   srun -n 8 build/examples/ember_ddp_mnist --device cuda       # Slurm; GPU = local rank (or --device cuda:K)
//
// --init auto|env|slurm|mpi says how the job was launched (auto reads the launcher's variables:
// RANK/WORLD_SIZE from ember-run or torchrun, SLURM_* from srun, OMPI_*/PMI_* from mpirun);
// --backend auto|gloo|mpi|nccl picks the communicator (auto: nccl for CUDA, gloo for the CPU).
// A process that the launcher counts as one of several ranks never trains alone: a world size
// that differs from the launcher's is an error.
//
// Each rank reads its own shard of the training set (DistributedSampler), so one epoch is
// 60000 / world_size samples per rank; --batch-size is per rank (the global batch is world_size
// times larger, and --lr is not rescaled for it). Rank 0 prints progress and the final test
// accuracy; the test set is evaluated in shards too and the counts summed over the ranks.
// Started by hand with no launcher variables it trains as a world of one.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/ember.h"
#include "data/data.h"
#include "data/distributed_sampler.h"
#include "distributed/ddp.h"
#include "distributed/handshake.h"
#include "distributed/mpi_communicator.h"
#include "distributed/nccl_communicator.h"
#include "distributed/gloo_communicator.h"
#include "distributed/process_group.h"
#include "examples/scaling/local_communicator.h"
#include "nn/checkpoint.h"
#include "nn/models/models.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace ember;
namespace F = ember::nn::functional;

namespace {

struct Config {
  std::string model = "cnn";
  int epochs = 1;
  int64_t batch_size = 64;  // per rank
  double lr = 0;            // 0: the single-process example's default for the model
  std::string device = "cpu";  // cpu, cuda (GPU = local rank modulo the visible ones) or cuda:K
  std::string backend = "auto";
  std::string init = "auto";
  int workers = 1;
  uint64_t seed = 1;
  int threads = 0;  // 0: leave OpenMP's default (mpirun_local.sh sets OMP_NUM_THREADS=1)
  std::string data = "data/mnist";
  int64_t limit = 0;  // train on the first N samples only
  double bucket_cap_mb = 25;
  std::string checkpoint;
};

// Rank r's share of an evaluation set: r, r + world, r + 2 world, ... (no padding, so the
// counts summed over the ranks are exact).
class EvalShard final : public data::Sampler {
 public:
  EvalShard(int64_t n, int world, int rank) : n_(n), world_(world), rank_(rank) {}
  int64_t size() const override { return n_ > rank_ ? (n_ - rank_ + world_ - 1) / world_ : 0; }
  std::vector<int64_t> indices(int64_t) const override {
    std::vector<int64_t> out;
    for (int64_t i = rank_; i < n_; i += world_) out.push_back(i);
    return out;
  }

 private:
  int64_t n_;
  int world_, rank_;
};

// The flags every rank must share: with another --device a rank would make another kind of
// communicator; with other --epochs it would stop early and leave the others waiting in an
// all-reduce; with another --seed the ranks' shuffles (and so their shards) would overlap.
// (--model is checked by DDP's own start-up handshake, --limit and --batch-size by the steps check.)
void check_same_flags(distributed::Communicator& comm, const Config& c) {
  int64_t seed_bits;
  std::memcpy(&seed_bits, &c.seed, sizeof seed_bits);
  distributed::check_same_values_on_all_ranks(
      comm, {Device(c.device).is_cuda(), c.epochs, seed_bits}, {"--device (0 = cpu, 1 = cuda)", "--epochs", "--seed"},
      "ddp_mnist start-up", " (every rank must be started with the same flags)");
}

// The communicator for this launch (distributed/process_group.h). Under mpirun the flags are
// checked over the MPI communicator first, so a rank started with --device cuda among cpu ranks
// is an error instead of two kinds of start-up waiting for each other; under ember-run, torchrun
// or srun the store compares backend and device kind before any backend starts.
// The one world without any backend (no Gloo, no MPI, started by hand): a local communicator.
std::shared_ptr<distributed::Communicator> make_communicator(const Config& c, distributed::ProcessGroup& pg) {
  const Device device(c.device);
  distributed::ProcessGroupOptions o;
  o.backend = c.backend;
  o.init = distributed::parse_init_method(c.init);
  o.cuda = device.is_cuda();
  if (device.is_cuda() && c.device.find(':') != std::string::npos) o.cuda_index = device.index;
  o.rendezvous = distributed::rendezvous_options_from_env();
  o.check_agreement = [&c](distributed::Communicator& comm) { check_same_flags(comm, c); };
  const distributed::LaunchInfo launch = distributed::detect_launch(o.init);
  if (launch.method == distributed::InitMethod::Single && !o.cuda && c.backend == "auto" &&
      !distributed::gloo_available() && !distributed::MpiEnvironment::available())
    return std::make_shared<examples::LocalCommunicator>(kCPU);
  pg = distributed::init_process_group(o);
  return pg.comm;
}

// Sums `values` (on the communicator's device) over the ranks; returns them on the host.
std::vector<double> sum_over_ranks(distributed::Communicator& comm, const std::vector<double>& values) {
  Tensor t = from_vector<double>(values).to(comm.device());
  comm.all_reduce(t, ReduceOp::Sum);
  return t.to(kCPU).to_vector<double>();
}

// Test accuracy over the whole test set: each rank evaluates its shard with the plain model (no
// DDP forward, so no collectives while shard sizes differ), then the counts are summed.
double evaluate(distributed::Communicator& comm, nn::Module& model, std::shared_ptr<const data::Dataset> test) {
  NoGradGuard no_grad;
  model.eval();
  auto shard = std::make_shared<EvalShard>(test->size(), comm.world_size(), comm.rank());
  data::DataLoader loader(test, data::DataLoaderOptions().batch_size(1000).sampler(shard));
  Tensor correct = zeros({}, TensorOptions(kInt64).device(comm.device()));
  for (auto& batch : loader) {
    Tensor x = batch.data.to(comm.device()), y = batch.target.to(comm.device());
    correct = correct + eq(argmax(model.forward(x), 1), y).to(kInt64).sum();
  }
  model.train();
  const std::vector<double> total = sum_over_ranks(comm, {correct.item(), static_cast<double>(shard->size())});
  return total[0] / total[1];
}

int train(const Config& c, distributed::Communicator& comm, std::shared_ptr<distributed::Communicator> comm_ptr) {
  const int rank = comm.rank(), world = comm.world_size();
  const Device device = comm.device();
  auto train_set = std::make_shared<data::MNIST>(c.data, /*train=*/true);
  train_set->normalize({data::MNIST::kMean}, {data::MNIST::kStd});
  auto test_set = std::make_shared<data::MNIST>(c.data, /*train=*/false);
  test_set->normalize({data::MNIST::kMean}, {data::MNIST::kStd});
  std::shared_ptr<const data::Dataset> train_data = train_set;
  if (c.limit > 0 && c.limit < train_set->size()) train_data = std::make_shared<data::Prefix>(train_set, c.limit);

  manual_seed(c.seed);  // the same start everywhere; DDP broadcasts rank 0's anyway
  auto model = nn::models::create(c.model);
  model->to(device);
  auto ddp =
      std::make_shared<nn::DistributedDataParallel>(model, comm_ptr, nn::DDPOptions().bucket_cap(c.bucket_cap_mb));
  const double lr = c.lr > 0 ? c.lr : c.model == "mlp" ? 0.05 : c.model == "lenet" ? 0.01 : 1e-3;
  std::unique_ptr<optim::Optimizer> optimizer;
  if (c.model == "cnn")
    optimizer = std::make_unique<optim::Adam>(ddp->parameters(), optim::AdamOptions(lr));
  else
    optimizer = std::make_unique<optim::SGD>(ddp->parameters(), optim::SGDOptions(lr).momentum(0.9));

  auto sampler = std::make_shared<data::DistributedSampler>(train_data->size(), world, rank, true, c.seed);
  data::DataLoader loader(train_data, data::DataLoaderOptions()
                                          .batch_size(c.batch_size)
                                          .sampler(sampler)
                                          .seed(c.seed)
                                          .num_workers(c.workers)
                                          .pin_memory(device.is_cuda()));
  // Each rank sized its shard from its own data: a rank with fewer steps would leave the others
  // waiting in an all-reduce at the end of the epoch.
  ddp->check_steps_per_epoch(loader.num_batches());
  if (rank == 0)
    spdlog::info(
        "{} ranks ({} on {}), model {} ({} parameters, {} buckets), {} samples per rank per epoch, "
        "batch {} per rank ({} global), lr {}",
        world, comm.name(), device.str(), c.model, model->num_parameters(), ddp->num_buckets(), sampler->size(),
        c.batch_size, c.batch_size * world, lr);

  double accuracy = 0;
  for (int epoch = 0; epoch < c.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    Tensor loss_sum = zeros({}, TensorOptions(kFloat32).device(device));
    Tensor correct = zeros({}, TensorOptions(kInt64).device(device));
    int64_t seen = 0, step = 0;
    const int64_t steps = loader.num_batches();
    for (auto& batch : loader) {
      Tensor x = batch.data.to(device), y = batch.target.to(device);
      ddp->zero_grad();
      Tensor logits = ddp->forward(x);
      Tensor loss = F::cross_entropy(logits, y);
      loss.backward();  // returns with the gradients averaged over the ranks
      optimizer->step();
      {
        NoGradGuard no_grad;
        loss_sum = loss_sum + loss.detach() * static_cast<double>(batch.size());
        correct = correct + eq(argmax(logits.detach(), 1), y).to(kInt64).sum();
      }
      seen += batch.size();
      if (rank == 0 && (++step % 100 == 0 || step == steps))
        spdlog::info("epoch {} step {}/{}: rank 0 loss {:.4f} acc {:.2f}%", epoch + 1, step, steps,
                     loss_sum.item() / seen, 100 * correct.item() / seen);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<double> totals =
        sum_over_ranks(comm, {loss_sum.item(), correct.item(), static_cast<double>(seen)});
    accuracy = evaluate(comm, *model, test_set);
    if (rank == 0)
      spdlog::info(
          "epoch {}: train loss {:.4f} acc {:.2f}% | test acc {:.2f}% | {:.2f} s, {:.0f} samples/s over {} "
          "ranks | rank 0 waited {:.2f} s on all-reduces",
          epoch + 1, totals[0] / totals[2], 100 * totals[1] / totals[2], 100 * accuracy, seconds, totals[2] / seconds,
          world, ddp->stats().total_comm_wait_seconds);
  }
  if (!c.checkpoint.empty() && rank == 0)
    nn::save_safetensors(c.checkpoint, model->state_dict());  // the plain model's names
  if (rank == 0) std::printf("test accuracy: %.2f%%\n", 100 * accuracy);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Data-parallel MNIST training with ember (launch with ember-run --nproc-per-node N, mpirun -np N "
               "or srun -n N)"};
  app.add_option("--model", c.model, "mlp | lenet | cnn")->check(CLI::IsMember({"mlp", "lenet", "cnn"}));
  app.add_option("--epochs", c.epochs, "epochs to train")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", c.batch_size, "batch size per rank")->check(CLI::PositiveNumber);
  app.add_option("--lr", c.lr, "learning rate (default: mlp 0.05, lenet 0.01, cnn 0.001)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", c.device,
                 "cpu, or cuda (NCCL; GPU = local rank modulo the visible GPUs), or cuda:K (GPU K)")
      ->check([](const std::string& d) -> std::string {
        if (d == "cpu" || d == "cuda") return "";
        if (d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.find_first_not_of("0123456789", 5) == std::string::npos)
          return "";
        return "must be cpu, cuda or cuda:K";
      });
  app.add_option("--backend", c.backend, "auto (nccl for cuda, gloo for cpu), gloo, mpi (under mpirun) or nccl")
      ->check(CLI::IsMember({"auto", "gloo", "mpi", "nccl"}));
  app.add_option("--init", c.init,
                 "how the job was launched: auto (from the environment), env (ember-run, torchrun), slurm (srun) "
                 "or mpi (mpirun)")
      ->check(CLI::IsMember({"auto", "env", "slurm", "mpi"}));
  app.add_option("--workers", c.workers, "data loader worker threads per rank")->check(CLI::NonNegativeNumber);
  app.add_option("--seed", c.seed, "seeds initialisation and shuffling");
  app.add_option("--threads", c.threads, "CPU threads per rank for kernels")->check(CLI::NonNegativeNumber);
  app.add_option("--data", c.data, "folder with the four MNIST IDX files");
  app.add_option("--limit", c.limit, "train on the first N training samples only")->check(CLI::NonNegativeNumber);
  app.add_option("--bucket-cap-mb", c.bucket_cap_mb, "DDP gradient bucket size in MiB")->check(CLI::NonNegativeNumber);
  app.add_option("--checkpoint", c.checkpoint, "rank 0 writes the trained model here (.safetensors)");
  CLI11_PARSE(app, argc, argv);

  // MPI starts only for an MPI launch (mpirun's variables, or --init mpi / --backend mpi), so that
  // a job started by ember-run or srun never depends on it.
  const distributed::InitMethod init = distributed::parse_init_method(c.init);
  const bool mpi_launch =
      init == distributed::InitMethod::Mpi || c.backend == "mpi" ||
      (init == distributed::InitMethod::Auto && distributed::detect_launch(init).method == distributed::InitMethod::Mpi);
  if (mpi_launch && distributed::MpiEnvironment::available()) distributed::MpiEnvironment::init(&argc, &argv);
  // Until the communicator exists, a failing rank aborts the whole job (other ranks may already be
  // waiting in the communicator's start-up for it) with "rank R failed during start-up: <why>"
  // (under ember-run: it exits 1, and ember-run stops the other ranks).
  distributed::ProcessGroup pg;  // holds rank 0's store server for the whole run
  std::shared_ptr<distributed::Communicator> comm = distributed::run_guarded_startup([&] {
    if (c.threads > 0) set_num_threads(c.threads);
    for (const char* f : {"train-images-idx3-ubyte", "t10k-images-idx3-ubyte"})
      EMBER_CHECK(std::filesystem::exists(std::filesystem::path(c.data) / f), "MNIST not found in ", c.data,
                  ": run bash scripts/fetch_mnist.sh (or pass --data DIR)");
    return make_communicator(c, pg);
  });
  // A rank that throws takes the whole job down instead of leaving the others in a collective.
  return distributed::run_guarded(*comm, [&] { return train(c, *comm, comm); });
}
