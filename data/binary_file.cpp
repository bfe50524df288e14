#include "data/binary_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace ember::data::detail {

BinaryFile::BinaryFile(std::string path, const std::string& who, const std::string& missing_hint)
    : where_(who + ": '" + path + "'") {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  EMBER_CHECK(st.type() != fs::file_type::not_found, where_, " does not exist", missing_hint.empty() ? "" : ". ",
              missing_hint);
  EMBER_CHECK(st.type() == fs::file_type::regular, where_, " is not a regular file",
              ec ? " (" + ec.message() + ")" : std::string());
  auto size = fs::file_size(path, ec);
  EMBER_CHECK(!ec, where_, ": cannot get the file size: ", ec.message());
  size_ = static_cast<int64_t>(size);
  f_ = std::fopen(path.c_str(), "rb");
  EMBER_CHECK(f_ != nullptr, where_, " cannot be opened: ", std::strerror(errno));
}

BinaryFile::~BinaryFile() {
  if (f_) std::fclose(f_);
}

void BinaryFile::read(int64_t offset, void* dst, int64_t n) {
  EMBER_CHECK(offset >= 0 && n >= 0 && offset + n <= size_, where_, " is truncated: reading ", n,
              " bytes at byte offset ", offset, " needs ", offset + n, " bytes, but the file has ", size_);
  if (n == 0) return;
  // fread on a file that shrank since we measured it returns short: report, never use half a buffer.
  bool ok = std::fseek(f_, offset, SEEK_SET) == 0 && std::fread(dst, 1, static_cast<size_t>(n), f_) == size_t(n);
  EMBER_CHECK(ok, where_, " could not be read: ", n, " bytes at byte offset ", offset, " (file size ", size_,
              "): ", std::ferror(f_) ? std::strerror(errno) : "unexpected end of file");
}

}  // namespace ember::data::detail
