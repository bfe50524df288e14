#include "examples/common/trainer.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>

#include "examples/common/metrics_csv.h"
#include "examples/common/progress.h"
#include "nn/checkpoint.h"

namespace ember::examples {

namespace F = nn::functional;

namespace {

// Throws naming the epoch and step when the running loss sum is NaN or infinite: the model has
// diverged, and training on (or saving it) would only hide that.
void check_loss_finite(double loss_sum, int epoch, int64_t step, double lr) {
  EMBER_CHECK(std::isfinite(loss_sum), "training diverged: the loss became ", loss_sum, " in epoch ", epoch,
              " by step ", step, " (the running loss is checked at every progress update); the learning rate ",
              lr, " is probably too high");
}

// The epoch a checkpoint was written after, parsed strictly ("1e3" or "7x" are errors).
int load_checkpoint_epoch(const optim::StateDict& all, const std::string& path) {
  const std::string what = "--resume: " + path;
  const int64_t epoch = optim::detail::parse_int(all.metadata, "epoch", what.c_str());
  EMBER_CHECK(epoch >= 0 && epoch <= std::numeric_limits<int>::max(), what, ": metadata 'epoch' = ", epoch,
              " is out of range [0, ", std::numeric_limits<int>::max(), "]");
  return static_cast<int>(epoch);
}

// --amp (mixed precision): the forward, the loss and the test pass run under autocast
// (core/autocast.h): convolutions and linear layers in the 16-bit dtype, the loss in float32; the
// parameters and the optimizer stay float32. fp16 also scales the loss (optim::GradScaler, made in
// train()), which bf16 does not need.
void enter_amp(const TrainConfig& c, std::optional<AutocastGuard>& region) {
  if (c.amp != "none") region.emplace(c.amp == "bf16" ? kBFloat16 : kFloat16);
}

std::pair<double, double> evaluate_amp(TrainingRun& run) {
  std::optional<AutocastGuard> amp;
  enter_amp(run.config, amp);
  return run.evaluate();
}

// Loads model, optimizer and the hooks' state from a checkpoint; returns the epoch it was written after.
int resume_from(TrainingRun& run, optim::GradScaler& scaler) {
  const std::string& path = run.config.resume;
  auto ckpt = nn::load_safetensors(path);
  nn::check_finite(ckpt.tensors, "--resume: " + path);
  optim::StateDict all{ckpt.tensors, ckpt.metadata};
  auto kind = all.metadata.find("model");
  EMBER_CHECK(kind != all.metadata.end() && kind->second == run.config.model, "--resume: ", path, " holds a '",
              kind != all.metadata.end() ? kind->second : "?", "' model, not '", run.config.model, "'");
  const int epoch = load_checkpoint_epoch(all, path);
  // --amp changes the numbers (and fp16 carries a loss scale): a resume under another mode would
  // not continue the same run. Checkpoints from before the key existed were float32 runs.
  auto amp = all.metadata.find("amp");
  const std::string written_amp = amp != all.metadata.end() ? amp->second : "none";
  EMBER_CHECK(written_amp == run.config.amp, "--resume: ", path, " was written with --amp ", written_amp,
              ", this run has --amp ", run.config.amp, ": resume with the same mode");
  run.model.load_state_dict(nn::NamedTensors(all.sub("model").tensors));
  run.optimizer.load_state_dict(all.sub("optimizer"));
  if (run.load_state) run.load_state(all);
  if (scaler.is_enabled()) scaler.load_state_dict(all.sub("scaler"));  // --amp fp16: its loss scale, required
  return epoch;
}

void save_checkpoint(TrainingRun& run, int epoch, optim::GradScaler& scaler) {
  optim::StateDict all;
  all.merge("model", optim::StateDict{nn::TensorMap(run.model.state_dict()), {}});
  all.merge("optimizer", run.optimizer.state_dict());
  if (run.save_state) run.save_state(all);
  if (scaler.is_enabled()) all.merge("scaler", scaler.state_dict());  // --amp fp16
  all.metadata["epoch"] = std::to_string(epoch);
  all.metadata["amp"] = run.config.amp;
  all.metadata["model"] = run.config.model;
  nn::save_safetensors(run.config.checkpoint, all.tensors, all.metadata);
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

}  // namespace

std::pair<double, double> evaluate(nn::Module& model, std::shared_ptr<const data::Dataset> test, Device device,
                                   int64_t batch_size, const std::vector<std::shared_ptr<const data::Transform>>& transforms) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  auto options = data::DataLoaderOptions().batch_size(batch_size);
  for (const auto& t : transforms) options = options.transform(t);
  data::DataLoader loader(test, options);
  Tensor loss_sum = zeros({}, TensorOptions(kFloat32).device(device));
  Tensor correct = zeros({}, TensorOptions(kInt64).device(device));
  for (auto& batch : loader) {
    Tensor x = batch.data.to(device), y = batch.target.to(device);
    Tensor logits = model.forward(x);
    loss_sum = loss_sum + F::cross_entropy(logits, y, {.reduction = nn::Reduction::Sum});
    correct = correct + eq(argmax(logits, 1), y).to(kInt64).sum();
  }
  model.train(was_training);
  const double n = static_cast<double>(test->size());
  return {loss_sum.item() / n, correct.item() / n};
}

void check_data_files(const std::string& root, const std::vector<std::string>& files, const std::string& what,
                      const std::string& fetch_hint) {
  for (const auto& f : files) {
    const std::filesystem::path path = std::filesystem::path(root) / f;
    std::error_code ec;  // the non-throwing overload: a symlink loop is reported here, by path
    const bool found = std::filesystem::exists(path, ec);
    EMBER_CHECK(!ec, what, " file ", path.string(), " cannot be examined: ", ec.message());
    EMBER_CHECK(found, what, " file ", path.string(), " not found. ", fetch_hint, "  (or pass --data DIR)");
  }
}

TrainResult train(TrainingRun& run) {
  const TrainConfig& c = run.config;
  const Device device = run.device;
  EMBER_CHECK(static_cast<bool>(run.evaluate), "examples::train: TrainingRun::evaluate is not set");
  auto loss_fn = run.loss ? run.loss : [](const Tensor& logits, const Tensor& y) { return F::cross_entropy(logits, y); };
  const std::string note = run.data_note.empty() ? "" : " [" + run.data_note + "]";
  TrainResult result;
  optim::GradScaler scaler(optim::GradScalerOptions().enabled(c.amp == "fp16"));  // otherwise a pass-through

  int start_epoch = 0;
  double wall_offset = 0;  // the metrics' wall clock continues from the resumed run's last epoch row
  if (!c.resume.empty()) {
    start_epoch = resume_from(run, scaler);
    spdlog::info("resumed from {} after epoch {}", c.resume, start_epoch);
    if (!c.metrics.empty()) wall_offset = truncate_metrics(c.metrics, start_epoch);
  }
  if (!c.metrics.empty()) start_metrics(c.metrics, run.data_note);
  if (start_epoch >= c.epochs) {
    // Nothing to train: report the checkpoint's real test accuracy (as a PyTorch script would)
    // rather than the 0 of an epoch that never ran.
    spdlog::info("the checkpoint is already at epoch {} of --epochs {}: nothing to train, evaluating it",
                 start_epoch, c.epochs);
    std::tie(result.test_loss, result.test_accuracy) = evaluate_amp(run);
  }
  run.loader.set_epoch(start_epoch);
  spdlog::info("model {} ({} parameters), {} training samples, batch {}, device {}, {} threads{}", c.model,
               run.model.num_parameters(), run.train_size, c.batch_size, device.str(), get_num_threads(), note);

  // Step numbers continue across --resume: every epoch has the same number of batches.
  int64_t global_step = static_cast<int64_t>(start_epoch) * run.loader.num_batches();
  const auto run_start = std::chrono::steady_clock::now();
  auto wall_seconds = [&] {
    return wall_offset + std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  };
  auto current_lr = [&] { return run.optimizer.param_groups().front().options().get_lr(); };
  const int end_epoch = c.stop_after > 0 ? std::min(c.epochs, start_epoch + c.stop_after) : c.epochs;
  for (int epoch = start_epoch; epoch < end_epoch; ++epoch) {
    Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(c.epochs), run.train_size);
    // Running sums stay on the device; they are read only when the display refreshes.
    Tensor loss_sum = zeros({}, TensorOptions(kFloat32).device(device));
    Tensor correct = zeros({}, TensorOptions(kInt64).device(device));
    int64_t seen = 0, steps = 0;
    // --metrics-every: the loss and samples of the steps since the last step row.
    Tensor window_loss = zeros({}, TensorOptions(kFloat32).device(device));
    int64_t window_samples = 0;
    double window_start = wall_seconds();
    const uint64_t launches_before = backend(device).kernel_launches();
    for (auto& batch : run.loader) {
      Tensor x = batch.data.to(device), y = batch.target.to(device);
      run.optimizer.zero_grad();
      Tensor logits, loss;
      {
        std::optional<AutocastGuard> amp;  // --amp: forward and loss under autocast, backward outside
        enter_amp(c, amp);
        logits = run.model.forward(x);
        loss = loss_fn(logits, y);
      }
      scaler.scale(loss).backward();  // without --amp fp16: loss.backward() and optimizer.step()
      scaler.step(run.optimizer);
      scaler.update();
      if (run.after_step) run.after_step();
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
        check_loss_finite(loss_mean, epoch + 1, steps, current_lr());
        MetricsRow row{.is_step = true, .epoch = epoch + 1, .step = global_step, .loss = loss_mean,
                       .lr = current_lr(), .samples_per_second = window_samples / (now - window_start),
                       .wall_seconds = now};
        write_metrics_row(c.metrics, row);
        window_loss = zeros({}, TensorOptions(kFloat32).device(device));
        window_samples = 0;
        window_start = now;
      }
      // Reading the sums waits for the device; due() allows it ~10 times an epoch (or every
      // 100 ms on a terminal), so the host stays ahead of the GPU in between.
      if (progress.due(seen)) {
        const double sum = loss_sum.item();
        check_loss_finite(sum, epoch + 1, steps, current_lr());
        progress.update(seen, sum / seen, correct.item() / seen, true);
      }
    }
    check_loss_finite(loss_sum.item(), epoch + 1, steps, current_lr());  // before anything is saved
    result.train_loss = loss_sum.item() / seen;
    // item() waited for the device: the time is complete
    result.train_accuracy = correct.item() / static_cast<double>(seen);
    result.epoch_seconds = progress.elapsed_seconds();
    // Counts everything queued per step: forward, backward, optimizer, the running loss/accuracy sums.
    result.launches_per_step = static_cast<double>(backend(device).kernel_launches() - launches_before) /
                               static_cast<double>(std::max<int64_t>(steps, 1));
    progress.finish(result.train_loss, result.train_accuracy);
    std::tie(result.test_loss, result.test_accuracy) = evaluate_amp(run);
    spdlog::info("epoch {}: train loss {:.4f} acc {:.2f}% | test loss {:.4f} acc {:.2f}% | {:.2f} s, {:.0f} samples/s{}",
                 epoch + 1, result.train_loss, 100 * result.train_accuracy, result.test_loss,
                 100 * result.test_accuracy, result.epoch_seconds, seen / result.epoch_seconds, note);

    // The row goes out before the checkpoint: a run killed between the two leaves a row past the
    // checkpoint's epoch, which truncate_metrics drops on resume (the resumed run writes it again).
    if (!c.metrics.empty()) {
      MetricsRow row{.is_step = false, .epoch = epoch + 1, .step = global_step, .lr = current_lr(),
                     .samples_per_second = seen / result.epoch_seconds, .wall_seconds = wall_seconds(),
                     .epoch_seconds = result.epoch_seconds, .train_loss = result.train_loss,
                     .train_accuracy = result.train_accuracy, .test_loss = result.test_loss,
                     .test_accuracy = result.test_accuracy};
      write_metrics_row(c.metrics, row);
    }
    if (!c.checkpoint.empty()) save_checkpoint(run, epoch + 1, scaler);
  }
  if (end_epoch < c.epochs)
    spdlog::info("--stop-after {}: stopping after epoch {} of {}{}", c.stop_after, end_epoch, c.epochs,
                 c.checkpoint.empty() ? " (no --checkpoint: nothing to resume from)" : "; continue with --resume " + c.checkpoint);
  return result;
}

void print_summary(const TrainConfig& c, const TrainResult& r, Device device, const nlohmann::json& extra,
                   const std::string& note) {
  std::printf("test accuracy: %.2f%%%s\n", 100 * r.test_accuracy, note.empty() ? "" : (" [" + note + "]").c_str());
  if (!c.json) return;
  nlohmann::json j = {{"framework", "ember"},           {"model", c.model},
                      {"threads", get_num_threads()},   {"epoch_seconds", r.epoch_seconds},
                      {"test_accuracy", 100 * r.test_accuracy}, {"train_loss", r.train_loss},
                      {"peak_rss_mb", peak_rss_mb()},   {"device", device.str()},
                      {"amp", c.amp}};
  if (device.is_cuda()) {
    // Peak of the bytes handed to tensors over the whole run (training and test), the
    // counterpart of torch.cuda.max_memory_allocated; reserved includes the allocator's cache.
    const AllocatorStats s = backend(device).allocator().stats();
    j["peak_device_mb"] = s.peak_bytes / 1048576.0;
    j["peak_device_reserved_mb"] = s.peak_reserved_bytes / 1048576.0;
    j["launches_per_step"] = r.launches_per_step;
  }
  for (const auto& [key, value] : extra.items()) j[key] = value;
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace ember::examples
