// The alpha-beta model of examples/scaling/scaling_model.h (docs/scaling_model.md): its formulas on
// numbers worked out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "examples/scaling/scaling_model.h"

namespace {

using namespace ember::examples::scaling;

TEST(ScalingModel, RingAndTreeAllReduce) {
  const Link link{"test", 1e9, 1e-6};  // 1 GB/s, 1 us per step
  EXPECT_EQ(allreduce_seconds(Algorithm::Ring, 1e6, 1, link), 0.0);
  // ring, p = 4: 2 * 3/4 * 1e6 / 1e9 + 2 * 3 * 1e-6 = 1.5 ms + 6 us
  EXPECT_DOUBLE_EQ(allreduce_seconds(Algorithm::Ring, 1e6, 4, link), 1.5e-3 + 6e-6);
  // tree, p = 8: 2 * 1e6 / 1e9 + 2 * 3 * 1e-6 = 2 ms + 6 us
  EXPECT_DOUBLE_EQ(allreduce_seconds(Algorithm::Tree, 1e6, 8, link), 2e-3 + 6e-6);
}

TEST(ScalingModel, NicsOfANodeAddUpBeyondOneNode) {
  Cluster c;
  c.nvlink = {"NVLink", 370e9, 3e-6};
  c.nic_busbw_bytes_per_s = 48e9;
  c.nics_per_node = 8;
  c.gpus_per_node = 8;
  c.internode_alpha_s = 8e-6;
  EXPECT_EQ(link_for(8, c).name, "NVLink");
  const Link across = link_for(16, c);
  // 8 NICs x 48 GB/s = 384 GB/s: NVLink (370) is then the bottleneck, not one NIC (48).
  EXPECT_DOUBLE_EQ(across.busbw_bytes_per_s, 370e9);
  EXPECT_DOUBLE_EQ(across.alpha_s, 8e-6);
  c.nics_per_node = 4;  // half the NICs: half the bandwidth
  EXPECT_DOUBLE_EQ(link_for(1024, c).busbw_bytes_per_s, 192e9);
  c.nics_per_node = 1;
  EXPECT_DOUBLE_EQ(link_for(9, c).busbw_bytes_per_s, 48e9);
}

// Three buckets of 3 ms each (p = 2, ring: bytes / busbw) ready at 1, 2 and 10 ms of a 10 ms backward.
StepProfile three_buckets() {
  StepProfile p;
  p.forward_s = 5e-3;
  p.backward_s = 10e-3;
  p.optimizer_s = 1e-3;
  p.bucket_bytes = {3e6, 3e6, 3e6};
  p.bucket_ready_s = {1e-3, 2e-3, 10e-3};
  return p;
}
const Link kGigabyte{"1 GB/s", 1e9, 0};

TEST(ScalingModel, OverlapStartsEachBucketWhenItIsReadyAndTheChannelIsFree) {
  const StepPrediction s = predict_step(three_buckets(), 2, Algorithm::Ring, kGigabyte);
  EXPECT_DOUBLE_EQ(s.comm_s, 9e-3);
  EXPECT_DOUBLE_EQ(s.no_overlap_s, 16e-3 + 9e-3);
  // bucket 1: 1 -> 4 ms; bucket 2: ready at 2, starts at 4 -> 7; bucket 3: ready at 10 -> 13 ms.
  EXPECT_DOUBLE_EQ(s.overlap_s, 5e-3 + 13e-3 + 1e-3);
}

TEST(ScalingModel, LateReadyTimesHideLess) {
  StepProfile early = three_buckets(), late = three_buckets();
  early.bucket_ready_s = {0, 0, 10e-3};  // the old "from the start of backward" assumption
  late.bucket_ready_s = {9e-3, 9.5e-3, 10e-3};
  // early: 0 -> 3 -> 6, last 10 -> 13; late: 9 -> 12 -> 15 -> 18.
  EXPECT_DOUBLE_EQ(predict_step(early, 2, Algorithm::Ring, kGigabyte).overlap_s, 5e-3 + 13e-3 + 1e-3);
  EXPECT_DOUBLE_EQ(predict_step(late, 2, Algorithm::Ring, kGigabyte).overlap_s, 5e-3 + 18e-3 + 1e-3);
  // Without measured times the buckets are assumed evenly spread over backward: ready at B/3, 2B/3, B.
  StepProfile unknown = three_buckets();
  unknown.bucket_ready_s.clear();
  const double b = 10e-3;
  const double end = std::max(std::max(b / 3 + 3e-3, 2 * b / 3) + 3e-3, b) + 3e-3;
  EXPECT_DOUBLE_EQ(predict_step(unknown, 2, Algorithm::Ring, kGigabyte).overlap_s, 5e-3 + end + 1e-3);
  // One rank communicates nothing: the step is the compute.
  EXPECT_DOUBLE_EQ(predict_step(three_buckets(), 1, Algorithm::Ring, kGigabyte).overlap_s, 16e-3);
}

TEST(ScalingModel, StrongScalingScalesComputeAndReadyTimes) {
  const StepProfile half = three_buckets().scaled(0.5);
  EXPECT_DOUBLE_EQ(half.forward_s, 2.5e-3);
  EXPECT_DOUBLE_EQ(half.backward_s, 5e-3);
  EXPECT_DOUBLE_EQ(half.optimizer_s, 1e-3);
  EXPECT_EQ(half.bucket_ready_s, (std::vector<double>{0.5e-3, 1e-3, 5e-3}));
  EXPECT_DOUBLE_EQ(half.gradient_bytes(), 9e6);
}

}  // namespace
