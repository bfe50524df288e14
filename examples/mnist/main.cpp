// examples/mnist: train an MLP, LeNet or small CNN on real MNIST, the way one would with libtorch.
//
//   bash scripts/fetch_mnist.sh                       # once: the four IDX files into data/mnist
//   build/examples/ember_mnist --model cnn --epochs 1
//
// Shows a progress bar on a terminal (plain log lines otherwise), ends with the test accuracy,
// and can write metrics (--metrics out.csv: a row per epoch, and one every N optimizer steps with
// --metrics-every N; the schema is in examples/common/metrics_csv.h, scripts/plot.py draws it) and
// checkpoints (--checkpoint) that --resume continues from exactly: the loader's order is keyed by
// (seed, epoch), and the model and optimizer state come back bit for bit. The loop, the flags it
// shares with ember_cifar10 and the bookkeeping live in examples/common/.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "core/ember.h"
#include "data/data.h"
#include "examples/common/options.h"
#include "examples/common/trainer.h"
#include "nn/checkpoint.h"
#include "nn/models/models.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace ember;

namespace {

// The benchmark settings (bench/mnist_pytorch.py uses the same): batch size, learning rate, optimizer.
std::unique_ptr<optim::Optimizer> make_optimizer(const examples::TrainConfig& c, const std::vector<Tensor>& params) {
  if (c.model == "cnn") return std::make_unique<optim::Adam>(params, optim::AdamOptions(c.lr));
  return std::make_unique<optim::SGD>(params, optim::SGDOptions(c.lr).momentum(0.9));
}

void apply_defaults(examples::TrainConfig& c) {
  if (c.batch_size == 0) c.batch_size = c.model == "mlp" ? 128 : 64;
  if (c.lr == 0) c.lr = c.model == "mlp" ? 0.05 : c.model == "lenet" ? 0.01 : 1e-3;
}

}  // namespace

int main(int argc, char** argv) {
  examples::TrainConfig c;
  c.model = "cnn";
  c.data = "data/mnist";
  CLI::App app{"Train a network on MNIST with ember"};
  app.add_option("--model", c.model, "mlp | lenet | cnn")->check(CLI::IsMember({"mlp", "lenet", "cnn"}));
  examples::add_training_options(app, c, "batch size (default: mlp 128, lenet/cnn 64)",
                                 "learning rate (default: mlp 0.05, lenet 0.01, cnn 0.001)",
                                 "folder with the four MNIST IDX files");
  CLI11_PARSE(app, argc, argv);
  apply_defaults(c);

  try {
    if (c.threads > 0) set_num_threads(c.threads);
    Device device(c.device);
    if (!c.checkpoint.empty()) nn::check_save_path(c.checkpoint);  // not only after the first epoch
    examples::check_data_files(c.data,
                               {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                "t10k-labels-idx1-ubyte"},
                               "MNIST", "Fetch the data set with: bash scripts/fetch_mnist.sh");
    manual_seed(c.seed);

    auto train_set = std::make_shared<data::MNIST>(c.data, /*train=*/true);
    train_set->normalize({data::MNIST::kMean}, {data::MNIST::kStd});
    auto test_set = std::make_shared<data::MNIST>(c.data, /*train=*/false);
    test_set->normalize({data::MNIST::kMean}, {data::MNIST::kStd});
    std::shared_ptr<const data::Dataset> train_data = train_set;
    if (c.limit > 0 && c.limit < train_set->size()) train_data = std::make_shared<data::Prefix>(train_set, c.limit);
    EMBER_CHECK(c.batch_size <= train_data->size(), "--batch-size ", c.batch_size, " is larger than the ",
                train_data->size(), " training samples");

    auto model = nn::models::create(c.model);
    model->to(device);
    auto optimizer = make_optimizer(c, model->parameters());
    data::DataLoader loader(train_data, data::DataLoaderOptions()
                                            .batch_size(c.batch_size)
                                            .shuffle()
                                            .seed(c.seed)
                                            .num_workers(c.workers)
                                            .pin_memory(device.is_cuda()));
    examples::TrainingRun run(c, *model, *optimizer, loader, train_data->size(), device);
    run.evaluate = [&] { return examples::evaluate(*model, test_set, device, c.batch_size); };
    const examples::TrainResult result = examples::train(run);
    examples::print_summary(c, result, device);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
