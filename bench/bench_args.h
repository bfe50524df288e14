// Command-line helpers the bench programs share (ember_peak, ember_gemm_sweep, ember_conv_sweep,
// ember_prim_sweep, ember_step_profile): `--flag value` pairs, where a bad value ends the program
// with exit code 2, the reason and the program's usage line, never with a number read as something
// else.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace ember::bench {

class Args {
 public:
  Args(const char* program, const char* usage) : program_(program), usage_(usage) {}

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s\nusage: %s\n", program_, why.c_str(), usage_);
    std::exit(2);
  }

  // The value after argv[i] (i is advanced past it).
  std::string value(int argc, char** argv, int& i) const {
    if (i + 1 >= argc) fail(std::string("missing value after ") + argv[i]);
    return argv[++i];
  }

  // A whole number from 1 to max.
  int64_t positive(const std::string& flag, const std::string& text, int64_t max = 1024) const {
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || v <= 0 || v > max)
      fail(flag + " needs a whole number from 1 to " + std::to_string(max) + ", got '" + text + "'");
    return v;
  }

  // The flags of the sweeps (ember_conv_sweep, ember_prim_sweep): --threads N, --reps N, --model NAME;
  // anything else is refused.
  struct SweepFlags {
    int threads = 2, reps = 7;
    std::string model;  // empty: every model
  };
  SweepFlags sweep_flags(int argc, char** argv) const {
    SweepFlags f;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      const std::string v = value(argc, argv, i);
      if (a == "--threads") f.threads = static_cast<int>(positive(a, v));
      else if (a == "--reps") f.reps = static_cast<int>(positive(a, v));
      else if (a == "--model") f.model = v;
      else fail("unknown flag " + a);
    }
    return f;
  }

  // "1,2" -> {1, 2}: thread counts.
  std::vector<int> thread_list(const std::string& flag, const std::string& text) const {
    std::vector<int> t;
    for (size_t start = 0; start <= text.size();) {
      const size_t comma = std::min(text.find(',', start), text.size());
      t.push_back(static_cast<int>(positive(flag, text.substr(start, comma - start))));
      start = comma + 1;
    }
    return t;
  }

 private:
  const char* program_;
  const char* usage_;
};

}  // namespace ember::bench
