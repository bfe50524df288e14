// `--name value` command-line flags for the libtorch anchor programs (they build without ember,
// so without CLI11's ember setup). Unknown flags, missing values and non-numbers are errors that
// name the flag; the programs turn them into exit status 2.
#pragma once

#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>

namespace ember::bench {

class Flags {
 public:
  Flags(int argc, char** argv, const std::set<std::string>& known) {
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      if (!known.count(flag)) throw std::invalid_argument("unknown option " + flag);
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + flag);
      values_[flag] = argv[++i];
    }
  }

  std::string text(const std::string& flag, const std::string& fallback) const {
    auto it = values_.find(flag);
    return it == values_.end() ? fallback : it->second;
  }

  // A whole number >= minimum.
  long number(const std::string& flag, long fallback, long minimum) const {
    auto it = values_.find(flag);
    if (it == values_.end()) return fallback;
    char* end = nullptr;
    const long v = std::strtol(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || v < minimum)
      throw std::invalid_argument(flag + " needs a whole number >= " + std::to_string(minimum) + ", got '" +
                                  it->second + "'");
    return v;
  }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace ember::bench
