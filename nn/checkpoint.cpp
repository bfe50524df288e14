// safetensors reading and writing (format described in nn/checkpoint.h), with POSIX file I/O so
// that saving can be made atomic (fsync + rename) and loading reads exactly what the header allows.
#include "nn/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/checked_math.h"
#include "core/ops.h"

namespace ember::nn {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swapping here");

namespace {

using json = nlohmann::json;

// The Rust reference implementation refuses headers above 100 MB; so do we (a corrupt length
// field must not make us allocate gigabytes).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* dtype_tag(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int64: return "I64";
    case DType::UInt8: return "U8";
    case DType::BFloat16: return "BF16";
    case DType::Float16: return "F16";
  }
  EMBER_FAIL("safetensors: no tag for dtype ", static_cast<int>(t));  // not reached: every DType is listed
}

bool dtype_from_tag(const std::string& tag, DType* out) {
  for (DType t : {kFloat32, kFloat64, kInt64, kUInt8, kBFloat16, kFloat16})
    if (tag == dtype_tag(t)) {
      *out = t;
      return true;
    }
  return false;
}

std::string errno_text() { return std::strerror(errno); }

// Owns a file descriptor; closes it on scope exit (errors from an explicit close() are reported).
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  int release_and_close() {
    int r = ::close(fd_);
    fd_ = -1;
    return r;
  }

 private:
  int fd_;
};

// ---------------- saving ----------------

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    EMBER_CHECK(w > 0, "save_safetensors: '", path, "': write failed: ", errno_text());
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// A temporary file is named "<file name>.tmp.<pid>.<counter>": the pid (at most 7 digits: Linux's
// PID_MAX_LIMIT is 2^22) lets a later save recognise the files of dead processes, the counter (kept
// below 10^4; O_EXCL retries on a clash) keeps concurrent saves of one process apart. Bounding the
// suffix bounds the file names that can be saved: 255 - 17 = 238 characters on most file systems.
const std::string kTempInfix = ".tmp.";
constexpr size_t kMaxTempSuffix = 5 + 7 + 1 + 4;
constexpr uint64_t kTempCounterLimit = 10000;

std::string temp_prefix(const std::string& file_name) { return file_name + kTempInfix; }

// The pid in a temporary file's name "<prefix><pid>.<counter>", or -1 when `name` is not one.
pid_t temp_file_pid(const std::string& name, const std::string& prefix) {
  if (!name.starts_with(prefix)) return -1;
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + name.size();
  pid_t pid = -1;
  uint64_t counter = 0;
  auto [dot, ec] = std::from_chars(first, last, pid);
  if (ec != std::errc() || dot == first || dot == last || *dot != '.' || pid <= 0) return -1;
  auto [end, ec2] = std::from_chars(dot + 1, last, counter);
  return ec2 == std::errc() && end == last && end != dot + 1 ? pid : -1;
}

// Removes the temporary files that saves of `path` by processes no longer running left behind (a
// process killed with SIGKILL cannot clean up after itself). Best effort and local: a file is
// stale when kill(pid, 0) finds no such process on this machine. A folder shared between machines
// over a network file system is not supported here: another machine's live save whose pid is free
// on this one would lose its temporary file (its rename then fails with an error; no checkpoint is
// ever corrupted).
void remove_stale_temps(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = temp_prefix(target.filename().string());
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const pid_t pid = temp_file_pid(it->path().filename().string(), prefix);
    if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
  }
}

// Creates a new file next to `path` (same directory, so the final rename cannot cross file systems).
// O_EXCL guarantees we never write into someone else's file.
std::pair<int, std::string> create_temp(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    const uint64_t n = counter++ % kTempCounterLimit;
    std::string tmp = path + kTempInfix + std::to_string(::getpid()) + "." + std::to_string(n);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return {fd, tmp};
    EMBER_CHECK(errno == EEXIST, "save_safetensors: '", path, "': cannot create a temporary file next to it (", tmp,
                "): ", errno_text());
  }
  EMBER_FAIL("save_safetensors: '", path, "': cannot find a free temporary file name next to it");
}

// Flushes a directory entry (the rename) to disk. Best effort: some file systems refuse fsync on directories.
void fsync_dir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

namespace {

// Throws unless the file name of `path` leaves room for the temporary-file suffix.
void check_name_length(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string where = "save_safetensors: '" + path + "'";
  const fs::path target(path);
  const std::string name = target.filename().string();
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  long name_max = ::pathconf(dir.c_str(), _PC_NAME_MAX);
  if (name_max <= 0) name_max = NAME_MAX;
  EMBER_CHECK(name.size() + kMaxTempSuffix <= static_cast<size_t>(name_max), where, ": the file name is ",
              name.size(), " characters; at most ", static_cast<size_t>(name_max) - kMaxTempSuffix,
              " fit, so that the temporary file it is written under (name + \"", kTempInfix,
              "<pid>.<n>\") stays within the file system's ", name_max, "-character limit");
}

}  // namespace

void check_save_path(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string where = "save_safetensors: '" + path + "'";
  const fs::path target(path);
  const std::string name = target.filename().string();
  EMBER_CHECK(!name.empty() && name != "." && name != "..", where, ": names a directory, not a file");
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  EMBER_CHECK(fs::is_directory(dir, ec), where, ": the folder '", dir.string(), "' does not exist",
              ec ? " (" + ec.message() + ")" : std::string());
  check_name_length(path);
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  check_name_length(path);  // a missing folder is reported when the temporary file cannot be created
  // 1. Check every entry before touching the disk.
  struct Entry {
    const std::string* name;
    const Tensor* tensor;
    uint64_t nbytes;
  };
  std::vector<Entry> entries;
  for (const auto& [name, t] : tensors) {
    EMBER_CHECK(!name.empty(), "save_safetensors: '", path, "': a tensor has an empty name");
    EMBER_CHECK(name != "__metadata__", "save_safetensors: '", path,
                "': '__metadata__' is reserved for the metadata and cannot name a tensor");
    EMBER_CHECK(t.defined(), "save_safetensors: '", path, "': tensor '", name, "' is undefined");
    EMBER_CHECK(dtype_tag(t.dtype()) != nullptr, "save_safetensors: '", path, "': tensor '", name, "' has dtype ",
                dtype_name(t.dtype()), ", which cannot be saved (supported: float32, float64, int64, uint8, bfloat16, float16)");
    entries.push_back({&name, &t, static_cast<uint64_t>(t.numel()) * t.element_size()});
  }
  // Like the Python package: larger elements first (then by name), so with the 8-byte-aligned header
  // every tensor's data starts at a multiple of its element size (readers can map it in place).
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.tensor->element_size() > b.tensor->element_size();
  });

  // 2. The header.
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    header[*e.name] = {{"dtype", dtype_tag(e.tensor->dtype())},
                       {"shape", e.tensor->shape().vec()},
                       {"data_offsets", {offset, offset + e.nbytes}}};
    offset += e.nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& ex) {  // names and metadata must be valid UTF-8
    EMBER_FAIL("save_safetensors: '", path, "': cannot encode the header: ", ex.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  const uint64_t header_len = text.size();

  // 3. Write to a temporary file, flush, rename over the target, flush the directory.
  remove_stale_temps(path);
  auto [raw_fd, tmp] = create_temp(path);
  Fd fd(raw_fd);
  try {
    write_all(fd.get(), &header_len, 8, path);  // little-endian (checked above)
    write_all(fd.get(), text.data(), text.size(), path);
    NoGradGuard no_grad;
    for (const Entry& e : entries) {
      // One tensor at a time on the host, so a model on a GPU needs host memory for its largest tensor only.
      const Tensor host = e.tensor->detach().to(kCPU).contiguous();
      if (e.nbytes > 0) write_all(fd.get(), host.data_ptr(), e.nbytes, path);
    }
    EMBER_CHECK(::fsync(fd.get()) == 0, "save_safetensors: '", path, "': fsync failed: ", errno_text());
    EMBER_CHECK(fd.release_and_close() == 0, "save_safetensors: '", path, "': close failed: ", errno_text());
    EMBER_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "save_safetensors: '", path, "': cannot rename ", tmp,
                " to it: ", errno_text());
  } catch (...) {
    ::unlink(tmp.c_str());  // the previous checkpoint (if any) was never touched
    throw;
  }
  fsync_dir(path);
}

// ---------------- loading ----------------

namespace {

// Reads exactly n bytes at `offset` (the header has been checked against the file size, so a short
// read means the file changed while we read it).
void read_at(int fd, void* out, uint64_t n, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(out);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    EMBER_CHECK(r >= 0, "load_safetensors: '", path, "': read failed: ", errno_text());
    EMBER_CHECK(r > 0, "load_safetensors: '", path, "': unexpected end of file (was it truncated while being read?)");
    p += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

// Opens `path` for reading, refusing anything but a regular file. O_NONBLOCK makes the open itself
// return at once for a FIFO with no writer (a plain open would block forever); fstat on the open
// descriptor then decides, so the check and the read see the same file. Returns the raw descriptor.
int open_regular_file(const std::string& path, const std::string& where) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  EMBER_CHECK(fd.get() >= 0, where, ": cannot open: ", errno_text());
  struct stat st {};
  EMBER_CHECK(::fstat(fd.get(), &st) == 0, where, ": cannot stat: ", errno_text());
  EMBER_CHECK(S_ISREG(st.st_mode), where, ": not a regular file (a ",
              S_ISFIFO(st.st_mode) ? "FIFO" : S_ISDIR(st.st_mode) ? "directory" : "device or socket",
              "); a checkpoint must be a regular file");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  EMBER_CHECK(flags >= 0 && ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) == 0, where,
              ": cannot clear O_NONBLOCK: ", errno_text());
  return fd.release();
}

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// Validates one header entry against the data section's size; the messages name the tensor.
TensorInfo parse_entry(const std::string& name, const json& v, uint64_t data_len, const std::string& path) {
  const std::string where = "load_safetensors: '" + path + "': tensor '" + name + "'";
  EMBER_CHECK(v.is_object(), where, ": header entry is not a JSON object");
  TensorInfo info{name, kFloat32, {}, 0, 0};

  auto dt = v.find("dtype");
  EMBER_CHECK(dt != v.end() && dt->is_string(), where, ": missing or non-string \"dtype\"");
  EMBER_CHECK(dtype_from_tag(dt->get<std::string>(), &info.dtype), where, ": unsupported dtype \"",
              dt->get<std::string>(), "\" (ember reads F32, F64, I64, U8, BF16 and F16)");

  auto sh = v.find("shape");
  EMBER_CHECK(sh != v.end() && sh->is_array(), where, ": missing or non-array \"shape\"");
  EMBER_CHECK(sh->size() <= static_cast<size_t>(kMaxDims), where, ": has ", sh->size(),
              " dimensions; ember supports at most ", kMaxDims);
  for (const json& d : *sh) {
    EMBER_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX), where, ": shape ",
                sh->dump(), " must hold non-negative integers");
    info.shape.push_back(d.get<int64_t>());
  }
  // Byte size = element size x numel, checked for overflow even beside a zero dim: a corrupt shape
  // must neither wrap around to a size that happens to match the offsets nor give a tensor whose
  // strides overflow ([0, 2^62, 2^62] is refused as the factories refuse it).
  const std::string shape_field = where + ": header field \"shape\" " + sh->dump() + " is too large";
  const auto nbytes =
      static_cast<uint64_t>(checked_nbytes(info.shape, dtype_size(info.dtype), shape_field.c_str()));

  auto off = v.find("data_offsets");
  EMBER_CHECK(off != v.end() && off->is_array() && off->size() == 2 && (*off)[0].is_number_unsigned() &&
                  (*off)[1].is_number_unsigned(),
              where, ": \"data_offsets\" must be two non-negative integers [begin, end]");
  info.begin = (*off)[0].get<uint64_t>();
  info.end = (*off)[1].get<uint64_t>();
  EMBER_CHECK(info.begin <= info.end, where, ": data_offsets ", off->dump(), " end before they begin");
  EMBER_CHECK(info.end <= data_len, where, ": data_offsets ", off->dump(), " run past the end of the data (",
              data_len, " bytes; is the file truncated?)");
  EMBER_CHECK(info.end - info.begin == nbytes, where, ": data_offsets ", off->dump(), " span ", info.end - info.begin,
              " bytes but dtype ", dt->get<std::string>(), " with shape ", sh->dump(), " needs ", nbytes);
  return info;
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string where = "load_safetensors: '" + path + "'";
  Fd fd(open_regular_file(path, where));
  struct stat st {};
  EMBER_CHECK(::fstat(fd.get(), &st) == 0, where, ": cannot stat: ", errno_text());
  const uint64_t size = static_cast<uint64_t>(st.st_size);

  // Header length, then header: each checked against the file size before it is used.
  EMBER_CHECK(size >= 8, where, ": file is only ", size, " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  read_at(fd.get(), &header_len, 8, 0, path);
  EMBER_CHECK(header_len <= size - 8, where, ": header length ", header_len, " runs past the end of the file (",
              size, " bytes; truncated or not a safetensors file?)");
  EMBER_CHECK(header_len <= kMaxHeaderBytes, where, ": header length ", header_len, " is over the ", kMaxHeaderBytes,
              "-byte limit");
  std::string text(header_len, '\0');
  read_at(fd.get(), text.data(), header_len, 8, path);
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& ex) {  // a syntax error, or a number like 1e400 out of double's range
    EMBER_FAIL(where, ": header is not valid JSON (bytes 8 to ", 8 + header_len, "): ", ex.what());
  }
  EMBER_CHECK(header.is_object(), where, ": header is not a JSON object");

  SafetensorsFile out;
  const uint64_t data_start = 8 + header_len, data_len = size - data_start;
  std::vector<TensorInfo> infos;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      EMBER_CHECK(v.is_object(), where, ": \"__metadata__\" is not a JSON object");
      for (const auto& [k, s] : v.items()) {
        EMBER_CHECK(s.is_string(), where, ": metadata \"", k,
                    "\" is not a string (safetensors metadata maps strings to strings)");
        out.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    infos.push_back(parse_entry(name, v, data_len, path));
  }

  // No two tensors may share bytes: sort by position and compare neighbours.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& i : infos) by_offset.push_back(&i);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const TensorInfo& a = *by_offset[k - 1];
    const TensorInfo& b = *by_offset[k];
    EMBER_CHECK(b.begin >= a.end, where, ": tensors '", a.name, "' [", a.begin, ", ", a.end, ") and '", b.name, "' [",
                b.begin, ", ", b.end, ") overlap");
  }

  // Only now, with every range known to lie inside the file, read the data.
  for (const TensorInfo& i : infos) {
    Tensor t = empty(i.shape, TensorOptions(i.dtype));
    if (i.end > i.begin) read_at(fd.get(), t.data_ptr(), i.end - i.begin, data_start + i.begin, path);
    out.tensors.emplace(i.name, std::move(t));
  }
  return out;
}

// ---------------- validation ----------------

void check_finite(const TensorMap& tensors, const std::string& where) {
  for (const auto& [name, t] : tensors) {
    if (!is_floating(t.dtype())) continue;
    const Tensor host = t.detach().to(kCPU).contiguous().to(kFloat64);
    const double* v = host.data<double>();
    for (int64_t i = 0; i < host.numel(); ++i)
      EMBER_CHECK(std::isfinite(v[i]), where, ": tensor '", name, "' holds ", v[i], " at flat index ", i,
                  " (shape ", t.shape(), "); a checkpoint must hold finite values");
  }
}

}  // namespace ember::nn
