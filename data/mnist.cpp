#include "data/mnist.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "core/checked_math.h"
#include "core/ops.h"
#include "data/binary_file.h"

namespace ember::data {

namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr int64_t kImagesHeader = 16;          // magic, count, rows, cols
constexpr int64_t kLabelsHeader = 8;           // magic, count
const char* kFetchHint =
    "Run `bash scripts/fetch_mnist.sh` from the repository root to download MNIST into data/mnist/";

using u128 = unsigned __int128;

std::string u128_str(u128 v) {  // iostreams cannot print 128-bit integers
  std::string s;
  do {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  } while (v != 0);
  return s;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Names what a wrong magic number probably is, so swapped image/label files are obvious.
std::string magic_hint(uint32_t magic) {
  if (magic == kImagesMagic) return " (that is an IDX image file)";
  if (magic == kLabelsMagic) return " (that is an IDX label file)";
  if ((magic & 0xff000000u) == 0x1f000000u) return " (a gzip file? decompress it first)";
  return "";
}

}  // namespace

Tensor read_idx_images(const std::string& path, const std::string& who) {
  detail::BinaryFile file(path, who, kFetchHint);
  // The magic number first (when there are 4 bytes to read): a wrong file is named as such, even
  // when it is also too short for an image header.
  unsigned char h[kImagesHeader];
  file.read(0, h, std::min<int64_t>(file.size(), kImagesHeader));
  uint32_t magic = file.size() >= 4 ? detail::read_be32(h) : 0;
  EMBER_CHECK(file.size() < 4 || magic == kImagesMagic, file.where(), ": wrong magic number ", hex32(magic),
              " at byte offset 0", magic_hint(magic), "; an IDX image file starts with ", hex32(kImagesMagic));
  EMBER_CHECK(file.size() >= kImagesHeader, file.where(), " is truncated: it has ", file.size(),
              " bytes, less than the ", kImagesHeader, "-byte header of an IDX image file");
  const int64_t count = detail::read_be32(h + 4), rows = detail::read_be32(h + 8), cols = detail::read_be32(h + 12);
  EMBER_CHECK(rows > 0 && cols > 0, file.where(), ": header gives an empty image size ", rows, "x", cols);
  // Compare the header with the file size before reading anything more. count, rows and cols are
  // 32-bit each, so the size they imply needs up to 96 bits: the arithmetic is done in 128 bits,
  // where no header value, however corrupt, can overflow.
  const u128 image_bytes = u128(rows) * u128(cols);
  const u128 needed = kImagesHeader + u128(count) * image_bytes;
  const auto size = static_cast<u128>(file.size());
  if (needed > size) {
    const auto whole_images = static_cast<int64_t>((size - kImagesHeader) / image_bytes);  // <= file size
    EMBER_FAIL(file.where(), " is truncated: the header says ", count, " images of ", rows, "x", cols, " (",
               u128_str(needed), " bytes with the header) but the file has ", file.size(),
               " bytes; it ends inside image ", whole_images, " (which starts at byte offset ",
               u128_str(kImagesHeader + whole_images * image_bytes), ")");
  }
  EMBER_CHECK(needed == size, file.where(), ": the header's image count ", count,
              " disagrees with the file size: ", count, " images of ", rows, "x", cols, " need ", u128_str(needed),
              " bytes but the file has ", file.size(), " (", u128_str(size - needed), " extra bytes after byte offset ",
              u128_str(needed), ")");
  // The tensor's shape must be one ember can hold even when count is 0 and the file is just its
  // header, which the size checks above accept: rows = cols = 0xffffffff would make a
  // [0, 1, 2^32-1, 2^32-1] tensor whose strides overflow.
  const std::string header_fields = file.where() + ": header fields count, rows, cols (byte offsets 4, 8, 12)";
  checked_numel({count, 1, rows, cols}, header_fields.c_str());
  // From here on count * rows * cols == file size - 16, which fits in int64.
  const int64_t payload = file.size() - kImagesHeader;
  Tensor images = empty({count, 1, rows, cols}, kUInt8);
  file.read(kImagesHeader, images.data_ptr(), payload);  // straight into the tensor, no copy
  return images;
}

Tensor read_idx_labels(const std::string& path, int64_t num_classes, const std::string& who) {
  detail::BinaryFile file(path, who, kFetchHint);
  unsigned char h[kLabelsHeader];
  file.read(0, h, std::min<int64_t>(file.size(), kLabelsHeader));
  uint32_t magic = file.size() >= 4 ? detail::read_be32(h) : 0;
  EMBER_CHECK(file.size() < 4 || magic == kLabelsMagic, file.where(), ": wrong magic number ", hex32(magic),
              " at byte offset 0", magic_hint(magic), "; an IDX label file starts with ", hex32(kLabelsMagic));
  EMBER_CHECK(file.size() >= kLabelsHeader, file.where(), " is truncated: it has ", file.size(),
              " bytes, less than the ", kLabelsHeader, "-byte header of an IDX label file");
  const int64_t count = detail::read_be32(h + 4);
  const int64_t payload = file.size() - kLabelsHeader;
  EMBER_CHECK(count <= payload, file.where(), " is truncated: the header says ", count, " labels (",
              kLabelsHeader + count, " bytes with the header) but the file has ", file.size(), " bytes");
  EMBER_CHECK(count == payload, file.where(), ": the header's label count ", count,
              " disagrees with the file size: ", count, " labels need ", kLabelsHeader + count,
              " bytes but the file has ", file.size(), " (", payload - count, " extra bytes after byte offset ",
              kLabelsHeader + count, ")");
  std::vector<uint8_t> raw(count);
  file.read(kLabelsHeader, raw.data(), count);
  Tensor labels = empty({count}, kInt64);
  int64_t* out = labels.data<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    EMBER_CHECK(raw[i] < num_classes, file.where(), ": label ", int(raw[i]), " at index ", i, " (byte offset ",
                kLabelsHeader + i, ") is out of range [0, ", num_classes - 1, "]");
    out[i] = raw[i];
  }
  return labels;
}

namespace {

ImageDataset load_mnist(const std::string& root, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = detail::join_path(root, prefix + "-images-idx3-ubyte");
  const std::string labels_path = detail::join_path(root, prefix + "-labels-idx1-ubyte");
  Tensor images = read_idx_images(images_path);
  Tensor labels = read_idx_labels(labels_path, 10);
  // An empty split would train on nothing and report NaN losses and accuracies as a result.
  EMBER_CHECK(images.size(0) > 0, "MNIST: '", images_path,
              "' holds no images (its header's count at byte offset 4 is 0); a split needs at least one");
  EMBER_CHECK(images.size(0) == labels.size(0), "MNIST: '", images_path, "' has ", images.size(0), " images but '",
              labels_path, "' has ", labels.size(0), " labels; the two files of a split must have the same count");
  return ImageDataset("MNIST", images, labels, 10);
}

}  // namespace

MNIST::MNIST(const std::string& root, bool train) : ImageDataset(load_mnist(root, train)) {}

}  // namespace ember::data
