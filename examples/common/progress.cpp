#include "examples/common/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

namespace ember::examples {

namespace {
std::string clock_str(double s) {
  int t = static_cast<int>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d:%02d", t / 60, t % 60);
  return buf;
}
}  // namespace

Progress::Progress(std::string title, int64_t total)
    : title_(std::move(title)), total_(total), tty_(isatty(fileno(stdout)) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool Progress::due(int64_t done) const {
  if (done >= total_) return true;
  if (tty_) return std::chrono::steady_clock::now() - last_draw_ >= std::chrono::milliseconds(100);
  return static_cast<int>(10 * done / total_) > last_decile_;
}

void Progress::update(int64_t done, double loss, double acc, bool force) {
  if (!force && !due(done)) return;
  last_draw_ = std::chrono::steady_clock::now();
  double secs = elapsed_seconds();
  double rate = secs > 0 ? done / secs : 0;
  double eta = rate > 0 ? (total_ - done) / rate : 0;
  double frac = total_ ? static_cast<double>(done) / total_ : 1;
  if (tty_) {
    constexpr int kWidth = 28;
    int filled = static_cast<int>(frac * kWidth);
    std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
    std::printf("\r%s [%s] %3d%% loss %.4f acc %5.2f%% %7.0f samples/s ETA %s ", title_.c_str(), bar.c_str(),
                static_cast<int>(100 * frac), loss, 100 * acc, rate, clock_str(eta).c_str());
    std::fflush(stdout);
  } else {
    last_decile_ = static_cast<int>(10 * frac);
    spdlog::info("{} {:3d}% loss {:.4f} acc {:.2f}% {:.0f} samples/s ETA {}", title_, static_cast<int>(100 * frac),
                 loss, 100 * acc, rate, clock_str(eta));
  }
}

void Progress::finish(double loss, double acc) {
  if (tty_ || last_decile_ < 10) update(total_, loss, acc, /*force=*/true);  // plain logs: once at 100%
  if (tty_) std::printf("\n");
}

}  // namespace ember::examples
