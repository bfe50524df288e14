// Communication hooks (distributed/comm_hooks.h): the 16-bit rounding itself, and DDP with the bf16
// and fp16 compression hooks against the float32 all-reduce (DDP_TEST: fake 2-thread world and MPI).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "core/ember.h"
#include "distributed/comm_hooks.h"
#include "distributed/ddp.h"
#include "core/half.h"
#include "nn/nn.h"
#include "tests/distributed/ddp_test_util.h"

namespace {

using namespace ember;
using namespace ember::test::ddp;
using distributed::Communicator;

TEST(HalfBits, Bfloat16RoundsToNearestEven) {
  using half_bits::float_to_bfloat16;
  EXPECT_EQ(float_to_bfloat16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bfloat16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_bfloat16(1.0f + 0x1p-8f), 0x3F80);        // tie, kept part even: down
  EXPECT_EQ(float_to_bfloat16(1.0f + 3 * 0x1p-8f), 0x3F82);    // tie, kept part odd: up to even
  EXPECT_EQ(float_to_bfloat16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);  // just past the tie: up
  EXPECT_EQ(float_to_bfloat16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  EXPECT_EQ(float_to_bfloat16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_TRUE(std::isnan(half_bits::bfloat16_to_float(float_to_bfloat16(std::nanf("")))));
  EXPECT_EQ(half_bits::bfloat16_to_float(0x4049), 3.140625f);
}

TEST(HalfBits, Float16RoundsToNearestEven) {
  using half_bits::float_to_float16;
  using half_bits::float16_to_float;
  EXPECT_EQ(float_to_float16(1.0f), 0x3C00);
  EXPECT_EQ(float_to_float16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_float16(65504.0f), 0x7BFF);               // the largest float16
  EXPECT_EQ(float_to_float16(65519.0f), 0x7BFF);               // below the tie: stays finite
  EXPECT_EQ(float_to_float16(65520.0f), 0x7C00);               // the tie rounds to even: inf
  EXPECT_EQ(float_to_float16(1.0f + 0x1p-11f), 0x3C00);        // tie: down to even
  EXPECT_EQ(float_to_float16(1.0f + 3 * 0x1p-11f), 0x3C02);    // tie: up to even
  EXPECT_EQ(float_to_float16(0x1p-14f), 0x0400);               // smallest normal
  EXPECT_EQ(float_to_float16(0x1p-24f), 0x0001);               // smallest subnormal
  EXPECT_EQ(float_to_float16(0x1p-25f), 0x0000);               // its half: a tie, to even (zero)
  EXPECT_EQ(float_to_float16(0x1.8p-25f), 0x0001);             // past the half: up
  EXPECT_EQ(float_to_float16(3 * 0x1p-25f), 0x0002);           // 1.5 units: tie, to even (2)
  EXPECT_EQ(float_to_float16(0x1p-14f - 0x1p-25f), 0x0400);    // rounds up into the normals
  EXPECT_EQ(float_to_float16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_TRUE(std::isnan(float16_to_float(float_to_float16(std::nanf("")))));
  // Every float16 survives a round trip through float32.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    if (((bits >> 10) & 0x1f) == 0x1f && (bits & 0x3ff)) continue;  // NaN payloads
    ASSERT_EQ(float_to_float16(float16_to_float(bits)), bits) << std::hex << h;
  }
}

// The gradients with a compression hook are within the 16-bit rounding of the float32 ones, and the
// same on every rank.
void compressed_matches_float32(const std::shared_ptr<Communicator>& comm, distributed::CommHook hook,
                                double unit_roundoff) {
  const int W = comm->world_size(), r = comm->rank();
  const int64_t B = 4;
  auto exact_model = make_mlp(21), compressed_model = make_mlp(21);
  auto exact = std::make_shared<nn::DistributedDataParallel>(exact_model, comm, nn::DDPOptions().bucket_cap(0.0005));
  auto compressed =
      std::make_shared<nn::DistributedDataParallel>(compressed_model, comm, nn::DDPOptions().bucket_cap(0.0005));
  compressed->register_comm_hook(hook);
  Data d = global_batch(3, W * B);
  loss_of(*exact, d.rows(r * B, B)).backward();
  loss_of(*compressed, d.rows(r * B, B)).backward();
  // Each rank's gradient is rounded once (relative error <= u), then summed in float32 and averaged:
  // the error is at most u times the mean of the absolute local gradients; bounded here by u times
  // the largest absolute averaged-or-local value seen, with a factor 2 of slack.
  const std::vector<float> a = flatten_all(grads_of(*exact_model)), b = flatten_all(grads_of(*compressed_model));
  auto local = make_mlp(21);
  loss_of(*local, d.rows(r * B, B)).backward();
  Tensor local_abs = from_vector<float>(flatten_all(grads_of(*local))).abs();
  comm->all_reduce(local_abs, ReduceOp::Max);
  const std::vector<float> bound = local_abs.to_vector<float>();
  EXPECT_EQ(a.size(), b.size());
  int differ = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_LE(std::abs(double(a[i]) - double(b[i])), 2 * unit_roundoff * bound[i] + 1e-7) << "element " << i;
    differ += a[i] != b[i];
  }
  EXPECT_GT(differ, 0) << "the hook did not round anything: was it called?";
  EXPECT_TRUE(same_on_all_ranks(*comm, b));
  EXPECT_EQ(compressed->stats().last_step_reductions, exact->stats().last_step_reductions);
}

DDP_TEST(Bf16CompressHookIsWithinBf16RoundingOfFloat32) {
  compressed_matches_float32(comm, distributed::bf16_compress_hook, 0x1p-8);
}
DDP_TEST(Fp16CompressHookIsWithinFp16RoundingOfFloat32) {
  compressed_matches_float32(comm, distributed::fp16_compress_hook, 0x1p-11);
}

DDP_TEST(CommHookSeesEveryBucketWithTheDivisor) {
  const int W = comm->world_size(), r = comm->rank();
  auto model = make_mlp(4);
  auto ddp = std::make_shared<nn::DistributedDataParallel>(model, comm, nn::DDPOptions().bucket_cap(0));
  std::vector<int64_t> seen;
  ddp->register_comm_hook([&](Communicator& c, const distributed::GradBucket& bucket) {
    seen.push_back(bucket.index);
    EXPECT_EQ(bucket.divisor, W);
    return distributed::allreduce_hook(c, bucket);
  });
  Data d = global_batch(0, W * 2);
  loss_of(*ddp, d.rows(r * 2, 2)).backward();
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_THROW(ddp->register_comm_hook(distributed::bf16_compress_hook), Error) << "only before the first backward";
}

}  // namespace
