// bfloat16 and float16: the conversions against bit patterns derived by hand (round to nearest,
// ties to even; float16 subnormals and overflow; NaN), Tensor::to both ways, factories, printing,
// type promotion (PyTorch's rules) and the 16-bit elementwise kernels against float32.
#include <bit>
#include <cmath>
#include <limits>

#include "tests/test_util.h"

using namespace ember;
using test::expect_error;

namespace {

uint16_t bf16_bits(float f) { return bfloat16(f).bits; }
uint16_t f16_bits(float f) { return float16(f).bits; }

}  // namespace

TEST(HalfConversion, BFloat16RoundsToNearestEven) {
  // 1/3 = 0x3EAAAAAB: the dropped 0xAAAB is above half of 0x10000, so it rounds up.
  EXPECT_EQ(bf16_bits(1.0f / 3.0f), 0x3EAB);
  EXPECT_EQ(bf16_bits(1.0f), 0x3F80);
  EXPECT_EQ(bf16_bits(-2.0f), 0xC000);
  // bfloat16's step at 1 is 2^-7. 1 + 2^-8 is a tie: to the even 1.0; 1 + 3*2^-8 ties to 0x3F82.
  EXPECT_EQ(bf16_bits(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(bf16_bits(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_EQ(bf16_bits(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3F81);  // just above the tie
  // The largest float rounds up into the exponent: inf, as in PyTorch.
  EXPECT_EQ(bf16_bits(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(bf16_bits(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(bf16_bits(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(bf16_bits(std::ldexp(1.0f, -130)), 0x0008);  // a float subnormal keeps its top bits
  EXPECT_TRUE(std::isnan(static_cast<float>(bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload lives only in the low 16 bits must not become inf.
  EXPECT_TRUE(std::isnan(static_cast<float>(bfloat16::from_bits(bf16_bits(std::bit_cast<float>(0x7F800001u))))));
  EXPECT_EQ(static_cast<float>(bfloat16::from_bits(0x3EAB)), 0.333984375f);
}

TEST(HalfConversion, Float16RoundsToNearestEvenWithSubnormalsAndOverflow) {
  EXPECT_EQ(f16_bits(1.0f / 3.0f), 0x3555);
  EXPECT_EQ(f16_bits(1.0f), 0x3C00);
  EXPECT_EQ(f16_bits(-0.0f), 0x8000);
  // Step 2^-10 at 1: 1 + 2^-11 ties to 1.0 (even), 1 + 3*2^-11 ties to 0x3C02.
  EXPECT_EQ(f16_bits(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(f16_bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // The top of the range: 65504 is the largest half; 65519 still rounds to it; 65520 is the tie
  // between 65504 (odd mantissa) and 65536, so it rounds to even: inf.
  EXPECT_EQ(f16_bits(65504.0f), 0x7BFF);
  EXPECT_EQ(f16_bits(65519.0f), 0x7BFF);
  EXPECT_EQ(f16_bits(65520.0f), 0x7C00);
  EXPECT_EQ(f16_bits(-65520.0f), 0xFC00);
  EXPECT_EQ(f16_bits(1e10f), 0x7C00);
  // Subnormals count units of 2^-24.
  const float u = std::ldexp(1.0f, -24);
  EXPECT_EQ(f16_bits(u), 0x0001);
  EXPECT_EQ(f16_bits(0.5f * u), 0x0000);   // a tie between 0 and 1 unit: even (0)
  EXPECT_EQ(f16_bits(0.75f * u), 0x0001);
  EXPECT_EQ(f16_bits(1.5f * u), 0x0002);   // a tie between 1 and 2: even (2)
  EXPECT_EQ(f16_bits(2.5f * u), 0x0002);   // a tie between 2 and 3: even (2)
  EXPECT_EQ(f16_bits(-u), 0x8001);
  EXPECT_EQ(f16_bits(1023 * u), 0x03FF);   // the largest subnormal
  EXPECT_EQ(f16_bits(1023.5f * u), 0x0400);  // rounds up into the smallest normal, 2^-14
  EXPECT_EQ(f16_bits(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(f16_bits(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(f16_bits(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_TRUE(std::isnan(static_cast<float>(float16(std::numeric_limits<float>::quiet_NaN()))));
  // Back to float, exactly.
  EXPECT_EQ(static_cast<float>(float16::from_bits(0x0001)), u);
  EXPECT_EQ(static_cast<float>(float16::from_bits(0x83FF)), -1023 * u);
  EXPECT_EQ(static_cast<float>(float16::from_bits(0x7BFF)), 65504.0f);
  EXPECT_EQ(static_cast<float>(float16::from_bits(0x3555)), 0.333251953125f);
  EXPECT_EQ(static_cast<float>(float16::from_bits(0xFC00)), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(static_cast<float>(float16::from_bits(0x7E00))));
}

TEST(HalfConversion, EveryFloat16RoundTripsThroughFloat) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float16 h = float16::from_bits(static_cast<uint16_t>(b));
    const float f = h;
    if (std::isnan(f)) continue;
    ASSERT_EQ(float16(f).bits, b) << "bits " << b;
  }
}

TEST(HalfTensor, ToConvertsBothWaysWithTheScalarRounding) {
  const std::vector<float> v = {1.0f / 3.0f, 65504.0f, 65520.0f, std::ldexp(1.0f, -24), -2.5f};
  Tensor x = from_vector<float>(v, {5});
  Tensor h = x.to(kFloat16);
  ASSERT_EQ(h.dtype(), kFloat16);
  std::vector<float16> hv = h.to_vector<float16>();
  EXPECT_EQ(hv[0].bits, 0x3555);
  EXPECT_EQ(hv[1].bits, 0x7BFF);
  EXPECT_EQ(hv[2].bits, 0x7C00);
  EXPECT_EQ(hv[3].bits, 0x0001);
  std::vector<float> back = h.to(kFloat32).to_vector<float>();
  EXPECT_EQ(back[0], 0.333251953125f);
  EXPECT_TRUE(std::isinf(back[2]));
  EXPECT_EQ(back[4], -2.5f);

  Tensor b = x.to(kBFloat16);
  EXPECT_EQ(b.to_vector<bfloat16>()[0].bits, 0x3EAB);
  EXPECT_EQ(b.to(kFloat64).to_vector<double>()[0], 0.333984375);
  // bfloat16 <-> float16 directly, integers and strided sources.
  EXPECT_EQ(b.to(kFloat16).to(kFloat32).to_vector<float>()[4], -2.5f);
  EXPECT_EQ(from_vector<int64_t>({-3, 7}, {2}).to(kBFloat16).to(kInt64).to_vector<int64_t>(), (std::vector<int64_t>{-3, 7}));
  Tensor m = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}).to(kFloat16).t();
  EXPECT_EQ(m.contiguous().to(kFloat32).to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_DOUBLE_EQ(b.select(0, 0).item(), 0.333984375);
}

TEST(HalfTensor, FactoriesAndPrinting) {
  for (DType t : {kBFloat16, kFloat16}) {
    SCOPED_TRACE(dtype_name(t));
    EXPECT_EQ(zeros({2, 3}, t).dtype(), t);
    EXPECT_EQ(zeros({2, 3}, t).to(kFloat32).to_vector<float>(), std::vector<float>(6, 0.0f));
    EXPECT_EQ(ones({4}, t).to(kFloat32).to_vector<float>(), std::vector<float>(4, 1.0f));
    EXPECT_EQ(full({2}, 0.1, t).to(kFloat64).to_vector<double>()[0], t == kBFloat16 ? 0.10009765625 : 0.0999755859375);
    EXPECT_EQ(arange(0, 5, 1, t).to(kFloat32).to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4}));
    EXPECT_EQ(empty({3}, t).nbytes(), 6u);
    Tensor r = rand({1000}, t);
    EXPECT_EQ(r.dtype(), t);
    EXPECT_GE(r.min().item(), 0.0);
    EXPECT_LE(r.max().item(), 1.0);
    EXPECT_NEAR(r.mean().item(), 0.5, 0.05);
    EXPECT_NEAR(randn({4000}, t).to(kFloat32).std({0}).item(), 1.0, 0.05);
  }
  EXPECT_EQ(from_vector<float>({1.0f / 3.0f}, {1}).to(kBFloat16).str(), "tensor([0.333984], shape=[1], dtype=bfloat16)");
  EXPECT_EQ(from_vector<float>({1.0f / 3.0f}, {1}).to(kFloat16).str(), "tensor([0.333252], shape=[1], dtype=float16)");
}

TEST(HalfTensor, PromotionFollowsPyTorch) {
  EXPECT_EQ(promote_types(kBFloat16, kFloat16), kFloat32);
  EXPECT_EQ(promote_types(kFloat16, kFloat32), kFloat32);
  EXPECT_EQ(promote_types(kBFloat16, kFloat64), kFloat64);
  EXPECT_EQ(promote_types(kInt64, kFloat16), kFloat16);
  EXPECT_EQ(promote_types(kBFloat16, kUInt8), kBFloat16);
  EXPECT_EQ(promote_types(kBFloat16, kBFloat16), kBFloat16);
  EXPECT_EQ(promote_types(kUInt8, kInt64), kInt64);
  EXPECT_EQ(promote_types(kFloat32, kFloat64), kFloat64);

  Tensor h = ones({3}, kFloat16), b = ones({3}, kBFloat16), f = ones({3}, kFloat32);
  EXPECT_EQ((h + b).dtype(), kFloat32);
  EXPECT_EQ((h + f).dtype(), kFloat32);
  EXPECT_EQ((h + from_vector<int64_t>({1, 2, 3}, {3})).dtype(), kFloat16);
  EXPECT_EQ((b * 2.5).dtype(), kBFloat16);
  EXPECT_EQ((b + scalar_tensor(2.0, kFloat64)).dtype(), kBFloat16);  // a 0-d tensor of the same category never widens
  EXPECT_EQ(lt(h, 2.0).dtype(), kUInt8);
}

// The elementwise kernels compute in float32 and round once: exactly float32's result, rounded.
TEST(HalfTensor, ElementwiseIsFloat32MathRoundedOnce) {
  Tensor x = test::rand_f64({257}, -3, 3, 7).to(kFloat32);
  Tensor y = test::rand_f64({257}, 0.5, 2, 8).to(kFloat32);
  for (DType t : {kBFloat16, kFloat16}) {
    SCOPED_TRACE(dtype_name(t));
    Tensor xr = x.to(t).to(kFloat32), yr = y.to(t).to(kFloat32);  // inputs the narrow type holds exactly
    auto same = [&](const Tensor& narrow, const Tensor& wide) {
      ASSERT_EQ(narrow.dtype(), t);
      const std::vector<float> a = narrow.to(kFloat32).to_vector<float>(), e = wide.to(t).to(kFloat32).to_vector<float>();
      for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], e[i]) << "element " << i;
    };
    same(x.to(t) * y.to(t), xr * yr);
    same(x.to(t) / y.to(t), xr / yr);
    same(x.to(t).exp(), xr.exp());
    same(x.to(t).tanh(), xr.tanh());
    same(x.to(t).gelu(), xr.gelu());
    same(x.to(t) + 0.1, xr + 0.1);
    same(x.to(t).clamp(-1, 1), xr.clamp(-1, 1));
    same(maximum(x.to(t), y.to(t).unsqueeze(0).expand({2, 257}).select(0, 1)), maximum(xr, yr));
    EXPECT_EQ(lt(x.to(t), y.to(t)).to_vector<uint8_t>(), lt(xr, yr).to_vector<uint8_t>());
    same(where(gt(x.to(t), 0.0), x.to(t), y.to(t)), where(gt(xr, 0.0), xr, yr));
  }
}

// Reductions accumulate in float32 and round the result once; argmax/argmin index the stored values.
TEST(HalfTensor, ReductionsAccumulateInFloat32) {
  for (DType t : {kBFloat16, kFloat16}) {
    SCOPED_TRACE(dtype_name(t));
    // 4096 ones: a 16-bit running sum would stop at 256 (bf16) or 2048 (fp16); float32 counts them all.
    Tensor s = ones({4096}, t).sum();
    EXPECT_EQ(s.dtype(), t);
    EXPECT_EQ(s.item(), 4096.0);
    EXPECT_EQ(ones({4096}, t).mean().item(), 1.0);
    Tensor x = test::rand_f64({5, 7}, -3, 3, 11).to(t);
    Tensor xr = x.to(kFloat32);
    EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), argmax(xr, 1).to_vector<int64_t>());
    EXPECT_EQ(argmin(x, 0).to_vector<int64_t>(), argmin(xr, 0).to_vector<int64_t>());
    EXPECT_EQ(x.max().item(), xr.max().item());
    EXPECT_EQ(x.min({1}).to(kFloat32).to_vector<float>(), xr.min({1}).to_vector<float>());
    Tensor p = x.softmax(1);
    EXPECT_EQ(p.dtype(), t);
    EXPECT_EQ(p.to(kFloat32).to_vector<float>(), xr.softmax(1).to(t).to(kFloat32).to_vector<float>());
  }
}

TEST(HalfTensor, CastGradientsComeBackInTheSourceDtype) {
  Tensor x = test::rand_f64({4, 3}).to(kFloat32).requires_grad_();
  Tensor y = (x.to(kBFloat16) * 3.0).sum();
  EXPECT_EQ(y.dtype(), kBFloat16);
  y.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().dtype(), kFloat32);
  EXPECT_EQ(x.grad().to_vector<float>(), std::vector<float>(12, 3.0f));
}

// The CUDA backend computes on 16-bit tensors (cuda/, issue 15) as the CPU does: widen to float32,
// compute, round back with core/half.h's one conversion. So casts both ways and elementwise results
// are the CPU's bit for bit (the parity suites, tests/test_cuda_parity.cpp, cover every op).
TEST(CudaHalf, SixteenBitTensorsComputeOnTheGpuBitForBitLikeTheCpu) {
  EMBER_REQUIRE_GPU();
  const Device gpu(DeviceType::CUDA, 0);
  for (DType t : {kBFloat16, kFloat16}) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor h = from_vector<float>({1.5f, -2.0f, 0.1f, 3.3f, 1e-3f}, {5}).to(t);
    const Tensor g = h.to(gpu);
    EXPECT_EQ(g.dtype(), t);
    EXPECT_EQ(g.to(kCPU).to(kFloat32).to_vector<float>(), h.to(kFloat32).to_vector<float>());  // bytes move as they are
    EXPECT_EQ(g.to(kFloat32).to(kCPU).to_vector<float>(), h.to(kFloat32).to_vector<float>());  // cast on the GPU
    const Tensor cpu = h * h + h;  // two kernels, each correctly rounded: exact on both devices
    const Tensor dev = g * g + g;
    EXPECT_EQ(dev.dtype(), t);
    EXPECT_EQ(dev.to(kCPU).to(kFloat32).to_vector<float>(), cpu.to(kFloat32).to_vector<float>());
  }
}
