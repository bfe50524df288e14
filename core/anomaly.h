// Anomaly mode (libtorch's set_detect_anomaly / DetectAnomalyGuard): find the op whose backward
// first produced a NaN or an infinity.
//
//   autograd::DetectAnomalyGuard anomaly;  // on until the guard goes out of scope
//   Tensor loss = model(x).log().mean();
//   loss.backward();  // throws: "anomaly mode: the backward of log ... returned NaN for input 0 ..."
//
// While it is on, each Node remembers which ops were running when it was recorded (its origin),
// and the engine checks every gradient a backward formula returns. The check reads every gradient
// back (one reduction each, and on CUDA a wait for the GPU), so it is for debugging runs only.
// Off, it costs one flag test per recorded op and per backward node.
//
// The flag is global, as in libtorch; the op stack behind a Node's origin is kept on the thread
// that turned anomaly mode on.
#pragma once

#include <atomic>
#include <memory>

#include "core/autograd.h"

namespace ember::autograd {

namespace detail {
extern std::atomic<bool> g_detect_anomaly;
}

inline bool is_anomaly_enabled() { return detail::g_detect_anomaly.load(std::memory_order_relaxed); }
void set_detect_anomaly(bool on);

class DetectAnomalyGuard {
 public:
  DetectAnomalyGuard() : prev_(is_anomaly_enabled()) { set_detect_anomaly(true); }
  ~DetectAnomalyGuard() { set_detect_anomaly(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};

// What record() stores in a Node in anomaly mode: the op stack on this thread right now.
std::unique_ptr<NodeOrigin> describe_origin();

// The engine calls this after each backward formula when anomaly mode is on: throws an ember Error
// naming the forward op (its input shapes and dtypes, and its origin) and the input whose gradient
// holds the first NaN or infinity.
void check_backward_grads(const Node& node, const Grads& grads);

}  // namespace ember::autograd
