// The non-template half of autograd::Function (core/custom_function.h): saved values, the context,
// and recording the custom op's Node.
#include "core/custom_function.h"

#include <cxxabi.h>

#include <cstdlib>
#include <mutex>

namespace ember::autograd {

namespace {
const char* held_name(const std::variant<std::monostate, double, int64_t, bool, std::string>& v) {
  static const char* names[] = {"nothing", "a double", "an int", "a bool", "a string"};
  return names[v.index()];
}
}  // namespace

double SavedValue::toDouble() const {
  if (const double* d = std::get_if<double>(&v_)) return *d;
  if (const int64_t* i = std::get_if<int64_t>(&v_)) return static_cast<double>(*i);
  EMBER_FAIL("saved_data: toDouble() on a value holding ", held_name(v_));
}
int64_t SavedValue::toInt() const {
  const int64_t* i = std::get_if<int64_t>(&v_);
  EMBER_CHECK(i, "saved_data: toInt() on a value holding ", held_name(v_));
  return *i;
}
bool SavedValue::toBool() const {
  const bool* b = std::get_if<bool>(&v_);
  EMBER_CHECK(b, "saved_data: toBool() on a value holding ", held_name(v_));
  return *b;
}
const std::string& SavedValue::toStringRef() const {
  const std::string* s = std::get_if<std::string>(&v_);
  EMBER_CHECK(s, "saved_data: toStringRef() on a value holding ", held_name(v_));
  return *s;
}

void AutogradContext::save_for_backward(std::vector<Tensor> to_save) { to_save_ = std::move(to_save); }

void AutogradContext::finish_forward(const Tensor& output) {
  saved_.clear();
  for (const Tensor& t : to_save_)
    saved_.push_back(t.defined() && t.is_same(output) ? SavedTensor::output(t) : SavedTensor(t));
  to_save_.clear();
}

std::vector<Tensor> AutogradContext::get_saved_variables() const {
  std::vector<Tensor> out;
  for (const SavedTensor& s : saved_) out.push_back(s.get());
  return out;
}

namespace detail {

const char* function_name(const std::type_info& type) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::unique_ptr<std::string>> names;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = names[type.name()];
  if (!slot) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
    slot = std::make_unique<std::string>(status == 0 && demangled ? demangled : type.name());
    std::free(demangled);
  }
  return slot->c_str();
}

void record_function(const char* name, Tensor& output, const std::vector<Tensor>& inputs,
                     const std::vector<size_t>& tensor_positions, size_t num_args,
                     std::shared_ptr<AutogradContext> ctx,
                     std::function<std::vector<Tensor>(AutogradContext*, std::vector<Tensor>)> backward) {
  record_many(name, output, inputs,
              [name, ctx, backward, tensor_positions, num_args](const Tensor& g, NeedsGrad) -> Grads {
                std::vector<Tensor> per_arg = backward(ctx.get(), {g});
                EMBER_CHECK(per_arg.size() == num_args, name, "::backward returned ", per_arg.size(),
                            " gradients; expected one per forward argument (", num_args,
                            "), undefined for arguments without a gradient");
                Grads grads;
                for (size_t i = 0; i < tensor_positions.size(); ++i) grads.push_back(per_arg[tensor_positions[i]]);
                return grads;
              });
}

}  // namespace detail
}  // namespace ember::autograd
