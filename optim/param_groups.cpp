#include "optim/param_groups.h"

#include <cmath>

#include "core/error.h"

namespace ember::optim {

std::vector<ParamGroup> decay_param_groups(const nn::Module& model, double weight_decay) {
  EMBER_CHECK(weight_decay >= 0 && std::isfinite(weight_decay),
              "decay_param_groups: weight_decay must be finite and >= 0, got ", weight_decay);
  std::vector<Tensor> decay, no_decay;
  for (const auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  EMBER_CHECK(!decay.empty() || !no_decay.empty(), "decay_param_groups: ", model.type_name(),
              " has no parameters that require grad");
  std::vector<ParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(std::move(decay), std::map<std::string, double>{{"weight_decay", weight_decay}});
  if (!no_decay.empty()) groups.emplace_back(std::move(no_decay), std::map<std::string, double>{{"weight_decay", 0.0}});
  return groups;
}

}  // namespace ember::optim
