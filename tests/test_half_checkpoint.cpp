// bfloat16 / float16 in safetensors checkpoints: a save/load round trip keeps every bit, and a file
// that PyTorch wrote (tests/data/half_torch.safetensors, from scripts/make_half_safetensors.py) loads
// with PyTorch's conversions of its float32 inputs, bit for bit — PyTorch's reference for ember's
// rounding. (That script's second form opens ember-written files in PyTorch.)
#include <cmath>

#include "nn/checkpoint.h"
#include "tests/test_util.h"

using namespace ember;

class HalfCheckpoint : public test::ScratchDirTest {};

TEST_F(HalfCheckpoint, PyTorchWrittenHalvesMatchEmbersConversion) {
  const nn::SafetensorsFile f = nn::load_safetensors(std::string(EMBER_TEST_DATA_DIR) + "/half_torch.safetensors");
  const Tensor input = f.tensors.at("input");
  ASSERT_EQ(f.tensors.at("bf16").dtype(), kBFloat16);
  ASSERT_EQ(f.tensors.at("f16").dtype(), kFloat16);
  const std::vector<float> x = input.to_vector<float>();
  const std::vector<bfloat16> torch_bf16 = f.tensors.at("bf16").to_vector<bfloat16>();
  const std::vector<float16> torch_f16 = f.tensors.at("f16").to_vector<float16>();
  const std::vector<bfloat16> ember_bf16 = input.to(kBFloat16).to_vector<bfloat16>();
  const std::vector<float16> ember_f16 = input.to(kFloat16).to_vector<float16>();
  ASSERT_EQ(x.size(), torch_bf16.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {  // any NaN will do: PyTorch's vectorised bfloat16 cast writes 0xFFFF, ember 0x7FC0
      EXPECT_TRUE(std::isnan(static_cast<float>(ember_bf16[i])) && std::isnan(static_cast<float>(torch_bf16[i])));
      EXPECT_TRUE(std::isnan(static_cast<float>(ember_f16[i])) && std::isnan(static_cast<float>(torch_f16[i])));
      continue;
    }
    EXPECT_EQ(ember_bf16[i].bits, torch_bf16[i].bits) << "bfloat16 of " << x[i];
    EXPECT_EQ(ember_f16[i].bits, torch_f16[i].bits) << "float16 of " << x[i];
  }
  const Tensor m = f.tensors.at("bf16_matrix");
  EXPECT_EQ(m.shape(), Shape({2, 3}));
  EXPECT_EQ(m.to(kFloat64).to_vector<double>()[1], 0.333984375);
}

TEST_F(HalfCheckpoint, SaveLoadRoundTripKeepsEveryBit) {
  const Tensor b = test::rand_f64({3, 5}, -100, 100).to(kBFloat16);
  const Tensor h = test::rand_f64({7}, -60000, 60000, 9).to(kFloat16);
  const Tensor strided = test::rand_f64({4, 3}, -1, 1, 10).to(kFloat16).t();  // saved contiguous
  nn::save_safetensors(path("half.safetensors"), {{"b", b}, {"h", h}, {"s", strided}});
  const nn::SafetensorsFile f = nn::load_safetensors(path("half.safetensors"));
  auto bits_equal = [](const Tensor& a, const Tensor& e) {
    ASSERT_EQ(a.dtype(), e.dtype());
    ASSERT_EQ(a.shape(), e.shape());
    const Tensor ac = a.contiguous(), ec = e.contiguous();
    const uint16_t* pa = static_cast<const uint16_t*>(ac.data_ptr());
    const uint16_t* pe = static_cast<const uint16_t*>(ec.data_ptr());
    for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(pa[i], pe[i]) << "element " << i;
  };
  bits_equal(f.tensors.at("b"), b);
  bits_equal(f.tensors.at("h"), h);
  bits_equal(f.tensors.at("s"), strided);
}
