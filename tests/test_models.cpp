// The model zoo (nn/models/): the published parameter counts and output shapes, the factory, and —
// against PyTorch (tests/data/reference_models.json, scripts/make_reference_models.py) — the
// parameter names, state-dict shapes and a whole forward pass of a small ResNet.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/models/models.h"
#include "tests/reference_util.h"
#include "tests/test_util.h"

using namespace ember;
using test::compare;
using test::from_json;
using test::json;

namespace {

// The counts the papers and the common implementations publish. He et al.'s ResNet-20/56 use
// parameter-free (zero-padded identity, "option A") shortcuts; the zoo's 1x1 conv + BN projections
// add 2752 parameters to each (16*32 + 2*32 and 32*64 + 2*64), so the zoo is within 1% of them.
// ResNet-18's 11,173,962 is the CIFAR variant's (3x3 stem, no max pool) count with the same shortcuts.
struct Published {
  const char* name;
  int64_t exact;      // this zoo's count, worked out by hand below
  double published;   // the paper's / common count
};

// exact counts: stem 3*16*9 + 2*16 = 464; a block c->c: 2*(9c^2 + 2c); c->2c with stride 2:
// 9*c*2c + 2*2c + 9*(2c)^2 + 2*2c + (c*2c + 2*2c) for the shortcut; head 64*10 + 10.
constexpr Published kPublished[] = {
    {"resnet8", 78042, 78042},   // no paper count: n = 1 (the exact count stands in)
    {"resnet20", 272474, 0.27e6},
    {"resnet56", 855770, 0.85e6},
    {"resnet18", 11173962, 11173962},
};

}  // namespace

TEST(ModelZoo, ResNetParameterCountsMatchThePublishedOnes) {
  for (const auto& p : kPublished) {
    auto net = nn::models::create(p.name);
    EXPECT_EQ(net->num_parameters(), p.exact) << p.name;
    EXPECT_LT(std::abs(net->num_parameters() - p.published) / p.published, 0.01) << p.name;
  }
}

TEST(ModelZoo, MnistParameterCounts) {
  EXPECT_EQ(nn::models::mnist_mlp()->num_parameters(), 669706);
  EXPECT_EQ(nn::models::lenet()->num_parameters(), 21840);
  EXPECT_EQ(nn::models::mnist_cnn()->num_parameters(), 1199882);
}

TEST(ModelZoo, ResNetOutputShapes) {
  NoGradGuard no_grad;
  manual_seed(0);
  auto r20 = nn::models::resnet20();
  EXPECT_EQ(r20->forward(randn({2, 3, 32, 32})).shape(), Shape({2, 10}));
  auto r8 = nn::models::resnet8(/*num_classes=*/100);
  EXPECT_EQ(r8->forward(randn({3, 3, 32, 32})).shape(), Shape({3, 100}));
  // Global average pooling: any image size works.
  EXPECT_EQ(r8->forward(randn({1, 3, 40, 24})).shape(), Shape({1, 100}));
  auto r18 = nn::models::resnet18();
  r18->eval();
  EXPECT_EQ(r18->forward(randn({1, 3, 32, 32})).shape(), Shape({1, 10}));
  // The stages: resnet20 has layer1..3 of 3 blocks; resnet18 layer1..4 of 2; strides halve the image.
  ASSERT_EQ(r20->layers.size(), 3u);
  for (const auto& stage : r20->layers) EXPECT_EQ(stage->size(), 3u);
  ASSERT_EQ(r18->layers.size(), 4u);
  EXPECT_EQ(r18->fc->in_features, 512);
}

TEST(ModelZoo, MnistOutputShapes) {
  NoGradGuard no_grad;
  for (const char* name : {"mlp", "lenet", "cnn"})
    EXPECT_EQ(nn::models::create(name)->forward(randn({2, 1, 28, 28})).shape(), Shape({2, 10})) << name;
}

TEST(ModelZoo, FactoryKnowsEveryNameAndRejectsOthers) {
  for (const auto& name : nn::models::names()) EXPECT_NE(nn::models::create(name), nullptr) << name;
  EXPECT_EQ(nn::models::names().size(), 7u);
  test::expect_error([] { nn::models::create("resnet21"); },
                     {"unknown model 'resnet21'", "mlp, lenet, cnn, resnet8, resnet20, resnet56, resnet18"});
  test::expect_error([] { nn::models::ResNet(nn::models::ResNetOptions{.blocks = {1, 1}, .channels = {4}}); },
                     {"ResNet", "blocks has 2 stages and channels 1"});
  test::expect_error([] { nn::models::cifar_resnet(0); }, {"cifar_resnet", "must be positive, got 0"});
}

TEST(ModelZoo, ResNetIsTrainable) {
  // A few SGD steps on one small batch drive the loss down: the gradient reaches every parameter.
  manual_seed(3);
  auto net = nn::models::resnet8();
  Tensor x = randn({8, 3, 16, 16}), y = randint(0, 10, {8});
  std::vector<Tensor> params = net->parameters();
  double first = 0, last = 0;
  for (int step = 0; step < 8; ++step) {
    net->zero_grad();
    Tensor loss = nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    for (const auto& p : params) ASSERT_TRUE(p.grad().defined());
    NoGradGuard no_grad;
    for (auto& p : params) p.sub_(p.grad() * 0.05);
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_LT(last, 0.7 * first);
}

// ---- against PyTorch ----

namespace {
const json& reference() { return test::load_reference("reference_models.json", "scripts/make_reference_models.py"); }
}  // namespace

TEST(ModelZooReference, ResNetNamesShapesAndCountsMatchPyTorch) {
  for (const char* name : {"resnet8", "resnet20", "resnet56", "resnet18"}) {
    const json& want = reference().at("names").at(name);
    auto net = nn::models::create(name);
    EXPECT_EQ(net->named_parameters().keys(), want.at("parameters").get<std::vector<std::string>>()) << name;
    std::vector<std::pair<std::string, std::vector<int64_t>>> sd;
    for (const auto& [key, t] : net->state_dict()) sd.emplace_back(key, t.shape().vec());
    EXPECT_EQ(sd, (want.at("state_dict").get<std::vector<std::pair<std::string, std::vector<int64_t>>>>())) << name;
    EXPECT_EQ(net->num_parameters(), want.at("num_parameters").get<int64_t>()) << name;
  }
}

EMBER_DEVICE_SUITE(ModelZooReferenceDevice);

// A tiny ResNet (2 stages of 1 block, 4 and 8 channels) from PyTorch's weights: the training-mode
// output, the running statistics it leaves and the eval-mode output.
TEST_P(ModelZooReferenceDevice, TinyResNetForwardMatchesPyTorch) {
  const json& r = reference().at("forward");
  nn::models::ResNet net(nn::models::ResNetOptions{.blocks = {1, 1}, .channels = {4, 8}, .num_classes = 3});
  net.to(kFloat64);
  net.to(device());
  nn::NamedTensors sd;
  for (const auto& [name, t] : r.at("state_dict").items()) sd.insert(name, from_json(t));
  net.load_state_dict(sd);
  const Tensor x = from_json(r.at("input")).to(device());
  const test::Tolerance tol{1e-9, 1e-12};
  net.train();
  EXPECT_EQ(compare(net.forward(x), r.at("train_output"), tol), "");
  for (const auto& [name, t] : r.at("state_after").items())
    EXPECT_EQ(compare(net.state_dict().at(name), t, tol), "") << name;
  net.eval();
  EXPECT_EQ(compare(net.forward(x), r.at("eval_output"), tol), "");
}
