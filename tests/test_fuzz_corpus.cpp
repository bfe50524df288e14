// Replays the committed fuzz corpus (tests/fuzz/corpus/<target>/, written by
// scripts/make_fuzz_corpus.py plus any file a fuzzer found) through the fuzz targets' bodies, so
// the ordinary suite re-checks every crafted file without clang: each must end in success or an
// ember::Error (any other exception fails the test; a crash fails the binary). The valid seeds
// must load, so the corpus keeps exercising the readers past their first check.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/data_dir.h"
#include "tests/fuzz/fuzz_targets.h"

using namespace ember;
namespace fs = std::filesystem;

namespace {

const fs::path kCorpus = fs::path(ember::test::data_dir()) / ".." / "fuzz" / "corpus";

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Feeds every file of one target's corpus to `body`; returns how many there were.
int replay(const std::string& target, void (*body)(const uint8_t*, size_t)) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(kCorpus / target)) {
    SCOPED_TRACE(e.path().string());
    const std::string bytes = read_file(e.path());
    body(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++n;
  }
  return n;
}

}  // namespace

TEST(FuzzCorpus, IdxFilesEndInSuccessOrAnEmberError) {
  EXPECT_GE(replay("idx", fuzz::fuzz_idx), 6);
  EXPECT_EQ(data::read_idx_images((kCorpus / "idx" / "valid-images").string()).shape(), Shape({2, 1, 4, 3}));
  EXPECT_EQ(data::read_idx_labels((kCorpus / "idx" / "valid-labels").string(), 10).numel(), 3);
}

TEST(FuzzCorpus, CifarFilesEndInSuccessOrAnEmberError) {
  EXPECT_GE(replay("cifar", fuzz::fuzz_cifar), 4);
  const std::string valid = read_file(kCorpus / "cifar" / "valid-two-records");
  fuzz::write_scratch("test_batch.bin", reinterpret_cast<const uint8_t*>(valid.data()), valid.size());
  EXPECT_EQ(data::CIFAR10(fuzz::scratch_dir().string(), false).size(), 2);
}

TEST(FuzzCorpus, SafetensorsFilesEndInSuccessOrAnEmberError) {
  EXPECT_GE(replay("safetensors", fuzz::fuzz_safetensors), 6);
  EXPECT_EQ(nn::load_safetensors((kCorpus / "safetensors" / "valid").string()).tensors.size(), 3u);
}

TEST(FuzzCorpus, CheckpointFilesEndInSuccessOrAnEmberError) {
  EXPECT_GE(replay("checkpoint", fuzz::fuzz_checkpoint), 7);
  fuzz::load_linear_checkpoint((kCorpus / "checkpoint" / "valid").string());  // must not throw
  for (const char* bad : {"int64-weight", "step-int64-max", "step-1e300", "lr-inf", "epoch-1e3", "nan-weight"})
    EXPECT_THROW(fuzz::load_linear_checkpoint((kCorpus / "checkpoint" / bad).string()), Error) << bad;
}
