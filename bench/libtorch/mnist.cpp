// libtorch_mnist: the libtorch C++ anchor of the MNIST benchmark. Trains one of examples/mnist's
// networks for one epoch on the real MNIST IDX files with the same settings ember uses
// (examples/mnist/main.cpp, make_optimizer and apply_defaults):
//   mlp   784-512-ReLU-512-ReLU-10                                       batch 128, SGD lr 0.05 momentum 0.9
//   lenet conv(1,10,5)-pool2-ReLU-conv(10,20,5)-pool2-ReLU-fc(320,50)-ReLU-fc(50,10)
//                                                                        batch 64,  SGD lr 0.01 momentum 0.9
//   cnn   conv(1,32,3)-ReLU-conv(32,64,3)-ReLU-pool2-fc(9216,128)-ReLU-fc(128,10)
//                                                                        batch 64,  Adam lr 1e-3
// Pixels are scaled to [0,1] and normalised with MNIST's mean 0.1307 and std 0.3081, as ember's
// loader does; each epoch visits a seeded random permutation. Initialisation is libtorch's own.
//
// The clock runs around the epoch loop only (shuffle, batch gather, forward, backward, step). The
// test set is then evaluated at the training batch size: libtorch 1.13's CPU convolution is about
// 10x slower per image at batch 1000, and the anchor should run at its best settings.
//
//   libtorch_mnist --model cnn [--threads 2] [--data data/mnist] [--seed 1] [--limit N] [--eval-batch N]
//
// Prints a summary line and one JSON line (the keys ember_mnist --json prints, plus the loaded
// math libraries). Bad arguments exit 2; missing or malformed data files exit 1 with the file named.
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_report.h"
#include "bench/libtorch/flags.h"

namespace {

constexpr double kMean = 0.1307, kStd = 0.3081;

struct Settings {
  int64_t batch;
  double lr;
  bool adam;  // else SGD with momentum 0.9
};

Settings settings_for(const std::string& model) {
  if (model == "mlp") return {128, 0.05, false};
  if (model == "lenet") return {64, 0.01, false};
  if (model == "cnn") return {64, 1e-3, true};
  throw std::invalid_argument("--model must be mlp, lenet or cnn, got '" + model + "'");
}

torch::nn::Sequential make_model(const std::string& name) {
  namespace nn = torch::nn;
  if (name == "mlp")
    return nn::Sequential(nn::Flatten(), nn::Linear(784, 512), nn::ReLU(), nn::Linear(512, 512), nn::ReLU(),
                          nn::Linear(512, 10));
  if (name == "lenet")
    return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 10, 5)), nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::ReLU(),
                          nn::Conv2d(nn::Conv2dOptions(10, 20, 5)), nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::ReLU(),
                          nn::Flatten(), nn::Linear(320, 50), nn::ReLU(), nn::Linear(50, 10));
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3)), nn::ReLU(), nn::Conv2d(nn::Conv2dOptions(32, 64, 3)),
                        nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(), nn::Linear(9216, 128),
                        nn::ReLU(), nn::Linear(128, 10));
}

uint32_t big_endian_u32(const std::vector<uint8_t>& bytes, size_t offset) {
  return uint32_t{bytes[offset]} << 24 | uint32_t{bytes[offset + 1]} << 16 | uint32_t{bytes[offset + 2]} << 8 |
         uint32_t{bytes[offset + 3]};
}

// An IDX file of unsigned bytes: [count] (labels, 1 dim) or [count, rows, cols] (images, 3 dims).
torch::Tensor read_idx(const std::string& path, int64_t dims) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("MNIST file " + path + " not found (bash scripts/fetch_mnist.sh fetches it)");
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (bytes.size() < header || big_endian_u32(bytes, 0) != 0x0800u + static_cast<uint32_t>(dims))
    throw std::runtime_error(path + ": not an IDX file of " + std::to_string(dims) + "-d unsigned bytes (bad magic at offset 0)");
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (int64_t d = 0; d < dims; ++d) {
    shape.push_back(big_endian_u32(bytes, 4 + 4 * static_cast<size_t>(d)));
    // Stop before the product could overflow: it can never exceed the file's size anyway.
    if (shape.back() != 0 && numel > static_cast<int64_t>(bytes.size()) / shape.back())
      throw std::runtime_error(path + ": dims in the header at offset 4 promise more data than the file holds");
    numel *= shape.back();
  }
  if (static_cast<uint64_t>(numel) != bytes.size() - header)
    throw std::runtime_error(path + ": header at offset 4 promises " + std::to_string(numel) + " bytes of data, file has " +
                             std::to_string(bytes.size() - header));
  return torch::from_blob(const_cast<uint8_t*>(bytes.data() + header), shape, torch::kUInt8).clone();
}

struct Split {
  torch::Tensor images;  // [N,1,28,28] float, normalised
  torch::Tensor labels;  // [N] int64
};

Split load(const std::string& root, bool train) {
  const std::string prefix = root + (train ? "/train" : "/t10k");
  torch::Tensor images = read_idx(prefix + "-images-idx3-ubyte", 3);
  torch::Tensor labels = read_idx(prefix + "-labels-idx1-ubyte", 1);
  if (images.size(0) != labels.size(0))
    throw std::runtime_error(prefix + ": " + std::to_string(images.size(0)) + " images but " +
                             std::to_string(labels.size(0)) + " labels");
  images = (images.to(torch::kFloat32).div_(255.0).sub_(kMean).div_(kStd)).unsqueeze(1).contiguous();
  return {images, labels.to(torch::kInt64)};
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Settings& s, torch::nn::Sequential& model) {
  if (s.adam) return std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(s.lr));
  return std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(s.lr).momentum(0.9));
}

// One epoch over a seeded permutation; returns the seconds the loop took.
double train_epoch(torch::nn::Sequential& model, torch::optim::Optimizer& optimizer, const Split& train, int64_t batch) {
  model->train();
  const auto start = std::chrono::steady_clock::now();
  const int64_t n = train.images.size(0);
  const torch::Tensor order = torch::randperm(n, torch::kInt64);
  for (int64_t i = 0; i < n; i += batch) {
    const torch::Tensor idx = order.slice(0, i, std::min(i + batch, n));
    optimizer.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(train.images.index_select(0, idx)),
                                                              train.labels.index_select(0, idx));
    loss.backward();
    optimizer.step();
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double test_accuracy(torch::nn::Sequential& model, const Split& test, int64_t batch) {
  torch::NoGradGuard no_grad;
  model->eval();
  int64_t correct = 0;
  const int64_t n = test.images.size(0);
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t end = std::min(i + batch, n);
    const torch::Tensor logits = model->forward(test.images.slice(0, i, end));
    correct += logits.argmax(1).eq(test.labels.slice(0, i, end)).sum().item<int64_t>();
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_name, data;
  long threads = 0, seed = 0, limit = 0, eval_batch = 0;
  Settings settings{};
  try {
    const ember::bench::Flags flags(argc, argv, {"--model", "--threads", "--data", "--seed", "--limit", "--eval-batch"});
    model_name = flags.text("--model", "");
    settings = settings_for(model_name);
    threads = flags.number("--threads", 2, 1);
    data = flags.text("--data", "data/mnist");
    seed = flags.number("--seed", 1, 0);
    limit = flags.number("--limit", 0, 0);
    eval_batch = flags.number("--eval-batch", settings.batch, 1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libtorch_mnist: %s\nusage: libtorch_mnist --model mlp|lenet|cnn [--threads N] [--data DIR] "
                         "[--seed S] [--limit N] [--eval-batch N]\n", e.what());
    return 2;
  }

  try {
    torch::set_num_threads(static_cast<int>(threads));
    torch::manual_seed(static_cast<uint64_t>(seed));
    Split train = load(data, true);
    const Split test = load(data, false);
    if (limit > 0 && limit < train.images.size(0))
      train = {train.images.slice(0, 0, limit).contiguous(), train.labels.slice(0, 0, limit).contiguous()};

    torch::nn::Sequential model = make_model(model_name);
    auto optimizer = make_optimizer(settings, model);
    const double seconds = train_epoch(model, *optimizer, train, settings.batch);
    const double accuracy = test_accuracy(model, test, eval_batch);

    std::printf("libtorch %s: %lld training samples, batch %lld, %d threads: epoch %.2f s, test accuracy %.2f%%\n",
                model_name.c_str(), static_cast<long long>(train.images.size(0)), static_cast<long long>(settings.batch),
                torch::get_num_threads(), seconds, accuracy);
    std::printf("{\"framework\": \"libtorch\", \"torch\": \"%s\", \"model\": \"%s\", \"threads\": %d, \"batch\": %lld, "
                "\"eval_batch\": %ld, \"epoch_seconds\": %.3f, \"test_accuracy\": %.2f, \"peak_rss_mb\": %.1f, \"libs\": %s}\n",
                TORCH_VERSION, model_name.c_str(), torch::get_num_threads(), static_cast<long long>(settings.batch),
                eval_batch, seconds, accuracy, ember::bench::peak_rss_mb(),
                ember::bench::json_list(ember::bench::loaded_math_libraries()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libtorch_mnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
