// Autograd: the dynamic graph and the engine that walks it backwards — all in this header and
// autograd.cpp. Ops record a Node only when grad mode is on and an input requires grad; the Node
// holds the backward formula (a lambda written with ordinary tensor ops, next to the forward in
// core/ops/*.cpp), edges to the inputs' Nodes (or to leaf tensors, whose .grad it accumulates),
// and the tensors it saved. backward() sorts the graph iteratively (no recursion: a 100 000-op
// chain is fine), runs each Node once with the sum of the gradients flowing into it, reduces
// broadcast gradients back to each input's shape, and frees the graph unless retain_graph.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
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
// references: they never keep a saved tensor alive, and expire once the graph is released. The
// array lives inside the Node (no allocation of its own); an op that saves more than kMaxSaved
// tensors only counts the rest.
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

class Node {
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
  size_t num_hooks() const { return hooks_.size(); }
  const SavedList& saved() const { return saved_; }
  const NodeOrigin* origin() const { return origin_.get(); }  // null unless made in anomaly mode

 private:
  friend void run_backward(const Tensor&, const Tensor&, bool);
  friend void record_node(const char*, Tensor&, const Tensor*, const Tensor*, BackwardFn);
  const char* name_;
  std::vector<Edge> next_;
  BackwardFn fn_;  // reset (freeing saved tensors) when the graph is released
  std::vector<Hook> hooks_;
  SavedList saved_;
  std::unique_ptr<NodeOrigin> origin_;
};

// A tensor saved for backward. It is stored detached (no reference cycle through grad_fn) with the
// storage version at save time; get() refuses it if an in-place op has written to it since.
// Ops build their SavedTensors in the arguments of record(); each one is noted in a small
// thread-local list that record() hands to the Node it makes, so the graph can show what it saved.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t);  // NOLINT: implicit so lambdas can capture `SavedTensor s = x`
  const Tensor& get() const;

 private:
  Tensor t_;
  uint64_t version_ = 0;
};

// Thread-local switch: when disabled, ops record nothing (inference, optimizer steps).
class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool on);
};

class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
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

// The engine (Tensor::backward forwards here).
void run_backward(const Tensor& root, const Tensor& gradient, bool retain_graph);

}  // namespace ember
