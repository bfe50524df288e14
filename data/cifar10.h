// CIFAR-10 (50000 training and 10000 test colour images, 3x32x32, 10 classes), read from the
// "binary version" files in `root` (the folder cifar-10-batches-bin/ from
// https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz):
//   training: data_batch_1.bin .. data_batch_5.bin      test: test_batch.bin
//
// Format: no header; a file is a sequence of 3073-byte records, each one label byte (0-9) followed
// by 3072 pixel bytes: the 1024 red values of the 32x32 image row-major, then green, then blue — the
// [C, H, W] layout ember uses, so a record's pixels are copied as they are. The official files hold
// 10000 records each; any whole number of records is accepted (small test files), but a size that
// is not a multiple of 3073 or a label above 9 is an ember::Error naming the file, record and offset.
#pragma once

#include <string>
#include <vector>

#include "data/image_dataset.h"

namespace ember::data {

class CIFAR10 : public ImageDataset {
 public:
  // Per-channel mean and standard deviation of the training pixels (scaled to [0, 1]):
  // normalize(kMean, kStd).
  static const std::vector<float> kMean;
  static const std::vector<float> kStd;
  static constexpr const char* kClassNames[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                  "dog",      "frog",       "horse", "ship", "truck"};

  // Reads the training (train = true: data_batch_1..5.bin, in that order) or test split from `root`.
  explicit CIFAR10(const std::string& root, bool train = true);
};

}  // namespace ember::data
