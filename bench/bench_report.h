// Small helpers every training benchmark program prints its result with, ember's and the libtorch
// anchor's alike (plain C++17, no ember headers: bench/libtorch/ includes it too), so both sides
// report the same quantities measured the same way:
//   - which math libraries the process actually loaded (from /proc/self/maps: OpenBLAS, the
//     reference or alternative libblas, oneDNN, MKL), so a table can show e.g. that libtorch ran
//     on the OpenMP OpenBLAS and not the pthread one;
//   - peak resident memory (getrusage of the process itself);
//   - median, min and max of a list of timings.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace ember::bench {

// Paths of the BLAS / oneDNN / MKL shared objects mapped into this process, each once.
inline std::vector<std::string> loaded_math_libraries() {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> found;
  for (std::string line; std::getline(maps, line);) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = path.substr(path.rfind('/') + 1);
    for (const char* lib : {"libopenblas", "libblas", "libdnnl", "libmkl"})
      if (file.rfind(lib, 0) == 0) found.insert(path);
  }
  return {found.begin(), found.end()};
}

inline double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

struct Spread {
  double median = 0, min = 0, max = 0;
};

inline Spread spread(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return {median, v.front(), v.back()};
}

// ["a","b"] for a JSON line (paths hold no quotes or backslashes).
inline std::string json_list(const std::vector<std::string>& items) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ",\"" : "\"") + items[i] + "\"";
  return s + "]";
}

}  // namespace ember::bench
