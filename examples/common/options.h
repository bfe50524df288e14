// The command line the training examples share (ember_mnist, ember_cifar10): one definition of
// each common flag, its help text and its bounds, so the two programs cannot drift apart.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace ember::examples {

struct TrainConfig {
  std::string model;
  int epochs = 1;
  int64_t batch_size = 0;  // 0: the program's default for the model
  double lr = 0;           // 0: the program's default for the model
  std::string device = "cpu";
  int workers = 1;
  uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  std::string data;
  std::string checkpoint, resume, metrics;
  int64_t limit = 0;          // train on the first N samples only (smoke tests)
  int64_t metrics_every = 0;  // --metrics-every: a step row every N optimizer steps (0: none)
  int stop_after = 0;         // --stop-after: end this run after N epochs (0: run to --epochs)
  bool json = false;
  std::string amp = "none";   // --amp: none | bf16 | fp16 (mixed precision, core/autocast.h)
};

// Adds --epochs, --batch-size, --lr, --device, --workers, --seed, --threads, --data, --checkpoint,
// --resume, --metrics, --metrics-every, --limit, --stop-after, --amp and --json, with their bounds (a value outside is a
// CLI11 error naming the flag). The help of the three whose defaults differ comes from the caller.
void add_training_options(CLI::App& app, TrainConfig& c, const std::string& batch_size_help,
                          const std::string& lr_help, const std::string& data_help);

// The validators behind them, for flags of a program's own.
// A seed: decimal digits only, in [0, 2^64) (CLI11 alone parses "-1" into an unsigned as 2^64-1).
std::string check_seed(const std::string& s);
// A finite number >= 0 ("inf", "nan" and "1e400" are refused).
std::string check_finite_number(const std::string& s);

}  // namespace ember::examples
