// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors), so PyTorch's
// `safetensors` package — or the 20-line scripts/read_safetensors.py — opens ember's weights by the
// same names, and ember opens theirs.
//
// File layout:
//   8 bytes      N, the header length (unsigned 64-bit little-endian)
//   N bytes      a JSON object: {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                ..., "__metadata__": {"<key>": "<string value>", ...}}, padded with spaces
//   the rest     the tensors' raw little-endian bytes, row-major; [begin, end) is relative to here
//
// Supported dtypes: F32, F64, I64, U8, BF16, F16 (ember's float32, float64, int64, uint8, bfloat16,
// float16).
//
//   nn::save_safetensors("model.safetensors", {{"fc.weight", w}, {"fc.bias", b}}, {{"epoch", "3"}});
//   auto ckpt = nn::load_safetensors("model.safetensors");  // ckpt.tensors.at("fc.weight"), ckpt.metadata
//
// Saving is atomic: the file is written under a temporary name in the same directory, flushed to
// disk (fsync), then renamed over `path`, and the directory entry is flushed too. A crash or an
// error mid-save leaves the previous checkpoint intact (and no temporary file behind, on an error).
// A process killed mid-save (SIGKILL) leaves its "<path>.tmp.<pid>.<n>" file behind; the next save
// of the same path on the same machine removes the temporary files of processes no longer running.
// Loading checks the whole header before reading any data: a truncated or corrupt file gives an
// ember::Error naming the file and the problem, never an out-of-bounds read.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace ember::nn {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;  // on the CPU, contiguous
  Metadata metadata;  // the header's "__metadata__" (empty when the file has none)
};

// Writes `tensors` (any device, any strides: each is copied to contiguous host memory as it is
// written) and `metadata` to `path`. Names must be non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// Reads every tensor and the metadata of a safetensors file. Anything but a regular file (a FIFO, a
// directory) is refused without blocking.
SafetensorsFile load_safetensors(const std::string& path);

// Throws unless `path` can be saved to: its folder exists and its file name leaves room for the
// temporary-file suffix within the file system's name limit. save_safetensors checks this first;
// programs call it at start-up so a bad --checkpoint fails before any training.
void check_save_path(const std::string& path);

// Throws naming the first tensor (and flat index) of `tensors` holding NaN or +-inf. Loading does
// not check this (a file may legitimately hold them); training code resuming from a checkpoint does.
void check_finite(const TensorMap& tensors, const std::string& where);

}  // namespace ember::nn
