// nn::Module infrastructure and the layers: registration and dotted names, state dicts (round trip,
// strict loading, errors naming the key), train/eval behaviour, to(dtype) keeping tensor handles,
// zero_grad, printing, default initialisation, and forward/backward of every layer. What runs
// layers (NnModuleDevice, NnLayers) runs on every device; NnModule holds the structure-only tests.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "nn/nn.h"
#include "tests/test_util.h"

using namespace ember;
using test::expect_error;

namespace {

// A user-defined model, the way the module docs show it.
class Net : public nn::Module {
 public:
  Net() : Module("Net") {
    features = register_module("features", std::make_shared<nn::Sequential>(std::make_shared<nn::Conv2d>(1, 4, 3),
                                                                            std::make_shared<nn::BatchNorm2d>(4),
                                                                            std::make_shared<nn::ReLU>()));
    fc = register_module("fc", std::make_shared<nn::Linear>(4 * 4 * 4, 3));
    scale = register_parameter("scale", ones({1}));
    step = register_buffer("step", zeros({}, kInt64));
  }
  Tensor forward(const Tensor& x) override { return fc->forward(features->forward(x).flatten(1)) * scale; }

  std::shared_ptr<nn::Sequential> features;
  std::shared_ptr<nn::Linear> fc;
  Tensor scale, step;
};

std::vector<std::string> keys_of(const nn::NamedTensors& d) { return d.keys(); }

}  // namespace

EMBER_DEVICE_SUITE(NnModuleDevice);
EMBER_DEVICE_SUITE(NnLayers);

TEST(NnModule, NamedParametersAndStateDictUseDottedNamesInRegistrationOrder) {
  Net net;
  EXPECT_EQ(keys_of(net.named_parameters()),
            (std::vector<std::string>{"scale", "features.0.weight", "features.0.bias", "features.1.weight",
                                      "features.1.bias", "fc.weight", "fc.bias"}));
  EXPECT_EQ(keys_of(net.named_buffers()),
            (std::vector<std::string>{"step", "features.1.running_mean", "features.1.running_var",
                                      "features.1.num_batches_tracked"}));
  EXPECT_EQ(keys_of(net.state_dict()),
            (std::vector<std::string>{"scale", "step", "features.0.weight", "features.0.bias", "features.1.weight",
                                      "features.1.bias", "features.1.running_mean", "features.1.running_var",
                                      "features.1.num_batches_tracked", "fc.weight", "fc.bias"}));
  EXPECT_EQ(keys_of(net.named_parameters(/*recurse=*/false)), (std::vector<std::string>{"scale"}));
  EXPECT_EQ(net.parameters().size(), 7u);
  EXPECT_EQ(net.num_parameters(), 1 + 4 * 9 + 4 + 4 + 4 + 64 * 3 + 3);
  std::vector<std::string> module_names;
  for (const auto& [name, m] : net.named_modules()) module_names.push_back(name + ":" + m->type_name());
  EXPECT_EQ(module_names, (std::vector<std::string>{":Net", "features:Sequential", "features.0:Conv2d",
                                                    "features.1:BatchNorm2d", "features.2:ReLU", "fc:Linear"}));
  // The registry holds the same tensors as the members.
  EXPECT_TRUE(net.named_parameters().at("fc.weight").is_same(net.fc->weight));
  EXPECT_TRUE(net.fc->weight.requires_grad());
  EXPECT_FALSE(net.features->at<nn::BatchNorm2d>(1)->running_mean.requires_grad());
}

TEST(NnModule, RegistrationErrors) {
  nn::Module m("Custom");
  m.register_parameter("w", zeros({2}));
  expect_error([&] { m.register_parameter("w", zeros({2})); },
               {"Custom: cannot register parameter \"w\"", "already used"});
  expect_error([&] { m.register_buffer("w", zeros({2})); }, {"cannot register buffer \"w\""});
  expect_error([&] { m.register_parameter("a.b", zeros({2})); }, {"\"a.b\" must not contain '.'"});
  expect_error([&] { m.register_parameter("", zeros({2})); }, {"parameter name must not be empty"});
  expect_error([&] { m.register_module("child", std::shared_ptr<nn::Linear>()); }, {"module \"child\" is null"});
  Tensor leaf = ones({2}).requires_grad_();
  expect_error([&] { m.register_parameter("v", leaf * 2); }, {"parameter \"v\" must be a leaf tensor"});
  expect_error([&] { m.forward(zeros({1})); }, {"Custom does not implement forward"});
}

TEST(NnModule, StateDictRoundTripIntoAFreshModel) {
  manual_seed(1);
  Net a;
  manual_seed(2);
  Net b;  // different initial weights
  {
    NoGradGuard ng;
    a.features->at<nn::BatchNorm2d>(1)->running_mean.fill_(0.5);
    a.step.fill_(7);
  }
  Tensor x = rand({2, 1, 6, 6});
  a.eval();
  b.eval();
  Tensor ya = a.forward(x);
  EXPECT_FALSE(allclose(ya, b.forward(x)));

  Tensor b_weight = b.fc->weight;  // the handle an optimizer would hold
  const auto result = b.load_state_dict(a.state_dict());
  EXPECT_TRUE(result.missing_keys.empty() && result.unexpected_keys.empty());
  EXPECT_TRUE(b.fc->weight.is_same(b_weight)) << "loading must keep the tensor handles";
  EXPECT_FALSE(b.fc->weight.storage() == a.fc->weight.storage()) << "loading copies values, it does not alias";
  test::expect_close(b.forward(x), ya, 0, 0);
  EXPECT_EQ(b.step.item<int64_t>(), 7);

  // Through the checkpoint map type (sorted by name) and back.
  nn::TensorMap as_map = a.state_dict();
  EXPECT_EQ(as_map.size(), a.state_dict().size());
  Net c;
  c.load_state_dict(as_map);
  c.eval();
  test::expect_close(c.forward(x), ya, 0, 0);
}

TEST(NnModule, StrictLoadErrorsNameTheKeys) {
  Net net;
  nn::NamedTensors sd = net.state_dict();
  // Missing key.
  nn::NamedTensors missing;
  for (const auto& [name, t] : sd)
    if (name != "fc.bias") missing.insert(name, t);
  expect_error([&] { net.load_state_dict(missing); }, {"load_state_dict (Net): missing key(s) \"fc.bias\""});
  // Unexpected key.
  nn::NamedTensors extra = sd;
  extra.insert("fc.b", zeros({3}));
  expect_error([&] { net.load_state_dict(extra); }, {"unexpected key(s) \"fc.b\""});
  // Wrong shape: an error even when not strict, and nothing is copied.
  nn::NamedTensors wrong;
  for (const auto& [name, t] : sd) wrong.insert(name, name == "fc.weight" ? zeros({3, 65}) : zeros_like(t));
  Tensor before = net.features->at<nn::Conv2d>(0)->weight.clone();
  expect_error([&] { net.load_state_dict(wrong, /*strict=*/false); },
               {"size mismatch for \"fc.weight\": the state dict has [3, 65], the module has [3, 64]"});
  test::expect_close(net.features->at<nn::Conv2d>(0)->weight, before, 0, 0);
  // Not strict: the matching keys load, the others are reported.
  const auto r = net.load_state_dict(missing, /*strict=*/false);
  EXPECT_EQ(r.missing_keys, (std::vector<std::string>{"fc.bias"}));
  EXPECT_TRUE(r.unexpected_keys.empty());
}

TEST_P(NnModuleDevice, TrainEvalSwitchesDropoutAndBatchNorm) {
  auto net = std::make_shared<nn::Sequential>(std::make_shared<nn::BatchNorm1d>(3), std::make_shared<nn::Dropout>(0.5));
  net->to(device());
  EXPECT_TRUE(net->is_training() && (*net)[0]->is_training() && (*net)[1]->is_training());
  Tensor x = (rand({8, 3}) * 4 + 2).to(device());
  auto bn = net->at<nn::BatchNorm1d>(0);

  Tensor y_train = net->forward(x);  // batch statistics, then dropout zeroes about half
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
  const auto v = y_train.to_vector<float>();
  EXPECT_GT(std::count(v.begin(), v.end(), 0.0f), 2);

  net->eval();
  EXPECT_FALSE(net->is_training() || (*net)[0]->is_training() || (*net)[1]->is_training());
  Tensor rm = bn->running_mean.clone();
  Tensor y_eval = net->forward(x);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1) << "eval must not update the statistics";
  test::expect_close(bn->running_mean, rm, 0, 0);
  // Eval: running statistics, no dropout.
  Tensor expected = (x - bn->running_mean) / (bn->running_var + 1e-5).sqrt();
  test::expect_close(y_eval, expected, 1e-5, 1e-5);
  EXPECT_TRUE(allclose(net->forward(x), y_eval)) << "eval is deterministic";
  net->train();
  EXPECT_TRUE((*net)[1]->is_training());
}

TEST_P(NnModuleDevice, BatchNormWithoutRunningStatsUsesBatchStatsInEval) {
  nn::BatchNorm1d bn(2, {.affine = false, .track_running_stats = false});
  EXPECT_TRUE(bn.state_dict().empty());
  bn.to(device());
  bn.eval();
  Tensor x = rand({6, 2}).to(device());
  test::expect_close(bn.forward(x), (x - x.mean({0})) / (x.var({0}, false) + 1e-5).sqrt(), 1e-5, 1e-5);
}

// forward_relu is relu(forward(x)) in one op: the same output and gradients, the same running
// statistics and batch count, in training and in eval.
TEST_P(NnModuleDevice, BatchNormForwardReluIsReluOfForward) {
  nn::BatchNorm2d fused(4), plain(4);
  fused.to(device());
  plain.to(device());
  const Tensor x0 = (rand({3, 4, 5, 5}) * 3 - 1).to(device());
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    fused.train(training);
    plain.train(training);
    const Tensor x1 = x0.clone().requires_grad_(true), x2 = x0.clone().requires_grad_(true);
    const Tensor y1 = fused.forward_relu(x1), y2 = relu(plain.forward(x2));
    test::expect_close(y1, y2, 1e-5, 1e-6);
    y1.sum().backward();
    y2.sum().backward();
    test::expect_close(x1.grad(), x2.grad(), 1e-4, 1e-5);
    test::expect_close(fused.weight.grad(), plain.weight.grad(), 1e-4, 1e-5);
    test::expect_close(fused.running_mean, plain.running_mean, 1e-6, 1e-7);
    test::expect_close(fused.running_var, plain.running_var, 1e-6, 1e-7);
    EXPECT_EQ(fused.num_batches_tracked.item<int64_t>(), plain.num_batches_tracked.item<int64_t>());
  }
  EXPECT_EQ(fused.num_batches_tracked.item<int64_t>(), 1);
}

TEST(NnModule, ToDtypeConvertsInPlaceAndKeepsHandles) {
  Net net;
  Tensor w = net.fc->weight;
  Tensor x = rand({2, 1, 6, 6});
  net.forward(x).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  net.to(kFloat64);
  EXPECT_EQ(w.dtype(), kFloat64) << "the handle an optimizer holds sees the conversion";
  EXPECT_EQ(w.grad().dtype(), kFloat64);
  EXPECT_EQ(net.features->at<nn::BatchNorm2d>(1)->running_var.dtype(), kFloat64);
  EXPECT_EQ(net.step.dtype(), kInt64) << "integer buffers keep their dtype";
  EXPECT_EQ(net.forward(x.to(kFloat64)).dtype(), kFloat64);
  net.to(kCPU);  // already there: a no-op
  EXPECT_TRUE(net.fc->weight.is_same(w));
  expect_error([&] { net.to(kInt64); }, {"Net.to(int64): modules convert to floating-point dtypes only"});
}

TEST_P(NnModuleDevice, ZeroGradClearsEveryGradient) {
  Net net;
  net.to(device());
  net.forward(rand({2, 1, 6, 6}).to(device())).sum().backward();
  for (const Tensor& p : net.parameters()) {
    EXPECT_TRUE(p.grad().defined());
    if (p.grad().defined()) {
      EXPECT_EQ(p.grad().device(), device());
    }
  }
  net.zero_grad();
  for (const Tensor& p : net.parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(NnModule, PrintsLikePyTorch) {
  auto net = std::make_shared<nn::Sequential>(std::make_shared<nn::Conv2d>(1, 8, 3, nn::Conv2dOptions{.padding = 1}),
                                              std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(),
                                              std::make_shared<nn::Linear>(8, 2, /*bias=*/false));
  EXPECT_EQ(net->str(),
            "Sequential(\n"
            "  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
            "  (1): ReLU()\n"
            "  (2): Flatten(start_dim=1, end_dim=-1)\n"
            "  (3): Linear(in_features=8, out_features=2, bias=False)\n"
            ")");
}

TEST(NnModule, DefaultInitialisationFollowsPyTorch) {
  manual_seed(3);
  nn::Linear fc(400, 300);
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias: bounds, mean 0, variance bound^2/3.
  const double bound = 1.0 / std::sqrt(400.0);
  auto w = fc.weight.to_vector<float>();
  double sum = 0, sq = 0, lo = 1, hi = -1;
  for (float v : w) {
    sum += v;
    sq += v * v;
    lo = std::min<double>(lo, v);
    hi = std::max<double>(hi, v);
  }
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_GT(hi, 0.99 * bound);
  EXPECT_NEAR(sum / w.size(), 0.0, 0.01 * bound);
  EXPECT_NEAR(sq / w.size(), bound * bound / 3, 0.02 * bound * bound);
  EXPECT_LE(fc.bias.abs().max().item(), bound);

  nn::Conv2d conv(4, 6, 3);  // fan_in = 4 * 3 * 3
  EXPECT_LE(conv.weight.abs().max().item(), 1.0 / 6.0);
  nn::BatchNorm2d bn(5);
  test::expect_close(bn.weight, ones({5}), 0, 0);
  test::expect_close(bn.bias, zeros({5}), 0, 0);
  nn::Embedding emb(1000, 16);
  EXPECT_NEAR(emb.weight.mean().item(), 0.0, 0.02);
  EXPECT_NEAR(emb.weight.var({}).item(), 1.0, 0.03);

  // The same seed gives the same model; a passed generator is used instead of the global one.
  manual_seed(3);
  nn::Linear again(400, 300);
  test::expect_close(again.weight, fc.weight, 0, 0);
  Generator g1(11), g2(11);
  nn::Linear a(5, 5, true, &g1), b(5, 5, true, &g2);
  test::expect_close(a.weight, b.weight, 0, 0);
}

TEST(NnModule, InitFunctions) {
  Tensor t = empty({64, 32});
  nn::init::xavier_uniform_(t);
  EXPECT_LE(t.abs().max().item(), std::sqrt(6.0 / 96.0));
  nn::init::constant_(t, 0.5);
  EXPECT_EQ(t.max().item(), 0.5);
  Tensor p = zeros({3, 4}).requires_grad_();
  nn::init::normal_(p.t(), 0.0, 1.0);  // a parameter, through a non-contiguous view
  EXPECT_GT(p.abs().sum().item(), 0.0);
  EXPECT_TRUE(p.is_leaf() && p.requires_grad());
  EXPECT_EQ(nn::init::calculate_fan_in_and_fan_out(zeros({16, 3, 5, 5})), (std::pair<int64_t, int64_t>{75, 400}));
  expect_error([] { nn::init::kaiming_uniform_(zeros({4})); }, {"at least 2 dims", "[4]"});
}

// ---------------------------------------------------------------- layers

TEST_P(NnLayers, EveryLayerRunsForwardAndBackward) {
  manual_seed(0);
  const Device dev = device();
  Tensor img = rand({2, 3, 8, 8}).to(dev).requires_grad_();
  auto check = [dev](nn::Module& m, const Tensor& x, const Shape& want) {
    m.to(dev);
    Tensor y = m.forward(x);
    EXPECT_EQ(y.shape(), want) << m.str();
    EXPECT_EQ(y.device(), dev) << m.str();
    y.sum().backward();
    for (const auto& [name, p] : m.named_parameters()) {
      EXPECT_TRUE(p.grad().defined()) << m.type_name() << "." << name;
      if (p.grad().defined()) {
        EXPECT_EQ(p.grad().device(), dev) << m.type_name() << "." << name;
      }
    }
  };
  nn::Conv2d conv(3, 4, 3, {.stride = 2, .padding = 1});
  check(conv, img, {2, 4, 4, 4});
  nn::MaxPool2d mp(2);
  check(mp, img, {2, 3, 4, 4});
  nn::AvgPool2d ap(3, {.stride = 2, .padding = 1});
  check(ap, img, {2, 3, 4, 4});
  nn::AdaptiveAvgPool2d aap({2, 1});
  check(aap, img, {2, 3, 2, 1});
  nn::BatchNorm2d bn2(3);
  check(bn2, img, {2, 3, 8, 8});
  nn::BatchNorm1d bn1(3);
  check(bn1, rand({4, 3, 5}).to(dev), {4, 3, 5});
  nn::LayerNorm ln({8, 8});
  check(ln, img, {2, 3, 8, 8});
  nn::Flatten fl;
  check(fl, img, {2, 192});
  nn::Linear lin(8, 5);
  check(lin, img, {2, 3, 8, 5});
  nn::Dropout dr(0.2);
  check(dr, img, {2, 3, 8, 8});
  for (nn::Module* act :
       std::initializer_list<nn::Module*>{new nn::ReLU, new nn::GELU, new nn::Tanh, new nn::Sigmoid}) {
    check(*act, img, {2, 3, 8, 8});
    delete act;
  }
  nn::Embedding emb(10, 4);
  Tensor idx = from_vector<int64_t>({1, 9, 1, 0, 3, 3}, {2, 3}).to(dev);
  check(emb, idx, {2, 3, 4});
  EXPECT_EQ(emb.weight.grad().select(0, 1).sum().item(), 8.0);  // row 1 read twice, 4 columns each
}

TEST_P(NnLayers, ActivationsMatchTheirOps) {
  Tensor x = (rand({3, 4}) * 4 - 2).to(device());
  test::expect_close(nn::ReLU().forward(x), relu(x), 0, 0);
  test::expect_close(nn::GELU().forward(x), gelu(x), 0, 0);
  test::expect_close(nn::Tanh().forward(x), tanh(x), 0, 0);
  test::expect_close(nn::Sigmoid().forward(x), sigmoid(x), 0, 0);
}

TEST_P(NnLayers, ResidualBlockShapesAndShortcut) {
  manual_seed(4);
  nn::ResidualBlock same(4, 4), down(4, 8, 2);
  EXPECT_EQ(same.downsample, nullptr);
  ASSERT_NE(down.downsample, nullptr);
  same.to(device());
  down.to(device());
  Tensor x = rand({2, 4, 6, 6}).to(device()).requires_grad_();
  EXPECT_EQ(same.forward(x).shape(), (Shape{2, 4, 6, 6}));
  Tensor y = down.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 8, 3, 3}));
  EXPECT_GE(y.min().item(), 0.0);  // ends in a ReLU
  y.sum().backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(down.downsample->at<nn::Conv2d>(0)->weight.grad().defined());
}

TEST_P(NnLayers, SmallResNetTrainsOnABatch) {
  // A few SGD steps on one fixed batch must drive the loss down (everything wired end to end).
  manual_seed(5);
  auto net = std::make_shared<nn::Sequential>();
  net->emplace_back<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.padding = 1, .bias = false});
  net->emplace_back<nn::BatchNorm2d>(8);
  net->emplace_back<nn::ReLU>();
  net->emplace_back<nn::ResidualBlock>(8, 8);
  net->emplace_back<nn::ResidualBlock>(8, 16, 2);
  net->emplace_back<nn::AdaptiveAvgPool2d>(1);
  net->emplace_back<nn::Flatten>();
  net->emplace_back<nn::Linear>(16, 4);
  net->to(device());
  Tensor x = rand({8, 3, 8, 8}).to(device());
  Tensor t = from_vector<int64_t>({0, 1, 2, 3, 0, 1, 2, 3}).to(device());
  double first = 0, last = 0;
  for (int step = 0; step < 15; ++step) {
    net->zero_grad();
    Tensor loss = nn::functional::cross_entropy(net->forward(x), t);
    loss.backward();
    if (step == 0) first = loss.item();
    last = loss.item();
    NoGradGuard ng;
    for (Tensor p : net->parameters()) p.sub_(p.grad() * 0.1);
  }
  EXPECT_LT(last, 0.5 * first);
}

TEST_P(NnLayers, SequentialAccessAndErrors) {
  nn::Sequential seq;
  auto fc = seq.emplace_back<nn::Linear>(3, 2);
  seq.push_back(std::make_shared<nn::ReLU>());
  EXPECT_EQ(seq.size(), 2u);
  EXPECT_EQ(seq[0], fc);
  EXPECT_EQ(seq.at<nn::Linear>(0), fc);
  expect_error([&] { seq.at<nn::Conv2d>(1); }, {"Sequential: child 1 is a ReLU, not the requested type"});
  expect_error([&] { seq[2]; }, {"Sequential: index 2 is out of range for 2 modules"});
  seq.to(device());
  Tensor y = seq.forward(ones({4, 3}, TensorOptions().device(device())));
  EXPECT_EQ(y.shape(), (Shape{4, 2}));
  EXPECT_EQ(y.device(), device());
}

// Sequential runs a Linear, Conv2d or BatchNorm followed by a ReLU as one fused op (forward_relu),
// with the values and gradients of the two modules called one by one; a subclass of those layers
// (which may override forward()) and a module that is not a plain ReLU are called as they are.
TEST_P(NnLayers, SequentialFusesLayerThenReluAndKeepsSubclassesIntact) {
  Generator gen(7);
  auto conv = std::make_shared<nn::Conv2d>(2, 4, 3, nn::Conv2dOptions{.padding = 1}, &gen);
  auto bn = std::make_shared<nn::BatchNorm2d>(4);
  auto fc = std::make_shared<nn::Linear>(4 * 5 * 5, 6, true, &gen);
  nn::Sequential seq(conv, std::make_shared<nn::ReLU>(), bn, std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(),
                     fc, std::make_shared<nn::ReLU>());
  seq.to(device());
  const Tensor x = test::rand_f64({3, 2, 5, 5}, -1, 1, 5).to(kFloat32).to(device());
  const Tensor y = seq.forward(x);
  ASSERT_TRUE(y.grad_fn());
  EXPECT_STREQ(y.grad_fn()->name(), "linear_relu");
  (y * y).sum().backward();
  std::vector<Tensor> fused_grads;
  for (const Tensor& p : seq.parameters()) fused_grads.push_back(p.grad().clone());
  seq.zero_grad();
  // The same modules, one call each (BatchNorm's running statistics move again: compare outputs only).
  const Tensor c = relu(conv->forward(x));
  // conv2d_relu is one op on the CPU; a device without the fused kernel composes conv2d and relu.
  EXPECT_STREQ(conv->forward_relu(x).grad_fn()->name(), device().is_cpu() ? "conv2d_relu" : "relu");
  const Tensor composed = relu(fc->forward(relu(bn->forward(c)).flatten(1)));
  test::expect_close(y, composed, 1e-5, 1e-5);
  (composed * composed).sum().backward();
  const std::vector<Tensor> params = seq.parameters();
  for (size_t i = 0; i < params.size(); ++i) test::expect_close(fused_grads[i], params[i].grad(), 1e-4, 1e-4);

  // A Conv2d subclass with its own forward() is not bypassed by the fusion.
  struct Doubled : nn::Conv2d {
    using nn::Conv2d::Conv2d;
    Tensor forward(const Tensor& input) override { return nn::Conv2d::forward(input) * 2.0; }
  };
  auto doubled = std::make_shared<Doubled>(2, 4, 3, nn::Conv2dOptions{.padding = 1}, &gen);
  nn::Sequential sub(doubled, std::make_shared<nn::ReLU>());
  sub.to(device());
  const Tensor ys = sub.forward(x);
  test::expect_close(ys, relu(doubled->nn::Conv2d::forward(x) * 2.0), 1e-6, 1e-6);
  EXPECT_STREQ(ys.grad_fn()->name(), "relu");
  EXPECT_GT(ys.abs().sum().item(), 0.0);
}

TEST_P(NnLayers, ConstructorAndInputErrors) {
  expect_error([] { nn::Conv2d(3, 4, 3, {.groups = 2}); }, {"Conv2d: in_channels=3 and out_channels=4", "groups=2"});
  expect_error([] { nn::Dropout(1.5); }, {"Dropout: probability p must be in [0, 1], got 1.5"});
  const TensorOptions on = TensorOptions().device(device());
  nn::BatchNorm2d bn(3);
  bn.to(device());
  expect_error(
      [&] {
        bn.forward(zeros({2, 3, 4}, on));
      },
      {"BatchNorm2d: expected a 4-D [N, C, H, W] input, got [2, 3, 4]"});
  expect_error(
      [&] {
        bn.forward(zeros({2, 4, 4, 4}, on));
      },
      {"BatchNorm2d: input [2, 4, 4, 4] has 4 channels, expected num_features=3"});
  nn::BatchNorm1d bn1(3);
  bn1.to(device());
  expect_error(
      [&] {
        bn1.forward(zeros({2, 3, 4, 4}, on));
      },
      {"BatchNorm1d: expected a 2-D [N, C] or 3-D [N, C, L] input"});
}

// ---------------------------------------------------------------- devices

TEST_P(NnModuleDevice, ToDeviceMovesInPlaceAndMatchesTheCpu) {
  manual_seed(6);
  auto net = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(5, 8), std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Dropout>(0.5), std::make_shared<nn::Linear>(8, 3));
  net->eval();
  Tensor x = rand({4, 5});
  Tensor y_cpu = net->forward(x);
  Tensor w = net->at<nn::Linear>(0)->weight;
  net->to(device());
  EXPECT_TRUE(net->at<nn::Linear>(0)->weight.is_same(w)) << "the handles stay the same";
  for (const Tensor& p : net->parameters()) EXPECT_EQ(p.device(), device());
  Tensor y = net->forward(x.to(device()));
  EXPECT_EQ(y.device(), device());
  test::expect_close(y, y_cpu, 1e-5, 1e-6);
  y.sum().backward();
  EXPECT_EQ(w.grad().device(), device());
  net->to(kCPU);
  EXPECT_EQ(w.device(), kCPU);
  EXPECT_EQ(w.grad().device(), kCPU) << "gradients move with their parameters";
}
