// make_synthetic_cifar10: writes a small, learnable stand-in for CIFAR-10 in the exact binary
// format of the official archive (cifar-10-batches-bin/), for tests and benchmarks on machines
// that cannot download the real data.
//
//   build/examples/make_synthetic_cifar10 --out data/cifar10-synthetic [--train 50000] [--test 10000] [--seed 1]
//
// Writes data_batch_1.bin .. data_batch_5.bin (the --train images split over the five files),
// test_batch.bin, batches.meta.txt (the class names, one a line) and SYNTHETIC.txt, the marker
// ember_cifar10 looks for: every number it reports on such a folder says "synthetic".
//
// Each image is a class pattern under noise. Class c has a colour and a grating, the product of a
// horizontal and a vertical sine with the class's own frequencies (cycles per image, 1-4); an image
// takes its class's pattern at a random phase (so a crop or a flip of one is still its class), jitters
// the colour, and adds Gaussian noise. Colours are shared by pairs of classes, so a network must see
// the grating as well as the colour. It is easy on purpose: ResNet-20 reached 99% test accuracy after
// one epoch of 10000 images (resnet8 about 40% after 1280): it shows that a pipeline learns, not how
// good a model is. Everything comes from one seeded generator (a 64-bit Mersenne Twister with
// hand-written uniform and Gaussian draws, identical on every platform).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/cifar10.h"

namespace {

constexpr int kSide = 32, kPixels = 3 * kSide * kSide, kClasses = 10;
constexpr double kPi = 3.14159265358979323846;

struct Options {
  std::string out = "data/cifar10-synthetic";
  int64_t train = 50000, test = 10000;
  uint64_t seed = 1;
  double noise = 40;  // standard deviation of the per-pixel noise, in 0-255 levels
};

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}
  double uniform() { return (engine_() >> 11) * 0x1.0p-53; }  // [0, 1), 53 bits
  int64_t below(int64_t n) { return static_cast<int64_t>(uniform() * static_cast<double>(n)); }
  double gaussian() {  // Box-Muller
    const double u = 1.0 - uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2 * kPi * v);
  }

 private:
  std::mt19937_64 engine_;
};

struct ClassPattern {
  std::array<double, 3> colour;  // mean RGB, 0-255
  std::array<double, 3> tint;    // how strongly the grating shows in each channel
  int fx, fy;                    // cycles per image, horizontally and vertically
};

// Ten patterns: five colours, each shared by two classes whose gratings differ.
std::array<ClassPattern, kClasses> make_patterns(Random& rng) {
  std::array<ClassPattern, kClasses> p{};
  std::array<std::array<double, 3>, 5> colours{};
  for (auto& c : colours)
    for (double& v : c) v = 60 + 135 * rng.uniform();
  // Ten distinct (fx, fy) pairs from {1..4}^2, in a seeded order.
  std::vector<std::pair<int, int>> freqs;
  for (int fx = 1; fx <= 4; ++fx)
    for (int fy = 1; fy <= 4; ++fy) freqs.emplace_back(fx, fy);
  for (size_t i = freqs.size() - 1; i > 0; --i) std::swap(freqs[i], freqs[rng.below(static_cast<int64_t>(i) + 1)]);
  for (int c = 0; c < kClasses; ++c) {
    p[c].colour = colours[c % 5];
    for (double& t : p[c].tint) t = 0.4 + 0.6 * rng.uniform();
    p[c].fx = freqs[c].first;
    p[c].fy = freqs[c].second;
  }
  return p;
}

// One 3073-byte record: the label, then the red, green and blue planes (row-major 32x32 each).
void make_record(const ClassPattern& p, int label, double noise, Random& rng, uint8_t* record) {
  record[0] = static_cast<uint8_t>(label);
  const double phase_x = 2 * kPi * rng.uniform(), phase_y = 2 * kPi * rng.uniform();
  std::array<double, 3> colour{};
  for (int ch = 0; ch < 3; ++ch) colour[ch] = p.colour[ch] + 20 * rng.gaussian();
  for (int ch = 0; ch < 3; ++ch)
    for (int y = 0; y < kSide; ++y)
      for (int x = 0; x < kSide; ++x) {
        const double grating = std::sin(2 * kPi * p.fx * x / kSide + phase_x) * std::sin(2 * kPi * p.fy * y / kSide + phase_y);
        const double v = colour[ch] + 55 * p.tint[ch] * grating + noise * rng.gaussian();
        record[1 + (ch * kSide + y) * kSide + x] = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0)));
      }
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  EMBER_CHECK(out.good(), "make_synthetic_cifar10: cannot open ", path.string(), " for writing: ", std::strerror(errno));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  EMBER_CHECK(!out.fail(), "make_synthetic_cifar10: writing ", bytes.size(), " bytes to ", path.string(),
              " failed: ", std::strerror(errno));
}

std::string make_batch(int64_t records, const std::array<ClassPattern, kClasses>& patterns, double noise, Random& rng) {
  std::string bytes(static_cast<size_t>(records) * (1 + kPixels), '\0');
  for (int64_t r = 0; r < records; ++r) {
    const int label = static_cast<int>(rng.below(kClasses));
    make_record(patterns[label], label, noise, rng, reinterpret_cast<uint8_t*>(bytes.data()) + r * (1 + kPixels));
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Write a learnable synthetic data set in CIFAR-10's binary format"};
  app.add_option("--out", o.out, "folder to write (created if missing)");
  // At most 10^6 images a split (3 GB): more is a typo, not a test set.
  app.add_option("--train", o.train, "training images, split over data_batch_1..5.bin (at least 5: one a file)")
      ->check(CLI::Range(int64_t{5}, int64_t{1000000}));
  app.add_option("--test", o.test, "test images (test_batch.bin)")->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  app.add_option("--seed", o.seed, "seeds the class patterns and every image");
  app.add_option("--noise", o.noise, "per-pixel Gaussian noise, standard deviation in 0-255 levels")
      ->check(CLI::Range(0.0, 255.0));
  CLI11_PARSE(app, argc, argv);

  try {
    const std::filesystem::path dir(o.out);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    EMBER_CHECK(!ec, "make_synthetic_cifar10: cannot create the folder ", dir.string(), ": ", ec.message());
    // Never over real data: a folder with batch files but no marker is (or may be) CIFAR-10.
    const bool has_batches = std::filesystem::exists(dir / "data_batch_1.bin") || std::filesystem::exists(dir / "test_batch.bin");
    EMBER_CHECK(!has_batches || std::filesystem::exists(dir / ember::data::CIFAR10::kSyntheticMarker),
                "make_synthetic_cifar10: ", dir.string(), " already holds CIFAR-10 batch files not written by this tool "
                "(no ", ember::data::CIFAR10::kSyntheticMarker, "): refusing to overwrite them; choose another --out");
    char settings[160];
    std::snprintf(settings, sizeof settings, "train %lld, test %lld, seed %llu, noise %g",
                  static_cast<long long>(o.train), static_cast<long long>(o.test),
                  static_cast<unsigned long long>(o.seed), o.noise);
    // The marker first: a run killed (or a disk filled) half way leaves a folder that still says
    // "synthetic", never one that passes for CIFAR-10.
    write_file(dir / ember::data::CIFAR10::kSyntheticMarker,
               "SYNTHETIC data written by make_synthetic_cifar10 (examples/cifar10/make_synthetic_cifar10.cpp), not CIFAR-10:\n"
               "class patterns (colour + grating) under noise, in CIFAR-10's binary format; " +
                   std::string(settings) + ".\nAccuracies measured on it say nothing about CIFAR-10.\n");
    Random rng(o.seed);
    const auto patterns = make_patterns(rng);
    for (int f = 0; f < 5; ++f) {
      const int64_t records = o.train / 5 + (f < o.train % 5 ? 1 : 0);
      write_file(dir / ("data_batch_" + std::to_string(f + 1) + ".bin"), make_batch(records, patterns, o.noise, rng));
    }
    write_file(dir / "test_batch.bin", make_batch(o.test, patterns, o.noise, rng));
    std::string meta;
    for (const char* name : ember::data::CIFAR10::kClassNames) meta += std::string(name) + "\n";
    write_file(dir / "batches.meta.txt", meta + "\n");
    std::printf("wrote synthetic CIFAR-10-format data to %s: %lld training and %lld test images (seed %llu)\n",
                dir.string().c_str(), static_cast<long long>(o.train), static_cast<long long>(o.test),
                static_cast<unsigned long long>(o.seed));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
