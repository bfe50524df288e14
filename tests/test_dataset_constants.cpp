// The public dataset constants (data/cifar10.h, data/mnist.h) and the synthetic-data marker that
// make_synthetic_cifar10 writes and ember_cifar10 detects.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "data/cifar10.h"
#include "data/mnist.h"
#include "tests/test_util.h"

using namespace ember;

TEST(DatasetConstants, Cifar10MeanStdAndClassNames) {
  ASSERT_EQ(data::CIFAR10::kMean.size(), 3u);
  ASSERT_EQ(data::CIFAR10::kStd.size(), 3u);
  // The values torchvision's CIFAR-10 recipes normalise with (red, green, blue).
  EXPECT_FLOAT_EQ(data::CIFAR10::kMean[0], 0.4914f);
  EXPECT_FLOAT_EQ(data::CIFAR10::kMean[2], 0.4465f);
  EXPECT_FLOAT_EQ(data::CIFAR10::kStd[1], 0.2435f);
  EXPECT_STREQ(data::CIFAR10::kClassNames[0], "airplane");
  EXPECT_STREQ(data::CIFAR10::kClassNames[3], "cat");
  EXPECT_STREQ(data::CIFAR10::kClassNames[9], "truck");
}

TEST(DatasetConstants, MnistMeanStdAndClassNames) {
  EXPECT_FLOAT_EQ(data::MNIST::kMean, 0.1307f);
  EXPECT_FLOAT_EQ(data::MNIST::kStd, 0.3081f);
  EXPECT_STREQ(data::MNIST::kClassNames[0], "0");
  EXPECT_STREQ(data::MNIST::kClassNames[9], "9");
}

class DatasetConstantsDir : public test::ScratchDirTest {};

TEST_F(DatasetConstantsDir, SyntheticMarkerIsDetected) {
  EXPECT_FALSE(data::CIFAR10::is_synthetic(dir_.string()));
  EXPECT_FALSE(data::CIFAR10::is_synthetic(path("no such folder")));
  std::ofstream(path(data::CIFAR10::kSyntheticMarker)) << "synthetic\n";
  EXPECT_TRUE(data::CIFAR10::is_synthetic(dir_.string()));
}
