#include "examples/scaling/scaling_model.h"

#include <algorithm>
#include <cmath>

namespace ember::examples::scaling {

const char* algorithm_name(Algorithm a) { return a == Algorithm::Ring ? "ring" : "tree"; }

double allreduce_seconds(Algorithm a, double bytes, int p, const Link& link) {
  if (p <= 1) return 0;
  if (a == Algorithm::Ring) return 2.0 * (p - 1) / p * bytes / link.busbw_bytes_per_s + 2.0 * (p - 1) * link.alpha_s;
  return 2.0 * bytes / link.busbw_bytes_per_s + 2.0 * std::log2(static_cast<double>(p)) * link.alpha_s;
}

double StepProfile::gradient_bytes() const {
  double total = 0;
  for (double b : bucket_bytes) total += b;
  return total;
}

StepProfile StepProfile::scaled(double compute_factor) const {
  StepProfile s = *this;
  s.forward_s *= compute_factor;
  s.backward_s *= compute_factor;
  for (double& t : s.bucket_ready_s) t *= compute_factor;
  return s;
}

StepPrediction predict_step(const StepProfile& profile, int p, Algorithm a, const Link& link) {
  StepPrediction out;
  const size_t k = profile.bucket_bytes.size();
  const bool measured = profile.bucket_ready_s.size() == k;
  double end = 0;  // when the communication channel is next free, in seconds after backward started
  for (size_t i = 0; i < k; ++i) {
    const double t = allreduce_seconds(a, profile.bucket_bytes[i], p, link);
    const double ready = measured ? profile.bucket_ready_s[i] : profile.backward_s * (i + 1) / k;
    end = std::max(end, ready) + t;
    out.comm_s += t;
  }
  out.no_overlap_s = profile.compute_s() + out.comm_s;
  out.overlap_s = profile.forward_s + std::max(profile.backward_s, end) + profile.optimizer_s;
  return out;
}

Link link_for(int p, const Cluster& cluster) {
  if (p <= cluster.gpus_per_node) return cluster.nvlink;
  const double nics = cluster.nics_per_node * cluster.nic_busbw_bytes_per_s;
  return Link{"IB " + std::to_string(cluster.nics_per_node) + "xNIC",
              std::min(cluster.nvlink.busbw_bytes_per_s, nics), cluster.internode_alpha_s};
}

}  // namespace ember::examples::scaling
