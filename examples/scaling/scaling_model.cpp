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
  return s;
}

StepPrediction predict_step(const StepProfile& profile, int p, Algorithm a, const Link& link) {
  StepPrediction out;
  double last = 0;
  for (double b : profile.bucket_bytes) {
    last = allreduce_seconds(a, b, p, link);
    out.comm_s += last;
  }
  out.no_overlap_s = profile.compute_s() + out.comm_s;
  // Buckets before the last can run while backward is still computing; the last one cannot.
  out.overlap_s = profile.forward_s + std::max(profile.backward_s, out.comm_s - last) + last + profile.optimizer_s;
  return out;
}

const Link& link_for(int p, const Link& nvlink, const Link& infiniband) { return p <= 8 ? nvlink : infiniband; }

}  // namespace ember::examples::scaling
