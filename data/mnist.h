// MNIST handwritten digits (60000 training and 10000 test images, 1x28x28, labels 0-9), read from
// the four uncompressed IDX files of the original distribution in `root`:
//   train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte
// `bash scripts/fetch_mnist.sh` downloads and verifies them into data/mnist/.
//
// IDX format (all integers big-endian):
//   images: magic 0x00000803 (unsigned bytes, 3 dims), count, rows, cols, then count*rows*cols
//           pixels, image after image, row-major (0 = background, 255 = ink)
//   labels: magic 0x00000801 (unsigned bytes, 1 dim), count, then count label bytes
// Every header field is checked against the file size before anything is read, so a truncated or
// corrupt file is an ember::Error naming the file and the problem, never an out-of-bounds read.
#pragma once

#include <string>

#include "core/tensor.h"
#include "data/image_dataset.h"

namespace ember::data {

class MNIST : public ImageDataset {
 public:
  // Mean and standard deviation of the training pixels (scaled to [0, 1]): normalize({kMean}, {kStd}).
  static constexpr float kMean = 0.1307f;
  static constexpr float kStd = 0.3081f;
  // The label's meaning: the digit itself.
  static constexpr const char* kClassNames[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

  // Reads the training (train = true) or test split from `root`.
  explicit MNIST(const std::string& root, bool train = true);
};

// The IDX readers MNIST uses, for other data sets in the same format (Fashion-MNIST, EMNIST).
// `who` prefixes error messages. Images come back as uint8 [N, 1, rows, cols]; labels as int64 [N],
// each checked to be in [0, num_classes).
Tensor read_idx_images(const std::string& path, const std::string& who = "MNIST");
Tensor read_idx_labels(const std::string& path, int64_t num_classes, const std::string& who = "MNIST");

}  // namespace ember::data
