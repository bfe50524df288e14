// Anomaly mode (see anomaly.h): the global switch, a Node's origin, and the NaN/Inf check the
// engine runs on each backward formula's gradients.
#include "core/anomaly.h"

#include <cmath>
#include <sstream>

#include "core/ops.h"
#include "core/profiler.h"

namespace ember::autograd {

namespace detail {
std::atomic<bool> g_detect_anomaly{false};
}

void set_detect_anomaly(bool on) {
  detail::g_detect_anomaly.store(on, std::memory_order_relaxed);
  profiler::detail::set_tracking(on);  // so a Node can say which ops it was made inside
}

std::unique_ptr<NodeOrigin> describe_origin() {
  auto origin = std::make_unique<NodeOrigin>();
  origin->context = profiler::detail::current_op_stack();
  return origin;
}

namespace {

// "nan", "inf" or "" (all finite). Counts on the tensor's own device, then reads back two numbers.
const char* first_anomaly(const Tensor& g) {
  if (!is_floating(g.dtype()) || g.numel() == 0) return "";
  const Tensor nan_count = sum(ne(g, g).to(kFloat64));
  if (nan_count.item() > 0) return "NaN";
  const Tensor inf_count = sum(eq(abs(g), INFINITY).to(kFloat64));
  if (inf_count.item() > 0) return "infinity";
  return "";
}

// "log(input 0: [3] float32)": the forward call as the Node's edges saw its inputs.
std::string describe_forward(const Node& node) {
  std::ostringstream os;
  os << node.name() << "(";
  for (size_t i = 0; i < node.next().size(); ++i) {
    const Edge& e = node.next()[i];
    os << (i ? ", " : "") << "input " << i << ": " << e.shape << " " << dtype_name(e.dtype);
  }
  os << ")";
  return os.str();
}

}  // namespace

void check_backward_grads(const Node& node, const Grads& grads) {
  NoGradGuard no_grad;
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    if (!g.defined()) continue;
    const char* what = first_anomaly(g);
    if (!*what) continue;
    std::ostringstream os;
    os << "anomaly mode: the backward of " << node.name() << " returned " << what << " in the gradient of input "
       << i << " (gradient shape " << g.shape() << ", " << dtype_name(g.dtype()) << "); forward call: "
       << describe_forward(node);
    if (node.origin() && !node.origin()->context.empty())
      os << "; op stack when it was recorded: " << node.origin()->context;
    else if (!node.origin()) os << " (recorded before anomaly mode was turned on)";
    EMBER_FAIL(os.str());
  }
}

}  // namespace ember::autograd
