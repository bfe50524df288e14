// The autograd engine. Read top to bottom: grad mode, saved tensors, recording a node, and the
// engine (discovery + pruning + reverse walk + leaf accumulation or capture + graph release).
// It uses only core/tensor.h (no op library): gradients are added with +, cast with to(), summed
// back to an input's shape with sum_to_size(), and made with new_zeros()/new_ones().
#include "core/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "core/anomaly.h"
#include "core/autocast.h"
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

// The node whose backward formula is running on this thread (set by Node::apply), so that a saved
// output can be given its grad_fn back. Null outside the engine.
thread_local Node* g_running_node = nullptr;
}  // namespace

Grads Node::apply(const Tensor& grad_out, NeedsGrad needs) {
  struct Running {  // restores the previous node even when the formula throws
    Node* prev;
    explicit Running(Node* n) : prev(g_running_node) { g_running_node = n; }
    ~Running() { g_running_node = prev; }
  } running(this);
  return fn_(grad_out, needs);
}

SavedTensor::SavedTensor(const Tensor& t) : t_(t) {
  if (!t.defined()) return;
  version_ = t.storage()->version();
  SavedList& pending = t_pending_saved;
  if (pending.count < SavedList::kMaxSaved) pending.tensors[pending.count] = t_.impl_ptr();
  ++pending.count;
}

SavedTensor SavedTensor::output(const Tensor& out) {
  SavedTensor s(out.defined() ? out.detach() : Tensor());
  s.is_output_ = true;
  return s;
}

Tensor SavedTensor::get() const {
  EMBER_CHECK(!t_.defined() || t_.storage()->version() == version_,
              "a tensor of shape ", t_.shape(), " saved for backward was modified by an in-place operation (version ",
              t_.storage()->version(), ", expected ", version_, "); clone it before modifying it in-place");
  // An op's output, read while its own node runs with create_graph: the same data, with the node
  // as grad_fn again, so the second-order graph leads back through this node.
  if (is_output_ && t_.defined() && g_running_node && GradMode::is_enabled() && is_floating(t_.dtype())) {
    Tensor t = t_.detach();
    t.impl()->grad_fn = g_running_node->shared_from_this();
    t.impl()->requires_grad = true;
    return t;
  }
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
  // The formula goes first: the inputs it saved may hold the last other reference to a next node,
  // which must then be dropped here, while the edge still keeps that node alive.
  fn_ = nullptr;
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

// Brings a gradient to the shape/dtype of the input it belongs to (reverses broadcasting).
Tensor conform(Tensor g, const Edge& e, const char* node_name) {
  if (g.shape() != e.shape) g = g.sum_to_size(e.shape);
  EMBER_CHECK(g.shape() == e.shape, "backward of ", node_name, ": gradient of shape ", g.shape(),
              " does not match input shape ", e.shape);
  if (g.dtype() != e.dtype) g = g.to(e.dtype);
  return g;
}

Tensor add_grads(const Tensor& a, const Tensor& b) { return a.defined() ? a + b : b; }

// What one engine run does with the gradient that reaches a leaf, and which tensors it wants.
struct Task {
  bool create_graph = false;
  bool accumulate = true;  // backward(): into every leaf's .grad; grad(): capture the inputs' gradients
  // grad() only: the inputs, by what identifies them in the graph (a leaf's impl, a result's node).
  std::unordered_map<TensorImpl*, std::vector<size_t>> leaf_inputs;
  std::unordered_map<Node*, std::vector<size_t>> node_inputs;
  std::vector<Tensor> captured;  // one per input
  std::vector<char> reached;     // one per input
};

// Accumulates `g` into a leaf's .grad (a fresh tensor the first time, so later in-place updates by
// an optimizer never write through a view of some other gradient), then calls the leaf's hooks.
// The .grad is laid out as the leaf is (contiguous, or channels-last for a channels-last leaf:
// libtorch's gradient layout contract), so loops over a tensor and its gradient meet element for
// element. With create_graph the .grad keeps its graph (the clone and the + are recorded).
void accumulate_into_leaf(TensorImpl& leaf, Tensor g, bool create_graph) {
  const MemoryFormat format = suggest_memory_format(leaf.shape, leaf.strides);
  if (!leaf.grad.defined()) {
    const bool sole_owner = g.storage().use_count() == 1 && g.is_contiguous(format) && g.offset() == 0 &&
                            g.storage()->nbytes() == g.nbytes();
    leaf.grad = sole_owner ? (create_graph ? g : g.detach()) : g.clone(format);
  } else {
    // Out of place: a user may hold the previous .grad. (A sum takes a channels-last operand's
    // layout; contiguous(format) restores the leaf's where g's differed.)
    leaf.grad = (leaf.grad + g).contiguous(format);
  }
  for (const Hook& h : leaf.leaf_hooks) h(leaf.grad);
}

// The gradient that reached a leaf, complete: accumulated (backward) or captured (grad).
void finish_leaf(Task& task, TensorImpl* leaf, const Tensor& g) {
  if (task.accumulate) {
    if (g.defined()) accumulate_into_leaf(*leaf, g, task.create_graph);
    return;
  }
  for (size_t i : task.leaf_inputs.at(leaf)) {
    task.reached[i] = 1;
    task.captured[i] = g;
  }
}

// The engine proper. `roots` and `root_grads` are checked by the callers; root_grads are already
// detached unless create_graph.
void execute(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads, bool keep_graph, Task& task,
             const char* api) {
  // Backward formulas run in the dtypes their forward saw: autocast's casts are off here (they are
  // recorded as Tensor::to nodes in the graph instead).
  AutocastGuard no_autocast(autocast::dtype(), /*enabled=*/false);
  // 1. Discovery (iterative DFS): every node reachable from the roots, and for each node and leaf
  //    how many edges point to it. A node runs, and a leaf is finished (its hooks fire), once all
  //    of its consumers have sent their gradients.
  std::unordered_map<Node*, int> deps;
  std::unordered_map<TensorImpl*, int> leaf_deps;
  std::vector<Node*> stack, found;
  for (const Tensor& r : roots) {
    Node* n = r.grad_fn().get();
    if (n && deps.try_emplace(n, 0).second) stack.push_back(n);
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    found.push_back(n);
    for (const Edge& e : n->next()) {
      if (e.leaf) ++leaf_deps[e.leaf.get()];
      if (!e.node) continue;
      auto [it, fresh] = deps.try_emplace(e.node.get(), 0);
      ++it->second;
      if (fresh) stack.push_back(e.node.get());
    }
  }

  // 2. Pruning (grad() only): a node must run when some wanted input lies behind it. Going through
  //    the nodes in reverse topological order (leaves' side first), a node runs if one of its edges
  //    leads to a wanted leaf or to a node that is wanted or runs.
  auto wanted_leaf = [&](TensorImpl* leaf) { return task.accumulate || task.leaf_inputs.count(leaf) > 0; };
  std::unordered_set<Node*> runs;   // nodes whose formula is applied
  std::unordered_set<Node*> leads;  // nodes that run or are wanted inputs: gradients are sent to them
  // backward() runs every node (no sets to fill); grad() only the pruned ones.
  auto node_runs = [&](Node* n) { return task.accumulate || runs.count(n) > 0; };
  auto node_leads = [&](Node* n) { return task.accumulate || leads.count(n) > 0; };
  if (!task.accumulate) {
    std::unordered_map<Node*, int> left = deps;  // Kahn's algorithm on a copy of the counts
    std::vector<Node*> topo, ready;
    for (Node* n : found)
      if (left[n] == 0) ready.push_back(n);
    while (!ready.empty()) {
      Node* n = ready.back();
      ready.pop_back();
      topo.push_back(n);
      for (const Edge& e : n->next())
        if (e.node && --left[e.node.get()] == 0) ready.push_back(e.node.get());
    }
    for (auto it = topo.rbegin(); it != topo.rend(); ++it) {
      Node* n = *it;
      bool run = false;
      for (const Edge& e : n->next())
        run = run || (e.leaf && wanted_leaf(e.leaf.get())) || (e.node && node_leads(e.node.get()));
      if (run) runs.insert(n);
      if (run || task.node_inputs.count(n)) leads.insert(n);
    }
  }

  // 3. The roots' gradients. A root that is itself a leaf counts as one more edge into it.
  std::unordered_map<Node*, Tensor> pending;
  std::unordered_map<TensorImpl*, Tensor> leaf_pending;
  auto send_to_leaf = [&](TensorImpl* leaf, const Tensor& g) {
    if (g.defined()) leaf_pending[leaf] = add_grads(leaf_pending[leaf], g);
    if (--leaf_deps[leaf] == 0) {
      Tensor total = std::move(leaf_pending[leaf]);
      leaf_pending.erase(leaf);
      finish_leaf(task, leaf, total);
    }
  };
  for (const Tensor& r : roots)
    if (r.is_leaf()) ++leaf_deps[r.impl()];
  for (size_t i = 0; i < roots.size(); ++i) {
    if (roots[i].is_leaf()) {
      if (wanted_leaf(roots[i].impl())) send_to_leaf(roots[i].impl(), root_grads[i]);
    } else {
      Node* n = roots[i].grad_fn().get();
      pending[n] = add_grads(pending[n], root_grads[i]);
    }
  }

  // 4. The walk in topological order: a node runs once all its consumers have sent their gradients.
  std::vector<Node*> ready, ran;
  for (const Tensor& r : roots) {
    Node* n = r.grad_fn().get();
    if (n && deps[n] == 0 && node_leads(n)) {
      ready.push_back(n);
      deps[n] = -1;  // queued once even if it is the root of several outputs
    }
  }
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor g = std::move(pending[n]);
    pending.erase(n);
    if (g.defined())
      for (const Hook& h : n->hooks()) h(g);
    if (auto it = task.node_inputs.find(n); it != task.node_inputs.end())
      for (size_t i : it->second) task.reached[i] = 1, task.captured[i] = g;
    if (!node_runs(n)) continue;

    EMBER_CHECK(!n->released(), api, ": trying to backward through the graph a second time (node ", n->name(),
                " was freed by an earlier backward); pass retain_graph=true to the first backward call");
    ran.push_back(n);
    NeedsGrad needs;
    for (size_t i = 0; i < n->next().size(); ++i) {
      const Edge& e = n->next()[i];
      if ((e.leaf && wanted_leaf(e.leaf.get())) || (e.node && node_leads(e.node.get()))) needs.bits |= 1u << i;
    }
    Grads in_grads(n->next().size());
    if (g.defined()) {  // no gradient flowing in (all consumers gave none): none flows out
      try {
        profiler::OpScope scope(n->name(), profiler::kBackward, g);  // "<op>Backward" in a profile
        in_grads = n->apply(g, needs);
      } catch (const Error& err) {
        throw Error(std::string("in backward of ") + n->name() + ": " + err.what());
      }
      EMBER_CHECK(in_grads.size() == n->next().size(), "backward of ", n->name(), ": returned ", in_grads.size(),
                  " gradients for ", n->next().size(), " inputs");
      if (autograd::is_anomaly_enabled()) autograd::check_backward_grads(*n, in_grads);
    }

    for (size_t i = 0; i < n->next().size(); ++i) {
      if (!needs[i]) continue;
      const Edge& e = n->next()[i];
      Tensor gi = in_grads[i];
      if (gi.defined()) gi = conform(gi, e, n->name());
      if (e.leaf) {
        send_to_leaf(e.leaf.get(), gi);
        continue;
      }
      Node* next = e.node.get();
      if (gi.defined()) pending[next] = add_grads(pending[next], gi);
      if (--deps[next] == 0) ready.push_back(next);
    }
  }

  // 5. Free saved tensors and closures unless the caller wants to run backward again.
  if (!keep_graph)
    for (Node* n : ran) n->release();
}

// The upstream gradient of output i: given, or ones for a one-element output.
Tensor root_gradient(const char* api, const Tensor& out, size_t i, const Tensor& given, bool create_graph) {
  Tensor g = given;
  if (!g.defined()) {
    EMBER_CHECK(out.numel() == 1, api, ": grad can be implicitly created only for scalar outputs; got shape ",
                out.shape(), " for output ", i, " (pass a gradient of that shape)");
    return out.new_ones(out.shape());
  }
  EMBER_CHECK(g.shape() == out.shape(), api, ": gradient shape ", g.shape(), " for output ", i,
              " does not match its shape ", out.shape());
  EMBER_CHECK(g.dtype() == out.dtype(), api, ": gradient dtype ", dtype_name(g.dtype()), " for output ", i,
              " does not match its dtype ", dtype_name(out.dtype()));
  EMBER_CHECK(g.device() == out.device(), api, ": gradient on ", g.device(), " for output ", i, " which is on ",
              out.device());
  return create_graph ? g : g.detach();  // with create_graph the gradient may itself be differentiated
}

std::vector<Tensor> checked_root_grads(const char* api, const std::vector<Tensor>& outputs,
                                       const std::vector<Tensor>& grad_outputs, bool create_graph) {
  EMBER_CHECK(!outputs.empty(), api, ": no outputs to differentiate");
  EMBER_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), api, ": got ", grad_outputs.size(),
              " gradients for ", outputs.size(), " outputs");
  std::vector<Tensor> grads;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    EMBER_CHECK(out.defined(), api, ": output ", i, " is an undefined tensor");
    EMBER_CHECK(out.requires_grad(), api, ": output ", i, " (tensor of shape ", out.shape(),
                ") does not require grad and has no grad_fn");
    grads.push_back(root_gradient(api, out, i, grad_outputs.empty() ? Tensor() : grad_outputs[i], create_graph));
  }
  return grads;
}

}  // namespace

namespace autograd {

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
              std::optional<bool> retain_graph, bool create_graph) {
  std::vector<Tensor> grads = checked_root_grads("backward", outputs, grad_outputs, create_graph);
  AutoGradMode mode(create_graph);  // record the backward itself only when asked to
  Task task;
  task.create_graph = create_graph;
  execute(outputs, grads, retain_graph.value_or(create_graph), task, "backward");
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, std::optional<bool> retain_graph, bool create_graph,
                         bool allow_unused) {
  std::vector<Tensor> grads = checked_root_grads("grad", outputs, grad_outputs, create_graph);
  EMBER_CHECK(!inputs.empty(), "grad: no inputs to differentiate with respect to");
  Task task;
  task.accumulate = false;
  task.create_graph = create_graph;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    EMBER_CHECK(in.defined(), "grad: input ", i, " is an undefined tensor");
    EMBER_CHECK(in.requires_grad(), "grad: input ", i, " (tensor of shape ", in.shape(),
                ") does not require grad; call requires_grad_() on it before computing the outputs");
    if (in.is_leaf()) task.leaf_inputs[in.impl()].push_back(i);
    else task.node_inputs[in.grad_fn().get()].push_back(i);
  }
  task.captured.resize(inputs.size());
  task.reached.assign(inputs.size(), 0);
  {
    AutoGradMode mode(create_graph);
    execute(outputs, grads, retain_graph.value_or(create_graph), task, "grad");
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!task.reached[i]) {
      EMBER_CHECK(allow_unused, "grad: input ", i, " (tensor of shape ", inputs[i].shape(),
                  ") was not used to compute the outputs; pass allow_unused=true to get an undefined gradient for it");
      continue;
    }
    // Reached, but every path gave no gradient: the gradient is zero.
    if (!task.captured[i].defined()) task.captured[i] = inputs[i].new_zeros(inputs[i].shape());
  }
  return task.captured;
}

std::vector<TensorImpl*> collect_leaves(const std::vector<Tensor>& roots) {
  std::vector<TensorImpl*> leaves;
  std::unordered_set<TensorImpl*> seen_leaves;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  auto add_leaf = [&](TensorImpl* leaf) {
    if (seen_leaves.insert(leaf).second) leaves.push_back(leaf);
  };
  for (const Tensor& r : roots) {
    if (!r.defined() || !r.requires_grad()) continue;
    if (r.is_leaf()) add_leaf(r.impl());
    else if (seen.insert(r.grad_fn().get()).second) stack.push_back(r.grad_fn().get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next()) {
      if (e.leaf) add_leaf(e.leaf.get());
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }
  return leaves;
}

}  // namespace autograd

void Tensor::backward(const Tensor& gradient, std::optional<bool> retain_graph, bool create_graph) const {
  EMBER_CHECK(defined(), "backward: called on an undefined tensor");
  EMBER_CHECK(requires_grad(), "backward: tensor of shape ", shape(), " does not require grad and has no grad_fn");
  autograd::backward({*this}, {gradient}, retain_graph, create_graph);
}

}  // namespace ember
