// examples/mnist: train an MLP, LeNet or small CNN on real MNIST, the way one would with libtorch.
//
//   bash scripts/fetch_mnist.sh                       # once: the four IDX files into data/mnist
//   build/examples/ember_mnist --model cnn --epochs 1
//
// Shows a progress bar on a terminal (plain log lines otherwise), ends with the test accuracy,
// and can write metrics (--metrics out.csv: a row per epoch, and one every N optimizer steps with
// --metrics-every N; the schema is in examples/mnist/metrics_csv.h, scripts/plot.py draws it) and
// checkpoints (--checkpoint) that --resume continues from exactly: the loader's order is keyed by (seed, epoch), and the model and
// optimizer state come back bit for bit.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <filesystem>
#include <optional>

#include "core/ember.h"
#include "data/data.h"
#include "examples/mnist/metrics_csv.h"
#include "examples/mnist/models.h"
#include "examples/mnist/progress.h"
#include "nn/checkpoint.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace ember;
namespace F = ember::nn::functional;

namespace {

constexpr int kMaxWorkers = 256;
constexpr int kMaxThreads = 1024;
constexpr int64_t kMaxMetricsEvery = 1000000000;  // far beyond any run; a larger N is a typo

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
  int64_t metrics_every = 0;  // --metrics-every: a step row every N optimizer steps (0: none)
  bool json = false;
  std::string amp = "none";  // --amp: none | bf16 | fp16
};

// ---- --amp (mixed precision, issue 15) ----
// The forward and the loss run under autocast (core/autocast.h): convolutions and linear layers in
// the 16-bit dtype, the loss in float32; the parameters and the optimizer stay float32. fp16 also
// scales the loss (optim::GradScaler), which bf16 does not need.
void enter_amp(const Config& c, std::optional<AutocastGuard>& region) {
  if (c.amp != "none") region.emplace(c.amp == "bf16" ? kBFloat16 : kFloat16);
}
// ---- end --amp ----

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
                        "t10k-labels-idx1-ubyte"}) {
    const std::filesystem::path path = std::filesystem::path(root) / f;
    std::error_code ec;  // the non-throwing overload: a symlink loop is reported here, by path
    const bool found = std::filesystem::exists(path, ec);
    EMBER_CHECK(!ec, "MNIST file ", path.string(), " cannot be examined: ", ec.message());
    EMBER_CHECK(found, "MNIST file ", path.string(),
                " not found. Fetch the data set with: bash scripts/fetch_mnist.sh  (or pass --data DIR)");
  }
}

// Throws naming the epoch and step when the running loss sum is NaN or infinite: the model has
// diverged, and training on (or saving it) would only hide that.
void check_loss_finite(double loss_sum, int epoch, int64_t step, double lr) {
  EMBER_CHECK(std::isfinite(loss_sum), "training diverged: the loss became ", loss_sum, " in epoch ", epoch,
              " by step ", step, " (the running loss is checked at every progress update); the learning rate ",
              lr, " is probably too high");
}

// CLI11 parses "-1" into an unsigned seed as 2^64-1; this accepts decimal digits only, in range.
std::string check_seed(const std::string& s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  const bool digits = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  if (digits && ec == std::errc() && end == s.data() + s.size()) return "";
  return "seed '" + s + "' is not an integer in [0, 18446744073709551615]";
}

std::string check_finite_number(const std::string& s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc() && end == s.data() + s.size() && std::isfinite(v) && v >= 0) return "";
  return "'" + s + "' is not a finite non-negative number";
}

// The epoch a checkpoint was written after, parsed strictly ("1e3" or "7x" are errors).
int load_checkpoint_epoch(const optim::StateDict& all, const std::string& path) {
  const std::string what = "--resume: " + path;
  const int64_t epoch = optim::detail::parse_int(all.metadata, "epoch", what.c_str());
  EMBER_CHECK(epoch >= 0 && epoch <= std::numeric_limits<int>::max(), what, ": metadata 'epoch' = ", epoch,
              " is out of range [0, ", std::numeric_limits<int>::max(), "]");
  return static_cast<int>(epoch);
}

// Loads model and optimizer state from a checkpoint; returns the epoch it was written after.
int resume_from(const Config& c, nn::Module& model, optim::Optimizer& optimizer, optim::GradScaler& scaler) {
  auto ckpt = nn::load_safetensors(c.resume);
  nn::check_finite(ckpt.tensors, "--resume: " + c.resume);
  optim::StateDict all{ckpt.tensors, ckpt.metadata};
  auto kind = all.metadata.find("model");
  EMBER_CHECK(kind != all.metadata.end() && kind->second == c.model, "--resume: ", c.resume, " holds a '",
              kind != all.metadata.end() ? kind->second : "?", "' model, not '", c.model, "'");
  const int epoch = load_checkpoint_epoch(all, c.resume);
  model.load_state_dict(nn::NamedTensors(all.sub("model").tensors));
  optimizer.load_state_dict(all.sub("optimizer"));
  if (scaler.is_enabled() && all.metadata.count("scaler.scale")) scaler.load_state_dict(all.sub("scaler"));  // --amp fp16
  return epoch;
}

// Test-set accuracy and mean loss, without recording a graph. At the training batch size: the
// activations then fit in what training already holds (a batch of 1000 raised the cnn's peak RSS
// from ~300 MB to ~700 MB), and the convolution plans made for training are reused.
std::pair<double, double> evaluate(nn::Module& model, const data::Dataset& test, Device device, int64_t batch_size,
                                   const Config& c) {
  NoGradGuard no_grad;
  std::optional<AutocastGuard> amp;  // --amp: the test pass runs as training does
  enter_amp(c, amp);
  model.eval();
  data::DataLoader loader(test, data::DataLoaderOptions().batch_size(batch_size));
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
      ->check(CLI::Validator(check_finite_number, "FINITE>=0"));
  app.add_option("--device", c.device, "cpu, cuda or cuda:N");
  // At most kMaxWorkers: each worker is a thread with its own batch buffers, and far more threads
  // than cores only adds memory and contention (100000 took 44 s to fail; 2^31-1 ran out of memory).
  app.add_option("--workers", c.workers, "data loader worker threads (0: load on the training thread)")
      ->check(CLI::Range(0, kMaxWorkers));
  app.add_option("--seed", c.seed, "seeds initialisation and shuffling")
      ->check(CLI::Validator(check_seed, "UINT64"));
  // Bounded for the same reason as --workers: OpenMP starts every thread asked for.
  app.add_option("--threads", c.threads, "CPU threads for kernels (default: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  app.add_option("--data", c.data, "folder with the four MNIST IDX files");
  app.add_option("--checkpoint", c.checkpoint, "write model+optimizer state here after every epoch (.safetensors)");
  app.add_option("--resume", c.resume, "continue from this checkpoint");
  auto* metrics = app.add_option("--metrics", c.metrics,
                                  "append metrics to this CSV file: a row per epoch (schema: examples/mnist/metrics_csv.h)");
  app.add_option("--metrics-every", c.metrics_every, "--metrics: also a row every N optimizer steps (loss, lr, samples/s)")
      ->check(CLI::Range(int64_t{1}, kMaxMetricsEvery))
      ->needs(metrics);
  app.add_option("--limit", c.limit, "train on the first N training samples only")->check(CLI::NonNegativeNumber);
  app.add_option("--amp", c.amp, "mixed precision: none | bf16 | fp16 (autocast; fp16 also scales the loss)")
      ->check(CLI::IsMember({"none", "bf16", "fp16"}));
  app.add_flag("--json", c.json, "print a one-line JSON summary at the end (used by bench/)");
  CLI11_PARSE(app, argc, argv);
  apply_defaults(c);

  try {
    if (c.threads > 0) set_num_threads(c.threads);
    Device device(c.device);
    if (!c.checkpoint.empty()) nn::check_save_path(c.checkpoint);  // not only after the first epoch
    check_data(c.data);
    manual_seed(c.seed);

    auto train_set = std::make_shared<data::MNIST>(c.data, /*train=*/true);
    train_set->normalize({data::MNIST::kMean}, {data::MNIST::kStd});
    data::MNIST test_set(c.data, /*train=*/false);
    test_set.normalize({data::MNIST::kMean}, {data::MNIST::kStd});
    std::shared_ptr<const data::Dataset> train_data = train_set;
    if (c.limit > 0 && c.limit < train_set->size()) train_data = std::make_shared<data::Prefix>(train_set, c.limit);
    EMBER_CHECK(c.batch_size <= train_data->size(), "--batch-size ", c.batch_size, " is larger than the ",
                train_data->size(), " training samples");

    double last_epoch_seconds = 0, test_acc = 0, test_loss = 0, train_loss = 0, train_acc = 0;
    auto model = examples::make_mnist_model(c.model);
    model->to(device);
    auto optimizer = make_optimizer(c, model->parameters());
    optim::GradScaler scaler(optim::GradScalerOptions().enabled(c.amp == "fp16"));  // --amp fp16; else a pass-through
    data::DataLoader loader(train_data, data::DataLoaderOptions()
                                            .batch_size(c.batch_size)
                                            .shuffle()
                                            .seed(c.seed)
                                            .num_workers(c.workers)
                                            .pin_memory(device.is_cuda()));

    int start_epoch = 0;
    double wall_offset = 0;  // the metrics' wall clock continues from the resumed run's last epoch row
    if (!c.resume.empty()) {
      start_epoch = resume_from(c, *model, *optimizer, scaler);
      spdlog::info("resumed from {} after epoch {}", c.resume, start_epoch);
      if (!c.metrics.empty()) wall_offset = examples::truncate_metrics(c.metrics, start_epoch);
    }
    if (!c.metrics.empty()) examples::start_metrics(c.metrics);
    if (start_epoch >= c.epochs) {
      // Nothing to train: report the checkpoint's real test accuracy (as a PyTorch script would)
      // rather than the 0 of an epoch that never ran.
      spdlog::info("the checkpoint is already at epoch {} of --epochs {}: nothing to train, evaluating it",
                   start_epoch, c.epochs);
      std::tie(test_loss, test_acc) = evaluate(*model, test_set, device, c.batch_size, c);
    }
    loader.set_epoch(start_epoch);
    spdlog::info("model {} ({} parameters), {} training samples, batch {}, device {}, {} threads", c.model,
                 model->num_parameters(), train_data->size(), c.batch_size, device.str(), get_num_threads());

    // Step numbers continue across --resume: every epoch has the same number of batches.
    int64_t global_step = static_cast<int64_t>(start_epoch) * loader.num_batches();
    const auto run_start = std::chrono::steady_clock::now();
    auto wall_seconds = [&] {
      return wall_offset + std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    };
    auto current_lr = [&] { return optimizer->param_groups().front().options().get_lr(); };
    double launches_per_step = 0;  // kernels + library calls per training step, last epoch (CUDA; 0 on CPU)
    for (int epoch = start_epoch; epoch < c.epochs; ++epoch) {
      examples::Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(c.epochs),
                                  train_data->size());
      // Running sums stay on the device; they are read only when the display refreshes.
      Tensor loss_sum = zeros({}, TensorOptions(kFloat32).device(device));
      Tensor correct = zeros({}, TensorOptions(kInt64).device(device));
      int64_t seen = 0, steps = 0;
      // --metrics-every: the loss and samples of the steps since the last step row.
      Tensor window_loss = zeros({}, TensorOptions(kFloat32).device(device));
      int64_t window_samples = 0;
      double window_start = wall_seconds();
      const uint64_t launches_before = backend(device).kernel_launches();
      for (auto& batch : loader) {
        Tensor x = batch.data.to(device), y = batch.target.to(device);
        optimizer->zero_grad();
        Tensor logits, loss;
        {
          std::optional<AutocastGuard> amp;  // --amp: forward and loss under autocast
          enter_amp(c, amp);
          logits = model->forward(x);
          loss = F::cross_entropy(logits, y);
        }
        scaler.scale(loss).backward();  // without --amp fp16: loss.backward(), optimizer->step()
        scaler.step(*optimizer);
        scaler.update();
        {
          NoGradGuard no_grad;
          loss_sum = loss_sum + loss.detach() * static_cast<double>(batch.size());
          correct = correct + eq(argmax(logits.detach(), 1), y).to(kInt64).sum();
          if (c.metrics_every > 0) window_loss = window_loss + loss.detach() * static_cast<double>(batch.size());
        }
        seen += batch.size();
        ++steps;
        ++global_step;
        window_samples += batch.size();
        if (c.metrics_every > 0 && global_step % c.metrics_every == 0) {
          // Reading the loss waits for the device: that is the price of a row every N steps.
          const double now = wall_seconds(), loss_mean = window_loss.item() / window_samples;
          check_loss_finite(loss_mean, epoch + 1, steps, c.lr);
          examples::MetricsRow row{.is_step = true, .epoch = epoch + 1, .step = global_step, .loss = loss_mean,
                                   .lr = current_lr(), .samples_per_second = window_samples / (now - window_start),
                                   .wall_seconds = now};
          examples::write_metrics_row(c.metrics, row);
          window_loss = zeros({}, TensorOptions(kFloat32).device(device));
          window_samples = 0;
          window_start = now;
        }
        // Reading the sums waits for the device; due() allows it ~10 times an epoch (or every
        // 100 ms on a terminal), so the host stays ahead of the GPU in between.
        if (progress.due(seen)) {
          const double sum = loss_sum.item();
          check_loss_finite(sum, epoch + 1, steps, c.lr);
          progress.update(seen, sum / seen, correct.item() / seen, true);
        }
      }
      check_loss_finite(loss_sum.item(), epoch + 1, steps, c.lr);  // before anything is saved
      train_loss = loss_sum.item() / seen;
      train_acc = correct.item() / static_cast<double>(seen);  // item() waited for the device: the time is complete
      last_epoch_seconds = progress.elapsed_seconds();
      // Counts everything queued per step: forward, backward, optimizer, the running loss/accuracy sums.
      launches_per_step = static_cast<double>(backend(device).kernel_launches() - launches_before) /
                          static_cast<double>(std::max<int64_t>(steps, 1));
      progress.finish(train_loss, train_acc);
      std::tie(test_loss, test_acc) = evaluate(*model, test_set, device, c.batch_size, c);
      spdlog::info("epoch {}: train loss {:.4f} acc {:.2f}% | test loss {:.4f} acc {:.2f}% | {:.2f} s, {:.0f} samples/s",
                   epoch + 1, train_loss, 100 * train_acc, test_loss, 100 * test_acc, last_epoch_seconds,
                   seen / last_epoch_seconds);

      // The row goes out before the checkpoint: a run killed between the two leaves a row past the
      // checkpoint's epoch, which truncate_metrics drops on resume (the resumed run writes it again).
      if (!c.metrics.empty()) {
        examples::MetricsRow row{.is_step = false, .epoch = epoch + 1, .step = global_step, .lr = current_lr(),
                                 .samples_per_second = seen / last_epoch_seconds, .wall_seconds = wall_seconds(),
                                 .epoch_seconds = last_epoch_seconds, .train_loss = train_loss,
                                 .train_accuracy = train_acc, .test_loss = test_loss, .test_accuracy = test_acc};
        examples::write_metrics_row(c.metrics, row);
      }
      if (!c.checkpoint.empty()) {
        optim::StateDict all;
        all.merge("model", optim::StateDict{nn::TensorMap(model->state_dict()), {}});
        all.merge("optimizer", optimizer->state_dict());
        if (scaler.is_enabled()) all.merge("scaler", scaler.state_dict());  // --amp fp16
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
