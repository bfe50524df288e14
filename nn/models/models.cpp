#include "nn/models/models.h"

#include "core/error.h"

namespace ember::nn::models {

const std::vector<std::string>& names() {
  static const std::vector<std::string> all = {"mlp", "lenet", "cnn", "resnet8", "resnet20", "resnet56", "resnet18"};
  return all;
}

std::shared_ptr<Module> create(const std::string& name) {
  if (name == "mlp") return mnist_mlp();
  if (name == "lenet") return lenet();
  if (name == "cnn") return mnist_cnn();
  if (name == "resnet8") return resnet8();
  if (name == "resnet20") return resnet20();
  if (name == "resnet56") return resnet56();
  if (name == "resnet18") return resnet18();
  std::string known;
  for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
  EMBER_FAIL("nn::models::create: unknown model '", name, "' (known: ", known, ")");
}

}  // namespace ember::nn::models
