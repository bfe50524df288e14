#include "nn/module.h"

#include <sstream>

#include "core/autograd.h"
#include "core/ops.h"

namespace ember::nn {

// ---------------- NamedTensors ----------------

NamedTensors::NamedTensors(const TensorMap& map) {
  for (const auto& [name, t] : map) insert(name, t);
}

NamedTensors::operator TensorMap() const { return TensorMap(items_.begin(), items_.end()); }

void NamedTensors::insert(std::string name, Tensor t) {
  EMBER_CHECK(!contains(name), "NamedTensors: the name \"", name, "\" is already present");
  index_.emplace(name, items_.size());
  items_.emplace_back(std::move(name), std::move(t));
}

const Tensor& NamedTensors::at(const std::string& name) const {
  const Tensor* t = find(name);
  EMBER_CHECK(t != nullptr, "NamedTensors: no entry named \"", name, "\"");
  return *t;
}

const Tensor* NamedTensors::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

std::vector<std::string> NamedTensors::keys() const {
  std::vector<std::string> k;
  for (const auto& item : items_) k.push_back(item.first);
  return k;
}

std::vector<Tensor> NamedTensors::values() const {
  std::vector<Tensor> v;
  for (const auto& item : items_) v.push_back(item.second);
  return v;
}

// ---------------- registration ----------------

Tensor Module::forward(const Tensor&) {
  EMBER_FAIL(type_name_, " does not implement forward(const Tensor&); call its own forward method");
}

Tensor Module::forward_relu(const Tensor& input) { return relu(forward(input)); }

void Module::check_name(const std::string& name, const char* what) const {
  EMBER_CHECK(!name.empty(), type_name_, ": ", what, " name must not be empty");
  EMBER_CHECK(name.find('.') == std::string::npos, type_name_, ": ", what, " name \"", name,
              "\" must not contain '.' (dots separate the levels of nested names)");
  auto taken = [&](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  EMBER_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), type_name_, ": cannot register ", what,
              " \"", name, "\": the name is already used");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name, "parameter");
  EMBER_CHECK(t.defined(), type_name_, ": parameter \"", name, "\" is an undefined tensor");
  EMBER_CHECK(t.is_leaf(), type_name_, ": parameter \"", name,
              "\" must be a leaf tensor (the result of an op is not); pass t.detach()");
  t.set_requires_grad(requires_grad);
  parameters_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name, "buffer");
  EMBER_CHECK(t.defined(), type_name_, ": buffer \"", name, "\" is an undefined tensor");
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name, "module");
  EMBER_CHECK(module != nullptr, type_name_, ": module \"", name, "\" is null");
  EMBER_CHECK(module.get() != this, type_name_, ": cannot register a module as its own child \"", name, "\"");
  children_.emplace_back(name, std::move(module));
}

// ---------------- walking the tree ----------------

void Module::collect(const std::string& prefix, bool recurse, bool params, NamedTensors& out) const {
  for (const auto& [name, t] : params ? parameters_ : buffers_) out.insert(prefix + name, t);
  if (!recurse) return;
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", true, params, out);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  collect("", recurse, /*params=*/true, out);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  collect("", recurse, /*params=*/false, out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const { return named_parameters(recurse).values(); }
std::vector<Tensor> Module::buffers(bool recurse) const { return named_buffers(recurse).values(); }

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& c : children_) out.push_back(c.second);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (auto& [sub, m] : child->named_modules()) out.emplace_back(sub.empty() ? name : name + "." + sub, m);
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& c : children_) c.second->apply(fn);
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

// ---------------- moving and gradients ----------------

namespace {

// Points t's TensorImpl at src's data, so every holder of the handle (the module's member, its
// registry, an optimizer) sees the new data.
void replace_data(const Tensor& t, const Tensor& src) {
  TensorImpl* impl = t.impl();
  impl->storage = src.storage();
  impl->strides = src.strides();
  impl->offset = src.offset();
  impl->dtype = src.dtype();
}

// Applies `convert` to every parameter and buffer of m's tree (and to the gradients), in place.
void convert_all(Module& m, const std::function<Tensor(const Tensor&)>& convert) {
  NoGradGuard no_grad;
  for (const Tensor& t : m.state_dict().values()) {
    Tensor moved = convert(t.detach());
    if (moved.storage() != t.storage() || moved.dtype() != t.dtype()) replace_data(t, moved);
    Tensor& g = t.mutable_grad();
    if (g.defined()) g = convert(g);
  }
}

}  // namespace

void Module::to(Device device) {
  convert_all(*this, [device](const Tensor& t) { return t.to(device); });
}

void Module::to(DType dtype) {
  EMBER_CHECK(is_floating(dtype), type_name_, ".to(", dtype_name(dtype),
              "): modules convert to floating-point dtypes only (integer buffers keep theirs)");
  convert_all(*this, [dtype](const Tensor& t) { return is_floating(t.dtype()) ? t.to(dtype) : t; });
}

void Module::zero_grad() {
  for (const Tensor& p : parameters()) p.zero_grad();
}

// ---------------- state ----------------

NamedTensors Module::state_dict() const {
  NamedTensors out;
  for (const auto& [name, m] : named_modules()) {
    const std::string prefix = name.empty() ? "" : name + ".";
    for (const auto& [n, t] : m->parameters_) out.insert(prefix + n, t);
    for (const auto& [n, t] : m->buffers_) out.insert(prefix + n, t);
  }
  return out;
}

LoadResult Module::load_state_dict(const NamedTensors& dict, bool strict) {
  const NamedTensors own = state_dict();
  LoadResult result;
  for (const auto& [name, t] : own) {
    const Tensor* src = dict.find(name);
    if (!src) {
      result.missing_keys.push_back(name);
      continue;
    }
    EMBER_CHECK(src->defined(), "load_state_dict (", type_name_, "): entry \"", name, "\" is an undefined tensor");
    EMBER_CHECK(src->shape() == t.shape(), "load_state_dict (", type_name_, "): size mismatch for \"", name,
                "\": the state dict has ", src->shape(), ", the module has ", t.shape());
    // float32 <-> float64 converts, as in PyTorch; integer weights for a float parameter (or the
    // reverse) mean the file is not what it claims, and are refused instead of silently cast.
    EMBER_CHECK(is_floating(src->dtype()) == is_floating(t.dtype()), "load_state_dict (", type_name_,
                "): dtype mismatch for \"", name, "\": the state dict has ", dtype_name(src->dtype()),
                ", the module has ", dtype_name(t.dtype()), " (only float32 and float64 convert into each other)");
  }
  for (const auto& [name, t] : dict)
    if (!own.contains(name)) result.unexpected_keys.push_back(name);

  if (strict && (!result.missing_keys.empty() || !result.unexpected_keys.empty())) {
    auto quoted = [](const std::vector<std::string>& keys) {
      std::string s;
      for (const auto& k : keys) s += (s.empty() ? "\"" : ", \"") + k + "\"";
      return s;
    };
    std::string msg = "load_state_dict (" + type_name_ + "):";
    if (!result.missing_keys.empty()) msg += " missing key(s) " + quoted(result.missing_keys) + ";";
    if (!result.unexpected_keys.empty()) msg += " unexpected key(s) " + quoted(result.unexpected_keys) + ";";
    msg += " pass strict=false to load the matching keys only";
    EMBER_FAIL(msg);
  }

  NoGradGuard no_grad;
  for (const auto& [name, t] : own)
    if (const Tensor* src = dict.find(name)) Tensor(t).copy_(*src);
  return result;
}

// ---------------- printing ----------------

void Module::print(std::ostream& os, int indent) const {
  os << type_name_ << '(';
  if (children_.empty()) {
    os << extra_repr() << ')';
    return;
  }
  const std::string pad(indent + 2, ' ');
  os << '\n';
  if (const std::string extra = extra_repr(); !extra.empty()) os << pad << extra << '\n';
  for (const auto& [name, child] : children_) {
    os << pad << '(' << name << "): ";
    child->print(os, indent + 2);
    os << '\n';
  }
  os << std::string(indent, ' ') << ')';
}

std::string Module::str() const {
  std::ostringstream os;
  print(os, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.str(); }

}  // namespace ember::nn
