#include "examples/common/options.h"

#include <charconv>
#include <cmath>

namespace ember::examples {

namespace {
constexpr int kMaxWorkers = 256;
constexpr int kMaxThreads = 1024;
constexpr int64_t kMaxMetricsEvery = 1000000000;  // far beyond any run; a larger N is a typo
}  // namespace

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

void add_training_options(CLI::App& app, TrainConfig& c, const std::string& batch_size_help,
                          const std::string& lr_help, const std::string& data_help) {
  app.add_option("--epochs", c.epochs, "epochs to train")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", c.batch_size, batch_size_help)->check(CLI::NonNegativeNumber);
  app.add_option("--lr", c.lr, lr_help)->check(CLI::Validator(check_finite_number, "FINITE>=0"));
  app.add_option("--device", c.device, "cpu, cuda or cuda:N");
  // At most kMaxWorkers: each worker is a thread with its own batch buffers, and far more threads
  // than cores only adds memory and contention (100000 took 44 s to fail; 2^31-1 ran out of memory).
  app.add_option("--workers", c.workers, "data loader worker threads (0: load on the training thread)")
      ->check(CLI::Range(0, kMaxWorkers));
  app.add_option("--seed", c.seed, "seeds initialisation, shuffling and augmentation")
      ->check(CLI::Validator(check_seed, "UINT64"));
  // Bounded for the same reason as --workers: OpenMP starts every thread asked for.
  app.add_option("--threads", c.threads, "CPU threads for kernels (default: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  app.add_option("--data", c.data, data_help);
  app.add_option("--checkpoint", c.checkpoint, "write model+optimizer state here after every epoch (.safetensors)");
  app.add_option("--resume", c.resume, "continue from this checkpoint");
  auto* metrics = app.add_option("--metrics", c.metrics,
                                 "append metrics to this CSV file: a row per epoch (schema: examples/common/metrics_csv.h)");
  app.add_option("--metrics-every", c.metrics_every, "--metrics: also a row every N optimizer steps (loss, lr, samples/s)")
      ->check(CLI::Range(int64_t{1}, kMaxMetricsEvery))
      ->needs(metrics);
  app.add_option("--limit", c.limit, "train on the first N training samples only")->check(CLI::NonNegativeNumber);
  // A time-sliced job: the run ends after N epochs as if it had been stopped there, while the
  // learning-rate schedule still spans --epochs; --resume (same flags) then continues it exactly.
  app.add_option("--stop-after", c.stop_after, "end this run after N epochs (the schedule still spans --epochs; "
                                               "continue with --resume)")
      ->check(CLI::PositiveNumber);
  app.add_option("--amp", c.amp, "mixed precision: none | bf16 | fp16 (autocast; fp16 also scales the loss)")
      ->check(CLI::IsMember({"none", "bf16", "fp16"}));
  app.add_flag("--json", c.json, "print a one-line JSON summary at the end (used by bench/)");
}

}  // namespace ember::examples
