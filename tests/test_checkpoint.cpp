// safetensors checkpoints: round trips, a file laid out the way the Python package writes it,
// every kind of corrupt file, and atomic saving.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/ember.h"
#include "nn/checkpoint.h"
#include "tests/test_util.h"

using namespace ember;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Each test gets a fresh, empty directory (test::ScratchDirTest).
class Checkpoint : public ember::test::ScratchDirTest {};

std::string read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text and raw data: the length prefix, the header padded with
// spaces to a multiple of 8 (as the Python package does), the data.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  return u64_le(h.size()) + h + data;
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <typename T>
void expect_same(const Tensor& got, const Tensor& want) {
  ASSERT_TRUE(got.defined());
  EXPECT_EQ(got.dtype(), want.dtype());
  EXPECT_EQ(got.shape(), want.shape());
  EXPECT_TRUE(got.is_contiguous());
  EXPECT_EQ(got.to_vector<T>(), want.to_vector<T>());
}

}  // namespace

TEST_F(Checkpoint, RoundTripAllDtypesAndLayouts) {
  Generator gen(7);
  Tensor base = uniform({2, 3}, -1, 1, TensorOptions(kFloat32), &gen);
  Tensor wide = arange(0.0, 24.0, 1.0, TensorOptions(kFloat64)).view({4, 6});
  nn::TensorMap tensors = {
      {"f32", base},
      {"f64", uniform({4}, -5, 5, TensorOptions(kFloat64), &gen)},
      {"i64", from_vector<int64_t>({-3, 0, 7, int64_t{1} << 40}, {2, 2})},
      {"u8", from_vector<uint8_t>({0, 1, 128, 255, 9})},
      {"scalar", scalar_tensor(2.5, kFloat64)},
      {"empty", zeros({0, 3})},
      {"transposed", base.t()},                       // strides [1, 3]
      {"sliced", wide.slice(1, 1, 6, 2).narrow(0, 1, 2)},  // offset and strides
      {"expanded", from_vector<float>({1, 2, 3}, {1, 3}).expand({4, 3})},  // stride 0
      {"needs.grad", ones({2}).requires_grad_()},
  };
  ASSERT_FALSE(tensors["transposed"].is_contiguous());
  ASSERT_FALSE(tensors["sliced"].is_contiguous());
  const nn::Metadata metadata = {{"format", "pt"}, {"epoch", "3"}, {"note", "unicode: \xc3\xa9t\xc3\xa9"}};
  nn::save_safetensors(path("all.safetensors"), tensors, metadata);
  nn::SafetensorsFile f = nn::load_safetensors(path("all.safetensors"));

  EXPECT_EQ(f.metadata, metadata);
  ASSERT_EQ(f.tensors.size(), tensors.size());
  expect_same<float>(f.tensors["f32"], tensors["f32"]);
  expect_same<double>(f.tensors["f64"], tensors["f64"]);
  expect_same<int64_t>(f.tensors["i64"], tensors["i64"]);
  expect_same<uint8_t>(f.tensors["u8"], tensors["u8"]);
  expect_same<double>(f.tensors["scalar"], tensors["scalar"]);
  EXPECT_EQ(f.tensors["scalar"].dim(), 0);
  expect_same<float>(f.tensors["empty"], tensors["empty"]);
  expect_same<float>(f.tensors["transposed"], tensors["transposed"]);
  EXPECT_EQ(f.tensors["sliced"].to_vector<double>(), (std::vector<double>{7, 9, 11, 13, 15, 17}));
  expect_same<float>(f.tensors["expanded"], tensors["expanded"]);
  EXPECT_FALSE(f.tensors["needs.grad"].requires_grad());

  // The layout readers rely on: header padded to 8 bytes, every tensor aligned to its element size,
  // offsets tiling the data section exactly.
  const std::string bytes = read_bytes(path("all.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  json header = json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"]["epoch"], "3");
  EXPECT_EQ(header["i64"]["dtype"], "I64");
  EXPECT_EQ(header["i64"]["shape"], json({2, 2}));
  uint64_t total = 0;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") continue;
    const uint64_t begin = v["data_offsets"][0], end = v["data_offsets"][1];
    const uint64_t esize = tensors[name].element_size();
    EXPECT_EQ(begin % esize, 0u) << name;
    total += end - begin;
  }
  EXPECT_EQ(8 + n + total, bytes.size());
}

TEST_F(Checkpoint, OverwriteReplacesAndNoMetadataOmitsTheEntry) {
  nn::save_safetensors(path("c.safetensors"), {{"w", ones({2})}}, {{"step", "1"}});
  nn::save_safetensors(path("c.safetensors"), {{"w", zeros({3})}});
  nn::SafetensorsFile f = nn::load_safetensors(path("c.safetensors"));
  EXPECT_EQ(f.tensors.at("w").to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_TRUE(f.metadata.empty());
  const std::string bytes = read_bytes(path("c.safetensors"));
  EXPECT_EQ(bytes.find("__metadata__"), std::string::npos);
  EXPECT_EQ(files(), (std::vector<std::string>{"c.safetensors"}));
  // An empty file of tensors is valid too.
  nn::save_safetensors(path("none.safetensors"), {});
  EXPECT_TRUE(nn::load_safetensors(path("none.safetensors")).tensors.empty());
}

TEST_F(Checkpoint, ReadsAFileLaidOutLikeThePythonPackageWritesIt) {
  // What `safetensors.torch.save_file({"weight": w, "bias": b, "steps": s, "mask": m}, p, metadata={"format": "pt"})`
  // writes: compact JSON with "__metadata__" first, tensors sorted by alignment then name, the
  // header padded with spaces to a multiple of 8, then the raw little-endian data.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"steps":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
      R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},)"
      R"("weight":{"dtype":"F32","shape":[2,2],"data_offsets":[24,40]},)"
      R"("mask":{"dtype":"U8","shape":[3],"data_offsets":[40,43]}})";
  const std::string data = raw<int64_t>({10, -20}) + raw<float>({0.5f, -0.5f}) + raw<float>({1, 2, 3, 4}) +
                           raw<uint8_t>({1, 0, 1});
  write_bytes(path("py.safetensors"), safetensors_bytes(header, data));
  nn::SafetensorsFile f = nn::load_safetensors(path("py.safetensors"));
  EXPECT_EQ(f.metadata, (nn::Metadata{{"format", "pt"}}));
  EXPECT_EQ(f.tensors.at("weight").shape(), Shape({2, 2}));
  EXPECT_EQ(f.tensors.at("weight").to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(f.tensors.at("bias").to_vector<float>(), (std::vector<float>{0.5f, -0.5f}));
  EXPECT_EQ(f.tensors.at("steps").to_vector<int64_t>(), (std::vector<int64_t>{10, -20}));
  EXPECT_EQ(f.tensors.at("mask").to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 1}));
}

TEST_F(Checkpoint, CorruptFilesGiveClearErrors) {
  const std::string f32x2 = raw<float>({1, 2});
  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"too short", std::string("\x05\x00\x00", 3), {"file is only 3 bytes", "too short for the 8-byte header length"}},
      {"header past end", u64_le(1000) + "{}      ", {"header length 1000 runs past the end of the file (16 bytes"}},
      {"bad json", safetensors_bytes(R"({"a": {"dtype": )", ""), {"header is not valid JSON"}},
      {"not an object", safetensors_bytes("[1, 2]", ""), {"header is not a JSON object"}},
      {"entry not an object",
       safetensors_bytes(R"({"a": 5})", ""),
       {"tensor 'a'", "header entry is not a JSON object"}},
      {"missing dtype",
       safetensors_bytes(R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", f32x2),
       {"tensor 'a'", "missing or non-string \"dtype\""}},
      {"unknown dtype",
       safetensors_bytes(R"({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}})", f32x2),
       {"tensor 'a'", "unsupported dtype \"Q7\""}},
      {"unsupported dtype",  // a real safetensors dtype (8-bit float) that ember does not read
       safetensors_bytes(R"({"h": {"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}})", f32x2),
       {"tensor 'h'", "unsupported dtype \"F8_E4M3\"", "F32, F64, I64, U8, BF16 and F16"}},
      {"negative dim",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", f32x2),
       {"shape [-2] must hold non-negative integers"}},
      {"shape not an array",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})", f32x2),
       {"missing or non-array \"shape\""}},
      {"too many dims",
       safetensors_bytes(R"({"a": {"dtype": "U8", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 1]}})", "x"),
       {"has 9 dimensions; ember supports at most 8"}},
      {"shape overflow",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]}})",
                         f32x2),
       {"is too large"}},
      {"offsets malformed",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", f32x2),
       {"\"data_offsets\" must be two non-negative integers"}},
      {"offsets reversed",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", f32x2),
       {"data_offsets [8,0] end before they begin"}},
      {"offsets vs dtype*shape",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", f32x2),
       {"tensor 'a'", "data_offsets [0,4] span 4 bytes but dtype F32 with shape [2] needs 8"}},
      {"offsets past end",
       safetensors_bytes(R"({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}})", f32x2),
       {"tensor 'a'", "data_offsets [0,16] run past the end of the data (8 bytes"}},
      {"overlap",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                         R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                         raw<float>({1, 2, 3})),
       {"tensors 'a' [0, 8) and 'b' [4, 12) overlap"}},
      {"metadata not an object",
       safetensors_bytes(R"({"__metadata__": [1]})", ""),
       {"\"__metadata__\" is not a JSON object"}},
      {"metadata value not a string",
       safetensors_bytes(R"({"__metadata__": {"epoch": 3}})", ""),
       {"metadata \"epoch\" is not a string"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string p = path("bad.safetensors");
    write_bytes(p, c.bytes);
    std::vector<std::string> parts = c.message;
    parts.push_back("load_safetensors: '" + p + "'");  // every message names the file
    test::expect_error([&] { nn::load_safetensors(p); }, parts);
  }
}

TEST_F(Checkpoint, TruncatedMissingAndNonRegularFiles) {
  nn::save_safetensors(path("ok.safetensors"), {{"a", ones({4}, kFloat64)}, {"b", ones({3})}});
  std::string bytes = read_bytes(path("ok.safetensors"));
  // Cut into the data, into the header, and into the length.
  write_bytes(path("t1.safetensors"), bytes.substr(0, bytes.size() - 3));
  test::expect_error([&] { nn::load_safetensors(path("t1.safetensors")); },
                     {"t1.safetensors", "run past the end of the data"});
  write_bytes(path("t2.safetensors"), bytes.substr(0, 20));
  test::expect_error([&] { nn::load_safetensors(path("t2.safetensors")); },
                     {"t2.safetensors", "runs past the end of the file"});
  write_bytes(path("t3.safetensors"), bytes.substr(0, 5));
  test::expect_error([&] { nn::load_safetensors(path("t3.safetensors")); }, {"t3.safetensors", "file is only 5 bytes"});
  write_bytes(path("t4.safetensors"), "");
  test::expect_error([&] { nn::load_safetensors(path("t4.safetensors")); }, {"file is only 0 bytes"});

  test::expect_error([&] { nn::load_safetensors(path("missing.safetensors")); },
                     {"load_safetensors: '" + path("missing.safetensors") + "': cannot open", "No such file"});
  test::expect_error([&] { nn::load_safetensors(dir_.string()); }, {"not a regular file"});

  // A header length inside a (sparse) 150 MB file but over the 100 MB limit.
  write_bytes(path("huge.safetensors"), u64_le(120'000'000));
  fs::resize_file(path("huge.safetensors"), 150'000'000);
  test::expect_error([&] { nn::load_safetensors(path("huge.safetensors")); },
                     {"header length 120000000 is over the 100000000-byte limit"});
}

TEST_F(Checkpoint, SaveRejectsBadInput) {
  const std::string p = path("x.safetensors");
  test::expect_error(
      [&] {
        nn::save_safetensors(p, {{"", ones({1})}});
      },
      {"save_safetensors: '" + p + "'", "empty name"});
  test::expect_error([&] { nn::save_safetensors(p, {{"__metadata__", ones({1})}}); }, {"'__metadata__' is reserved"});
  test::expect_error([&] { nn::save_safetensors(p, {{"w", Tensor()}}); }, {"tensor 'w' is undefined"});
  test::expect_error([&] { nn::save_safetensors(p, {{"bad\xff", ones({1})}}); }, {"cannot encode the header"});
  test::expect_error(
      [&] {
        nn::save_safetensors(p, {{"w", ones({1})}}, {{"k", "\xfe"}});
      },
      {"cannot encode the header"});
  EXPECT_TRUE(files().empty());  // nothing was written, not even a temporary file
}

TEST_F(Checkpoint, FailedSaveLeavesThePreviousCheckpointIntact) {
  const std::string p = path("model.safetensors");
  nn::save_safetensors(p, {{"w", from_vector<float>({1, 2, 3})}}, {{"epoch", "1"}});
  const std::string before = read_bytes(p);

  // 1. A tensor whose data cannot be fetched, discovered only while the data is being written (a
  //    tensor claiming to live on a GPU that does not exist): the header and the first tensor are
  //    already in the temporary file when the copy throws.
  float host[4] = {9, 9, 9, 9};
  Tensor ghost = from_blob(host, {4}, kFloat32, Device(DeviceType::CUDA, 99));
  test::expect_error(
      [&] {
        nn::save_safetensors(p, {{"a_first", ones({8}, kFloat64)}, {"w", ghost}}, {{"epoch", "2"}});
      },
      {"cuda:99"});
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(files(), (std::vector<std::string>{"model.safetensors"}));  // the temporary file is gone
  EXPECT_EQ(nn::load_safetensors(p).metadata.at("epoch"), "1");

  // 2. The final rename fails (the target is a directory): no temporary file is left behind.
  fs::create_directory(path("adir"));
  test::expect_error([&] { nn::save_safetensors(path("adir"), {{"w", ones({2})}}); }, {"cannot rename", "adir"});
  EXPECT_EQ(files(), (std::vector<std::string>{"adir", "model.safetensors"}));

  // 3. The directory does not exist: the temporary file cannot even be created.
  test::expect_error([&] { nn::save_safetensors(path("nodir/m.safetensors"), {{"w", ones({2})}}); },
                     {"nodir/m.safetensors", "cannot create a temporary file", "No such file"});

  // 4. A read-only directory (only meaningful when not running as root, who may write anyway).
  if (::geteuid() != 0) {
    fs::create_directory(path("ro"));
    nn::save_safetensors(path("ro/m.safetensors"), {{"w", ones({2})}});
    fs::permissions(path("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    test::expect_error([&] { nn::save_safetensors(path("ro/m.safetensors"), {{"w", zeros({2})}}); },
                       {"cannot create a temporary file", "Permission denied"});
    EXPECT_EQ(nn::load_safetensors(path("ro/m.safetensors")).tensors.at("w").to_vector<float>(),
              (std::vector<float>{1, 1}));
    fs::permissions(path("ro"), fs::perms::owner_all);
  }
}
