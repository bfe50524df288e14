#include "data/cifar10.h"

#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "core/checked_math.h"
#include "core/ops.h"
#include "data/binary_file.h"

namespace ember::data {

namespace {

constexpr int64_t kPixels = 3 * 32 * 32;  // 3072 bytes of image per record
constexpr int64_t kRecord = 1 + kPixels;  // 3073 bytes: label byte + pixels
const char* kDownloadHint =
    "Download the binary version from https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and pass the "
    "extracted cifar-10-batches-bin/ folder as root";

ImageDataset load_cifar10(const std::string& root, bool train) {
  std::vector<std::string> names;
  if (train) {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  // Open and size-check every file first, so the images tensor is allocated once at its final size.
  std::vector<std::unique_ptr<detail::BinaryFile>> files;
  int64_t total = 0;
  for (const auto& n : names) {
    auto f = std::make_unique<detail::BinaryFile>(detail::join_path(root, n), "CIFAR10", kDownloadHint);
    EMBER_CHECK(f->size() > 0, f->where(), " is empty; a CIFAR-10 batch file holds 3073-byte records");
    int64_t whole = f->size() / kRecord, rest = f->size() % kRecord;
    EMBER_CHECK(rest == 0, f->where(), " is truncated: ", f->size(), " bytes is not a whole number of ", kRecord,
                "-byte records (1 label + 3x32x32 pixels); record ", whole, " at byte offset ", whole * kRecord,
                " has only ", rest, " of its ", kRecord, " bytes");
    total = checked_add(total, whole, "CIFAR10: total record count");
    files.push_back(std::move(f));
  }
  checked_nbytes({total, 3, 32, 32}, 1, "CIFAR10: images tensor");
  Tensor images = empty({total, 3, 32, 32}, kUInt8);
  Tensor labels = empty({total}, kInt64);
  uint8_t* img = images.data<uint8_t>();
  int64_t* lab = labels.data<int64_t>();
  std::vector<uint8_t> buf;
  int64_t at = 0;  // next sample to fill
  for (auto& f : files) {
    const int64_t records = f->size() / kRecord;
    buf.resize(f->size());
    f->read(0, buf.data(), f->size());
    for (int64_t r = 0; r < records; ++r, ++at) {
      const uint8_t* rec = buf.data() + r * kRecord;
      EMBER_CHECK(rec[0] < 10, f->where(), ": label ", int(rec[0]), " of record ", r, " (byte offset ", r * kRecord,
                  ") is out of range [0, 9]");
      lab[at] = rec[0];
      std::memcpy(img + at * kPixels, rec + 1, kPixels);
    }
  }
  return ImageDataset("CIFAR10", images, labels, 10);
}

}  // namespace

CIFAR10::CIFAR10(const std::string& root, bool train) : ImageDataset(load_cifar10(root, train)) {}

bool CIFAR10::is_synthetic(const std::string& root) {
  std::error_code ec;  // an unreadable folder is reported when the batch files are opened
  return std::filesystem::exists(std::filesystem::path(root) / kSyntheticMarker, ec);
}

}  // namespace ember::data
