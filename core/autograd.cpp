// The autograd engine. Read top to bottom: grad mode, saved tensors, recording a node, and
// run_backward (topological sort + reverse walk + leaf accumulation + graph release).
#include "core/autograd.h"

#include <unordered_map>

#include "core/anomaly.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace ember {

// ---------------- grad mode ----------------

namespace {
thread_local bool g_grad_enabled = true;
}
bool GradMode::is_enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool on) { g_grad_enabled = on; }

// ---------------- saved tensors and in-place checks ----------------

namespace {
// The SavedTensors built since the last record() on this thread (see SavedTensor in autograd.h).
// A fixed array: noting a saved tensor costs a weak-reference count, never an allocation.
thread_local SavedList t_pending_saved;
}  // namespace

SavedTensor::SavedTensor(const Tensor& t) : t_(t.defined() ? t.detach() : Tensor()) {
  if (!t.defined()) return;
  version_ = t.storage()->version();
  SavedList& pending = t_pending_saved;
  if (pending.count < SavedList::kMaxSaved) pending.tensors[pending.count] = t_.impl_ptr();
  ++pending.count;
}

const Tensor& SavedTensor::get() const {
  EMBER_CHECK(!t_.defined() || t_.storage()->version() == version_,
              "a tensor of shape ", t_.shape(), " saved for backward was modified by an in-place operation (version ",
              t_.storage()->version(), ", expected ", version_, "); clone it before modifying it in-place");
  return t_;
}

void check_inplace(const Tensor& t, const char* op) {
  EMBER_CHECK(t.defined(), op, ": called on an undefined tensor");
  if (GradMode::is_enabled() && t.requires_grad()) {
    EMBER_CHECK(!t.is_leaf(), op, ": a leaf tensor of shape ", t.shape(),
                " that requires grad cannot be modified in-place (wrap the update in NoGradGuard)");
    EMBER_FAIL(op, ": in-place operations on tensors that require grad are not supported (shape ", t.shape(),
               "); use the out-of-place form");
  }
  t.storage()->bump_version();
}

// ---------------- recording ----------------

bool grad_needed(std::initializer_list<Tensor> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.impl()->requires_grad) return true;
  return false;
}

// Makes the Node for record() and record_many(): one edge per input, the saved tensors noted since
// the last record(), and in anomaly mode where it was made.
void record_node(const char* name, Tensor& out, const Tensor* first, const Tensor* last, Node::BackwardFn fn) {
  EMBER_CHECK(last - first <= 32, name, ": at most 32 differentiable inputs per op, got ", last - first);
  std::vector<Edge> edges;
  edges.reserve(last - first);
  for (const Tensor* it = first; it != last; ++it) {
    const Tensor& t = *it;
    Edge e;
    if (t.defined()) {
      e.shape = t.shape();
      e.dtype = t.dtype();
      e.device = t.device();
      if (t.impl()->grad_fn) e.node = t.impl()->grad_fn;
      else if (t.impl()->requires_grad) e.leaf = t.impl_ptr();
    }
    edges.push_back(std::move(e));
  }
  auto node = std::make_shared<Node>(name, std::move(edges), std::move(fn));
  SavedList& pending = t_pending_saved;
  node->saved_ = std::move(pending);
  pending.count = 0;  // moved-from weak_ptrs are already empty
  if (autograd::is_anomaly_enabled()) node->origin_ = autograd::describe_origin();
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

void record(const char* name, Tensor& out, std::initializer_list<Tensor> inputs, Node::BackwardFn fn) {
  record_node(name, out, inputs.begin(), inputs.end(), std::move(fn));
}
void record_many(const char* name, Tensor& out, const std::vector<Tensor>& inputs, Node::BackwardFn fn) {
  record_node(name, out, inputs.data(), inputs.data() + inputs.size(), std::move(fn));
}

// A long chain of nodes would be destroyed recursively (each node's destructor dropping the last
// reference to the next). Instead, a node hands its sole-owned successors to a thread-local list
// that the outermost destructor drains in a loop: constant stack depth for any graph length.
Node::~Node() {
  thread_local std::vector<std::shared_ptr<Node>> pending;
  thread_local bool draining = false;
  for (Edge& e : next_)
    if (e.node && e.node.use_count() == 1) pending.push_back(std::move(e.node));
  next_.clear();
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    n.reset();  // may push more nodes onto `pending`
  }
  draining = false;
}

// ---------------- the engine ----------------

namespace {

// Accumulates `g` into a leaf's .grad (a fresh tensor the first time, so later in-place updates by
// an optimizer never write through a view of some other gradient), then calls the leaf's hooks.
void accumulate_into_leaf(TensorImpl& leaf, Tensor g) {
  if (!leaf.grad.defined()) {
    const bool sole_owner = g.storage().use_count() == 1 && g.is_contiguous() && g.offset() == 0 &&
                            g.storage()->nbytes() == g.nbytes();
    leaf.grad = sole_owner ? g.detach() : g.clone();
  } else {
    leaf.grad = leaf.grad + g;  // out of place: a user may hold the previous .grad
  }
  for (const Hook& h : leaf.leaf_hooks) h(leaf.grad);
}

// Brings a gradient to the shape/dtype of the input it belongs to (reverses broadcasting).
Tensor conform(Tensor g, const Edge& e, const char* node_name) {
  if (g.shape() != e.shape) g = sum_to(g, e.shape);
  EMBER_CHECK(g.shape() == e.shape, "backward of ", node_name, ": gradient of shape ", g.shape(),
              " does not match input shape ", e.shape);
  if (g.dtype() != e.dtype) g = g.to(e.dtype);
  return g;
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& gradient, bool retain_graph) {
  EMBER_CHECK(root.defined(), "backward: called on an undefined tensor");
  EMBER_CHECK(root.requires_grad(), "backward: tensor of shape ", root.shape(),
              " does not require grad and has no grad_fn");
  Tensor grad = gradient;
  if (!grad.defined()) {
    EMBER_CHECK(root.numel() == 1, "backward: grad can be implicitly created only for scalar outputs; got shape ",
                root.shape(), " (pass a gradient of that shape)");
    grad = ones_like(root);
  }
  EMBER_CHECK(grad.shape() == root.shape(), "backward: gradient shape ", grad.shape(), " does not match tensor shape ",
              root.shape());
  EMBER_CHECK(grad.dtype() == root.dtype(), "backward: gradient dtype ", dtype_name(grad.dtype()),
              " does not match tensor dtype ", dtype_name(root.dtype()));
  NoGradGuard no_grad;  // backward formulas must not record a graph of their own
  grad = grad.detach();

  if (root.is_leaf()) {
    accumulate_into_leaf(*root.impl(), grad);
    return;
  }
  Node* start = root.grad_fn().get();

  // 1. Count, for each node and each leaf, how many edges point to it (iterative DFS). A leaf's
  //    gradient is accumulated (and its hooks fire) once, when all its contributions are in.
  std::unordered_map<Node*, int> deps;
  std::unordered_map<TensorImpl*, int> leaf_deps;
  std::vector<Node*> stack{start};
  std::vector<Node*> order;  // every reachable node, for release at the end
  deps[start] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    EMBER_CHECK(!n->released(), "backward: trying to backward through the graph a second time (node ", n->name(),
                " was freed by an earlier backward); pass retain_graph=true to the first backward call");
    for (const Edge& e : n->next()) {
      if (e.leaf) ++leaf_deps[e.leaf.get()];
      if (!e.node) continue;
      auto [it, fresh] = deps.try_emplace(e.node.get(), 0);
      ++it->second;
      if (fresh) stack.push_back(e.node.get());
    }
  }

  // 2. Walk in topological order: a node runs once all its consumers have sent their gradients.
  std::unordered_map<Node*, Tensor> pending;
  std::unordered_map<TensorImpl*, Tensor> leaf_pending;
  pending.reserve(order.size());
  pending[start] = grad;
  std::vector<Node*> ready{start};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor g = std::move(pending[n]);
    pending.erase(n);
    for (const Hook& h : n->hooks_) h(g);

    NeedsGrad needs;
    for (size_t i = 0; i < n->next().size(); ++i)
      if (n->next()[i].needed()) needs.bits |= 1u << i;
    Grads in_grads;
    try {
      profiler::OpScope scope(n->name(), profiler::kBackward, g);  // "<op>Backward" in a profile
      in_grads = n->fn_(g, needs);
    } catch (const Error& err) {
      throw Error(std::string("in backward of ") + n->name() + ": " + err.what());
    }
    EMBER_CHECK(in_grads.size() == n->next().size(), "backward of ", n->name(), ": returned ", in_grads.size(),
                " gradients for ", n->next().size(), " inputs");
    if (autograd::is_anomaly_enabled()) autograd::check_backward_grads(*n, in_grads);

    for (size_t i = 0; i < n->next().size(); ++i) {
      const Edge& e = n->next()[i];
      if (!e.needed()) continue;
      Tensor gi = in_grads[i];
      if (gi.defined()) gi = conform(gi, e, n->name());
      if (e.leaf) {
        TensorImpl* leaf = e.leaf.get();
        if (gi.defined()) {
          Tensor& slot = leaf_pending[leaf];
          slot = slot.defined() ? slot + gi : gi;
        }
        if (--leaf_deps[leaf] == 0) {
          auto it = leaf_pending.find(leaf);
          if (it != leaf_pending.end()) {
            accumulate_into_leaf(*leaf, std::move(it->second));
            leaf_pending.erase(it);
          }
        }
        continue;
      }
      Node* next = e.node.get();
      if (gi.defined()) {
        Tensor& slot = pending[next];
        slot = slot.defined() ? slot + gi : gi;
      }
      if (--deps[next] == 0) {
        if (!pending[next].defined()) pending[next] = zeros(e.shape, TensorOptions(e.dtype).device(e.device));
        ready.push_back(next);
      }
    }
  }

  // 3. Free saved tensors and closures unless the caller wants to run backward again.
  if (!retain_graph)
    for (Node* n : order) n->fn_ = nullptr;
}

}  // namespace ember
