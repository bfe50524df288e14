// Reading the PyTorch reference files in tests/data (written by scripts/make_reference*.py) and
// comparing ember's tensors with them. Shared by test_reference.cpp and test_nn_reference.cpp.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/ember.h"

namespace ember::test {

using json = nlohmann::json;

// Allowed |actual - expected| <= atol + rtol * |expected|.
struct Tolerance {
  double rtol, atol;
};

// tests/data/<file>, parsed once per process; throws naming the path and the script that writes it.
const json& load_reference(const std::string& file, const std::string& script);

// The float values of a tensor's "data"; non-finite values are stored as "nan", "inf", "-inf"
// (JSON has no NaN).
std::vector<double> float_values(const json& data);

// A tensor from the file ({"shape", "dtype", "data"}), floating-point data cast to `float_dtype`.
Tensor from_json(const json& j, DType float_dtype = kFloat64);

// "" when `actual` matches the reference tensor `expected`, else what differs (up to 4 elements).
// Integer references must match exactly. With `float_dtype`, the dtype is checked too (float
// entries must come back as float_dtype).
std::string compare(const Tensor& actual, const json& expected, Tolerance tol,
                    std::optional<DType> float_dtype = std::nullopt);

}  // namespace ember::test
