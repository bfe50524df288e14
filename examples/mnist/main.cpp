// examples/mnist: train an MLP, LeNet or small CNN on real MNIST, the way one would with libtorch.
//
//   bash scripts/fetch_mnist.sh                       # once: the four IDX files into data/mnist
//   build/examples/ember_mnist --model cnn --epochs 1
//
// Shows a progress bar on a terminal (plain log lines otherwise), ends with the test accuracy,
// and can write per-epoch metrics (--metrics out.csv) and checkpoints (--checkpoint) that
// --resume continues from exactly: the loader's order is keyed by (seed, epoch), and the model and
// optimizer state come back bit for bit.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/ember.h"
#include "data/data.h"
#include "examples/mnist/models.h"
#include "examples/mnist/progress.h"
#include "nn/checkpoint.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace ember;
namespace F = ember::nn::functional;

namespace {

struct Config {
  std::string model = "cnn";
  int epochs = 1;
  int64_t batch_size = 0;  // 0: the benchmark's batch size for the model
  double lr = 0;           // 0: the benchmark's learning rate for the model
  std::string device = "cpu";
  int workers = 1;
  uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  std::string data = "data/mnist";
  std::string checkpoint, resume, metrics;
  int64_t limit = 0;  // train on the first N samples only (smoke tests)
  bool json = false;
};

// The benchmark settings (bench/mnist_pytorch.py uses the same): batch size, learning rate, optimizer.
std::unique_ptr<optim::Optimizer> make_optimizer(const Config& c, const std::vector<Tensor>& params) {
  if (c.model == "cnn") return std::make_unique<optim::Adam>(params, optim::AdamOptions(c.lr));
  return std::make_unique<optim::SGD>(params, optim::SGDOptions(c.lr).momentum(0.9));
}

void apply_defaults(Config& c) {
  if (c.batch_size == 0) c.batch_size = c.model == "mlp" ? 128 : 64;
  if (c.lr == 0) c.lr = c.model == "mlp" ? 0.05 : c.model == "lenet" ? 0.01 : 1e-3;
}

void check_data(const std::string& root) {
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"})
    if (!std::filesystem::exists(std::filesystem::path(root) / f))
      EMBER_FAIL("MNIST file ", (std::filesystem::path(root) / f).string(),
                 " not found. Fetch the data set with: bash scripts/fetch_mnist.sh  (or pass --data DIR)");
}

// Test-set accuracy and mean loss, without recording a graph.
std::pair<double, double> evaluate(nn::Module& model, const data::Dataset& test, Device device) {
  NoGradGuard no_grad;
  model.eval();
  data::DataLoader loader(test, data::DataLoaderOptions().batch_size(1000));
  Tensor loss_sum = zeros({}, TensorOptions(kFloat32).device(device)), correct = zeros({}, TensorOptions(kInt64).device(device));
  for (auto& batch : loader) {
    Tensor x = batch.data.to(device), y = batch.target.to(device);
    Tensor logits = model.forward(x);
    loss_sum = loss_sum + F::cross_entropy(logits, y, {.reduction = nn::Reduction::Sum});
    correct = correct + eq(argmax(logits, 1), y).to(kInt64).sum();
  }
  model.train();
  const double n = static_cast<double>(test.size());
  return {loss_sum.item() / n, correct.item() / n};
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Train a network on MNIST with ember"};
  app.add_option("--model", c.model, "mlp | lenet | cnn")->check(CLI::IsMember({"mlp", "lenet", "cnn"}));
  app.add_option("--epochs", c.epochs, "epochs to train")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", c.batch_size, "batch size (default: mlp 128, lenet/cnn 64)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--lr", c.lr, "learning rate (default: mlp 0.05, lenet 0.01, cnn 0.001)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", c.device, "cpu, cuda or cuda:N");
  app.add_option("--workers", c.workers, "data loader worker threads (0: load on the training thread)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", c.seed, "seeds initialisation and shuffling");
  app.add_option("--threads", c.threads, "CPU threads for kernels (default: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--data", c.data, "folder with the four MNIST IDX files");
  app.add_option("--checkpoint", c.checkpoint, "write model+optimizer state here after every epoch (.safetensors)");
  app.add_option("--resume", c.resume, "continue from this checkpoint");
  app.add_option("--metrics", c.metrics, "append per-epoch metrics to this CSV file");
  app.add_option("--limit", c.limit, "train on the first N training samples only")->check(CLI::NonNegativeNumber);
  app.add_flag("--json", c.json, "print a one-line JSON summary at the end (used by bench/)");
  CLI11_PARSE(app, argc, argv);
  apply_defaults(c);

  try {
    if (c.threads > 0) set_num_threads(c.threads);
    Device device(c.device);
    check_data(c.data);
    manual_seed(c.seed);

    auto train_set = std::make_shared<data::MNIST>(c.data, /*train=*/true);
    train_set->normalize({data::MNIST::kMean}, {data::MNIST::kStd});
    data::MNIST test_set(c.data, /*train=*/false);
    test_set.normalize({data::MNIST::kMean}, {data::MNIST::kStd});
    std::shared_ptr<const data::Dataset> train_data = train_set;
    if (c.limit > 0 && c.limit < train_set->size()) train_data = std::make_shared<data::Prefix>(train_set, c.limit);

    auto model = examples::make_mnist_model(c.model);
    model->to(device);
    auto optimizer = make_optimizer(c, model->parameters());
    data::DataLoader loader(train_data, data::DataLoaderOptions()
                                            .batch_size(c.batch_size)
                                            .shuffle()
                                            .seed(c.seed)
                                            .num_workers(c.workers)
                                            .pin_memory(device.is_cuda()));

    int start_epoch = 0;
    if (!c.resume.empty()) {
      auto ckpt = nn::load_safetensors(c.resume);
      optim::StateDict all{ckpt.tensors, ckpt.metadata};
      EMBER_CHECK(all.metadata.count("model") && all.metadata.at("model") == c.model, "--resume: ", c.resume,
                  " holds a '", all.metadata.count("model") ? all.metadata.at("model") : "?", "' model, not '",
                  c.model, "'");
      model->load_state_dict(nn::NamedTensors(all.sub("model").tensors));
      optimizer->load_state_dict(all.sub("optimizer"));
      start_epoch = std::stoi(all.metadata.at("epoch"));
      spdlog::info("resumed from {} after epoch {}", c.resume, start_epoch);
    }
    loader.set_epoch(start_epoch);
    spdlog::info("model {} ({} parameters), {} training samples, batch {}, device {}, {} threads", c.model,
                 model->num_parameters(), train_data->size(), c.batch_size, device.str(), get_num_threads());

    double last_epoch_seconds = 0, test_acc = 0, test_loss = 0, train_loss = 0, train_acc = 0;
    double launches_per_step = 0;  // kernels + library calls per training step, last epoch (CUDA; 0 on CPU)
    for (int epoch = start_epoch; epoch < c.epochs; ++epoch) {
      examples::Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(c.epochs),
                                  train_data->size());
      // Running sums stay on the device; they are read only when the display refreshes.
      Tensor loss_sum = zeros({}, TensorOptions(kFloat32).device(device));
      Tensor correct = zeros({}, TensorOptions(kInt64).device(device));
      int64_t seen = 0, steps = 0;
      const uint64_t launches_before = backend(device).kernel_launches();
      for (auto& batch : loader) {
        Tensor x = batch.data.to(device), y = batch.target.to(device);
        optimizer->zero_grad();
        Tensor logits = model->forward(x);
        Tensor loss = F::cross_entropy(logits, y);
        loss.backward();
        optimizer->step();
        {
          NoGradGuard no_grad;
          loss_sum = loss_sum + loss.detach() * static_cast<double>(batch.size());
          correct = correct + eq(argmax(logits.detach(), 1), y).to(kInt64).sum();
        }
        seen += batch.size();
        ++steps;
        // Reading the sums waits for the device; due() allows it ~10 times an epoch (or every
        // 100 ms on a terminal), so the host stays ahead of the GPU in between.
        if (progress.due(seen)) progress.update(seen, loss_sum.item() / seen, correct.item() / seen, true);
      }
      train_loss = loss_sum.item() / seen;
      train_acc = correct.item() / static_cast<double>(seen);  // item() waited for the device: the time is complete
      last_epoch_seconds = progress.elapsed_seconds();
      // Counts everything queued per step: forward, backward, optimizer, the running loss/accuracy sums.
      launches_per_step = static_cast<double>(backend(device).kernel_launches() - launches_before) /
                          static_cast<double>(std::max<int64_t>(steps, 1));
      progress.finish(train_loss, train_acc);
      std::tie(test_loss, test_acc) = evaluate(*model, test_set, device);
      spdlog::info("epoch {}: train loss {:.4f} acc {:.2f}% | test loss {:.4f} acc {:.2f}% | {:.2f} s, {:.0f} samples/s",
                   epoch + 1, train_loss, 100 * train_acc, test_loss, 100 * test_acc, last_epoch_seconds,
                   seen / last_epoch_seconds);

      if (!c.metrics.empty()) {
        bool fresh = !std::filesystem::exists(c.metrics);
        std::ofstream csv(c.metrics, std::ios::app);
        EMBER_CHECK(csv.good(), "--metrics: cannot open ", c.metrics, " for writing");
        if (fresh) csv << "epoch,train_loss,train_accuracy,test_loss,test_accuracy,epoch_seconds,samples_per_second\n";
        csv << epoch + 1 << ',' << train_loss << ',' << train_acc << ',' << test_loss << ',' << test_acc << ','
            << last_epoch_seconds << ',' << seen / last_epoch_seconds << '\n';
      }
      if (!c.checkpoint.empty()) {
        optim::StateDict all;
        all.merge("model", optim::StateDict{nn::TensorMap(model->state_dict()), {}});
        all.merge("optimizer", optimizer->state_dict());
        all.metadata["epoch"] = std::to_string(epoch + 1);
        all.metadata["model"] = c.model;
        nn::save_safetensors(c.checkpoint, all.tensors, all.metadata);
      }
    }
    std::printf("test accuracy: %.2f%%\n", 100 * test_acc);
    if (c.json) {
      nlohmann::json j = {{"framework", "ember"},          {"model", c.model},
                          {"threads", get_num_threads()},  {"epoch_seconds", last_epoch_seconds},
                          {"test_accuracy", 100 * test_acc}, {"train_loss", train_loss},
                          {"peak_rss_mb", peak_rss_mb()},   {"device", device.str()}};
      if (device.is_cuda()) {
        // Peak of the bytes handed to tensors over the whole run (training and test), the
        // counterpart of torch.cuda.max_memory_allocated; reserved includes the allocator's cache.
        const AllocatorStats s = backend(device).allocator().stats();
        j["peak_device_mb"] = s.peak_bytes / 1048576.0;
        j["peak_device_reserved_mb"] = s.peak_reserved_bytes / 1048576.0;
        j["launches_per_step"] = launches_per_step;
      }
      std::printf("%s\n", j.dump().c_str());
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
