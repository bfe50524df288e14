// Custom autograd ops from user code, modelled on libtorch's torch::autograd::Function:
//
//   struct MulConstant : autograd::Function<MulConstant> {
//     static Tensor forward(autograd::AutogradContext* ctx, const Tensor& x, double c) {
//       ctx->saved_data["c"] = c;
//       return x * c;                       // runs with grad mode off: nothing inside is recorded
//     }
//     static std::vector<Tensor> backward(autograd::AutogradContext* ctx, std::vector<Tensor> grad_outputs) {
//       return {grad_outputs[0] * ctx->saved_data["c"].toDouble(), Tensor()};  // one per forward argument
//     }
//   };
//   Tensor y = MulConstant::apply(x, 2.0);
//
// apply() runs forward, then (when grad mode is on and a tensor argument requires grad) records one
// Node whose backward calls T::backward. backward returns one gradient per forward argument after
// ctx, undefined for arguments that are not tensors or need no gradient. When backward is written
// with ember ops, the custom op can be differentiated twice (create_graph) like a built-in one.
// A custom op has one output tensor (every ember Node has one output).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "core/autograd.h"
#include "core/error.h"

namespace ember::autograd {

// A non-tensor value kept for backward in ctx->saved_data (libtorch's IValue, reduced to what a
// backward formula usually needs). Tensors go through save_for_backward, which checks versions.
class SavedValue {
 public:
  SavedValue() = default;
  SavedValue(double v) : v_(v) {}  // NOLINT: implicit, so `ctx->saved_data["c"] = 2.5` reads well
  template <typename I, typename = std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>>>
  SavedValue(I v) : v_(static_cast<int64_t>(v)) {}  // NOLINT
  SavedValue(bool v) : v_(v) {}                       // NOLINT
  SavedValue(std::string v) : v_(std::move(v)) {}     // NOLINT
  SavedValue(const char* v) : v_(std::string(v)) {}   // NOLINT

  double toDouble() const;  // an int64 converts; anything else is an error naming what it holds
  int64_t toInt() const;
  bool toBool() const;
  const std::string& toStringRef() const;

 private:
  std::variant<std::monostate, double, int64_t, bool, std::string> v_;
};

class AutogradContext {
 public:
  // Tensors backward will need. Inputs keep their graph (so a backward written with ops can be
  // differentiated again); the output, if saved, is stored like a built-in op's saved output.
  void save_for_backward(std::vector<Tensor> to_save);
  // The saved tensors, in order; an error if one was modified in place since it was saved.
  std::vector<Tensor> get_saved_variables() const;
  // Whether forward argument i (counting from 0 after ctx) is a tensor that requires grad.
  bool needs_input_grad(size_t i) const { return i < needs_input_grad_.size() && needs_input_grad_[i]; }

  std::unordered_map<std::string, SavedValue> saved_data;

 private:
  template <class T>
  friend struct Function;
  void finish_forward(const Tensor& output);  // turns to_save_ into saved_

  std::vector<Tensor> to_save_;
  std::vector<SavedTensor> saved_;
  std::vector<bool> needs_input_grad_;
};

namespace detail {
// The op's name in error messages and graph dumps: the demangled type name, kept alive for the
// program's lifetime (a Node holds a const char*).
const char* function_name(const std::type_info& type);

// Records the Node of a custom op. `grads_from_backward` maps grad_outputs to one gradient per
// forward argument; `tensor_positions[i]` is the argument position of differentiable input i.
void record_function(const char* name, Tensor& output, const std::vector<Tensor>& inputs,
                     const std::vector<size_t>& tensor_positions, size_t num_args,
                     std::shared_ptr<AutogradContext> ctx,
                     std::function<std::vector<Tensor>(AutogradContext*, std::vector<Tensor>)> backward);

template <typename A>
void collect_tensor(std::vector<Tensor>& tensors, std::vector<size_t>& positions, std::vector<bool>& needs, size_t pos,
                    const A& arg) {
  if constexpr (std::is_same_v<std::decay_t<A>, Tensor>) {
    needs.push_back(arg.requires_grad());
    if (arg.defined()) tensors.push_back(arg), positions.push_back(pos);
  } else {
    needs.push_back(false);
  }
}
}  // namespace detail

template <class T>
struct Function {
  template <typename... Args>
  static Tensor apply(Args&&... args) {
    auto ctx = std::make_shared<AutogradContext>();
    std::vector<Tensor> inputs;
    std::vector<size_t> positions;
    size_t pos = 0;
    (detail::collect_tensor(inputs, positions, ctx->needs_input_grad_, pos++, args), ...);

    Tensor output;
    {
      NoGradGuard no_grad;  // forward is one op: what it does inside is not recorded
      output = T::forward(ctx.get(), std::forward<Args>(args)...);
    }
    EMBER_CHECK(output.defined(), detail::function_name(typeid(T)), "::forward returned an undefined tensor");
    for (const Tensor& in : inputs)
      if (output.is_same(in)) output = output.detach();  // an input returned as is: the node gets its own handle
    ctx->finish_forward(output);
    if (grad_needed_any(inputs))
      detail::record_function(detail::function_name(typeid(T)), output, inputs, positions, sizeof...(Args), ctx,
                              [](AutogradContext* c, std::vector<Tensor> g) { return T::backward(c, std::move(g)); });
    return output;
  }

 private:
  static bool grad_needed_any(const std::vector<Tensor>& inputs) {
    for (const Tensor& t : inputs)
      if (grad_needed(t)) return true;
    return false;
  }
};

}  // namespace ember::autograd
