// The data pipeline: MNIST/CIFAR-10 readers on small files written here (never the real data,
// except one optional check when data/mnist exists), every corruption case's message, the
// DataLoader's ordering/determinism/shutdown/error guarantees, and the transforms.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <numeric>
#include <set>
#include <stdexcept>
#include <thread>

#include "data/data.h"
#include "tests/data_dir.h"
#include "tests/test_util.h"

namespace ember {
namespace {

namespace fs = std::filesystem;
using data::DataLoader;
using data::DataLoaderOptions;
using test::expect_error;

// ---------------------------------------------------------------- file helpers

// A fresh temporary folder, removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ =
        fs::temp_directory_path() / ("ember_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

using Bytes = std::vector<uint8_t>;

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << "cannot write " << path;
}

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

// The pixel value test images use: a function of (image, position) so every pixel is checkable.
uint8_t pixel(int64_t image, int64_t pos) { return static_cast<uint8_t>((image * 37 + pos * 11) % 256); }

// An IDX image file: header (magic, count, rows, cols) then `images_written` images.
Bytes idx_images(uint32_t count, uint32_t rows, uint32_t cols, int64_t images_written = -1,
                 uint32_t magic = 0x00000803) {
  if (images_written < 0) images_written = count;
  Bytes b;
  put_be32(b, magic);
  put_be32(b, count);
  put_be32(b, rows);
  put_be32(b, cols);
  for (int64_t i = 0; i < images_written; ++i)
    for (int64_t p = 0; p < int64_t{rows} * cols; ++p) b.push_back(pixel(i, p));
  return b;
}

Bytes idx_labels(const std::vector<uint8_t>& labels, int64_t count = -1, uint32_t magic = 0x00000801) {
  Bytes b;
  put_be32(b, magic);
  put_be32(b, count < 0 ? static_cast<uint32_t>(labels.size()) : static_cast<uint32_t>(count));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// Writes a consistent MNIST split: `n` images of rows x cols, labels i % 10.
void write_mnist(const TempDir& dir, const std::string& prefix, uint32_t n, uint32_t rows = 4, uint32_t cols = 3) {
  write_file(dir.file(prefix + "-images-idx3-ubyte"), idx_images(n, rows, cols));
  std::vector<uint8_t> labels;
  for (uint32_t i = 0; i < n; ++i) labels.push_back(static_cast<uint8_t>(i % 10));
  write_file(dir.file(prefix + "-labels-idx1-ubyte"), idx_labels(labels));
}

// CIFAR-10 records: label byte then 3x32x32 pixels; record r of a file gets global id `first + r`.
Bytes cifar_records(const std::vector<uint8_t>& labels, int64_t first) {
  Bytes b;
  for (size_t r = 0; r < labels.size(); ++r) {
    b.push_back(labels[r]);
    for (int64_t p = 0; p < 3072; ++p) b.push_back(pixel(first + static_cast<int64_t>(r), p));
  }
  return b;
}

// ---------------------------------------------------------------- MNIST

TEST(DataMNIST, ParsesImagesAndLabelsOfBothSplits) {
  TempDir dir;
  write_mnist(dir, "train", 5);
  write_mnist(dir, "t10k", 2);
  data::MNIST train(dir.str(), true), test(dir.str(), false);
  EXPECT_EQ(train.size(), 5);
  EXPECT_EQ(test.size(), 2);
  EXPECT_EQ(train.sample_shape(), Shape({1, 4, 3}));
  EXPECT_EQ(train.images().shape(), Shape({5, 1, 4, 3}));
  EXPECT_EQ(train.images().dtype(), kUInt8);
  EXPECT_EQ(train.targets().dtype(), kInt64);
  EXPECT_EQ(train.num_classes(), 10);
  for (int64_t i = 0; i < 5; ++i) {
    data::Example ex = train.get(i);
    EXPECT_EQ(ex.target, i % 10);
    ASSERT_EQ(ex.data.shape(), Shape({1, 4, 3}));
    const float* x = ex.data.data<float>();
    for (int64_t p = 0; p < 12; ++p) {
      EXPECT_FLOAT_EQ(x[p], pixel(i, p) / 255.0f) << "image " << i << " pixel " << p;
      EXPECT_EQ(train.images().data<uint8_t>()[i * 12 + p], pixel(i, p));
    }
  }
  EXPECT_EQ(test.get(1).target, 1);
  expect_error([&] { train.get(5); }, {"MNIST", "sample index 5 is out of range", "5 samples"});
  expect_error([&] { train.get(-1); }, {"sample index -1 is out of range"});
}

TEST(DataMNIST, NormalizeIsFusedIntoTheConversion) {
  TempDir dir;
  write_mnist(dir, "train", 3);
  data::MNIST mnist(dir.str());
  mnist.normalize({data::MNIST::kMean}, {data::MNIST::kStd});
  data::Example ex = mnist.get(2);
  for (int64_t p = 0; p < 12; ++p) EXPECT_NEAR(ex.data.data<float>()[p], (pixel(2, p) / 255.0 - 0.1307) / 0.3081, 1e-5);
  expect_error(
      [&] {
        mnist.normalize({0.5f, 0.5f}, {0.2f, 0.2f});
      },
      {"MNIST", "one mean and one std per channel (1)", "got 2 and 2"});
  expect_error([&] { mnist.normalize({0.5f}, {0.0f}); }, {"channel 0", "positive std"});
}

TEST(DataMNIST, MissingFileNamesItAndSuggestsTheFetchScript) {
  TempDir dir;
  expect_error([&] { data::MNIST(dir.str(), true); },
               {"MNIST", dir.file("train-images-idx3-ubyte"), "does not exist", "bash scripts/fetch_mnist.sh"});
  write_file(dir.file("t10k-images-idx3-ubyte"), idx_images(2, 4, 3));
  expect_error([&] { data::MNIST(dir.str(), false); },
               {dir.file("t10k-labels-idx1-ubyte"), "does not exist", "scripts/fetch_mnist.sh"});
}

TEST(DataMNIST, WrongMagicNumber) {
  TempDir dir;
  write_mnist(dir, "train", 3);
  // Image and label files swapped: each magic is named, with what it probably is.
  write_file(dir.file("train-images-idx3-ubyte"), idx_labels({1, 2, 3}));
  expect_error([&] { data::MNIST(dir.str()); },
               {dir.file("train-images-idx3-ubyte"), "wrong magic number 0x00000801 at byte offset 0", "IDX label file",
                "0x00000803"});
  write_file(dir.file("train-images-idx3-ubyte"), idx_images(3, 4, 3));
  write_file(dir.file("train-labels-idx1-ubyte"), idx_labels({1, 2, 3}, -1, 0x00000802));
  expect_error([&] { data::MNIST(dir.str()); },
               {dir.file("train-labels-idx1-ubyte"), "wrong magic number 0x00000802", "0x00000801"});
  // Still gzipped.
  write_file(dir.file("train-images-idx3-ubyte"), Bytes{0x1f, 0x8b, 0x08, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  expect_error([&] { data::MNIST(dir.str()); }, {"wrong magic number 0x1f8b0808", "gzip"});
}

TEST(DataMNIST, TruncatedFiles) {
  TempDir dir;
  write_mnist(dir, "train", 5);
  const std::string images = dir.file("train-images-idx3-ubyte"), labels = dir.file("train-labels-idx1-ubyte");
  // Shorter than the header.
  Bytes full = idx_images(5, 4, 3);
  write_file(images, Bytes(full.begin(), full.begin() + 10));
  expect_error([&] { data::MNIST(dir.str()); }, {images, "is truncated", "10 bytes", "16-byte header"});
  write_file(images, Bytes(full.begin(), full.begin() + 3));
  expect_error([&] { data::MNIST(dir.str()); }, {images, "is truncated", "3 bytes", "16-byte header"});
  // Header promises 5 images; the file ends 7 bytes into image 3.
  write_file(images, Bytes(full.begin(), full.begin() + 16 + 3 * 12 + 7));
  expect_error([&] { data::MNIST(dir.str()); },
               {images, "is truncated", "header says 5 images of 4x3", "76 bytes with the header", "file has 59 bytes",
                "ends inside image 3", "byte offset 52"});
  write_file(images, full);
  write_file(labels, Bytes{0, 0, 8});
  expect_error([&] { data::MNIST(dir.str()); }, {labels, "is truncated", "3 bytes", "8-byte header"});
  write_file(labels, idx_labels({0, 1, 2}, 5));
  expect_error([&] { data::MNIST(dir.str()); }, {labels, "is truncated", "header says 5 labels", "file has 11 bytes"});
}

TEST(DataMNIST, CountThatDisagreesWithTheFileSize) {
  TempDir dir;
  write_mnist(dir, "train", 5);
  const std::string images = dir.file("train-images-idx3-ubyte"), labels = dir.file("train-labels-idx1-ubyte");
  write_file(images, idx_images(3, 4, 3, /*images_written=*/5));  // header says 3, file holds 5
  expect_error([&] { data::MNIST(dir.str()); }, {images, "image count 3 disagrees with the file size", "need 52 bytes",
                                                 "file has 76", "24 extra bytes after byte offset 52"});
  write_file(images, idx_images(5, 4, 3));
  write_file(labels, idx_labels({0, 1, 2, 3, 4}, 4));
  expect_error([&] { data::MNIST(dir.str()); },
               {labels, "label count 4 disagrees with the file size", "1 extra bytes after byte offset 12"});
  write_file(images, idx_images(5, 0, 3));
  expect_error([&] { data::MNIST(dir.str()); }, {images, "empty image size 0x3"});
  // A huge count must not overflow the size arithmetic or allocate: it is just "truncated".
  write_file(images, idx_images(0xffffffffu, 0xffffffffu, 0xffffffffu, 0));
  expect_error([&] { data::MNIST(dir.str()); },
               {images, "is truncated", "header says 4294967295 images of 4294967295x4294967295",
                "79228162458924105385300197391 bytes with the header", "ends inside image 0"});
}

TEST(DataMNIST, ImagesAndLabelsOfDifferentLengths) {
  TempDir dir;
  write_mnist(dir, "train", 5);
  write_file(dir.file("train-labels-idx1-ubyte"), idx_labels({0, 1, 2, 3}));
  expect_error([&] { data::MNIST(dir.str()); }, {dir.file("train-images-idx3-ubyte"), "has 5 images",
                                                 dir.file("train-labels-idx1-ubyte"), "has 4 labels"});
}

TEST(DataMNIST, LabelOutOfRange) {
  TempDir dir;
  write_mnist(dir, "train", 5);
  write_file(dir.file("train-labels-idx1-ubyte"), idx_labels({0, 1, 10, 3, 4}));
  expect_error([&] { data::MNIST(dir.str()); },
               {dir.file("train-labels-idx1-ubyte"), "label 10 at index 2 (byte offset 10) is out of range [0, 9]"});
}

// The real files, when scripts/fetch_mnist.sh has been run (skipped otherwise).
TEST(DataMNIST, RealDataWhenPresent) {
  const std::string root = ember::test::data_dir() + "/../../data/mnist";
  if (!fs::exists(root + "/t10k-labels-idx1-ubyte")) GTEST_SKIP() << "no " << root << " (bash scripts/fetch_mnist.sh)";
  data::MNIST train(root, true), test(root, false);
  EXPECT_EQ(train.size(), 60000);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(train.sample_shape(), Shape({1, 28, 28}));
  EXPECT_EQ(train.get(0).target, 5);  // the famous first digits
  EXPECT_EQ(test.get(0).target, 7);
  double sum = 0;
  const uint8_t* p = train.images().data<uint8_t>();
  for (int64_t i = 0; i < train.images().numel(); ++i) sum += p[i];
  EXPECT_NEAR(sum / train.images().numel() / 255.0, data::MNIST::kMean, 1e-4);
}

// ---------------------------------------------------------------- CIFAR-10

TEST(DataCIFAR10, ParsesAllBatchFilesInOrder) {
  TempDir dir;
  int64_t first = 0;
  for (int i = 1; i <= 5; ++i) {  // files of different lengths: 1..5 records
    std::vector<uint8_t> labels;
    for (int r = 0; r < i; ++r) labels.push_back(static_cast<uint8_t>((first + r) % 10));
    write_file(dir.file("data_batch_" + std::to_string(i) + ".bin"), cifar_records(labels, first));
    first += i;
  }
  write_file(dir.file("test_batch.bin"), cifar_records({9, 3}, 100));
  data::CIFAR10 train(dir.str(), true), test(dir.str(), false);
  ASSERT_EQ(train.size(), 15);
  EXPECT_EQ(test.size(), 2);
  EXPECT_EQ(train.sample_shape(), Shape({3, 32, 32}));
  for (int64_t i = 0; i < 15; ++i) {
    data::Example ex = train.get(i);
    EXPECT_EQ(ex.target, i % 10);
    const float* x = ex.data.data<float>();
    // Channel-major: red plane, then green, then blue, exactly as stored.
    for (int64_t p : {0, 1, 31, 32, 1023, 1024, 2047, 2048, 3071}) EXPECT_FLOAT_EQ(x[p], pixel(i, p) / 255.0f);
  }
  EXPECT_EQ(test.get(0).target, 9);
  EXPECT_EQ(test.get(1).target, 3);
  EXPECT_FLOAT_EQ(test.get(1).data.data<float>()[5], pixel(101, 5) / 255.0f);
  // Per-channel normalisation.
  train.normalize(data::CIFAR10::kMean, data::CIFAR10::kStd);
  data::Example ex4 = train.get(4);
  const float* x = ex4.data.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    EXPECT_NEAR(x[c * 1024 + 7], (pixel(4, c * 1024 + 7) / 255.0 - data::CIFAR10::kMean[c]) / data::CIFAR10::kStd[c],
                1e-5);
}

TEST(DataCIFAR10, MissingFileIsNamed) {
  TempDir dir;
  write_file(dir.file("data_batch_1.bin"), cifar_records({1}, 0));
  write_file(dir.file("data_batch_2.bin"), cifar_records({1}, 0));
  expect_error([&] { data::CIFAR10(dir.str(), true); },
               {"CIFAR10", dir.file("data_batch_3.bin"), "does not exist", "cifar-10-binary.tar.gz"});
  expect_error([&] { data::CIFAR10(dir.str(), false); }, {dir.file("test_batch.bin"), "does not exist"});
}

TEST(DataCIFAR10, TruncatedEmptyAndBadLabels) {
  TempDir dir;
  const std::string f = dir.file("test_batch.bin");
  Bytes b = cifar_records({1, 2, 3}, 0);
  write_file(f, Bytes(b.begin(), b.begin() + 2 * 3073 + 100));
  expect_error([&] { data::CIFAR10(dir.str(), false); },
               {f, "is truncated", "6246 bytes is not a whole number of 3073-byte records",
                "record 2 at byte offset 6146 has only 100 of its 3073 bytes"});
  write_file(f, Bytes{});
  expect_error([&] { data::CIFAR10(dir.str(), false); }, {f, "is empty"});
  write_file(f, cifar_records({4, 10, 2}, 0));
  expect_error([&] { data::CIFAR10(dir.str(), false); },
               {f, "label 10 of record 1 (byte offset 3073) is out of range [0, 9]"});
}

// ---------------------------------------------------------------- datasets in memory

TEST(DataTensorDataset, CopiesSamplesAndChecksShapes) {
  Tensor x = arange(24, kFloat64).reshape({4, 2, 3});
  Tensor y = from_vector<int64_t>({3, 1, 2, 0});
  data::TensorDataset ds(x, y);
  EXPECT_EQ(ds.size(), 4);
  EXPECT_EQ(ds.sample_shape(), Shape({2, 3}));
  data::Example ex = ds.get(2);
  EXPECT_EQ(ex.target, 2);
  test::expect_close(ex.data, arange(12, 18, 1, kFloat32).reshape({2, 3}));
  expect_error(
      [&] {
        data::TensorDataset(x, from_vector<int64_t>({1, 2}));
      },
      {"TensorDataset", "targets must have shape [4]", "[2]"});
  expect_error([&] { data::TensorDataset(x, from_vector<float>({1, 2, 3, 4})); }, {"integer class labels"});
}

TEST(DataImageDataset, ChecksItsInputs) {
  Tensor images = zeros({2, 1, 2, 2}, kUInt8);
  expect_error(
      [&] {
        data::ImageDataset("Mine", images, from_vector<int64_t>({0, 7}), 5);
      },
      {"Mine", "label 7 of sample 1 is out of range [0, 4]"});
  expect_error(
      [&] {
        data::ImageDataset("Mine", zeros({2, 4}, kUInt8), from_vector<int64_t>({0, 1}), 5);
      },
      {"Mine", "uint8 tensor [N, C, H, W]", "[2, 4]"});
}

// ---------------------------------------------------------------- transforms

// A [C, H, W] sample with values 1, 2, 3, ... (so every moved pixel is recognisable).
std::vector<float> iota_image(int64_t c, int64_t h, int64_t w) {
  std::vector<float> v(c * h * w);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i + 1);
  return v;
}

TEST(DataTransforms, NormalizeValues) {
  std::vector<float> x = {0.0f, 0.5f, 1.0f, 0.25f};  // [2, 1, 2]
  data::Normalize norm({0.5f, 0.25f}, {0.5f, 2.0f});
  norm.check({2, 1, 2});
  data::SampleRng rng(0, 0, 0);
  norm.apply(x.data(), {2, 1, 2}, rng);
  EXPECT_NEAR(x[0], -1.0f, 1e-6);
  EXPECT_NEAR(x[1], 0.0f, 1e-6);
  EXPECT_NEAR(x[2], 0.375f, 1e-6);
  EXPECT_NEAR(x[3], 0.0f, 1e-6);
  expect_error([&] { norm.check({3, 4, 4}); }, {"Normalize", "has 2 means/stds", "[3, 4, 4]", "3 channels"});
  expect_error([&] { norm.check({5}); }, {"Normalize", "[C, H, W] or [H, W]", "[5]"});
  expect_error([&] { data::Normalize({0.1f}, {-1.0f}); }, {"Normalize", "positive std"});
  expect_error([&] { data::Normalize({0.1f, 0.2f}, {1.0f}); }, {"Normalize", "got 2 and 1"});
}

TEST(DataTransforms, SampleRngIsKeyedBySeedEpochAndIndex) {
  auto draw = [](uint64_t seed, uint64_t epoch, int64_t index) {
    data::SampleRng r(seed, epoch, index);
    std::vector<uint32_t> v;
    for (int i = 0; i < 9; ++i) v.push_back(r.next_u32());  // crosses a Philox block boundary
    return v;
  };
  EXPECT_EQ(draw(1, 2, 3), draw(1, 2, 3));
  EXPECT_NE(draw(1, 2, 3), draw(2, 2, 3));
  EXPECT_NE(draw(1, 2, 3), draw(1, 3, 3));
  EXPECT_NE(draw(1, 2, 3), draw(1, 2, 4));
  data::SampleRng r(5, 0, 0);
  for (int i = 0; i < 1000; ++i) {
    int64_t k = r.uniform_int(7);
    ASSERT_TRUE(k >= 0 && k < 7);
    float u = r.uniform();
    ASSERT_TRUE(u >= 0.0f && u < 1.0f);
  }
}

// out(y, x) = in(y + dy, x + dx) or fill: the reference RandomCrop must match.
std::vector<float> shifted(const std::vector<float>& in, int64_t c, int64_t h, int64_t w, int64_t dy, int64_t dx,
                           float fill) {
  std::vector<float> out(in.size());
  for (int64_t k = 0; k < c; ++k)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        int64_t sy = y + dy, sx = x + dx;
        bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
        out[(k * h + y) * w + x] = inside ? in[(k * h + sy) * w + sx] : fill;
      }
  return out;
}

TEST(DataTransforms, RandomCropMatchesPadThenCropAndIsDeterministic) {
  const int64_t C = 2, H = 3, W = 4, pad = 2;
  const Shape shape{C, H, W};
  data::RandomCrop crop(pad, -1.0f);
  crop.check(shape);
  std::set<std::pair<int64_t, int64_t>> offsets_seen;
  for (int64_t index = 0; index < 400; ++index) {
    // The offsets the transform will draw: the first two draws of this sample's stream.
    data::SampleRng replay(7, 1, index);
    const int64_t dy = replay.uniform_int(2 * pad + 1) - pad, dx = replay.uniform_int(2 * pad + 1) - pad;
    offsets_seen.insert({dy, dx});
    std::vector<float> x = iota_image(C, H, W);
    data::SampleRng rng(7, 1, index);
    crop.apply(x.data(), shape, rng);
    ASSERT_EQ(x, shifted(iota_image(C, H, W), C, H, W, dy, dx, -1.0f)) << "dy " << dy << " dx " << dx;
    // Same key, same result.
    std::vector<float> again = iota_image(C, H, W);
    data::SampleRng rng2(7, 1, index);
    crop.apply(again.data(), shape, rng2);
    ASSERT_EQ(x, again);
  }
  EXPECT_EQ(offsets_seen.size(), 25u) << "every offset in [-2, 2]^2 should occur";

  // A hand-checked case on a 1x3x3 image: shifting by (dy, dx) = (1, -1) (content moves up and right).
  std::vector<float> img = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(shifted(img, 1, 3, 3, 1, -1, 0), (std::vector<float>{0, 4, 5, 0, 7, 8, 0, 0, 0}));
  // Padding 0 is the identity.
  std::vector<float> x = iota_image(1, 3, 3);
  data::SampleRng rng(0, 0, 0);
  data::RandomCrop(0).apply(x.data(), {1, 3, 3}, rng);
  EXPECT_EQ(x, iota_image(1, 3, 3));
  expect_error([] { data::RandomCrop(-1); }, {"RandomCrop", "non-negative", "-1"});
}

TEST(DataTransforms, RandomHorizontalFlip) {
  const Shape shape{2, 2, 3};
  std::vector<float> x = iota_image(2, 2, 3);
  data::SampleRng rng(0, 0, 0);
  data::RandomHorizontalFlip(1.0).apply(x.data(), shape, rng);
  EXPECT_EQ(x, (std::vector<float>{3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10}));
  data::RandomHorizontalFlip(0.0).apply(x.data(), shape, rng);
  EXPECT_EQ(x, (std::vector<float>{3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10}));
  // p = 0.5: about half the samples flip, and the same (seed, epoch, index) always decides the same.
  data::RandomHorizontalFlip half;
  int flipped = 0;
  for (int64_t index = 0; index < 1000; ++index) {
    std::vector<float> a = iota_image(2, 2, 3), b = iota_image(2, 2, 3);
    data::SampleRng ra(3, 0, index), rb(3, 0, index);
    half.apply(a.data(), shape, ra);
    half.apply(b.data(), shape, rb);
    ASSERT_EQ(a, b);
    flipped += a[0] == 3.0f;
  }
  EXPECT_GT(flipped, 430);
  EXPECT_LT(flipped, 570);
  expect_error([] { data::RandomHorizontalFlip(1.5); }, {"RandomHorizontalFlip", "[0, 1]", "1.5"});
}

// ---------------------------------------------------------------- DataLoader

// Sample i is the value i in every element and has label i, so batches show exactly which samples
// they hold. Optional: a per-sample delay (so workers finish out of order) and a sample that throws.
class CountingDataset : public data::Dataset {
 public:
  explicit CountingDataset(int64_t n, Shape shape = {2, 3}) : n_(n), shape_(shape) {}
  int64_t size() const override { return n_; }
  Shape sample_shape() const override { return shape_; }
  std::string name() const override { return "CountingDataset"; }
  void get_into(int64_t index, float* data_out, int64_t* target_out) const override {
    calls++;
    if (index == bad_index) {
      if (throw_std) throw std::runtime_error("disk on fire at sample " + std::to_string(index));
      EMBER_FAIL("CountingDataset: sample ", index, " is corrupt");
    }
    if (delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us * ((index * 7) % 5)));
    std::fill(data_out, data_out + shape_.numel(), static_cast<float>(index));
    *target_out = index;
  }
  std::atomic<int64_t> bad_index{-1};  // atomic: a test may change it while stale workers still read
  bool throw_std = false;
  int delay_us = 0;
  mutable std::atomic<int64_t> calls{0};

 private:
  int64_t n_;
  Shape shape_;
};

struct Seen {
  std::vector<std::vector<float>> data;
  std::vector<std::vector<int64_t>> targets;
  bool operator==(const Seen&) const = default;
};

// One epoch's batches, copied out.
Seen run_epoch(DataLoader& loader) {
  Seen s;
  for (auto& batch : loader) {
    s.data.push_back(batch.data.to_vector<float>());
    s.targets.push_back(batch.target.to_vector<int64_t>());
  }
  return s;
}

// Runs fn on another thread; false if it has not finished within `limit` (the thread is then
// abandoned, so a hang fails this test instead of blocking the whole suite).
bool finishes_within(std::chrono::seconds limit, std::function<void()> fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> f = done->get_future();
  std::thread([fn = std::move(fn), done] {
    try {
      fn();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  }).detach();
  if (f.wait_for(limit) != std::future_status::ready) return false;
  f.get();  // rethrows a failure inside fn
  return true;
}

TEST(DataLoaderTest, BatchShapesDtypesAndDropLast) {
  auto ds = std::make_shared<CountingDataset>(10, Shape{2, 3});
  for (int workers : {0, 2}) {
    DataLoader loader(ds, DataLoaderOptions().batch_size(4).num_workers(workers));
    EXPECT_EQ(loader.num_batches(), 3);
    std::vector<int64_t> sizes;
    std::vector<int64_t> all;
    int64_t k = 0;
    for (auto& batch : loader) {
      EXPECT_EQ(batch.index, k++);
      EXPECT_EQ(batch.data.dtype(), kFloat32);
      EXPECT_EQ(batch.target.dtype(), kInt64);
      EXPECT_EQ(batch.data.shape(), Shape({batch.size(), 2, 3}));
      EXPECT_EQ(batch.target.shape(), Shape({batch.size()}));
      EXPECT_TRUE(batch.data.is_contiguous());
      sizes.push_back(batch.size());
      for (int64_t t : batch.target.to_vector<int64_t>()) all.push_back(t);
      // Each row holds its own sample.
      auto d = batch.data.to_vector<float>();
      auto t = batch.target.to_vector<int64_t>();
      for (int64_t i = 0; i < batch.size(); ++i) EXPECT_EQ(d[i * 6 + 5], static_cast<float>(t[i]));
    }
    EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2})) << workers << " workers";
    EXPECT_EQ(all, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})) << "no shuffle: in order";

    DataLoader dropping(ds, DataLoaderOptions().batch_size(4).drop_last().num_workers(workers));
    EXPECT_EQ(dropping.num_batches(), 2);
    sizes.clear();
    for (auto& batch : dropping) sizes.push_back(batch.size());
    EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4}));
  }
  // Edge cases: batch larger than the data set, and an empty data set.
  DataLoader big(ds, DataLoaderOptions().batch_size(64).drop_last());
  EXPECT_EQ(big.num_batches(), 0);
  EXPECT_TRUE(big.begin() == big.end());
  CountingDataset empty_ds(0);
  DataLoader empty_loader(empty_ds, DataLoaderOptions().batch_size(3).num_workers(2));
  EXPECT_TRUE(run_epoch(empty_loader).targets.empty());
}

TEST(DataLoaderTest, ShuffleIsTheSameForAnyNumberOfWorkers) {
  auto ds = std::make_shared<CountingDataset>(103);
  ds->delay_us = 100;  // uneven sample times, so workers finish batches out of order
  Seen reference;
  for (int workers : {0, 1, 2, 4}) {
    DataLoader loader(ds, DataLoaderOptions().batch_size(8).shuffle().seed(42).num_workers(workers));
    Seen epoch0 = run_epoch(loader);
    Seen epoch1 = run_epoch(loader);
    ASSERT_EQ(epoch0.targets.size(), 13u);
    if (workers == 0) {
      reference = epoch0;
      EXPECT_NE(epoch0.targets, epoch1.targets) << "each epoch must get a new permutation";
    } else {
      EXPECT_EQ(epoch0, reference) << workers << " workers";
    }
    // A fresh loader with the same seed replays the same epochs; set_epoch jumps to one.
    DataLoader replay(ds, DataLoaderOptions().batch_size(8).shuffle().seed(42).num_workers(workers));
    replay.set_epoch(1);
    EXPECT_EQ(run_epoch(replay), epoch1) << workers << " workers";
    EXPECT_EQ(replay.epoch(), 1);
  }
  DataLoader other_seed(ds, DataLoaderOptions().batch_size(8).shuffle().seed(43));
  EXPECT_NE(run_epoch(other_seed).targets, reference.targets);
}

TEST(DataLoaderTest, EverySampleExactlyOncePerEpoch) {
  auto ds = std::make_shared<CountingDataset>(250);
  DataLoader loader(ds, DataLoaderOptions().batch_size(16).shuffle().seed(9).num_workers(3));
  std::vector<std::vector<int64_t>> orders;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> order;
    for (auto& batch : loader)
      for (int64_t t : batch.target.to_vector<int64_t>()) order.push_back(t);
    EXPECT_EQ(loader.epoch(), epoch);
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> expected(250);
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(sorted, expected) << "epoch " << epoch;
    orders.push_back(order);
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
  // drop_last: every sample at most once, exactly num_batches * batch_size of them.
  DataLoader dropping(ds, DataLoaderOptions().batch_size(16).shuffle().drop_last().num_workers(2));
  std::set<int64_t> seen;
  int64_t count = 0;
  for (auto& batch : dropping)
    for (int64_t t : batch.target.to_vector<int64_t>()) {
      seen.insert(t);
      ++count;
    }
  EXPECT_EQ(count, 15 * 16);
  EXPECT_EQ(seen.size(), static_cast<size_t>(count));
}

// Tiny batches and no delays: the ring turns over constantly, which exposes any race between a
// worker filling a slot and the consumer emptying it (a lost or reordered batch shows here).
TEST(DataLoaderTest, ManyTinyBatchesStayInOrder) {
  auto ds = std::make_shared<CountingDataset>(3000, Shape{1});
  DataLoader reference(ds, DataLoaderOptions().batch_size(1).shuffle().seed(3));
  std::vector<Seen> expected;
  for (int epoch = 0; epoch < 3; ++epoch) expected.push_back(run_epoch(reference));
  for (int workers : {1, 2, 4, 8}) {
    for (int depth : {1, 3}) {
      DataLoader loader(ds,
                        DataLoaderOptions().batch_size(1).shuffle().seed(3).num_workers(workers).prefetch_depth(depth));
      for (int epoch = 0; epoch < 3; ++epoch)
        ASSERT_EQ(run_epoch(loader), expected[epoch]) << workers << " workers, depth " << depth << ", epoch " << epoch;
    }
  }
}

TEST(DataLoaderTest, TransformsAreDeterministicWhateverTheWorkerCount) {
  // A CIFAR-shaped pipeline (fused normalise + crop + flip) on random images.
  const int64_t n = 37;
  Tensor images = empty({n, 3, 8, 8}, kUInt8);
  Generator g(1);
  Tensor r = randint(0, 256, {images.numel()}, TensorOptions(kInt64), &g);
  for (int64_t i = 0; i < images.numel(); ++i) images.data<uint8_t>()[i] = static_cast<uint8_t>(r.data<int64_t>()[i]);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = i % 10;
  auto ds = std::make_shared<data::ImageDataset>("Synthetic", images, from_vector<int64_t>(labels), 10);
  ds->normalize({0.5f, 0.4f, 0.3f}, {0.2f, 0.25f, 0.3f});
  DataLoaderOptions opts = DataLoaderOptions()
                               .batch_size(5)
                               .shuffle()
                               .seed(11)
                               .transform(data::RandomCrop(2))
                               .transform(data::RandomHorizontalFlip());
  Seen reference;
  for (int workers : {0, 1, 2, 4}) {
    DataLoader loader(ds, opts.num_workers(workers));
    Seen s = run_epoch(loader);
    Seen s1 = run_epoch(loader);
    if (workers == 0) {
      reference = s;
      EXPECT_NE(s.data, s1.data) << "a new epoch augments differently";
    } else {
      EXPECT_EQ(s, reference) << workers << " workers: batches must be bit-identical";
    }
  }
  // And the loader's output is exactly get() followed by the transforms, run with the stream of
  // (seed, epoch, sample index).
  DataLoader loader(ds, opts);
  auto it = loader.begin();
  const std::vector<float> batch0 = it->data.to_vector<float>();
  const std::vector<int64_t> targets0 = it->target.to_vector<int64_t>();
  const std::vector<float> row0(batch0.begin(), batch0.begin() + 3 * 8 * 8);
  // Which sample is row 0? Try each index with its epoch-0 stream; exactly one must reproduce it.
  int matches = 0;
  for (int64_t i = 0; i < n; ++i) {
    data::Example ex = ds->get(i);
    data::SampleRng rng(11, 0, i);
    for (const auto& t : opts.transforms_) t->apply(ex.data.data<float>(), ds->sample_shape(), rng);
    matches += ex.data.to_vector<float>() == row0 && ex.target == targets0[0];
  }
  EXPECT_EQ(matches, 1);
}

TEST(DataLoaderTest, DestroyMidEpochJoinsWorkers) {
  auto ds = std::make_shared<CountingDataset>(10000, Shape{16});
  ds->delay_us = 200;
  // Workers blocked on a full queue (the consumer stopped after one batch).
  EXPECT_TRUE(finishes_within(std::chrono::seconds(20), [ds] {
    DataLoader loader(ds, DataLoaderOptions().batch_size(32).shuffle().num_workers(4).prefetch_depth(2));
    auto it = loader.begin();
    EXPECT_EQ(it->size(), 32);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the queue fill
  })) << "destroying a loader mid-epoch hung";
  // Workers in the middle of slow batches.
  auto slow = std::make_shared<CountingDataset>(1000, Shape{4});
  slow->delay_us = 5000;
  EXPECT_TRUE(finishes_within(std::chrono::seconds(20), [slow] {
    DataLoader loader(slow, DataLoaderOptions().batch_size(4).num_workers(3));
    auto it = loader.begin();
    ++it;
  })) << "destroying a loader with busy workers hung";
  // A loader that never started an epoch, and one abandoned between epochs.
  EXPECT_TRUE(finishes_within(std::chrono::seconds(20), [ds] {
    { DataLoader unused(ds, DataLoaderOptions().batch_size(8).num_workers(2)); }
    DataLoader loader(ds, DataLoaderOptions().batch_size(8).num_workers(2));
    loader.begin();
    loader.begin();  // abandons epoch 0 mid-way: its queued batches are dropped
  })) << "restarting or destroying an idle loader hung";
}

TEST(DataLoaderTest, NewEpochDiscardsTheRestOfTheOldOne) {
  auto ds = std::make_shared<CountingDataset>(40);
  ds->delay_us = 100;
  DataLoader loader(ds, DataLoaderOptions().batch_size(4).shuffle().seed(5).num_workers(2));
  auto it = loader.begin();
  ++it;  // take two batches of epoch 0, then move on
  Seen epoch1 = run_epoch(loader);
  DataLoader fresh(ds, DataLoaderOptions().batch_size(4).shuffle().seed(5));
  fresh.set_epoch(1);
  EXPECT_EQ(epoch1, run_epoch(fresh)) << "leftovers of epoch 0 leaked into epoch 1";
  // The abandoned iterator refuses to continue rather than silently reading epoch 2.
  loader.begin();
  expect_error([&] { ++it; }, {"DataLoader", "belongs to an earlier epoch", "epoch 2"});
}

TEST(DataLoaderTest, WorkerExceptionReachesTheConsumer) {
  for (int workers : {0, 1, 3}) {
    for (bool throw_std : {false, true}) {
      auto ds = std::make_shared<CountingDataset>(40);
      ds->bad_index = 13;
      ds->throw_std = throw_std;
      DataLoader loader(ds, DataLoaderOptions().batch_size(4).num_workers(workers));
      int64_t batches_before = 0;
      std::string message;
      try {
        for (auto& batch : loader) {
          (void)batch;
          ++batches_before;
        }
      } catch (const Error& e) {
        message = e.what();
        // The original exception is nested inside, with its type.
        try {
          std::rethrow_if_nested(e);
          ADD_FAILURE() << "no nested exception";
        } catch (const std::runtime_error& inner) {
          EXPECT_NE(std::string(inner.what()).find("13"), std::string::npos);
        }
      }
      SCOPED_TRACE(std::to_string(workers) + " workers, throw_std " + std::to_string(throw_std));
      EXPECT_EQ(batches_before, 3) << "batches 0-2 arrive, batch 3 holds sample 13";
      EXPECT_NE(message.find("DataLoader: loading sample 13 (batch 3 of epoch 0) failed"), std::string::npos)
          << message;
      EXPECT_NE(message.find(throw_std ? "disk on fire at sample 13" : "CountingDataset: sample 13 is corrupt"),
                std::string::npos)
          << message;
      // The loader is still usable: the next epoch starts fresh.
      ds->bad_index = -1;
      EXPECT_EQ(run_epoch(loader).targets.size(), 10u);
    }
  }
}

// Counts allocations, to check the batch-buffer hook and recycling.
class CountingAllocator : public Allocator {
 public:
  void* allocate(size_t n) override {
    stats_.on_alloc(n);
    return cpu_allocator().allocate(n);
  }
  void deallocate(void* p, size_t n) override {
    stats_.on_free(n);
    cpu_allocator().deallocate(p, n);
  }
  Device device() const override { return kCPU; }
  AllocatorStats stats() const override { return stats_.snapshot(); }

 private:
  StatsCounter stats_;
};

TEST(DataLoaderTest, BatchesComeFromTheAllocatorAndAreRecycled) {
  static CountingAllocator alloc;  // outlives every batch
  auto ds = std::make_shared<CountingDataset>(100);
  const int64_t allocated_before = alloc.stats().total_allocations;
  Tensor kept;
  {
    DataLoader loader(ds, DataLoaderOptions().batch_size(10).num_workers(2).allocator(&alloc));
    EXPECT_EQ(&loader.allocator(), &alloc);
    for (int epoch = 0; epoch < 3; ++epoch)
      for (auto& batch : loader) kept = batch.data;  // keeps the last batch past the loader
    // 30 batches x 2 buffers = 60 allocations without recycling. With it, only as many as are ever
    // alive at once: the 4-batch window, the consumer's batch and `kept` (2 buffers per batch).
    EXPECT_LE(alloc.stats().total_allocations - allocated_before, 2 * (4 + 1 + 1)) << "batch buffers are not reused";
  }
  EXPECT_EQ(kept.to_vector<float>()[0], 90.0f) << "a batch stays valid after its loader is gone";
  EXPECT_EQ(alloc.stats().live_allocations, 1);  // just `kept`
  kept = Tensor();
  EXPECT_EQ(alloc.stats().live_allocations, 0);

  // pin_memory without a GPU (or without a registered pinned allocator) uses ordinary memory.
  DataLoader pinned(ds, DataLoaderOptions().batch_size(10).pin_memory());
  if (!cuda_is_available() || ember::pinned_allocator() == nullptr) {
    EXPECT_EQ(&pinned.allocator(), &cpu_allocator());
  }
  Allocator* before = ember::pinned_allocator();
  set_pinned_allocator(&alloc);
  DataLoader pinned2(ds, DataLoaderOptions().batch_size(10).pin_memory());
  EXPECT_EQ(&pinned2.allocator(), cuda_is_available() ? static_cast<Allocator*>(&alloc) : &cpu_allocator());
  set_pinned_allocator(before);
}

TEST(DataLoaderTest, OptionErrors) {
  auto ds = std::make_shared<CountingDataset>(10, Shape{2, 3});
  expect_error([&] { DataLoader(ds, DataLoaderOptions().batch_size(0)); },
               {"DataLoader", "batch_size must be at least 1, got 0"});
  expect_error([&] { DataLoader(ds, DataLoaderOptions().num_workers(-1)); },
               {"DataLoader", "num_workers must be >= 0, got -1"});
  expect_error([&] { DataLoader(ds, DataLoaderOptions().prefetch_depth(0)); },
               {"DataLoader", "prefetch_depth must be at least 1"});
  expect_error([&] { DataLoader(std::shared_ptr<const data::Dataset>(), {}); }, {"DataLoader", "dataset is null"});
  DataLoaderOptions bad = DataLoaderOptions().transform(data::Normalize({0.1f, 0.2f, 0.3f}, {1.0f, 1.0f, 1.0f}));
  CountingDataset three_d(4, Shape{1, 2, 3});
  expect_error([&] { DataLoader(three_d, bad); }, {"Normalize", "has 3 means/stds", "[1, 2, 3]", "1 channels"});
  CountingDataset flat(4, Shape{6});
  expect_error([&] { DataLoader(flat, DataLoaderOptions().transform(data::RandomCrop(1))); },
               {"RandomCrop", "[C, H, W] or [H, W]", "[6]"});
}

}  // namespace
}  // namespace ember
