// A read-only binary file for the dataset readers: every failure (missing file, short read) is an
// ember::Error that names the reader and the file, so a bad download is easy to find. Internal to
// data/ (the readers use it; users do not need it).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.h"

namespace ember::data::detail {

class BinaryFile {
 public:
  // Opens `path`. `who` prefixes messages ("MNIST"); `missing_hint` is appended when the file does
  // not exist (e.g. how to download it).
  BinaryFile(std::string path, const std::string& who, const std::string& missing_hint = "");
  ~BinaryFile();
  BinaryFile(const BinaryFile&) = delete;
  BinaryFile& operator=(const BinaryFile&) = delete;

  // "<who>: '<path>'": the start of every message about this file.
  const std::string& where() const { return where_; }
  int64_t size() const { return size_; }
  // Reads exactly n bytes starting at byte `offset` into dst; throws if the file is shorter.
  void read(int64_t offset, void* dst, int64_t n);

 private:
  std::string where_;
  std::FILE* f_ = nullptr;
  int64_t size_ = 0;
};

// Big-endian 32-bit integer at p (IDX headers are big-endian).
inline uint32_t read_be32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// Joins a directory and a file name with exactly one '/'.
inline std::string join_path(const std::string& dir, const std::string& file) {
  if (dir.empty()) return file;
  return dir.back() == '/' ? dir + file : dir + "/" + file;
}

}  // namespace ember::data::detail
