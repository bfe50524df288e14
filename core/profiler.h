// The op profiler: what ran, with which shapes, and where the time went.
//
//   {
//     profiler::Profile prof;          // records this thread's ops until it is destroyed (or stop())
//     train_step();
//     std::cout << prof.table();       // per op: calls, self time, total time, average
//     prof.export_chrome_trace("trace.json");  // open in chrome://tracing or ui.perfetto.dev
//   }
//
// Every op in core/ops/*.cpp starts with one line, EMBER_OP_SCOPE("name",
// inputs...), and the autograd engine wraps each backward formula in one too (named "<op>Backward").
// A scope measures wall time from the op's entry to its return; nested scopes (the matmul inside
// linear, the mul inside MulBackward) are subtracted from the outer one's *self* time, so self times
// add up to the profiled wall time without double counting.
//
// Cost: with no Profile active (and anomaly mode off), a scope is one thread-local flag test.
// Times are host wall-clock times: on CUDA an op returns once its kernels are queued, so a kernel's
// run time shows up wherever the host next waits for the GPU (item(), a copy to the host), unless
// you synchronise after each op.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ember::profiler {

// One finished op call (or backward node run). Times in nanoseconds since the Profile started.
struct Event {
  std::string name;    // "matmul", "MulBackward"
  std::string shapes;  // input shapes, "[[64, 784], [128, 784]]"
  int64_t start_ns = 0;
  int64_t duration_ns = 0;
  int64_t self_ns = 0;  // duration minus the durations of the scopes directly inside it
  int depth = 0;        // 0 for an op called from user code, 1 for an op inside it, ...
  int thread = 0;       // a small per-thread number (the trace's tid)
};

// Events with the same name (and, when grouped by shape, the same input shapes), summed up.
struct OpStats {
  std::string name;
  std::string shapes;  // empty unless grouped by shape
  int64_t calls = 0;
  int64_t self_ns = 0;
  int64_t total_ns = 0;
};

enum class SortBy { SelfTotal, Total, Calls, Name };

class Profile {
 public:
  Profile() { start(); }  // RAII: records from construction...
  ~Profile() { stop(); }  // ...to destruction
  Profile(const Profile&) = delete;
  Profile& operator=(const Profile&) = delete;

  // start() clears earlier events. Profiles nest: an inner one records instead of the outer one
  // until it stops. Both record the calling thread only.
  void start();
  void stop();
  bool active() const { return active_; }

  const std::vector<Event>& events() const { return events_; }
  std::vector<OpStats> key_averages(bool group_by_shape = false) const;
  // A table like PyTorch's key_averages().table(): name, calls, self total, self %, total, average
  // per call, and the input shapes when grouped by shape; the `top` rows after sorting.
  std::string table(SortBy sort_by = SortBy::SelfTotal, size_t top = 20, bool group_by_shape = false) const;
  // Chrome trace event format: one complete event ("ph": "X") per op, ts/dur in microseconds.
  void export_chrome_trace(const std::string& path) const;

 private:
  friend struct Recorder;
  bool active_ = false;
  Profile* previous_ = nullptr;  // the Profile this one interrupted on its thread
  int64_t origin_ns_ = 0;
  std::vector<Event> events_;
};

namespace detail {
// Bit 0: a Profile is recording on this thread; bit 1: anomaly mode wants the op stack (core/anomaly.h).
enum : unsigned char { kProfiling = 1, kTracking = 2 };
extern thread_local constinit unsigned char t_flags;
void set_tracking(bool on);  // used by anomaly mode
// The ops open on this thread, outermost first, as "linear > matmul" (empty when not tracking).
std::string current_op_stack();

void append_shapes(std::string& out, const Tensor& t);
void append_shapes(std::string& out, const std::vector<Tensor>& ts);
void begin_op(const char* name, bool backward, std::string shapes);
void end_op();
}  // namespace detail

struct BackwardTag {};  // marks the engine's scope around a backward formula
inline constexpr BackwardTag kBackward{};

// RAII guard for one op call; use EMBER_OP_SCOPE below.
class OpScope {
 public:
  template <typename... Inputs>
  explicit OpScope(const char* name, const Inputs&... inputs) {
    if (!detail::t_flags) [[likely]] return;
    open(name, false, inputs...);
  }
  template <typename... Inputs>
  OpScope(const char* name, BackwardTag, const Inputs&... inputs) {
    if (!detail::t_flags) [[likely]] return;
    open(name, true, inputs...);
  }
  ~OpScope() {
    if (open_) detail::end_op();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  template <typename... Inputs>
  void open(const char* name, bool backward, const Inputs&... inputs) {
    std::string shapes;
    if (detail::t_flags & detail::kProfiling) {
      shapes = "[";
      (detail::append_shapes(shapes, inputs), ...);
      shapes += "]";
    }
    detail::begin_op(name, backward, std::move(shapes));
    open_ = true;
  }
  bool open_ = false;
};

}  // namespace ember::profiler

// First line of every op: EMBER_OP_SCOPE("matmul", a, b); (tensor or vector-of-tensor inputs only).
#define EMBER_OP_SCOPE(name, ...) ::ember::profiler::OpScope ember_op_scope_(name __VA_OPT__(, ) __VA_ARGS__)
