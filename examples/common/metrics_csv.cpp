#include "examples/common/metrics_csv.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace ember::examples {

const char* const kMetricsHeader =
    "kind,epoch,step,loss,lr,samples_per_second,wall_seconds,epoch_seconds,train_loss,train_accuracy,test_loss,"
    "test_accuracy";

namespace {

constexpr size_t kColumns = 12;

std::vector<std::string> split_commas(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream in(line);
  std::string cell;
  while (std::getline(in, cell, ',')) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.emplace_back();  // getline drops a last empty cell
  return cells;
}

bool parse_int(const std::string& s, int64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

bool parse_double(const std::string& s, double& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size() && std::isfinite(out);
}

// A whole row of this schema: 12 cells, a known kind, an epoch >= 1. Anything else is torn (a
// run killed mid-write) and is dropped on resume.
bool parse_row(const std::string& line, std::string& kind, int64_t& epoch, double& wall_seconds) {
  const std::vector<std::string> cells = split_commas(line);
  if (cells.size() != kColumns) return false;
  kind = cells[0];
  return (kind == "step" || kind == "epoch") && parse_int(cells[1], epoch) && epoch >= 1 &&
         parse_double(cells[6], wall_seconds);
}

std::string cell(double v) {
  if (std::isnan(v)) return "";
  std::ostringstream s;
  s.precision(8);
  s << v;
  return s.str();
}

}  // namespace

void append_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app);
  EMBER_CHECK(out.good(), "--metrics: cannot open ", path, " for writing: ", std::strerror(errno));
  out << text;
  out.flush();
  EMBER_CHECK(out.good(), "--metrics: writing ", text.size(), " bytes to ", path, " failed: ", std::strerror(errno));
  out.close();
  EMBER_CHECK(!out.fail(), "--metrics: closing ", path, " failed: ", std::strerror(errno));
}

void start_metrics(const std::string& path, const std::string& comment) {
  const std::string preamble = comment.empty() ? "" : "# " + comment + "\n";
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec);
  EMBER_CHECK(!ec, "--metrics: ", path, " cannot be examined: ", ec.message());
  std::string first, comments, line;
  // Only a regular file has a header to check: /dev/full reads zeros forever and a FIFO blocks
  // (the write below reports what is wrong with those).
  if (exists && std::filesystem::is_regular_file(path, ec)) {
    std::ifstream in(path);
    while (std::getline(in, line) && !line.empty() && line[0] == '#') comments += line + '\n';
    first = line;
  }
  if (!first.empty() || !comments.empty()) {
    EMBER_CHECK(first == kMetricsHeader, "--metrics: ", path, " starts with the header '", first,
                "', not this version's '", kMetricsHeader, "'; write the metrics to a new file");
    EMBER_CHECK(comments == preamble, "--metrics: ", path, " was written for other data (its comment lines are '",
                comments.empty() ? "" : comments.substr(0, comments.size() - 1), "', this run's are '",
                comment.empty() ? "" : "# " + comment, "'); write the metrics to a new file");
    append_text(path, "");  // still writable?
    return;
  }
  append_text(path, preamble + kMetricsHeader + '\n');
}

void write_metrics_row(const std::string& path, const MetricsRow& r) {
  const double none = std::nan("");
  std::ostringstream row;
  row << (r.is_step ? "step" : "epoch") << ',' << r.epoch << ',' << r.step << ',' << cell(r.is_step ? r.loss : none)
      << ',' << cell(r.lr) << ',' << cell(r.samples_per_second) << ',' << cell(r.wall_seconds);
  for (double v : {r.epoch_seconds, r.train_loss, r.train_accuracy, r.test_loss, r.test_accuracy})
    row << ',' << cell(r.is_step ? none : v);
  row << '\n';
  append_text(path, row.str());
}

double truncate_metrics(const std::string& path, int64_t checkpoint_epoch) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return 0;  // nothing to keep (see start_metrics)
  std::ifstream in(path);
  EMBER_CHECK(in.good(), "--metrics: cannot read ", path, ": ", std::strerror(errno));
  std::string kept, line, kind;
  bool dropped = false;
  double last_wall = 0;
  for (bool header = true; std::getline(in, line);) {
    if (header) {  // comment lines and the header stay; a different header is refused by start_metrics
      kept += line + '\n';
      header = !line.empty() && line[0] == '#';
      continue;
    }
    int64_t epoch = 0;
    double wall = 0;
    const bool keep = parse_row(line, kind, epoch, wall) && epoch <= checkpoint_epoch;
    if (keep) kept += line + '\n';
    if (keep && kind == "epoch") last_wall = wall;
    dropped = dropped || !keep;
  }
  EMBER_CHECK(in.eof(), "--metrics: reading ", path, " failed: ", std::strerror(errno));
  if (!dropped) return last_wall;
  const std::string tmp = path + ".tmp";
  std::filesystem::remove(tmp, ec);
  append_text(tmp, kept);
  std::filesystem::rename(tmp, path, ec);
  EMBER_CHECK(!ec, "--metrics: cannot replace ", path, ": ", ec.message());
  spdlog::info("--metrics: removed the rows of epochs after {} from {} (written before a checkpoint that never came)",
               checkpoint_epoch, path);
  return last_wall;
}

}  // namespace ember::examples
