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
  // Per-channel (red, green, blue) mean and standard deviation of the 50000 training images'
  // pixels scaled to [0, 1], the values torchvision's CIFAR recipes use: normalize(kMean, kStd), or
  // data::Normalize(kMean, kStd) after a RandomCrop so the padding stays black.
  static inline const std::vector<float> kMean = {0.4914f, 0.4822f, 0.4465f};
  static inline const std::vector<float> kStd = {0.2470f, 0.2435f, 0.2616f};
  // The label byte's meaning: kClassNames[label].
  static constexpr const char* kClassNames[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                  "dog",      "frog",       "horse", "ship", "truck"};

  // Reads the training (train = true: data_batch_1..5.bin, in that order) or test split from `root`.
  explicit CIFAR10(const std::string& root, bool train = true);

  // The file make_synthetic_cifar10 (examples/cifar10) writes beside the generated batch files.
  static constexpr const char* kSyntheticMarker = "SYNTHETIC.txt";
  // True when `root` holds that marker: the files are generated stand-ins, not CIFAR-10, and
  // anything measured on them must say so.
  static bool is_synthetic(const std::string& root);
};

}  // namespace ember::data
