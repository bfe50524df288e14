// The alpha-beta model of data-parallel step time behind `ember_scaling --project`
// (docs/scaling_model.md derives and discusses it, and lists the source of every assumed number).
// A model, not a measurement: it says how step time and scaling efficiency would change with the
// number of GPUs if communication behaved like the textbook ring and tree all-reduce on links of
// the given bandwidth and latency.
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
  // Gradient bytes of each DDP bucket, in launch order (the last one holds the first layers,
  // whose gradients exist only when backward ends).
  std::vector<double> bucket_bytes;
  // When each bucket became ready, in seconds after backward started (measured by DDP). Empty:
  // unknown, and predict_step assumes the buckets become ready evenly spread over backward.
  std::vector<double> bucket_ready_s;
  double compute_s() const { return forward_s + backward_s + optimizer_s; }
  double gradient_bytes() const;
  // Forward, backward and the ready times scaled by `compute_factor` (strong scaling, or another
  // GPU's step time); the optimizer is left alone.
  StepProfile scaled(double compute_factor) const;
};

struct StepPrediction {
  double comm_s = 0;        // every bucket's all-reduce, back to back
  double no_overlap_s = 0;  // compute + comm
  // With overlap: buckets go one after another on one communication channel; bucket i starts at
  // max(its ready time, the end of bucket i-1); the step is forward + max(backward, the end of the
  // last bucket) + optimizer.
  double overlap_s = 0;
};
StepPrediction predict_step(const StepProfile& profile, int p, Algorithm a, const Link& link);

// The machines a projection runs on: nodes of gpus_per_node GPUs joined by NVLink, each with
// nics_per_node network cards of nic_busbw each.
struct Cluster {
  Link nvlink;  // inside a node
  double nic_busbw_bytes_per_s = 0;
  int nics_per_node = 1;
  int gpus_per_node = 8;
  double internode_alpha_s = 0;
};

// The link an all-reduce over p GPUs sees: NVLink while p fits in one node. Beyond it, NCCL runs
// one ring (channel) per NIC, each crossing the node boundary through its own NIC, so the NICs of a
// node add up: busbw = min(NVLink busbw, nics_per_node * nic_busbw), with the inter-node latency.
Link link_for(int p, const Cluster& cluster);

}  // namespace ember::examples::scaling
