// The op profiler (see profiler.h): a thread-local stack of open op scopes, the events they leave
// in the active Profile, and the two reports (a table and a Chrome trace).
#include "core/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace ember::profiler {

namespace detail {

thread_local constinit unsigned char t_flags = 0;

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A small number per thread, in order of first use (tids in the trace).
int thread_number() {
  static std::atomic<int> next{1};
  thread_local const int mine = next.fetch_add(1);
  return mine;
}

// An op that has started and not yet returned.
struct Frame {
  const char* name;
  bool backward;
  Profile* profile;  // the Profile that was recording when it started (null: tracking only)
  std::string shapes;
  int64_t start_ns;
  int64_t child_ns;  // summed durations of the scopes directly inside this one
};

thread_local std::vector<Frame> t_stack;
thread_local Profile* t_profile = nullptr;  // the recording Profile on this thread, if any

}  // namespace

void set_tracking(bool on) {
  if (on) t_flags |= kTracking;
  else t_flags &= static_cast<unsigned char>(~kTracking);
}

std::string current_op_stack() {
  std::string s;
  for (const Frame& f : t_stack) {
    if (!s.empty()) s += " > ";
    s += f.name;
    if (f.backward) s += "Backward";
  }
  return s;
}

void append_shapes(std::string& out, const Tensor& t) {
  if (out.size() > 1) out += ", ";
  out += t.defined() ? t.shape().str() : std::string("undefined");
}

void append_shapes(std::string& out, const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts) append_shapes(out, t);
}

void begin_op(const char* name, bool backward, std::string shapes) {
  Profile* p = (t_flags & kProfiling) ? t_profile : nullptr;
  t_stack.push_back(Frame{name, backward, p, std::move(shapes), p ? now_ns() : 0, 0});
}

}  // namespace detail

// Turns a finished Frame into an Event of the Profile that saw it start (if it is still recording).
struct Recorder {
  static void finish(detail::Frame& f, int depth) {
    if (!f.profile) return;
    const int64_t duration = detail::now_ns() - f.start_ns;
    if (!detail::t_stack.empty()) detail::t_stack.back().child_ns += duration;
    if (f.profile != detail::t_profile || !f.profile->active_) return;  // stopped meanwhile
    Event e;
    e.name = f.name;
    if (f.backward) e.name += "Backward";
    e.shapes = std::move(f.shapes);
    e.start_ns = f.start_ns - f.profile->origin_ns_;
    e.duration_ns = duration;
    e.self_ns = std::max<int64_t>(0, duration - f.child_ns);
    e.depth = depth;
    e.thread = detail::thread_number();
    f.profile->events_.push_back(std::move(e));
  }
};

namespace detail {
void end_op() {
  EMBER_CHECK(!t_stack.empty(), "profiler: an op scope ended that never began");
  Frame f = std::move(t_stack.back());
  t_stack.pop_back();
  Recorder::finish(f, static_cast<int>(t_stack.size()));
}
}  // namespace detail

// ---------------- Profile ----------------

void Profile::start() {
  if (active_) stop();
  events_.clear();
  previous_ = detail::t_profile;
  if (previous_) previous_->active_ = false;  // the inner Profile records instead, until it stops
  detail::t_profile = this;
  detail::t_flags |= detail::kProfiling;
  origin_ns_ = detail::now_ns();
  active_ = true;
}

void Profile::stop() {
  if (!active_) return;
  active_ = false;
  if (detail::t_profile != this) return;  // stopped out of order: leave the newer one recording
  detail::t_profile = previous_;
  if (previous_) previous_->active_ = true;
  else detail::t_flags &= static_cast<unsigned char>(~detail::kProfiling);
  previous_ = nullptr;
}

std::vector<OpStats> Profile::key_averages(bool group_by_shape) const {
  std::map<std::pair<std::string, std::string>, OpStats> groups;
  for (const Event& e : events_) {
    const std::string shapes = group_by_shape ? e.shapes : std::string();
    OpStats& s = groups[{e.name, shapes}];
    s.name = e.name;
    s.shapes = shapes;
    ++s.calls;
    s.self_ns += e.self_ns;
    s.total_ns += e.duration_ns;
  }
  std::vector<OpStats> out;
  out.reserve(groups.size());
  for (auto& [key, s] : groups) out.push_back(std::move(s));
  return out;
}

namespace {

// 1234567 ns -> "1.235ms": three significant decimals in the largest unit that is >= 1.
std::string format_time(int64_t ns) {
  char buf[32];
  if (ns >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.3fs", ns / 1e9);
  else if (ns >= 1'000'000) std::snprintf(buf, sizeof buf, "%.3fms", ns / 1e6);
  else std::snprintf(buf, sizeof buf, "%.3fus", ns / 1e3);
  return buf;
}

}  // namespace

std::string Profile::table(SortBy sort_by, size_t top, bool group_by_shape) const {
  std::vector<OpStats> rows = key_averages(group_by_shape);
  auto key = [sort_by](const OpStats& s) -> int64_t {
    switch (sort_by) {
      case SortBy::Total: return s.total_ns;
      case SortBy::Calls: return s.calls;
      default: return s.self_ns;
    }
  };
  if (sort_by == SortBy::Name)
    std::stable_sort(rows.begin(), rows.end(), [](const OpStats& a, const OpStats& b) { return a.name < b.name; });
  else
    std::stable_sort(rows.begin(), rows.end(), [&](const OpStats& a, const OpStats& b) { return key(a) > key(b); });

  int64_t self_sum = 0;  // every nanosecond is some scope's self time exactly once
  for (const OpStats& s : rows) self_sum += s.self_ns;
  if (rows.size() > top) rows.resize(top);

  size_t name_w = 4;
  for (const OpStats& s : rows) name_w = std::max(name_w, s.name.size());
  std::string out;
  char line[512];
  auto add_line = [&](const char* name, const char* calls, const char* self, const char* pct, const char* total,
                      const char* avg, const char* shapes) {
    std::snprintf(line, sizeof line, "%-*s  %7s  %12s  %7s  %12s  %12s%s%s\n", static_cast<int>(name_w), name, calls,
                  self, pct, total, avg, group_by_shape ? "  " : "", shapes);
    out += line;
  };
  const std::string rule(name_w + 2 + 7 + 2 + 12 + 2 + 7 + 2 + 12 + 2 + 12 + (group_by_shape ? 14 : 0), '-');
  out += rule + "\n";
  add_line("Name", "Calls", "Self total", "Self %", "Total", "Avg total", group_by_shape ? "Input shapes" : "");
  out += rule + "\n";
  for (const OpStats& s : rows) {
    char calls[24], pct[16];
    std::snprintf(calls, sizeof calls, "%lld", static_cast<long long>(s.calls));
    std::snprintf(pct, sizeof pct, "%.1f%%", self_sum ? 100.0 * s.self_ns / self_sum : 0.0);
    add_line(s.name.c_str(), calls, format_time(s.self_ns).c_str(), pct, format_time(s.total_ns).c_str(),
             format_time(s.total_ns / std::max<int64_t>(1, s.calls)).c_str(), s.shapes.c_str());
  }
  out += rule + "\n";
  out += "Self time total: " + format_time(self_sum) + "\n";
  return out;
}

void Profile::export_chrome_trace(const std::string& path) const {
  nlohmann::json trace_events = nlohmann::json::array();
  const int pid = static_cast<int>(::getpid());
  for (const Event& e : events_) {
    const bool backward = e.name.size() > 8 && e.name.compare(e.name.size() - 8, 8, "Backward") == 0;
    trace_events.push_back({{"name", e.name},
                            {"cat", backward ? "backward" : "op"},
                            {"ph", "X"},
                            {"ts", e.start_ns / 1e3},
                            {"dur", e.duration_ns / 1e3},
                            {"pid", pid},
                            {"tid", e.thread},
                            {"args", {{"Input Shapes", e.shapes}, {"Self (us)", e.self_ns / 1e3}}}});
  }
  const nlohmann::json doc = {{"traceEvents", std::move(trace_events)}, {"displayTimeUnit", "ms"}};
  std::ofstream f(path);
  EMBER_CHECK(f.good(), "export_chrome_trace: cannot open ", path, " for writing");
  f << doc.dump(1) << "\n";
  f.close();
  EMBER_CHECK(f.good(), "export_chrome_trace: writing ", path, " failed");
}

}  // namespace ember::profiler
