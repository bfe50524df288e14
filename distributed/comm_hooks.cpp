// The communication hooks of comm_hooks.h.
#include "distributed/comm_hooks.h"

#include <cstring>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/half.h"

namespace ember::distributed {

WorkHandle allreduce_hook(Communicator& comm, const GradBucket& bucket) {
  if (bucket.divisor == comm.world_size()) return comm.all_reduce_async(bucket.buffer, ReduceOp::Mean);
  WorkHandle sum = comm.all_reduce_async(bucket.buffer, ReduceOp::Sum);
  return std::make_shared<ThenWork>(sum, [buffer = bucket.buffer, divisor = bucket.divisor] {
    NoGradGuard no_grad;
    Tensor(buffer).div_(static_cast<double>(divisor));
  });
}

namespace {

using Encode = uint16_t (*)(float);
using Decode = float (*)(uint16_t);

// Rounds the bucket to 16 bits per value, all-gathers every rank's, and sums them back in float32.
WorkHandle compressed_hook(Communicator& comm, const GradBucket& bucket, const char* name, Encode encode,
                           Decode decode) {
  const Tensor& buffer = bucket.buffer;
  EMBER_CHECK(buffer.dtype() == kFloat32 && buffer.device().is_cpu() && buffer.is_contiguous(), name,
              ": takes a contiguous float32 CPU bucket, got ", dtype_name(buffer.dtype()), " on ", buffer.device(),
              " (core has no float16/bfloat16 kernels on CUDA yet)");
  const int64_t n = buffer.numel();
  const int world = comm.world_size();
  // 16-bit patterns in a byte tensor: every communicator moves uint8, and an all-gather only moves.
  Tensor packed = empty({2 * n}, TensorOptions(kUInt8).device(comm.device()));
  const float* src = buffer.data<float>();
  auto* out = static_cast<unsigned char*>(packed.data_ptr());
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = encode(src[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
  Tensor gathered = empty({world * 2 * n}, TensorOptions(kUInt8).device(comm.device()));
  WorkHandle gather = comm.all_gather_async(packed, gathered);
  return std::make_shared<ThenWork>(gather, [buffer, gathered, n, world, divisor = bucket.divisor, decode] {
    float* dst = buffer.data<float>();
    const auto* all = static_cast<const unsigned char*>(gathered.data_ptr());
    for (int64_t i = 0; i < n; ++i) {
      float sum = 0;  // rank order on every rank: the same float32 sum everywhere
      for (int r = 0; r < world; ++r) {
        uint16_t h;
        std::memcpy(&h, all + 2 * (r * n + i), 2);
        sum += decode(h);
      }
      dst[i] = sum / static_cast<float>(divisor);
    }
  });
}

}  // namespace

WorkHandle bf16_compress_hook(Communicator& comm, const GradBucket& bucket) {
  return compressed_hook(comm, bucket, "bf16_compress_hook", half_bits::float_to_bfloat16, half_bits::bfloat16_to_float);
}

WorkHandle fp16_compress_hook(Communicator& comm, const GradBucket& bucket) {
  return compressed_hook(comm, bucket, "fp16_compress_hook", half_bits::float_to_float16, half_bits::float16_to_float);
}

}  // namespace ember::distributed
