// The alpha-beta model of data-parallel step time behind `ember_scaling --project`
// (docs/scaling_model.md derives and discusses it). A model, not a measurement: it says how step
// time and scaling efficiency would change with the number of GPUs if communication behaved like
// the textbook ring and tree all-reduce on links of the given bandwidth and latency.
#pragma once

#include <string>
#include <vector>

namespace ember::examples::scaling {

// One interconnect: per-GPU bus bandwidth (the NCCL-tests "busbw": what a ring all-reduce
// achieves per link) and per-message latency alpha.
struct Link {
  std::string name;
  double busbw_bytes_per_s = 0;
  double alpha_s = 0;
};

enum class Algorithm { Ring, Tree };
const char* algorithm_name(Algorithm a);

// All-reduce of `bytes` over p ranks.
//   ring: 2(p-1)/p * bytes / busbw + 2(p-1) * alpha   (reduce-scatter then all-gather, 2(p-1) steps)
//   tree: 2 * bytes / busbw + 2 * log2(p) * alpha     (pipelined reduce up and broadcast down a
//                                                      binary tree: depth log2(p) each way)
// Both are 0 for p = 1.
double allreduce_seconds(Algorithm a, double bytes, int p, const Link& link);

// What one training step costs on one rank, measured without communication.
struct StepProfile {
  double forward_s = 0, backward_s = 0, optimizer_s = 0;
  // Gradient bytes of each DDP bucket, in the order the buckets become ready (the last one holds
  // the first layers, whose gradients exist only when backward ends).
  std::vector<double> bucket_bytes;
  double compute_s() const { return forward_s + backward_s + optimizer_s; }
  double gradient_bytes() const;
  StepProfile scaled(double compute_factor) const;  // forward and backward times scaled (strong scaling)
};

struct StepPrediction {
  double comm_s = 0;        // every bucket's all-reduce, back to back
  double no_overlap_s = 0;  // compute + comm
  double overlap_s = 0;     // forward + max(backward, comm - last bucket) + last bucket + optimizer
};
StepPrediction predict_step(const StepProfile& profile, int p, Algorithm a, const Link& link);

// Interconnect regime by world size: NVLink inside one 8-GPU box, InfiniBand beyond it (one NIC per
// GPU, so the inter-node link is the bottleneck of the whole ring or tree).
const Link& link_for(int p, const Link& nvlink, const Link& infiniband);

}  // namespace ember::examples::scaling
