// autograd::to_dot (see graph_dot.h): one walk over the graph from the roots, numbering each Node
// and leaf the first time it is reached, then one DOT statement per Node, leaf and edge.
#include "core/graph_dot.h"

#include <sstream>
#include <unordered_map>

#include "core/autograd.h"

namespace ember::autograd {

namespace {

// "[64, 10] float32"
std::string shape_dtype(const Shape& shape, DType dtype) { return shape.str() + " " + dtype_name(dtype); }

// DOT string literal contents: quotes and backslashes escaped; "\n" (two characters) is kept as
// DOT's own line break, so callers build labels with "\\n".
std::string escape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '"') out += "\\\"";
    else if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == 'n') out += s[i];
    else if (s[i] == '\\') out += "\\\\";
    else out += s[i];
  }
  return out;
}

class DotWriter {
 public:
  explicit DotWriter(const TensorNames& names) : names_(names) {}

  std::string write(const std::vector<Tensor>& roots) {
    out_ << "digraph autograd {\n"
         << "  node [fontname=\"monospace\", fontsize=10];\n"
         << "  edge [fontname=\"monospace\", fontsize=9];\n";
    for (size_t r = 0; r < roots.size(); ++r) {
      const Tensor& t = roots[r];
      EMBER_CHECK(t.defined(), "to_dot: root ", r, " is an undefined tensor");
      const std::string root_id = "output" + std::to_string(r);
      out_ << "  " << root_id << " [shape=ellipse, label=\"output " << r << "\\n"
           << shape_dtype(t.shape(), t.dtype()) << "\"];\n";
      if (t.grad_fn()) {
        out_ << "  " << node_id(t.grad_fn().get(), t.shape(), t.dtype()) << " -> " << root_id << ";\n";
      } else if (t.requires_grad()) {
        const std::string leaf = leaf_id(*t.impl());  // writes the leaf's own statement first
        out_ << "  " << leaf << " -> " << root_id << ";\n";
      }
    }
    // Nodes are written as they are first reached; each one may reach new ones.
    for (size_t i = 0; i < order_.size(); ++i) write_node(order_[i]);
    out_ << "}\n";
    return out_.str();
  }

 private:
  struct Seen {
    std::string id;
    Shape shape;  // the Node's output: what its consumers' edges (or the root) say they received
    DType dtype;
  };

  std::string node_id(const Node* n, const Shape& out_shape, DType out_dtype) {
    auto [it, fresh] = nodes_.try_emplace(n, Seen{"node" + std::to_string(nodes_.size()), out_shape, out_dtype});
    if (fresh) order_.push_back(n);
    return it->second.id;
  }

  std::string leaf_id(const TensorImpl& leaf) {
    auto [it, fresh] = leaves_.try_emplace(&leaf, "leaf" + std::to_string(leaves_.size()));
    if (fresh) write_leaf(leaf, it->second);
    return it->second;
  }

  void write_leaf(const TensorImpl& leaf, const std::string& id) {
    auto name = names_.find(&leaf);
    std::string label = name != names_.end() ? name->second : std::string("leaf");
    label += "\\n" + shape_dtype(leaf.shape, leaf.dtype);
    label += leaf.requires_grad ? "\\nrequires_grad" : "";
    if (!leaf.leaf_hooks.empty()) label += "\\nhooks: " + std::to_string(leaf.leaf_hooks.size());
    out_ << "  " << id << " [shape=box, style=filled, fillcolor=lightblue" << (leaf.leaf_hooks.empty() ? "" : ", peripheries=2")
         << ", label=\"" << escape(label) << "\"];\n";
  }

  void write_node(const Node* n) {
    const Seen& seen = nodes_.at(n);
    const std::string id = seen.id;  // copy: node_id below may rehash nodes_
    std::string label = std::string(n->name()) + "\\n" + shape_dtype(seen.shape, seen.dtype);
    const SavedList& saved = n->saved();
    for (int i = 0; i < saved.count; ++i) {
      if (i >= SavedList::kMaxSaved) {
        label += "\\n(+" + std::to_string(saved.count - SavedList::kMaxSaved) + " more saved)";
        break;
      }
      // A released Node has dropped what it saved, even when a saved input lives on elsewhere.
      std::shared_ptr<TensorImpl> t = n->released() ? nullptr : saved.tensors[i].lock();
      label += "\\nsaved " + std::to_string(i) + ": " + (t ? shape_dtype(t->shape, t->dtype) : std::string("(freed)"));
    }
    if (n->num_hooks()) label += "\\nhooks: " + std::to_string(n->num_hooks());
    if (n->released()) label += "\\n(released)";
    out_ << "  " << id << " [shape=box, style=filled, fillcolor=lightgrey" << (n->num_hooks() ? ", peripheries=2" : "")
         << ", label=\"" << escape(label) << "\"];\n";

    const std::vector<Edge>& next = n->next();
    for (size_t i = 0; i < next.size(); ++i) {
      const Edge& e = next[i];
      std::string from;
      if (e.node) from = node_id(e.node.get(), e.shape, e.dtype);
      else if (e.leaf) from = leaf_id(*e.leaf);
      else continue;  // an input that needs no gradient
      out_ << "  " << from << " -> " << id;
      if (next.size() > 1) out_ << " [label=\"" << i << "\"]";
      out_ << ";\n";
    }
  }

  const TensorNames& names_;
  std::ostringstream out_;
  std::unordered_map<const Node*, Seen> nodes_;
  std::vector<const Node*> order_;
  std::unordered_map<const TensorImpl*, std::string> leaves_;
};

}  // namespace

std::string to_dot(const std::vector<Tensor>& roots, const TensorNames& names) { return DotWriter(names).write(roots); }

std::string to_dot(const Tensor& root, const TensorNames& names) { return to_dot(std::vector<Tensor>{root}, names); }

}  // namespace ember::autograd
