// Communication hooks for DistributedDataParallel (PyTorch's register_comm_hook): a hook decides
// how one gradient bucket is reduced across the ranks.
//
//   ddp->register_comm_hook(distributed::bf16_compress_hook);   // before the first backward
//
// A hook is given the communicator and the bucket (this rank's gradients, flattened) and returns a
// Work; when that Work's wait() returns, bucket.buffer must hold the sum over ranks divided by
// bucket.divisor (the world size, or the number of ranks still training under join()). Every rank
// must register the same hook: the hook's collectives have to pair up across ranks. DDP calls it for
// every bucket of every synced backward, in bucket order, and also for the zero buckets a joined
// rank contributes (DistributedDataParallel::join), so a hook must not skip collectives.
//
// The compression hooks halve the bytes each rank sends: the bucket is rounded to bfloat16 or
// float16 (round to nearest even, by bit manipulation: core has no bf16/fp16 kernels yet) and stored
// as 16-bit patterns in a uint8 tensor. MPI, Gloo and NCCL cannot *sum* such raw patterns (to them
// they are bytes or integers), and MPI has no bf16/fp16 type at all, so the hooks all-gather every
// rank's compressed bucket and each rank sums the decompressed values in float32, in rank order
// (bit-identical on every rank). PyTorch's fp16_compress_hook instead all-reduces in float16 where
// the backend has that type (NCCL); ember can do that once core casts to float16 on the device.
// For 2 ranks the all-gather moves as many bytes per rank as the all-reduce would; for W ranks each
// rank receives (W-1) compressed buckets, so compression pays off on few ranks, on slow links.
// Accuracy: one rounding of each rank's gradient (relative error <= 2^-8 for bf16, 2^-11 for fp16
// in its normal range), then an exact-enough float32 sum. float16 overflows past 65504 (to inf)
// and flushes values below 2^-25 to zero; bf16 keeps float32's range.
// The compression hooks take float32 buckets on the CPU (the MPI and Gloo communicators).
#pragma once

#include <functional>
#include <memory>

#include "distributed/communicator.h"

namespace ember::distributed {

struct GradBucket {
  int64_t index = 0;  // position in DDP's bucket order
  Tensor buffer;      // [numel], contiguous: this rank's gradients in; the reduced result out
  int divisor = 1;    // the sum over ranks is divided by this
};

using CommHook = std::function<WorkHandle(Communicator& comm, const GradBucket& bucket)>;

// The default: an all-reduce (Mean when divisor is the world size, else Sum then a division).
WorkHandle allreduce_hook(Communicator& comm, const GradBucket& bucket);
// Compressed to bfloat16 / float16, all-gathered, summed in float32 (see above).
WorkHandle bf16_compress_hook(Communicator& comm, const GradBucket& bucket);
WorkHandle fp16_compress_hook(Communicator& comm, const GradBucket& bucket);

// A Work followed by a step that needs its result (decompress, divide): `then` runs exactly once,
// on the thread that first sees the inner work complete (in wait() or is_completed()).
class ThenWork final : public Work {
 public:
  ThenWork(WorkHandle inner, std::function<void()> then) : inner_(std::move(inner)), then_(std::move(then)) {}
  void wait() override {
    inner_->wait();
    run_then();
  }
  bool is_completed() override {
    if (!inner_->is_completed()) return false;
    run_then();
    return true;
  }

 private:
  void run_then() {
    if (!then_) return;
    auto f = std::move(then_);
    then_ = nullptr;
    f();
  }
  WorkHandle inner_;
  std::function<void()> then_;
};

}  // namespace ember::distributed
