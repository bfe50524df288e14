// Issue 12: hostile files and values. Readers (IDX, safetensors) refuse headers whose shapes
// overflow, checkpoints are validated (dtype, ranges, finiteness) and never block on a FIFO,
// saving checks its path up front and cleans up temporary files, and parse errors are ember errors
// naming the file. Every test here failed (or hung, or crashed) before the fix.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/ember.h"
#include "data/data.h"
#include "nn/checkpoint.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "tests/test_util.h"

using namespace ember;
using ember::test::expect_error;
namespace fs = std::filesystem;

namespace {

// Each test gets a fresh, empty directory (test::ScratchDirTest).
class HostileFiles : public ember::test::ScratchDirTest {
 protected:
  size_t file_count() const { return files().size(); }
};

void write_bytes(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// A safetensors file from a header text and raw data (header padded to a multiple of 8).
std::string safetensors_bytes(std::string header, const std::string& data = "") {
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((uint64_t{header.size()} >> (8 * i)) & 0xff);
  return len + header + data;
}

// A tiny model and its Adam optimizer after one step, so the optimizer has state to save.
struct Trained {
  nn::Linear model{2, 1};
  std::unique_ptr<optim::Adam> opt;
  Trained() {
    opt = std::make_unique<optim::Adam>(model.parameters(), optim::AdamOptions(0.1));
    model.forward(ones({3, 2})).sum().backward();
    opt->step();
  }
};

}  // namespace

// ---------------- item 2: shapes that overflow ----------------

TEST_F(HostileFiles, IdxHeaderWithHugeRowsColsAndNoImagesIsRejected) {
  // count 0, rows = cols = 0xffffffff: the file is exactly its header, so the size check passes,
  // but the tensor [0, 1, 2^32-1, 2^32-1] has more than 2^63 elements' worth of strides.
  write_bytes(path("imgs"), be32(0x803) + be32(0) + be32(0xffffffffu) + be32(0xffffffffu));
  expect_error([&] { data::read_idx_images(path("imgs")); },
               {path("imgs"), "byte offsets 4, 8, 12", "[0, 1, 4294967295, 4294967295]"});
}

TEST_F(HostileFiles, SafetensorsZeroDimBesideHugeDimsIsRejected) {
  const std::string huge = std::to_string(int64_t{1} << 62);
  write_bytes(path("z.safetensors"),
              safetensors_bytes(R"({"w":{"dtype":"F32","shape":[0,)" + huge + "," + huge +
                                R"(],"data_offsets":[0,0]}})"));
  expect_error([&] { nn::load_safetensors(path("z.safetensors")); },
               {path("z.safetensors"), "tensor 'w'", "\"shape\"", huge});
}

TEST_F(HostileFiles, EmptyIdxSplitIsAnError) {
  write_bytes(path("train-images-idx3-ubyte"), be32(0x803) + be32(0) + be32(28) + be32(28));
  write_bytes(path("train-labels-idx1-ubyte"), be32(0x801) + be32(0));
  expect_error([&] { data::MNIST(dir_.string(), true); }, {"train-images-idx3-ubyte", "holds no images"});
}

TEST(HostileLoader, BatchSizeNearInt64MaxGivesOneBatch) {
  // (n + b - 1) / b overflowed to a negative count: zero batches, a NaN loss reported as success.
  data::TensorDataset ds(zeros({5, 2}), zeros({5}, kInt64));
  data::DataLoader loader(ds, data::DataLoaderOptions().batch_size(std::numeric_limits<int64_t>::max()));
  EXPECT_EQ(loader.num_batches(), 1);
  int64_t batches = 0, samples = 0;
  for (auto& b : loader) {
    ++batches;
    samples += b.size();
  }
  EXPECT_EQ(batches, 1);
  EXPECT_EQ(samples, 5);
}

// ---------------- items 6 and 9: FIFOs and parse errors ----------------

TEST_F(HostileFiles, LoadingAFifoFailsAtOnceInsteadOfBlocking) {
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  // Before the fix open() blocked forever waiting for a writer; ctest's timeout is the backstop.
  expect_error([&] { nn::load_safetensors(path("fifo")); }, {path("fifo"), "not a regular file", "FIFO"});
}

TEST_F(HostileFiles, HeaderNumberOutOfDoubleRangeIsAnEmberError) {
  write_bytes(path("n.safetensors"), safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}})",
                                                       std::string(4, '\0')));
  expect_error([&] { nn::load_safetensors(path("n.safetensors")); }, {path("n.safetensors"), "not valid JSON"});
}

TEST(HostileDevice, HugeCudaIndexNamesTheSpecNotStoi) {
  try {
    Device d("cuda:99999999999");
    FAIL() << "accepted cuda:99999999999";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cuda:99999999999"), std::string::npos) << msg;
    EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("stoi"), std::string::npos) << msg;
  }
  EXPECT_EQ(Device("cuda:7").index, 7);
}

// ---------------- item 8: crafted checkpoints ----------------

TEST(HostileCheckpoint, Int64WeightsForAFloatParameterAreRejected) {
  nn::Linear model(2, 1);
  nn::TensorMap sd{{"weight", zeros({1, 2}, kInt64)}, {"bias", zeros({1})}};
  expect_error([&] { model.load_state_dict(sd); }, {"dtype mismatch", "\"weight\"", "int64", "float32"});
}

TEST(HostileCheckpoint, AdamStepOutOfRangeIsRejected) {
  for (double step : {9.223372036854775807e18, 1e300, -1.0, 2.5}) {
    Trained t;
    optim::StateDict sd = t.opt->state_dict();
    sd.tensors["state.0.step"] = scalar_tensor(step, kFloat64);
    expect_error([&] { t.opt->load_state_dict(sd); }, {"state.0.step", "is not a step count"});
  }
  Trained t;
  optim::StateDict sd = t.opt->state_dict();
  sd.tensors["state.0.step"] = scalar_tensor(static_cast<double>(std::numeric_limits<int64_t>::max()), kInt64);
  expect_error([&] { t.opt->load_state_dict(sd); }, {"state.0.step"});
}

TEST(HostileCheckpoint, InfiniteLearningRateIsRejected) {
  Trained t;
  optim::StateDict sd = t.opt->state_dict();
  sd.metadata["param_groups.0.lr"] = "inf";
  expect_error([&] { t.opt->load_state_dict(sd); }, {"param_groups.0.lr", "inf", "not a finite number"});
  expect_error([&] { optim::Adam(t.model.parameters(), optim::AdamOptions(std::numeric_limits<double>::infinity())); }, {"learning rate"});
}

TEST(HostileCheckpoint, IntegerMomentsForAFloatParameterAreRejected) {
  Trained t;
  optim::StateDict sd = t.opt->state_dict();
  sd.tensors["state.0.exp_avg"] = zeros({1, 2}, kInt64);
  expect_error([&] { t.opt->load_state_dict(sd); }, {"state.0.exp_avg", "int64"});
}

TEST(HostileCheckpoint, NonFiniteValuesAreNamed) {
  nn::TensorMap m{{"ok", ones({3})}, {"fc.weight", from_vector<float>({1, 2, NAN}, {3})}, {"n", zeros({2}, kInt64)}};
  expect_error([&] { nn::check_finite(m, "ckpt.safetensors"); }, {"ckpt.safetensors", "'fc.weight'", "flat index 2"});
  m["fc.weight"] = ones({3});
  nn::check_finite(m, "ckpt.safetensors");  // all finite: no error
}

// ---------------- item 5: saving ----------------

TEST_F(HostileFiles, TooLongCheckpointNameIsRejectedUpFrontWithNoFileLeft) {
  const std::string name(245, 'c');
  expect_error([&] { nn::check_save_path(path(name)); }, {"file name is 245 characters", "at most"});
  expect_error([&] { nn::save_safetensors(path(name), {{"w", ones({2})}}); }, {"file name is 245 characters"});
  EXPECT_EQ(file_count(), 0u);
  expect_error([&] { nn::check_save_path(path("no/such/dir/c.safetensors")); }, {"does not exist"});
  // The longest name that fits saves (with its temporary name at 255 characters or fewer).
  nn::save_safetensors(path(std::string(238, 'c')), {{"w", ones({2})}});
  EXPECT_TRUE(fs::exists(path(std::string(238, 'c'))));
  expect_error([&] { nn::check_save_path(path(std::string(239, 'c'))); }, {"at most 238"});
}

TEST_F(HostileFiles, StaleTemporaryFilesOfDeadProcessesAreRemoved) {
  // A pid that is certainly dead: a child that has exited and been reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  const std::string target = path("m.safetensors");
  const std::string dead = target + ".tmp." + std::to_string(child) + ".0";
  const std::string alive = target + ".tmp." + std::to_string(::getppid()) + ".3";  // our parent lives
  const std::string other = target + ".tmp.notapid";
  for (const auto& f : {dead, alive, other}) write_bytes(f, "partial");
  nn::save_safetensors(target, {{"w", ones({2})}});
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(target));
}
