// examples/scaling: a scaling experiment for DistributedDataParallel at the current world size.
//
//   mpirun -np 2 build/examples/ember_scaling --model cnn --mode both --project
//   mpirun -np 2 build/examples/ember_scaling --model lenet --first-bucket-mb 0.05 --bucket-cap-mb 0.1
//   mpirun -np 8 build/examples/ember_scaling --device cuda --model resnet
//
// It trains a network on synthetic data (MNIST's `cnn`, or a small CIFAR ResNet) and measures:
//   weak scaling   — fixed batch per rank (--batch-size): ideal is world_size times the samples/s;
//   strong scaling — fixed global batch (--global-batch), split over the ranks: ideal is the step
//                    time divided by world_size.
// Efficiency is samples/s / (world_size * baseline samples/s). The 1-rank baseline is measured in
// the same run: every rank trains the same workload at the same time through a one-rank
// communicator (so each has the share of the machine it has in the distributed run), or it is
// passed in (--baseline-weak / --baseline-strong, samples/s).
// Columns: time in backward (with DDP's hooks and the final wait), time blocked waiting for
// all-reduces (host time; on CUDA the host does not block, so it is near 0), the buckets'
// communication time per step and the share of it hidden behind backward (DDPStats: the part of
// each bucket's reduction that ran before the last gradient was ready), and the bus bandwidth an
// all-reduce of the gradient's size achieves (busbw = 2(p-1)/p * bytes / time, as NCCL-tests).
// Small models fit in DDP's 1 MiB first bucket: pass --first-bucket-mb and --bucket-cap-mb below
// their gradient size to get several buckets, and so overlap.
//
// --project: the alpha-beta model of examples/scaling/scaling_model.h (docs/scaling_model.md)
// projects step time and efficiency to 8..1024 GPUs over NVLink inside a node and the nodes' NICs
// between them, from the measured single-rank step profile (or --gpu-step-ms) and the measured
// times at which DDP's buckets became ready; and first checks the model against this run:
// predicted vs measured step time at 1 rank and at the current world size, with this machine's
// link (alpha and busbw fitted from the all-reduce measurements).
//
// --json FILE (rank 0 writes it; implies the projection's measurements, printed only with
// --project): the measured rows and the model's projection at 1, 2, 4 .. 1024 GPUs, which
// `scripts/plot.py scaling FILE -o scaling.png` draws. Its fields are listed at write_json below.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/ember.h"
#include "distributed/ddp.h"
#include "distributed/handshake.h"
#include "distributed/mpi_communicator.h"
#include "distributed/nccl_communicator.h"
#include "examples/scaling/local_communicator.h"
#include "examples/scaling/scaling_model.h"
#include "nn/models/models.h"
#include "nn/nn.h"
#include "optim/sgd.h"

using namespace ember;
using distributed::Communicator;
namespace F = ember::nn::functional;
namespace sm = ember::examples::scaling;

namespace {

struct Config {
  std::string model = "cnn";
  std::string mode = "both";
  std::string device = "cpu";
  int64_t batch_size = 32;    // per rank, weak scaling
  int64_t global_batch = 64;  // strong scaling
  int steps = 10, warmup = 2;
  int threads = 0;
  double bucket_cap_mb = 25, first_bucket_mb = 1;
  double baseline_weak = 0, baseline_strong = 0;  // samples/s; 0: measure
  bool project = false;
  double gpu_step_ms = 0;  // --project: this single-GPU step time instead of the measured one
  double nvlink_busbw_gbs = 370, nvlink_alpha_us = 3;
  // Sources of these defaults: docs/scaling_model.md, "Assumed numbers".
  double nic_busbw_gbs = 48, ib_alpha_us = 8;
  int nics_per_node = 8, gpus_per_node = 8;
  uint64_t seed = 1;
  std::string json;  // --json FILE
};

std::shared_ptr<nn::Module> make_model(const std::string& name) {
  if (name == "resnet") return nn::models::resnet8();  // 3 stages of one basic block: 16, 32, 64 channels
  return nn::models::create(name);
}
Shape sample_shape(const std::string& model) { return model == "resnet" ? Shape{3, 32, 32} : Shape{1, 28, 28}; }

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Per-step averages over the timed steps, averaged over the ranks.
struct Timing {
  double step_s = 0, forward_s = 0, backward_s = 0, comm_wait_s = 0, optimizer_s = 0;
  double comm_s = 0, comm_hidden_s = 0;  // buckets' communication, and the part hidden behind backward
  std::vector<double> bucket_bytes;      // in launch order
  std::vector<double> bucket_ready_s;    // when each bucket became ready, after backward started
  double gradient_bytes = 0;
  double overlap() const { return comm_s > 0 ? comm_hidden_s / comm_s : 0; }
};

Timing train_steps(const Config& c, const std::shared_ptr<Communicator>& comm, int64_t batch) {
  const Device device = comm->device();
  manual_seed(c.seed);
  auto model = make_model(c.model);
  model->to(device);
  auto ddp = std::make_shared<nn::DistributedDataParallel>(
      model, comm, nn::DDPOptions().bucket_cap(c.bucket_cap_mb).first_bucket(c.first_bucket_mb));
  optim::SGD opt(ddp->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  Generator g(c.seed + 1000 * comm->rank());
  Shape shape{batch};
  for (int64_t d : sample_shape(c.model)) shape.push_back(d);
  Tensor x = randn(shape, {}, &g).to(device);
  Tensor y = randint(0, 10, {batch}, TensorOptions(kInt64), &g).to(device);
  Backend& be = backend(device);

  Timing t;
  int ready_steps = 0;  // steps summed into t.bucket_ready_s (restarted if the buckets change)
  double start = 0;
  for (int i = 0; i < c.warmup + c.steps; ++i) {
    if (i == c.warmup) {
      be.synchronize();
      comm->barrier();
      start = now_s();
    }
    const double t0 = now_s();
    ddp->zero_grad();
    Tensor loss = F::cross_entropy(ddp->forward(x), y);
    be.synchronize();
    const double t1 = now_s();
    loss.backward();
    be.synchronize();
    const double t2 = now_s();
    opt.step();
    be.synchronize();
    const double t3 = now_s();
    if (i >= c.warmup) {
      t.forward_s += t1 - t0;
      t.backward_s += t2 - t1;
      t.optimizer_s += t3 - t2;
      const nn::DDPStats& s = ddp->stats();
      t.comm_wait_s += s.last_comm_wait_seconds;
      t.comm_s += s.last_comm_seconds;
      t.comm_hidden_s += s.last_comm_hidden_seconds;
      // Bucket ready times relative to this step's backward start (the same steady clock).
      if (s.last_buckets.size() != t.bucket_ready_s.size()) {  // the first step, or buckets rebuilt
        t.bucket_ready_s.assign(s.last_buckets.size(), 0);
        t.bucket_bytes.assign(s.last_buckets.size(), 0);
        ready_steps = 0;
      }
      for (size_t k = 0; k < s.last_buckets.size(); ++k) {
        t.bucket_ready_s[k] += s.last_buckets[k].ready_s - t1;
        t.bucket_bytes[k] = static_cast<double>(s.last_buckets[k].bytes);
      }
      ++ready_steps;
    }
  }
  t.step_s = (now_s() - start) / c.steps;
  for (double* v : {&t.forward_s, &t.backward_s, &t.optimizer_s, &t.comm_wait_s, &t.comm_s, &t.comm_hidden_s})
    *v /= c.steps;
  for (double& r : t.bucket_ready_s) r /= std::max(1, ready_steps);
  for (double b : t.bucket_bytes) t.gradient_bytes += b;
  return t;
}

// Averages a few numbers over the ranks of `comm` (on the host).
std::vector<double> average_over_ranks(Communicator& comm, const std::vector<double>& v) {
  if (comm.world_size() == 1) return v;
  Tensor t = from_vector<double>(v).to(comm.device());
  comm.all_reduce(t, ReduceOp::Mean);
  return t.to(kCPU).to_vector<double>();
}
Timing averaged(Communicator& comm, Timing t) {
  std::vector<double> v = average_over_ranks(
      comm, {t.step_s, t.forward_s, t.backward_s, t.comm_wait_s, t.optimizer_s, t.comm_s, t.comm_hidden_s});
  t.step_s = v[0], t.forward_s = v[1], t.backward_s = v[2], t.comm_wait_s = v[3], t.optimizer_s = v[4];
  t.comm_s = v[5], t.comm_hidden_s = v[6];
  if (!t.bucket_ready_s.empty()) t.bucket_ready_s = average_over_ranks(comm, t.bucket_ready_s);  // same buckets everywhere
  return t;
}

// Seconds per all-reduce (Average) of `bytes` over comm, averaged over `reps` after one warm-up.
double time_allreduce(Communicator& comm, double bytes, int reps) {
  const auto n = std::max<int64_t>(1, static_cast<int64_t>(bytes / 4));
  Tensor buf = ones({n}, TensorOptions(kFloat32).device(comm.device()));
  Backend& be = backend(comm.device());
  comm.all_reduce(buf, ReduceOp::Mean);
  be.synchronize();
  comm.barrier();
  const double t0 = now_s();
  for (int i = 0; i < reps; ++i) comm.all_reduce(buf, ReduceOp::Mean);
  be.synchronize();
  return average_over_ranks(comm, {(now_s() - t0) / reps})[0];
}

struct Row {
  std::string mode;
  int ranks;
  int64_t batch_per_rank;
  double samples_per_s, efficiency;
  Timing timing;
  double busbw_gbs;  // NaN: no communication
};

void print_table(const std::vector<Row>& rows) {
  std::printf("\n%-7s %5s %10s %12s %10s %9s %11s %11s %12s %8s %8s %8s %11s\n", "mode", "ranks", "batch/rank",
              "samples/s", "efficiency", "step ms", "forward ms", "backward ms", "comm wait ms", "buckets", "comm ms",
              "hidden", "busbw GB/s");
  for (const Row& r : rows) {
    char bw[32] = "-", hidden[32] = "-";
    if (!std::isnan(r.busbw_gbs)) std::snprintf(bw, sizeof bw, "%.3f", r.busbw_gbs);
    if (r.ranks > 1) std::snprintf(hidden, sizeof hidden, "%.1f%%", 100 * r.timing.overlap());
    std::printf("%-7s %5d %10lld %12.1f %9.1f%% %9.2f %11.2f %11.2f %12.2f %8zu %8.2f %8s %11s\n", r.mode.c_str(),
                r.ranks, static_cast<long long>(r.batch_per_rank), r.samples_per_s, 100 * r.efficiency,
                1e3 * r.timing.step_s, 1e3 * r.timing.forward_s, 1e3 * r.timing.backward_s, 1e3 * r.timing.comm_wait_s,
                r.timing.bucket_bytes.size(), 1e3 * r.timing.comm_s, hidden, bw);
  }
}

sm::StepProfile profile_of(const Timing& t) {
  sm::StepProfile p;
  p.forward_s = t.forward_s;
  p.backward_s = t.backward_s;
  p.optimizer_s = t.optimizer_s;
  p.bucket_bytes = t.bucket_bytes;
  p.bucket_ready_s = t.bucket_ready_s;
  return p;
}

// The model's profile of one GPU's step: the measured single-rank step, or --gpu-step-ms with the
// measured forward/backward/optimizer proportions.
sm::StepProfile projected_profile(const Config& c, const Timing& base) {
  sm::StepProfile prof = profile_of(base);
  if (c.gpu_step_ms > 0) {
    const double f = c.gpu_step_ms / 1e3 / prof.compute_s();
    prof = prof.scaled(f);
    prof.optimizer_s *= f;
  }
  return prof;
}
sm::Cluster cluster_of(const Config& c) {
  sm::Cluster cl;
  cl.nvlink = {"NVLink", c.nvlink_busbw_gbs * 1e9, c.nvlink_alpha_us * 1e-6};
  cl.nic_busbw_bytes_per_s = c.nic_busbw_gbs * 1e9;
  cl.nics_per_node = c.nics_per_node;
  cl.gpus_per_node = c.gpus_per_node;
  cl.internode_alpha_s = c.ib_alpha_us * 1e-6;
  return cl;
}

// One projected world size: weak scaling keeps the per-GPU step; strong scaling splits one GPU's
// step p ways (compute / p, the same gradients).
struct ProjectedPoint {
  sm::StepPrediction weak, strong;
  double weak_eff_none, weak_eff_overlap, strong_eff_overlap;
};
ProjectedPoint project(const sm::StepProfile& prof, int p, sm::Algorithm a, const sm::Link& link) {
  ProjectedPoint pt;
  pt.weak = sm::predict_step(prof, p, a, link);
  pt.strong = sm::predict_step(prof.scaled(1.0 / p), p, a, link);
  pt.weak_eff_none = prof.compute_s() / pt.weak.no_overlap_s;
  pt.weak_eff_overlap = prof.compute_s() / pt.weak.overlap_s;
  pt.strong_eff_overlap = prof.compute_s() / (p * pt.strong.overlap_s);
  return pt;
}

// Model vs measurement on this machine, then the projection to large GPU clusters.
void print_projection(const Config& c, int world, const Timing& base, const Timing* dist, const sm::Link* here) {
  std::printf("\nMODEL (alpha-beta, docs/scaling_model.md) — predictions, not measurements.\n");
  sm::StepProfile prof = profile_of(base);
  std::printf("check against this run (weak scaling, %lld per rank, %.2f MB of gradients in %zu buckets):\n",
              static_cast<long long>(c.batch_size), prof.gradient_bytes() / 1e6, prof.bucket_bytes.size());
  std::printf("  ranks 1: predicted %.2f ms (compute only), measured %.2f ms\n", 1e3 * prof.compute_s(),
              1e3 * base.step_s);
  if (dist != nullptr && here != nullptr) {
    const sm::StepPrediction ring = sm::predict_step(prof, world, sm::Algorithm::Ring, *here);
    std::printf(
        "  ranks %d: predicted %.2f ms without overlap, %.2f ms with overlap (ring, %s: busbw %.3f GB/s, "
        "alpha %.1f us); measured %.2f ms\n",
        world, 1e3 * ring.no_overlap_s, 1e3 * ring.overlap_s, here->name.c_str(), here->busbw_bytes_per_s / 1e9,
        1e6 * here->alpha_s, 1e3 * dist->step_s);
  }

  prof = projected_profile(c, base);
  const sm::Cluster cluster = cluster_of(c);
  const sm::Link across = sm::link_for(c.gpus_per_node + 1, cluster);
  std::printf(
      "\nprojection from a %.2f ms single-%s step (%.2f MB of gradients in %zu buckets, ready at the measured "
      "times): NVLink %.0f GB/s busbw, alpha %.1f us up to %d GPUs; beyond, %d NICs x %.0f GB/s per node: busbw "
      "%.0f GB/s, alpha %.1f us\n",
      1e3 * prof.compute_s(), c.gpu_step_ms > 0 ? "GPU" : "rank (measured here)", prof.gradient_bytes() / 1e6,
      prof.bucket_bytes.size(), c.nvlink_busbw_gbs, c.nvlink_alpha_us, c.gpus_per_node, c.nics_per_node,
      c.nic_busbw_gbs, across.busbw_bytes_per_s / 1e9, c.ib_alpha_us);
  std::printf("%6s %-10s %-5s %10s %14s %12s %13s %14s %13s\n", "GPUs", "link", "algo", "comm ms", "step ms (none)",
              "step ms (ovl)", "weak eff none", "weak eff ovl", "strong eff ovl");
  for (int p = 8; p <= 1024; p *= 2) {
    const sm::Link link = sm::link_for(p, cluster);
    for (sm::Algorithm a : {sm::Algorithm::Ring, sm::Algorithm::Tree}) {
      const ProjectedPoint pt = project(prof, p, a, link);
      std::printf("%6d %-10s %-5s %10.3f %14.3f %12.3f %12.1f%% %13.1f%% %13.1f%%\n", p, link.name.c_str(),
                  sm::algorithm_name(a), 1e3 * pt.weak.comm_s, 1e3 * pt.weak.no_overlap_s, 1e3 * pt.weak.overlap_s,
                  100 * pt.weak_eff_none, 100 * pt.weak_eff_overlap, 100 * pt.strong_eff_overlap);
    }
  }
}

// Fails before any measurement when the --json file cannot be written (rank 0 only).
void check_json_path(const std::string& path) {
  std::ofstream out(path, std::ios::app);
  EMBER_CHECK(out.good(), "--json: cannot open ", path, " for writing: ", std::strerror(errno));
}

// --json: everything scripts/plot.py scaling draws. Times in ms, bandwidths in GB/s, efficiencies
// as fractions (1 = ideal).
//   measured[]  one entry per row of the printed table: mode (weak | strong), ranks,
//               batch_per_rank, samples_per_second, efficiency, step_ms, forward_ms, backward_ms,
//               optimizer_ms, comm_wait_ms (host time blocked on all-reduces: the exposed
//               communication), buckets, comm_ms (the buckets' communication per step),
//               comm_hidden_ms (its part before the last gradient was ready), overlap
//               (comm_hidden_ms / comm_ms; null at 1 rank), bucket_ready_ms[] (when each
//               bucket became ready after backward started), busbw_gbs (null at 1 rank)
//   projection  the alpha-beta model (docs/scaling_model.md), a prediction: step_ms and its
//               source (measured here or --gpu-step-ms), gradient_mb, links[] (name, busbw_gbs,
//               alpha_us, up_to_gpus), cluster (gpus_per_node, nics_per_node, nic_busbw_gbs), and points[] for gpus = 1, 2, 4 .. 1024 and both algorithms:
//               link, algorithm, compute_ms, comm_ms, exposed_comm_ms (= step with overlap - compute),
//               step_ms_no_overlap, step_ms_overlap, weak_efficiency_no_overlap,
//               weak_efficiency_overlap, strong_efficiency_overlap
//   check       (world > 1) this machine's fitted link and the model's step time at this world
//               size beside the measured one
void write_json(const Config& c, int world, const std::string& comm_name, const std::vector<Row>& rows,
                const Timing& base, const Timing* dist, const sm::Link* here) {
  using nlohmann::json;
  auto ms = [](double s) { return 1e3 * s; };
  auto ready_ms = [&](const Timing& t) {
    json out = json::array();
    for (double r : t.bucket_ready_s) out.push_back(ms(r));
    return out;
  };
  json measured = json::array();
  for (const Row& r : rows) {
    const Timing& t = r.timing;
    measured.push_back({{"mode", r.mode}, {"ranks", r.ranks}, {"batch_per_rank", r.batch_per_rank},
                        {"samples_per_second", r.samples_per_s}, {"efficiency", r.efficiency},
                        {"step_ms", ms(t.step_s)}, {"forward_ms", ms(t.forward_s)}, {"backward_ms", ms(t.backward_s)},
                        {"optimizer_ms", ms(t.optimizer_s)}, {"comm_wait_ms", ms(t.comm_wait_s)},
                        {"buckets", t.bucket_bytes.size()}, {"comm_ms", ms(t.comm_s)},
                        {"comm_hidden_ms", ms(t.comm_hidden_s)},
                        {"overlap", r.ranks > 1 ? json(t.overlap()) : json(nullptr)},
                        {"bucket_ready_ms", ready_ms(t)},
                        {"busbw_gbs", std::isnan(r.busbw_gbs) ? json(nullptr) : json(r.busbw_gbs)}});
  }
  const sm::StepProfile prof = projected_profile(c, base);
  const sm::Cluster cluster = cluster_of(c);
  json points = json::array();
  for (int p = 1; p <= 1024; p *= 2) {
    const sm::Link link = sm::link_for(p, cluster);
    for (sm::Algorithm a : {sm::Algorithm::Ring, sm::Algorithm::Tree}) {
      const ProjectedPoint pt = project(prof, p, a, link);
      points.push_back({{"gpus", p}, {"link", link.name}, {"algorithm", sm::algorithm_name(a)},
                        {"compute_ms", ms(prof.compute_s())}, {"comm_ms", ms(pt.weak.comm_s)},
                        {"exposed_comm_ms", ms(pt.weak.overlap_s - prof.compute_s())},
                        {"step_ms_no_overlap", ms(pt.weak.no_overlap_s)}, {"step_ms_overlap", ms(pt.weak.overlap_s)},
                        {"weak_efficiency_no_overlap", pt.weak_eff_none},
                        {"weak_efficiency_overlap", pt.weak_eff_overlap},
                        {"strong_efficiency_overlap", pt.strong_eff_overlap}});
    }
  }
  auto link_json = [](const sm::Link& l, int up_to) {
    return json{{"name", l.name}, {"busbw_gbs", l.busbw_bytes_per_s / 1e9}, {"alpha_us", 1e6 * l.alpha_s},
                {"up_to_gpus", up_to}};
  };
  json out = {{"schema", "ember_scaling/1"},
              {"model", c.model},
              {"device", c.device},
              {"communicator", comm_name},
              {"world_size", world},
              {"steps", c.steps},
              {"warmup", c.warmup},
              {"measured", measured},
              {"projection",
               {{"note", "alpha-beta model (docs/scaling_model.md): predictions, not measurements"},
                {"step_ms", ms(prof.compute_s())},
                {"step_source", c.gpu_step_ms > 0 ? "--gpu-step-ms" : "measured single-rank step"},
                {"gradient_mb", prof.gradient_bytes() / 1e6},
                {"links", {link_json(cluster.nvlink, c.gpus_per_node), link_json(sm::link_for(1024, cluster), 1024)}},
                {"cluster",
                 {{"gpus_per_node", c.gpus_per_node}, {"nics_per_node", c.nics_per_node},
                  {"nic_busbw_gbs", c.nic_busbw_gbs}}},
                {"points", points}}}};
  if (dist != nullptr && here != nullptr) {
    const sm::StepPrediction ring = sm::predict_step(profile_of(base), world, sm::Algorithm::Ring, *here);
    out["check"] = {{"ranks", world}, {"link", link_json(*here, world)},
                    {"predicted_step_ms_no_overlap", ms(ring.no_overlap_s)},
                    {"predicted_step_ms_overlap", ms(ring.overlap_s)}, {"measured_step_ms", ms(dist->step_s)}};
  }
  std::ofstream f(c.json, std::ios::trunc);
  f << out.dump(2) << '\n';
  f.close();
  EMBER_CHECK(!f.fail(), "--json: writing ", c.json, " failed: ", std::strerror(errno));
  std::printf("\nwrote %s (scripts/plot.py scaling %s -o scaling.png draws it)\n", c.json.c_str(), c.json.c_str());
}

int run(const Config& c, const std::shared_ptr<Communicator>& comm) {
  const int world = comm->world_size(), rank = comm->rank();
  const bool weak = c.mode != "strong", strong = c.mode != "weak";
  EMBER_CHECK(!strong || c.global_batch % world == 0, "--global-batch ", c.global_batch,
              " must be a multiple of the world size ", world);
  if (rank == 0 && !c.json.empty()) check_json_path(c.json);
  auto local = std::make_shared<examples::LocalCommunicator>(comm->device());
  std::vector<Row> rows;
  Timing weak_base, weak_dist;
  bool have_dist = false;
  if (rank == 0)
    std::printf("%d ranks (%s on %s), model %s, %d timed steps after %d warm-up\n", world, comm->name().c_str(),
                comm->device().str().c_str(), c.model.c_str(), c.steps, c.warmup);

  // Measures the one-rank baseline (on every rank at once) and the distributed run for one mode.
  auto measure = [&](const std::string& mode, int64_t base_batch, int64_t batch_per_rank, double given_baseline) {
    comm->barrier();  // the ranks run their baselines side by side
    Timing base = averaged(*comm, train_steps(c, local, base_batch));
    const double base_sps = given_baseline > 0 ? given_baseline : base_batch / base.step_s;
    rows.push_back({mode, 1, base_batch, base_sps, 1.0, base, NAN});
    if (mode == "weak") weak_base = base;
    if (world == 1) return;
    Timing dist = averaged(*comm, train_steps(c, comm, batch_per_rank));
    const double busbw =
        2.0 * (world - 1) / world * dist.gradient_bytes / time_allreduce(*comm, dist.gradient_bytes, 5);
    const double sps = world * batch_per_rank / dist.step_s;
    rows.push_back({mode, world, batch_per_rank, sps, sps / (world * base_sps), dist, busbw / 1e9});
    if (mode == "weak") weak_dist = dist, have_dist = true;
  };
  if (weak) measure("weak", c.batch_size, c.batch_size, c.baseline_weak);
  if (strong) measure("strong", c.global_batch, c.global_batch / world, c.baseline_strong);
  if (rank == 0) print_table(rows);

  if (c.project || !c.json.empty()) {
    if (!weak) weak_base = averaged(*comm, train_steps(c, local, c.batch_size));
    // This machine's link, fitted from a tiny and a gradient-sized all-reduce (ring model).
    std::unique_ptr<sm::Link> here;
    if (world > 1) {
      const double small = time_allreduce(*comm, 4, 50);
      const double big = time_allreduce(*comm, weak_base.gradient_bytes, 5);
      const double alpha = small / (2.0 * (world - 1));
      const double busbw = 2.0 * (world - 1) / world * weak_base.gradient_bytes / std::max(1e-9, big - small);
      here = std::make_unique<sm::Link>(sm::Link{comm->name() + " here", busbw, alpha});
    }
    if (rank == 0 && c.project) print_projection(c, world, weak_base, have_dist ? &weak_dist : nullptr, here.get());
    if (rank == 0 && !c.json.empty())
      write_json(c, world, comm->name(), rows, weak_base, have_dist ? &weak_dist : nullptr, here.get());
  }
  return 0;
}

// Under MPI, every rank must ask for the same kind of communicator: the --device flags are
// compared over MPI first, so a cuda rank among cpu ranks is an error instead of two kinds of
// start-up waiting for each other.
std::shared_ptr<Communicator> make_communicator(const std::string& device) {
  const bool cuda = device == "cuda";
  if (!distributed::MpiEnvironment::available())
    return cuda ? distributed::make_nccl_communicator() : std::make_shared<examples::LocalCommunicator>(kCPU);
  auto mpi = distributed::make_mpi_communicator();
  distributed::check_same_values_on_all_ranks(*mpi, {cuda}, {"--device (0 = cpu, 1 = cuda)"}, "ember_scaling start-up",
                                              " (every rank must be started with the same flags)");
  if (cuda) return distributed::make_nccl_communicator();
  return mpi;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Weak and strong scaling of DistributedDataParallel at this world size (launch with mpirun -np N)"};
  app.add_option("--model", c.model, "cnn | lenet (MNIST) | resnet (small CIFAR ResNet); synthetic data")
      ->check(CLI::IsMember({"cnn", "lenet", "resnet"}));
  app.add_option("--mode", c.mode, "weak | strong | both")->check(CLI::IsMember({"weak", "strong", "both"}));
  app.add_option("--device", c.device, "cpu (MPI) | cuda (NCCL, GPU = local rank)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--batch-size", c.batch_size, "weak scaling: samples per rank per step")->check(CLI::PositiveNumber);
  app.add_option("--global-batch", c.global_batch, "strong scaling: samples per step over all ranks")
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", c.steps, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", c.warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", c.threads, "CPU threads per rank for kernels")->check(CLI::NonNegativeNumber);
  app.add_option("--bucket-cap-mb", c.bucket_cap_mb, "DDP bucket size in MiB")->check(CLI::NonNegativeNumber);
  app.add_option("--first-bucket-mb", c.first_bucket_mb, "DDP's first (smaller) bucket in MiB")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--baseline-weak", c.baseline_weak, "1-rank samples/s for weak scaling (default: measure)");
  app.add_option("--baseline-strong", c.baseline_strong, "1-rank samples/s for strong scaling (default: measure)");
  app.add_flag("--project", c.project, "project to 8..1024 GPUs with the alpha-beta model (docs/scaling_model.md)");
  app.add_option("--gpu-step-ms", c.gpu_step_ms, "--project: single-GPU step time to use instead of the measured one");
  app.add_option("--nvlink-busbw", c.nvlink_busbw_gbs, "--project: NVLink bus bandwidth per GPU, GB/s");
  app.add_option("--nvlink-alpha-us", c.nvlink_alpha_us, "--project: NVLink all-reduce step latency, us");
  app.add_option("--nic-busbw", c.nic_busbw_gbs, "--project: bus bandwidth one NIC sustains, GB/s");
  app.add_option("--nics-per-node", c.nics_per_node, "--project: network cards per node")->check(CLI::PositiveNumber);
  app.add_option("--gpus-per-node", c.gpus_per_node, "--project: GPUs per node (NVLink inside)")
      ->check(CLI::PositiveNumber);
  app.add_option("--ib-alpha-us", c.ib_alpha_us, "--project: inter-node all-reduce step latency, us");
  app.add_option("--seed", c.seed, "seeds the model and the synthetic data");
  app.add_option("--json", c.json, "write the measured rows and the projection to 1024 GPUs to this file (rank 0)");
  CLI11_PARSE(app, argc, argv);

  if (distributed::MpiEnvironment::available()) distributed::MpiEnvironment::init(&argc, &argv);
  // A rank failing before its communicator exists aborts the job: the others may be waiting for it.
  std::shared_ptr<Communicator> comm = distributed::run_guarded_startup([&] {
    if (c.threads > 0) set_num_threads(c.threads);
    return make_communicator(c.device);
  });
  return distributed::run_guarded(*comm, [&] { return run(c, comm); });
}
