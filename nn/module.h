// nn::Module: the base class of every layer and model, shaped like PyTorch's torch.nn.Module.
//
// A module owns named parameters (trainable tensors), named buffers (state that is saved but not
// trained, like BatchNorm's running statistics) and named child modules. Everything that walks
// the tree — parameters(), state_dict(), train()/eval(), to() — follows registration order, and
// names nest with dots exactly as PyTorch writes them ("features.0.weight"), so state dicts map
// one to one onto PyTorch's.
//
//   class Net : public nn::Module {
//    public:
//     Net() : Module("Net") {
//       fc1 = register_module("fc1", std::make_shared<nn::Linear>(784, 128));
//       fc2 = register_module("fc2", std::make_shared<nn::Linear>(128, 10));
//     }
//     Tensor forward(const Tensor& x) override { return fc2->forward(relu(fc1->forward(x.flatten(1)))); }
//     std::shared_ptr<nn::Linear> fc1, fc2;
//   };
//
// Modules live in std::shared_ptr (children are shared with their parent). Tensor handles stay
// valid for the module's life: to() and load_state_dict() change a parameter's data in place, so an
// optimizer built from parameters() before either call keeps working (its own state, such as
// momentum buffers, is not moved by module.to(): build the optimizer after moving the model when
// it already holds state).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "nn/checkpoint.h"  // TensorMap

namespace ember::nn {

// Name -> tensor in insertion order (Python's OrderedDict, as PyTorch's state dicts are).
// Converts to and from TensorMap (a std::map, sorted by name) so that checkpoints read and write
// it directly: save_safetensors(path, model.state_dict()), model.load_state_dict(ckpt.tensors).
class NamedTensors {
 public:
  using Item = std::pair<std::string, Tensor>;

  NamedTensors() = default;
  NamedTensors(const TensorMap& map);  // NOLINT: implicit, see above
  operator TensorMap() const;          // NOLINT: implicit, see above

  void insert(std::string name, Tensor t);  // a repeated name is an error
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const Tensor& at(const std::string& name) const;    // an absent name is an error naming it
  const Tensor* find(const std::string& name) const;  // nullptr when absent
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  std::vector<std::string> keys() const;
  std::vector<Tensor> values() const;
  std::vector<Item>::const_iterator begin() const { return items_.begin(); }
  std::vector<Item>::const_iterator end() const { return items_.end(); }
  const Item& operator[](size_t i) const { return items_[i]; }

 private:
  std::vector<Item> items_;
  std::unordered_map<std::string, size_t> index_;
};

// What load_state_dict(dict, strict=false) skipped (PyTorch's _IncompatibleKeys).
struct LoadResult {
  std::vector<std::string> missing_keys;     // in the module, not in the dict
  std::vector<std::string> unexpected_keys;  // in the dict, not in the module
};

class Module {
 public:
  explicit Module(std::string type_name = "Module") : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The class name shown when printing ("Linear", "Sequential", ...).
  const std::string& type_name() const { return type_name_; }

  // The layer's computation. Layers with one tensor in and one out override this; the base throws.
  virtual Tensor forward(const Tensor& input);
  Tensor operator()(const Tensor& input) { return forward(input); }
  // relu(forward(input)). Layers with a fused op override it (Linear, Conv2d, BatchNorm: one pass
  // instead of two); Sequential calls it for one of those layers followed by an nn::ReLU.
  virtual Tensor forward_relu(const Tensor& input);

  // ---- registration (names: non-empty, no '.', unique among this module's entries) ----
  // Returns the handle it stores (the same tensor), so `weight = register_parameter("weight", w)`.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // ---- the tree ----
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<std::shared_ptr<Module>> children() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  // This module and every descendant, depth first, with dotted names ("" for this one). The
  // pointers are valid while this module lives.
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  // Calls fn on this module and then on every descendant, depth first.
  void apply(const std::function<void(Module&)>& fn);
  int64_t num_parameters() const;  // total number of parameter elements

  // ---- modes ----
  virtual void train(bool on = true);  // sets the mode of this module and every descendant
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- moving and gradients ----
  // Moves every parameter and buffer to `device`, or converts the floating-point ones to `dtype`,
  // in place (the Tensor handles stay the same; their gradients move too).
  void to(Device device);
  void to(DType dtype);
  void zero_grad();  // sets every parameter's .grad to undefined (PyTorch's set_to_none)

  // ---- state ----
  // Parameters and buffers by dotted name, in registration order (each module's parameters, then
  // its buffers, then its children's). The tensors alias the live ones: clone to snapshot.
  NamedTensors state_dict() const;
  // Copies the values in (casting dtype and moving devices as needed); the handles stay the same.
  // A shape mismatch is always an error; with strict, so is a missing or an unexpected key. Nothing
  // is copied unless every check passes.
  LoadResult load_state_dict(const NamedTensors& dict, bool strict = true);

  // PyTorch-style printout: "Sequential(\n  (0): Linear(in_features=4, out_features=2, bias=true)\n)".
  std::string str() const;
  // The part inside the parentheses for a leaf layer ("in_features=4, out_features=2, bias=true").
  virtual std::string extra_repr() const { return ""; }

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> module);

 private:
  void check_name(const std::string& name, const char* what) const;
  void collect(const std::string& prefix, bool recurse, bool params, NamedTensors& out) const;
  void print(std::ostream& os, int indent) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

}  // namespace ember::nn
