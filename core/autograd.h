// Autograd: the dynamic graph and the engine that walks it backwards — all in this header and
// autograd.cpp. Ops record a Node only when grad mode is on and an input requires grad; the Node
// holds the backward formula (a lambda written with ordinary tensor ops, next to the forward in
// core/ops/*.cpp), edges to the inputs' Nodes (or to leaf tensors, whose .grad it accumulates),
// and the tensors it saved. The engine sorts the graph iteratively (no recursion: a 100 000-op
// chain is fine), runs each Node once with the sum of the gradients flowing into it, reduces
// broadcast gradients back to each input's shape, and frees the graph unless retain_graph.
//
// Higher-order gradients: because every backward formula is written with differentiable ops, the
// engine can run the formulas with grad mode ON (create_graph=true). The gradients it returns then
// have grad_fn themselves and can be differentiated again (autograd::grad below, libtorch's API).
// The engine itself uses only what core/tensor.h offers (no op library): it adds, casts, sums to a
// shape (Tensor::sum_to_size) and makes zeros/ones (Tensor::new_zeros/new_ones).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ember {

// Which inputs of a Node need a gradient (so a backward formula can skip the others).
struct NeedsGrad {
  uint32_t bits = 0;
  bool operator[](size_t i) const { return (bits >> i) & 1u; }
};

using Grads = std::vector<Tensor>;  // one per input; undefined = no gradient (treated as zero)

// Where a Node sends the gradient of one of its inputs.
struct Edge {
  std::shared_ptr<Node> node;        // the input's grad_fn, if the input is an op result
  std::shared_ptr<TensorImpl> leaf;  // the input itself, if it is a leaf that requires grad
  Shape shape;                       // the input's shape: gradients are summed back to it
  DType dtype = kFloat32;
  Device device;
  bool needed() const { return node || leaf; }
};

// What a Node saved for its backward, for tools that draw the graph (autograd::to_dot). Weak
// references: they never keep a saved tensor alive (a saved input may outlive the graph; once the
// Node is released its saved tensors are gone as far as the graph is concerned). The array lives
// inside the Node (no allocation of its own); an op that saves more than kMaxSaved tensors only
// counts the rest.
struct SavedList {
  static constexpr int kMaxSaved = 6;
  std::array<std::weak_ptr<TensorImpl>, kMaxSaved> tensors;
  int count = 0;  // how many the op saved; min(count, kMaxSaved) of them are in `tensors`
};

// Where a Node was made, kept only in anomaly mode (see core/anomaly.h): the ops that were running
// on this thread when it was recorded, outermost first ("cross_entropy > log_softmax").
struct NodeOrigin {
  std::string context;
};

// One recorded op: its backward formula and where each input's gradient goes. A Node has exactly
// one output (the tensor whose grad_fn it is).
class Node : public std::enable_shared_from_this<Node> {
 public:
  using BackwardFn = std::function<Grads(const Tensor& grad_out, NeedsGrad needs)>;

  Node(const char* name, std::vector<Edge> next, BackwardFn fn)
      : name_(name), next_(std::move(next)), fn_(std::move(fn)) {}
  ~Node();  // frees long chains iteratively (see autograd.cpp)
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const char* name() const { return name_; }
  const std::vector<Edge>& next() const { return next_; }
  bool released() const { return !fn_; }
  void add_hook(Hook h) { hooks_.push_back(std::move(h)); }
  const std::vector<Hook>& hooks() const { return hooks_; }
  size_t num_hooks() const { return hooks_.size(); }
  const SavedList& saved() const { return saved_; }
  const NodeOrigin* origin() const { return origin_.get(); }  // null unless made in anomaly mode

  // Runs the backward formula (the engine calls this; see autograd.cpp). While it runs, tensors
  // saved with SavedTensor::output() come back with this node as their grad_fn.
  Grads apply(const Tensor& grad_out, NeedsGrad needs);
  // Frees the formula and everything it saved (after a backward without retain_graph).
  void release() { fn_ = nullptr; }

 private:
  friend void record_node(const char*, Tensor&, const Tensor*, const Tensor*, BackwardFn);
  const char* name_;
  std::vector<Edge> next_;
  BackwardFn fn_;  // reset (freeing saved tensors) when the graph is released
  std::vector<Hook> hooks_;
  SavedList saved_;
  std::unique_ptr<NodeOrigin> origin_;
};

// A tensor saved for backward, with the storage version at save time: get() refuses it if an
// in-place op has written to it since.
//   SavedTensor(x)              an INPUT of the op (or a constant such as an index tensor). Kept
//                               as it is, graph included, so a backward run with create_graph can
//                               differentiate through it (the gradient of g * x reaches x).
//   SavedTensor::output(out)    the op's own OUTPUT. Keeping it with its grad_fn would be a
//                               reference cycle (node -> formula -> out -> node), so only the data
//                               is kept; get() re-attaches the node that is running (out's grad_fn
//                               by definition) when the engine differentiates with create_graph.
// Ops build their SavedTensors in the arguments of record(); each one is noted in a small
// thread-local list that record() hands to the Node it makes, so the graph can show what it saved.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t);  // NOLINT: implicit so lambdas can capture `SavedTensor s = x`
  static SavedTensor output(const Tensor& out);
  Tensor get() const;

 private:
  Tensor t_;
  uint64_t version_ = 0;
  bool is_output_ = false;
};

// Thread-local switch: when disabled, ops record nothing (inference, optimizer steps).
class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool on);
};

// Sets grad mode for a scope and restores it after (libtorch's AutoGradMode).
class AutoGradMode {
 public:
  explicit AutoGradMode(bool enabled) : prev_(GradMode::is_enabled()) { GradMode::set_enabled(enabled); }
  ~AutoGradMode() { GradMode::set_enabled(prev_); }
  AutoGradMode(const AutoGradMode&) = delete;
  AutoGradMode& operator=(const AutoGradMode&) = delete;

 private:
  bool prev_;
};

class NoGradGuard : public AutoGradMode {
 public:
  NoGradGuard() : AutoGradMode(false) {}
};

// True when grad mode is on and any of `inputs` requires grad: the op must record a Node.
bool grad_needed(std::initializer_list<Tensor> inputs);
inline bool grad_needed(const Tensor& a) { return grad_needed({a}); }

// Attaches a Node named `name` to `out` (making it a non-leaf that requires grad).
// Call only when grad_needed(inputs).
void record(const char* name, Tensor& out, std::initializer_list<Tensor> inputs, Node::BackwardFn fn);
// Same, for ops with a variable number of inputs (cat). At most 32 inputs.
void record_many(const char* name, Tensor& out, const std::vector<Tensor>& inputs, Node::BackwardFn fn);

// In-place ops call this first: refuses tensors that require grad while grad mode is on, then bumps
// the storage version so saved copies of it are detected as stale.
void check_inplace(const Tensor& t, const char* op);

namespace autograd {

// Gradients of `outputs` with respect to `inputs`, returned instead of accumulated: no .grad is
// touched (libtorch's torch::autograd::grad). inputs may be leaves or intermediate results.
//   grad_outputs   one per output (the vector in the vector-Jacobian product); may be left empty
//                  for one-element outputs (then ones). An undefined entry also means ones.
//   retain_graph   keep the graph for another backward; defaults to create_graph.
//   create_graph   run the backward formulas with grad mode on, so the returned gradients have a
//                  grad_fn and can be differentiated again (Hessian-vector products, gradient
//                  penalties).
//   allow_unused   an input the outputs do not depend on gives an undefined tensor instead of an error.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, std::optional<bool> retain_graph = std::nullopt,
                         bool create_graph = false, bool allow_unused = false);

// Same engine, accumulating into the .grad of every leaf the outputs depend on (what
// Tensor::backward does for one output). With create_graph the accumulated .grad has a graph
// (note: a leaf whose .grad depends on the leaf itself is a reference cycle, as in PyTorch; reset
// .grad with zero_grad() when done).
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs = {},
              std::optional<bool> retain_graph = std::nullopt, bool create_graph = false);

// Every leaf tensor that requires grad and that a backward from `roots` would reach (a root that
// is itself such a leaf included), each once, in discovery order. For tools that must know ahead
// of a backward which parameters will get a gradient (DistributedDataParallel's unused-parameter
// detection).
std::vector<TensorImpl*> collect_leaves(const std::vector<Tensor>& roots);

}  // namespace autograd

}  // namespace ember
