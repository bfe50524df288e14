#include "tests/reference_util.h"

#include <cmath>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "tests/data_dir.h"

namespace ember::test {

const json& load_reference(const std::string& file, const std::string& script) {
  static std::mutex mu;
  static std::map<std::string, json> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(file);
  if (it != cache.end()) return it->second;
  const std::string path = data_dir() + "/" + file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path + " (regenerate it with " + script + ")");
  return cache.emplace(file, json::parse(in)).first->second;
}

std::vector<double> float_values(const json& data) {
  std::vector<double> out;
  out.reserve(data.size());
  for (const json& v : data) {
    if (v.is_number()) {
      out.push_back(v.get<double>());
      continue;
    }
    const std::string s = v.get<std::string>();
    if (s == "nan") out.push_back(std::nan(""));
    else if (s == "inf") out.push_back(HUGE_VAL);
    else if (s == "-inf") out.push_back(-HUGE_VAL);
    else throw std::runtime_error("reference file: unknown float value \"" + s + "\"");
  }
  return out;
}

Tensor from_json(const json& j, DType float_dtype) {
  const Shape shape(j.at("shape").get<std::vector<int64_t>>());
  const std::string dtype = j.at("dtype");
  if (dtype == "float64") return from_vector(float_values(j.at("data")), shape, float_dtype);
  if (dtype == "int64") return from_vector(j.at("data").get<std::vector<int64_t>>(), shape);
  if (dtype == "uint8") return from_vector(j.at("data").get<std::vector<uint8_t>>(), shape);
  throw std::runtime_error("reference file: unknown dtype " + dtype);
}

std::string compare(const Tensor& actual, const json& expected, Tolerance tol, std::optional<DType> float_dtype) {
  std::ostringstream err;
  err.precision(17);
  const Shape shape(expected.at("shape").get<std::vector<int64_t>>());
  const std::string want_dtype = expected.at("dtype");
  const bool exact = want_dtype != "float64";  // integer results (indices, comparisons) must be equal
  if (actual.shape() != shape) {
    err << "shape " << actual.shape() << ", PyTorch gives " << shape;
    return err.str();
  }
  if (float_dtype) {
    const DType dtype = want_dtype == "float64" ? *float_dtype : want_dtype == "int64" ? kInt64 : kUInt8;
    if (actual.dtype() != dtype) {
      err << "dtype " << dtype_name(actual.dtype()) << ", expected " << dtype_name(dtype);
      return err.str();
    }
  }
  const auto got = actual.detach().to(kCPU).to(kFloat64).contiguous().to_vector<double>();
  const auto want = float_values(expected.at("data"));
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i]) && std::isnan(got[i])) continue;  // PyTorch's NaN, kept (a NaN elsewhere fails below)
    const double diff = std::abs(got[i] - want[i]);
    const bool ok = exact ? diff == 0 : diff <= tol.atol + tol.rtol * std::abs(want[i]);  // NaN fails too
    if (ok) continue;
    worst = std::max(worst, diff);
    if (bad++ < 4)
      err << "\n      element " << i << ": " << got[i] << " vs PyTorch " << want[i] << " (diff " << diff << ")";
  }
  if (bad == 0) return "";
  std::ostringstream head;
  head.precision(17);
  head << bad << " of " << got.size() << " elements differ (largest difference " << worst << ")" << err.str();
  return head.str();
}

}  // namespace ember::test
