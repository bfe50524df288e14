// Progress reporting for the training loop: a one-line bar redrawn in place on a terminal, plain
// spdlog lines (about ten per epoch) when the output goes to a file or a pipe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ember::examples {

class Progress {
 public:
  Progress(std::string title, int64_t total_samples);
  // Called after each batch; redraws at most every 100 ms (or logs each ~10% when not a terminal).
  // `loss` and `accuracy` are running averages over the epoch so far.
  void update(int64_t samples_done, double loss, double accuracy, bool force = false);
  void finish(double loss, double accuracy);  // final line of the epoch
  double elapsed_seconds() const;
  // True when update() would draw now: lets the caller skip reading device values otherwise.
  bool due(int64_t samples_done) const;

 private:
  std::string title_;
  int64_t total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int last_decile_ = -1;
};

}  // namespace ember::examples
