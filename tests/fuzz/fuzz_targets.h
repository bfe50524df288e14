// The bodies of the libFuzzer targets (tests/fuzz/fuzz_*.cpp), shared with the ctest replay of the
// committed corpus (tests/test_fuzz_corpus.cpp), so every crash file found once is re-checked by
// the ordinary test suite without clang. Each takes arbitrary bytes, hands them to a reader as a
// file, and lets only ember::Error escape quietly: any other exception (a raw nlohmann or
// std::filesystem error), a crash or a sanitizer report is a finding.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/ember.h"
#include "data/data.h"
#include "nn/checkpoint.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace ember::fuzz {

// A folder of this process's own under the temp dir (readers take paths, not buffers), removed
// when the process exits normally.
inline const std::filesystem::path& scratch_dir() {
  struct Scratch {
    std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("ember_fuzz_" + std::to_string(::getpid()));
    Scratch() { std::filesystem::create_directories(dir); }
    ~Scratch() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  };
  static const Scratch scratch;
  return scratch.dir;
}

inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = (scratch_dir() / name).string();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs `read`, swallowing the ember::Error a bad file must produce.
template <typename F>
void expect_ember_error_or_success(F&& read) {
  try {
    read();
  } catch (const Error&) {
  }
}

// The same bytes as an IDX image file and as an IDX label file.
inline void fuzz_idx(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("idx", data, size);
  expect_ember_error_or_success([&] { data::read_idx_images(path); });
  expect_ember_error_or_success([&] { data::read_idx_labels(path, 10); });
}

// The bytes as CIFAR-10's test_batch.bin.
inline void fuzz_cifar(const uint8_t* data, size_t size) {
  write_scratch("test_batch.bin", data, size);
  expect_ember_error_or_success([&] { data::CIFAR10(scratch_dir().string(), /*train=*/false); });
}

inline void fuzz_safetensors(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("t.safetensors", data, size);
  expect_ember_error_or_success([&] { nn::load_safetensors(path); });
}

// Restores nn.Linear(2, 1) and its Adam optimizer from the checkpoint at `path` (the layout
// scripts/make_fuzz_corpus.py writes: "model.*", "optimizer.*", metadata "epoch") and takes one
// step with them: a loaded state must be usable. Throws ember::Error for a bad checkpoint.
inline void load_linear_checkpoint(const std::string& path) {
  nn::SafetensorsFile ckpt = nn::load_safetensors(path);
  nn::check_finite(ckpt.tensors, path);
  optim::StateDict all{ckpt.tensors, ckpt.metadata};
  nn::Linear model(2, 1);
  optim::Adam opt(model.parameters(), optim::AdamOptions(1e-3));
  model.load_state_dict(nn::NamedTensors(all.sub("model").tensors));
  opt.load_state_dict(all.sub("optimizer"));
  optim::detail::parse_int(all.metadata, "epoch", "checkpoint");
  model.forward(ones({1, 2})).sum().backward();
  opt.step();
}

inline void fuzz_checkpoint(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("c.safetensors", data, size);
  expect_ember_error_or_success([&] { load_linear_checkpoint(path); });
}

}  // namespace ember::fuzz
