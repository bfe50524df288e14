// Random numbers: a counter-based Philox4x32-10 generator. Element i of a draw depends only on
// (seed, offset + i), so results are the same for any thread count and the CUDA kernels can
// produce the identical stream. The same seed gives the same numbers.
#pragma once

#include <cstdint>
#include <mutex>

#include "core/host_device.h"

namespace ember {

struct PhiloxState {
  uint64_t seed = 0;
  uint64_t offset = 0;  // first counter value of this draw
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : seed_(seed) {}
  void manual_seed(uint64_t seed) {
    std::lock_guard<std::mutex> lock(mu_);
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  // Reserves `n` counters (each yields four 32-bit numbers) and returns where the draw starts.
  PhiloxState reserve(uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    PhiloxState s{seed_, offset_};
    offset_ += n;
    return s;
  }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t o) { offset_ = o; }

 private:
  std::mutex mu_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);  // seeds the default generator

// Philox4x32-10 (Salmon et al., SC'11): 4 random 32-bit words for counter `ctr` under key `seed`.
struct Philox4 {
  uint32_t v[4];
};
EMBER_HD Philox4 philox4x32(uint64_t seed, uint64_t ctr) {
  uint32_t c0 = static_cast<uint32_t>(ctr), c1 = static_cast<uint32_t>(ctr >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}
// 32 random bits -> float in [0, 1) with 24 bits of precision; 64 bits -> double with 53.
EMBER_HD float uniform_float(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }
EMBER_HD double uniform_double(uint32_t hi, uint32_t lo) {
  return static_cast<double>(((static_cast<uint64_t>(hi) << 32 | lo) >> 11)) * (1.0 / 9007199254740992.0);
}

}  // namespace ember
