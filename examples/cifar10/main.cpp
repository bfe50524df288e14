// examples/cifar10: train a ResNet on CIFAR-10 with the usual recipe, from C++.
//
//   bash scripts/fetch_cifar10.sh                              # once: data/cifar10/cifar-10-batches-bin
//   build/examples/ember_cifar10 --model resnet20 --epochs 30
//
//   build/examples/make_synthetic_cifar10 --out data/cifar10-synthetic     # no network: stand-in data
//   build/examples/ember_cifar10 --data data/cifar10-synthetic --limit 10000 --epochs 1
//
// The recipe (each a flag): random crop 32 with padding 4 and a horizontal flip, per-channel
// normalisation (data::CIFAR10::kMean/kStd), optional Cutout; SGD with Nesterov momentum 0.9 and
// weight decay 5e-4 on conv and linear weights only (not on BatchNorm or biases:
// optim::decay_param_groups); cross-entropy with label smoothing 0.1; batch 128, lr 0.1; the learning
// rate per step: a linear warm-up then a cosine to 0 (SequentialLR), or OneCycle; optionally an
// exponential moving average of the weights (--ema), which is then what is evaluated; optionally a
// seeded validation split (--val-split N) of the training images, evaluated every epoch.
//
// Everything else is ember_mnist's (examples/common/): progress bar, --metrics CSV (+ --metrics-every),
// --checkpoint / --resume exact on the CPU (the scheduler and EMA states are in the checkpoint too),
// --json summary. A data folder made by make_synthetic_cifar10 carries a marker file; every epoch
// line, the summary and the metrics CSV then say "synthetic".
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>

#include "core/ember.h"
#include "data/data.h"
#include "examples/common/options.h"
#include "examples/common/trainer.h"
#include "nn/checkpoint.h"
#include "nn/models/models.h"
#include "nn/nn.h"
#include "optim/ema.h"
#include "optim/optim.h"
#include "optim/param_groups.h"

using namespace ember;
namespace F = ember::nn::functional;

namespace {

struct CifarConfig {
  std::string schedule = "cosine";
  double warmup_epochs = 1;
  double weight_decay = 5e-4;
  double label_smoothing = 0.1;
  int64_t cutout = 0;   // side of the Cutout square (0: none)
  double ema = 0;       // EMA decay (0: none)
  int64_t val_split = 0;
};

const char* kSyntheticNote = "synthetic data (make_synthetic_cifar10), not CIFAR-10";

// The learning rate per optimizer step: "cosine" warms up linearly from lr/10 over the warm-up steps,
// then follows a cosine from lr to 0 over the rest; "onecycle" is OneCycleLR with max_lr = lr.
std::shared_ptr<optim::LRScheduler> make_schedule(const examples::TrainConfig& c, const CifarConfig& cc,
                                                  optim::Optimizer& opt, int64_t steps_per_epoch) {
  const int64_t total = static_cast<int64_t>(c.epochs) * steps_per_epoch;
  if (cc.schedule == "onecycle") return std::make_shared<optim::OneCycleLR>(opt, optim::OneCycleLROptions(c.lr, total));
  // At most half the run warms up, so a one-epoch run still anneals.
  const int64_t warmup = std::min<int64_t>(std::llround(cc.warmup_epochs * steps_per_epoch), total / 2);
  auto cosine = std::make_shared<optim::CosineAnnealingLR>(opt, std::max<int64_t>(total - warmup, 1));
  if (warmup == 0) return cosine;
  auto ramp = std::make_shared<optim::LinearLR>(opt, 0.1, 1.0, warmup);
  return std::make_shared<optim::SequentialLR>(opt, std::vector<std::shared_ptr<optim::LRScheduler>>{ramp, cosine},
                                               std::vector<int64_t>{warmup});
}

}  // namespace

int main(int argc, char** argv) {
  examples::TrainConfig c;
  c.model = "resnet20";
  c.data = "data/cifar10/cifar-10-batches-bin";
  CifarConfig cc;
  CLI::App app{"Train a ResNet on CIFAR-10 with ember"};
  app.add_option("--model", c.model, "resnet8 | resnet20 | resnet56 | resnet18")
      ->check(CLI::IsMember({"resnet8", "resnet20", "resnet56", "resnet18"}));
  examples::add_training_options(app, c, "batch size (default 128)", "peak learning rate (default 0.1)",
                                 "folder with data_batch_1..5.bin and test_batch.bin");
  app.add_option("--schedule", cc.schedule, "cosine (linear warm-up, then cosine to 0) | onecycle")
      ->check(CLI::IsMember({"cosine", "onecycle"}));
  app.add_option("--warmup-epochs", cc.warmup_epochs, "cosine: epochs of linear warm-up (at most half the run)")
      ->check(CLI::Range(0.0, 1000.0));
  app.add_option("--weight-decay", cc.weight_decay, "on conv and linear weights only")
      ->check(CLI::Validator(examples::check_finite_number, "FINITE>=0"));
  app.add_option("--label-smoothing", cc.label_smoothing, "of the training loss")->check(CLI::Range(0.0, 1.0));
  app.add_option("--cutout", cc.cutout, "Cutout square side in pixels (0: off; 16 is the paper's for CIFAR-10)")
      ->check(CLI::Range(int64_t{0}, int64_t{32}));
  app.add_option("--ema", cc.ema, "evaluate an exponential moving average of the weights with this decay (0: off)")
      ->check(CLI::Validator(
          [](const std::string& v) -> std::string {
            // 1 would freeze the average at the first step's weights and evaluate those.
            const double d = std::strtod(v.c_str(), nullptr);
            return d >= 0 && d < 1 ? std::string() : "--ema must be in [0, 1) (0: off), got " + v;
          },
          "[0, 1)"));
  app.add_option("--val-split", cc.val_split, "hold out N training images (seeded by --seed) as a validation set")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  if (c.batch_size == 0) c.batch_size = 128;
  if (c.lr == 0) c.lr = 0.1;

  try {
    if (c.threads > 0) set_num_threads(c.threads);
    Device device(c.device);
    if (!c.checkpoint.empty()) nn::check_save_path(c.checkpoint);  // not only after the first epoch
    examples::check_data_files(c.data,
                               {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                                "data_batch_5.bin", "test_batch.bin"},
                               "CIFAR-10",
                               "Fetch the data set with: bash scripts/fetch_cifar10.sh, or make synthetic stand-in "
                               "data with: build/examples/make_synthetic_cifar10 --out data/cifar10-synthetic");
    const bool synthetic = data::CIFAR10::is_synthetic(c.data);
    if (synthetic) spdlog::warn("{}: {}; accuracies measured on it say nothing about CIFAR-10", c.data, kSyntheticNote);
    manual_seed(c.seed);

    // Training images stay raw (0-255 scaled to [0, 1]) so the crop pads with black, as
    // torchvision's does; the Normalize transform comes after the crop and the flip.
    auto train_set = std::make_shared<data::CIFAR10>(c.data, /*train=*/true);
    auto test_set = std::make_shared<data::CIFAR10>(c.data, /*train=*/false);
    test_set->normalize(data::CIFAR10::kMean, data::CIFAR10::kStd);
    std::shared_ptr<const data::Dataset> train_data = train_set;
    if (c.limit > 0 && c.limit < train_set->size()) train_data = std::make_shared<data::Prefix>(train_set, c.limit);
    std::shared_ptr<const data::Dataset> val_data;
    if (cc.val_split > 0) {
      EMBER_CHECK(cc.val_split < train_data->size(), "--val-split ", cc.val_split, " leaves no training images of the ",
                  train_data->size(), " there are");
      auto parts = data::random_split(train_data, std::vector<int64_t>{train_data->size() - cc.val_split, cc.val_split},
                                      c.seed);
      train_data = parts[0];
      val_data = parts[1];  // evaluated as the test images are: normalised, not augmented
    }
    EMBER_CHECK(c.batch_size <= train_data->size(), "--batch-size ", c.batch_size, " is larger than the ",
                train_data->size(), " training samples");

    auto model = nn::models::create(c.model);
    model->to(device);
    optim::SGD optimizer(optim::decay_param_groups(*model, cc.weight_decay),
                         optim::SGDOptions(c.lr).momentum(0.9).nesterov(true));
    auto normalize = std::make_shared<data::Normalize>(data::CIFAR10::kMean, data::CIFAR10::kStd);
    auto options = data::DataLoaderOptions()
                       .batch_size(c.batch_size)
                       .shuffle()
                       .seed(c.seed)
                       .num_workers(c.workers)
                       .pin_memory(device.is_cuda())
                       .transform(std::make_shared<data::RandomCrop>(4))
                       .transform(std::make_shared<data::RandomHorizontalFlip>())
                       .transform(normalize);
    if (cc.cutout > 0) options = options.transform(std::make_shared<data::Cutout>(cc.cutout));
    data::DataLoader loader(train_data, options);
    auto schedule = make_schedule(c, cc, optimizer, loader.num_batches());
    std::optional<optim::ExponentialMovingAverage> ema;
    if (cc.ema > 0) ema.emplace(*model, optim::EmaOptions().decay(cc.ema));

    examples::TrainingRun run(c, *model, optimizer, loader, train_data->size(), device);
    if (synthetic) run.data_note = kSyntheticNote;
    run.loss = [&](const Tensor& logits, const Tensor& y) {
      return F::cross_entropy(logits, y, {.label_smoothing = cc.label_smoothing});
    };
    run.after_step = [&] {
      schedule->step();
      if (ema) ema->update(*model);
    };
    double val_accuracy = -1;
    run.evaluate = [&] {
      // With --ema the averaged weights are what is evaluated; the model's own come back after.
      std::optional<optim::EmaScope> use_ema;
      if (ema) use_ema.emplace(*ema, *model);
      if (val_data) {
        auto [val_loss, val_acc] = examples::evaluate(*model, val_data, device, c.batch_size, {normalize});
        spdlog::info("validation ({} images): loss {:.4f} acc {:.2f}%", val_data->size(), val_loss, 100 * val_acc);
        val_accuracy = val_acc;
      }
      return examples::evaluate(*model, test_set, device, c.batch_size);
    };
    run.save_state = [&](optim::StateDict& all) {
      all.merge("scheduler", schedule->state_dict());
      if (ema) all.merge("ema", ema->state_dict());
    };
    run.load_state = [&](const optim::StateDict& all) {
      schedule->load_state_dict(all.sub("scheduler"));
      if (ema) ema->load_state_dict(all.sub("ema"));
    };
    const examples::TrainResult result = examples::train(run);
    nlohmann::json extra = {{"data", synthetic ? "synthetic" : "cifar10"}, {"schedule", cc.schedule},
                            {"batch_size", c.batch_size}, {"epochs", c.epochs}};
    if (ema) extra["ema"] = cc.ema;
    if (val_accuracy >= 0) extra["val_accuracy"] = 100 * val_accuracy;
    examples::print_summary(c, result, device, extra, run.data_note);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
