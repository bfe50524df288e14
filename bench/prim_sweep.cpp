// ember_prim_sweep: ember's own CPU kernels for pooling, batch norm and ReLU beside the matching
// oneDNN 2.6 primitives, on every such layer of the benchmark networks (the networks of
// bench/model_shapes.h; cases() below lists the layers): the sweep behind which of the two each
// pass takes (issue 17).
//
//   build/bench/ember_prim_sweep [--threads 2] [--reps 7] [--model lenet]
//
// Passes, float32 NCHW, training:
//   maxpool2x2   max pooling 2x2 stride 2, forward (with indices / workspace) and backward
//   avgpool1x1   adaptive average pooling to 1x1 (ResNet's head), forward and backward
//   batchnorm    batch norm with batch statistics and an affine weight and bias: forward (mean,
//                variance, normalise, and the running statistics) and backward (input, weight
//                and bias gradients)
//   relu         ReLU forward and backward (the backward from the output, as ember's relu saves)
// The ember column calls the backend kernels the ops reach (pool_kernels(kCPU), norm_kernels(kCPU),
// backend(kCPU).unary / binary): ember's own kernels, since none of these passes is routed to oneDNN.
// oneDNN runs its primitive on the same data in two layouts: plain nchw (ember's layout, so no
// reorder), and nChw8c, the blocked layout of its AVX2 kernels, timed alone ("blk") as a
// diagnostic and with the reorders from and back to nchw ("blk+ro") that ember would have to pay.
// The decision ("faster", "slower/faster") compares ember with the better of nchw and blk+ro.
//
// Each time is the median of --reps calls after one warm-up call, the four paths timed interleaved
// (see median_ms); GB/s counts each tensor the pass must read or write once (the minimum traffic:
// ember's int64 indices and oneDNN's workspace are not counted). Before timing, each pass is run
// once on both sides and the largest difference between ember's and oneDNN's outputs, relative to
// the largest output magnitude, is printed ("diff"); max pooling also checks that both picked the
// same element of every window, and max pooling and ReLU run once more with NaNs planted in the
// input: "NaN: differs" means oneDNN's answer is not ember's (ember follows PyTorch: a NaN wins a
// max-pool window, relu(NaN) is NaN and its gradient passes through).
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bench/bench_args.h"
#include "core/backend.h"
#include "core/cpu/cpu_matmul.h"
#include "core/ember.h"
#include "core/kernels/norm_kernels.h"
#include "core/kernels/pool_kernels.h"

using namespace ember;
using namespace ember::bench;
using dnnl::memory;
using Tag = memory::format_tag;

namespace {

const Args kArgs("ember_prim_sweep", "ember_prim_sweep [--threads N] [--reps N] [--model NAME]");
constexpr auto kF32 = memory::data_type::f32;
constexpr float kEps = 1e-5f;
constexpr double kMomentum = 0.1;

dnnl::engine& eng() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& strm() {
  static dnnl::stream s(eng());
  return s;
}

// The median milliseconds of each of `fns`, timed interleaved: one warm-up call each, then `reps`
// rounds that call each once in turn. Interleaving matters on this machine: whichever path was
// timed first after a pause ran up to 1.3x slower (threads waking up, clocks ramping), which a
// path-after-path loop would charge to the same path every time.
std::vector<double> median_ms(int reps, const std::vector<std::function<void()>>& fns) {
  for (const auto& f : fns) f();
  std::vector<std::vector<double>> t(fns.size());
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < fns.size(); ++i) {
      const auto a = std::chrono::steady_clock::now();
      fns[i]();
      t[i].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    }
  std::vector<double> m;
  for (auto& v : t) {
    std::sort(v.begin(), v.end());
    m.push_back(v[v.size() / 2]);
  }
  return m;
}

// A layer's tensor: [n, c, h, w] (the MLP's activations are [n, c, 1, 1]).
struct Case {
  const char* model;
  const char* where;  // which layers of the model have this shape
  const char* op;     // maxpool2x2, avgpool1x1, batchnorm, relu
  int64_t n, c, h, w;
};

// The pooling, batch-norm and ReLU layers of the benchmark networks (nn/models/mnist.cpp,
// nn/models/resnet.cpp), one row per distinct shape.
std::vector<Case> cases() {
  std::vector<Case> v = {
      {"mlp", "fc1/fc2 relu", "relu", 128, 512, 1, 1},
      {"lenet", "conv1 pool", "maxpool2x2", 64, 10, 24, 24},
      {"lenet", "relu1", "relu", 64, 10, 12, 12},
      {"lenet", "conv2 pool", "maxpool2x2", 64, 20, 8, 8},
      {"lenet", "relu2", "relu", 64, 20, 4, 4},
      {"lenet", "fc1 relu", "relu", 64, 50, 1, 1},
      {"cnn", "conv1 relu", "relu", 64, 32, 26, 26},
      {"cnn", "conv2 relu", "relu", 64, 64, 24, 24},
      {"cnn", "conv2 pool", "maxpool2x2", 64, 64, 24, 24},
      {"cnn", "fc1 relu", "relu", 64, 128, 1, 1},
  };
  for (int64_t b : {128, 32}) {
    const char* m = b == 128 ? "resnet20_b128" : "resnet20_b32";
    for (const char* op : {"batchnorm", "relu"}) {
      v.push_back({m, "stem+stage1 (7x)", op, b, 16, 32, 32});
      v.push_back({m, "stage2 (bn 7x, relu 6x)", op, b, 32, 16, 16});
      v.push_back({m, "stage3 (bn 7x, relu 6x)", op, b, 64, 8, 8});
    }
    v.push_back({m, "head", "avgpool1x1", b, 64, 8, 8});
  }
  return v;
}

// Largest |a - b| relative to the largest |b| (1 when both are zero everywhere: no information).
double rel_diff(const float* a, const float* b, int64_t n) {
  double d = 0, m = 0;
  for (int64_t i = 0; i < n; ++i) {
    d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::fabs(b[i])));
  }
  return m > 0 ? d / m : d;
}

// Whether a and b hold the same values with NaN in the same places (a NaN-semantics check).
bool same_with_nans(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(a[i]) != std::isnan(b[i]) || (!std::isnan(a[i]) && a[i] != b[i])) return false;
  return true;
}

// One oneDNN primitive with its arguments, in the nchw layout or the blocked one. For the blocked
// run, `to_blocked` are the reorders of the nchw inputs and `from_blocked` those of the outputs.
struct Run {
  dnnl::primitive prim;
  std::unordered_map<int, memory> args;
  std::vector<std::pair<memory, memory>> to_blocked, from_blocked;
  void exec() {
    prim.execute(strm(), args);
    strm().wait();
  }
  void exec_with_reorders() {
    for (auto& [a, b] : to_blocked) dnnl::reorder(a, b).execute(strm(), a, b);
    prim.execute(strm(), args);
    for (auto& [a, b] : from_blocked) dnnl::reorder(a, b).execute(strm(), a, b);
    strm().wait();
  }
};

// A float buffer for oneDNN, kept alive by the Tensor list.
struct Buffers {
  std::vector<Tensor> keep;
  memory make(const memory::desc& d) {
    keep.push_back(empty({static_cast<int64_t>(d.get_size() / 4 + 1)}, TensorOptions(kFloat32)));
    return memory(d, eng(), keep.back().data_ptr());
  }
  // A plain nchw memory on an ember tensor's data (no copy).
  memory wrap(const memory::desc& d, const Tensor& t) { return memory(d, eng(), t.data_ptr()); }
  // A blocked copy of the nchw memory `plain` (filled now, and by each exec_with_reorders).
  memory blocked_input(Run& r, memory plain, Tag tag) {
    memory b = make(memory::desc(plain.get_desc().dims(), kF32, tag));
    dnnl::reorder(plain, b).execute(strm(), plain, b);
    strm().wait();
    r.to_blocked.push_back({plain, b});
    return b;
  }
};

// A pass on oneDNN in both layouts: plain NCHW (the _p runs and outputs) and blocked nChw8c with
// reorders (_b). make(tag, buf, fwd, bwd, y_out, gx_out) builds one layout's forward and backward
// runs; what it returns for NCHW, if anything (max pooling's workspace), is kept in plain_extra.
struct Layouts {
  Buffers buf;
  Run fwd_p, bwd_p, fwd_b, bwd_b;
  Tensor y_p, gx_p, y_b, gx_b;
  memory plain_extra;
  template <typename Make>
  Layouts(const Tensor& x, const Tensor& y, Make&& make)
      : y_p(empty(y.shape())), gx_p(empty(x.shape())), y_b(empty(y.shape())), gx_b(empty(x.shape())) {
    if constexpr (std::is_void_v<decltype(make(Tag::nchw, buf, fwd_p, bwd_p, y_p, gx_p))>)
      make(Tag::nchw, buf, fwd_p, bwd_p, y_p, gx_p);
    else
      plain_extra = make(Tag::nchw, buf, fwd_p, bwd_p, y_p, gx_p);
    make(Tag::nChw8c, buf, fwd_b, bwd_b, y_b, gx_b);
  }
};

struct Row {
  double ember = 0, nchw = 0, blk = 0, blk_ro = 0, diff = 0;
  std::string note;
  // Times the four paths interleaved (see median_ms).
  void time(int reps, std::function<void()> e, std::function<void()> n, std::function<void()> b,
            std::function<void()> bro) {
    const std::vector<double> m = median_ms(reps, {std::move(e), std::move(n), std::move(b), std::move(bro)});
    ember = m[0];
    nchw = m[1];
    blk = m[2];
    blk_ro = m[3];
  }
};

void print_row(const Case& c, const char* pass, const Row& r, double bytes) {
  const double best = std::min(r.nchw, r.blk_ro);
  const bool onednn = best < r.ember;
  std::printf("| %s | %s [%lld,%lld,%lld,%lld] | %s | %s | %.4f | %.4f | %.4f | %.4f | %.1f | %.1f | %.1e%s | %s | %.2f |\n",
              c.model, c.where, static_cast<long long>(c.n), static_cast<long long>(c.c), static_cast<long long>(c.h),
              static_cast<long long>(c.w), c.op, pass, r.ember, r.nchw, r.blk, r.blk_ro, bytes / r.ember * 1e-6,
              bytes / best * 1e-6, r.diff, r.note.c_str(), onednn ? (r.nchw <= r.blk_ro ? "onednn nchw" : "onednn blk")
                                                                     : "ember",
              onednn ? r.ember / best : best / r.ember);
  std::fflush(stdout);
}

// ---------------- max pooling 2x2 stride 2 ----------------

void sweep_maxpool(const Case& c, int reps) {
  const int64_t OH = c.h / 2, OW = c.w / 2;
  const Tensor x = randn({c.n, c.c, c.h, c.w});
  const Tensor y = empty({c.n, c.c, OH, OW}), idx = empty({c.n, c.c, OH, OW}, TensorOptions(kInt64));
  const Tensor gy = randn({c.n, c.c, OH, OW}), gx = empty(x.shape());
  const Window2d win{2, 2, 2, 2, 0, 0, 1, 1};
  PoolKernels& pk = pool_kernels(kCPU);

  const memory::dims src_d = {c.n, c.c, c.h, c.w}, dst_d = {c.n, c.c, OH, OW};
  auto make = [&](Tag tag, Buffers& buf, Run& fwd, Run& bwd, const Tensor& y_out, const Tensor& gx_out) {
    const memory::desc src(src_d, kF32, tag), dst(dst_d, kF32, tag);
    const dnnl::pooling_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::pooling_max, src, dst,
                                         {2, 2}, {2, 2}, {0, 0}, {0, 0});
    const dnnl::pooling_forward::primitive_desc fpd(fd, eng());
    const dnnl::pooling_backward::desc bd(dnnl::algorithm::pooling_max, src, dst, {2, 2}, {2, 2}, {0, 0}, {0, 0});
    const dnnl::pooling_backward::primitive_desc bpd(bd, eng(), fpd);
    const memory x_plain = buf.wrap(memory::desc(src_d, kF32, Tag::nchw), x);
    const memory y_plain = buf.wrap(memory::desc(dst_d, kF32, Tag::nchw), y_out);
    const memory gy_plain = buf.wrap(memory::desc(dst_d, kF32, Tag::nchw), gy);
    const memory gx_plain = buf.wrap(memory::desc(src_d, kF32, Tag::nchw), gx_out);
    const memory ws = buf.make(fpd.workspace_desc());
    fwd.prim = dnnl::pooling_forward(fpd);
    bwd.prim = dnnl::pooling_backward(bpd);
    if (tag == Tag::nchw) {
      fwd.args = {{DNNL_ARG_SRC, x_plain}, {DNNL_ARG_DST, y_plain}, {DNNL_ARG_WORKSPACE, ws}};
      bwd.args = {{DNNL_ARG_DIFF_DST, gy_plain}, {DNNL_ARG_DIFF_SRC, gx_plain}, {DNNL_ARG_WORKSPACE, ws}};
    } else {
      const memory yb = buf.make(dst), gxb = buf.make(src);
      fwd.args = {{DNNL_ARG_SRC, buf.blocked_input(fwd, x_plain, tag)}, {DNNL_ARG_DST, yb}, {DNNL_ARG_WORKSPACE, ws}};
      fwd.from_blocked.push_back({yb, y_plain});
      bwd.args = {{DNNL_ARG_DIFF_DST, buf.blocked_input(bwd, gy_plain, tag)},
                  {DNNL_ARG_DIFF_SRC, gxb},
                  {DNNL_ARG_WORKSPACE, ws}};
      bwd.from_blocked.push_back({gxb, gx_plain});
    }
    return ws;
  };
  Layouts L(x, y, make);
  const memory ws = L.plain_extra;

  // Check once: same maxima, same window positions, same gradient.
  pk.max_pool2d(x, y, idx, win);
  pk.max_pool2d_backward(gy, idx, gx);
  L.fwd_p.exec();
  L.bwd_p.exec();
  Row f, b;
  f.diff = rel_diff(L.y_p.data<float>(), y.data<float>(), y.numel());
  b.diff = rel_diff(L.gx_p.data<float>(), gx.data<float>(), gx.numel());
  int64_t same = 0;
  const int64_t* id = idx.data<int64_t>();
  const bool u8 = ws.get_desc().data_type() == memory::data_type::u8;
  for (int64_t p = 0; p < y.numel(); ++p) {
    const int64_t k = u8 ? static_cast<const uint8_t*>(ws.get_data_handle())[p]
                         : static_cast<const int32_t*>(ws.get_data_handle())[p];
    const int64_t o = p % (OH * OW), oh = o / OW, ow = o % OW;
    same += id[p] == (2 * oh + k / 2) * c.w + (2 * ow + k % 2);
  }
  if (same != y.numel()) f.note = " (" + std::to_string(y.numel() - same) + " indices differ)";
  // NaN semantics: a window with two NaNs and one with a NaN beside larger numbers.
  {
    float* xv = x.data<float>();
    const float keep[3] = {xv[1], xv[c.w], xv[2]};
    xv[1] = xv[c.w] = std::nanf("");
    xv[2] = std::nanf("");
    pk.max_pool2d(x, y, idx, win);
    L.fwd_p.exec();
    if (!same_with_nans(y.data<float>(), L.y_p.data<float>(), y.numel())) f.note += " NaN: differs";
    xv[1] = keep[0];
    xv[c.w] = keep[1];
    xv[2] = keep[2];
  }

  f.time(reps, [&] { pk.max_pool2d(x, y, idx, win); }, [&] { L.fwd_p.exec(); }, [&] { L.fwd_b.exec(); }, [&] { L.fwd_b.exec_with_reorders(); });
  L.fwd_b.exec();  // the blocked workspace
  b.time(reps, [&] { pk.max_pool2d_backward(gy, idx, gx); }, [&] { L.bwd_p.exec(); }, [&] { L.bwd_b.exec(); }, [&] { L.bwd_b.exec_with_reorders(); });
  const double bytes = 4.0 * static_cast<double>(x.numel() + y.numel());
  print_row(c, "fwd", f, bytes);
  print_row(c, "bwd", b, bytes);
}

// ---------------- adaptive average pooling to 1x1 ----------------

void sweep_avgpool(const Case& c, int reps) {
  const Tensor x = randn({c.n, c.c, c.h, c.w}), y = empty({c.n, c.c, 1, 1});
  const Tensor gy = randn({c.n, c.c, 1, 1}), gx = empty(x.shape());
  PoolKernels& pk = pool_kernels(kCPU);
  const memory::dims src_d = {c.n, c.c, c.h, c.w}, dst_d = {c.n, c.c, 1, 1};
  auto make = [&](Tag tag, Buffers& buf, Run& fwd, Run& bwd, const Tensor& y_out, const Tensor& gx_out) {
    const memory::desc src(src_d, kF32, tag), dst(dst_d, kF32, tag);
    const memory::dims k = {c.h, c.w}, z = {0, 0};
    const dnnl::pooling_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::pooling_avg_exclude_padding,
                                         src, dst, k, k, z, z);
    const dnnl::pooling_forward::primitive_desc fpd(fd, eng());
    const dnnl::pooling_backward::desc bd(dnnl::algorithm::pooling_avg_exclude_padding, src, dst, k, k, z, z);
    const dnnl::pooling_backward::primitive_desc bpd(bd, eng(), fpd);
    const memory x_plain = buf.wrap(memory::desc(src_d, kF32, Tag::nchw), x);
    const memory y_plain = buf.wrap(memory::desc(dst_d, kF32, Tag::nchw), y_out);
    const memory gy_plain = buf.wrap(memory::desc(dst_d, kF32, Tag::nchw), gy);
    const memory gx_plain = buf.wrap(memory::desc(src_d, kF32, Tag::nchw), gx_out);
    fwd.prim = dnnl::pooling_forward(fpd);
    bwd.prim = dnnl::pooling_backward(bpd);
    if (tag == Tag::nchw) {
      fwd.args = {{DNNL_ARG_SRC, x_plain}, {DNNL_ARG_DST, y_plain}};
      bwd.args = {{DNNL_ARG_DIFF_DST, gy_plain}, {DNNL_ARG_DIFF_SRC, gx_plain}};
    } else {
      const memory yb = buf.make(dst), gxb = buf.make(src);
      fwd.args = {{DNNL_ARG_SRC, buf.blocked_input(fwd, x_plain, tag)}, {DNNL_ARG_DST, yb}};
      fwd.from_blocked.push_back({yb, y_plain});
      bwd.args = {{DNNL_ARG_DIFF_DST, buf.blocked_input(bwd, gy_plain, tag)}, {DNNL_ARG_DIFF_SRC, gxb}};
      bwd.from_blocked.push_back({gxb, gx_plain});
    }
  };
  Layouts L(x, y, make);
  pk.adaptive_avg_pool2d(x, y);
  pk.adaptive_avg_pool2d_backward(gy, gx);
  L.fwd_p.exec();
  L.bwd_p.exec();
  Row f, b;
  f.diff = rel_diff(L.y_p.data<float>(), y.data<float>(), y.numel());
  b.diff = rel_diff(L.gx_p.data<float>(), gx.data<float>(), gx.numel());
  f.time(reps, [&] { pk.adaptive_avg_pool2d(x, y); }, [&] { L.fwd_p.exec(); }, [&] { L.fwd_b.exec(); }, [&] { L.fwd_b.exec_with_reorders(); });
  b.time(reps, [&] { pk.adaptive_avg_pool2d_backward(gy, gx); }, [&] { L.bwd_p.exec(); }, [&] { L.bwd_b.exec(); }, [&] { L.bwd_b.exec_with_reorders(); });
  const double bytes = 4.0 * static_cast<double>(x.numel() + y.numel());
  print_row(c, "fwd", f, bytes);
  print_row(c, "bwd", b, bytes);
}

// ---------------- batch norm (training: batch statistics, affine) ----------------

void sweep_batchnorm(const Case& c, int reps) {
  const int64_t S = c.h * c.w, count = c.n * S;
  const Tensor x = randn({c.n, c.c, c.h, c.w}) * 2.0 + 0.5, y = empty(x.shape());
  const Tensor wt = randn({c.c}), bs = randn({c.c});
  const Tensor rm = zeros({c.c}), rv = ones({c.c}), sm = empty({c.c}), si = empty({c.c});
  const Tensor gy = randn(x.shape()), gx = empty(x.shape()), gw = empty({c.c}), gb = empty({c.c});
  const Tensor x3 = x.view({c.n, c.c, S}), y3 = y.view({c.n, c.c, S}), gy3 = gy.view({c.n, c.c, S}),
               gx3 = gx.view({c.n, c.c, S});
  NormKernels& nk = norm_kernels(kCPU);

  // oneDNN's side: statistics and parameters are plain [C] vectors in both layouts.
  const memory::desc stat({c.c}, kF32, Tag::x);
  const Tensor mean = empty({c.c}), var = empty({c.c}), rm_d = zeros({c.c}), rv_d = ones({c.c}), si_d = empty({c.c});
  const Tensor gw_d = empty({c.c}), gb_d = empty({c.c});
  // What ember's kernel also does per channel: the running statistics (unbiased variance) and the
  // saved 1/sqrt(var + eps). C values: timed with the primitive.
  auto finish_stats = [&] {
    const float *m = mean.data<float>(), *v = var.data<float>();
    float *r_m = rm_d.data<float>(), *r_v = rv_d.data<float>(), *inv = si_d.data<float>();
    const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
    for (int64_t ch = 0; ch < c.c; ++ch) {
      r_m[ch] = static_cast<float>((1 - kMomentum) * r_m[ch] + kMomentum * m[ch]);
      r_v[ch] = static_cast<float>((1 - kMomentum) * r_v[ch] + kMomentum * v[ch] * unbias);
      inv[ch] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(v[ch]) + kEps));
    }
  };
  const memory::dims dims = {c.n, c.c, c.h, c.w};
  const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  auto make = [&](Tag tag, Buffers& buf, Run& fwd, Run& bwd, const Tensor& y_out, const Tensor& gx_out) {
    const memory::desc data(dims, kF32, tag), plain(dims, kF32, Tag::nchw);
    const dnnl::batch_normalization_forward::desc fd(dnnl::prop_kind::forward_training, data, kEps, flags);
    const dnnl::batch_normalization_forward::primitive_desc fpd(fd, eng());
    const dnnl::batch_normalization_backward::desc bd(dnnl::prop_kind::backward, data, data, kEps, flags);
    const dnnl::batch_normalization_backward::primitive_desc bpd(bd, eng(), fpd);
    fwd.prim = dnnl::batch_normalization_forward(fpd);
    bwd.prim = dnnl::batch_normalization_backward(bpd);
    const memory x_plain = buf.wrap(plain, x), y_plain = buf.wrap(plain, y_out);
    const memory gy_plain = buf.wrap(plain, gy), gx_plain = buf.wrap(plain, gx_out);
    const memory m = buf.wrap(stat, mean), v = buf.wrap(stat, var), sc = buf.wrap(stat, wt), sh = buf.wrap(stat, bs);
    const memory dsc = buf.wrap(stat, gw_d), dsh = buf.wrap(stat, gb_d);
    fwd.args = {{DNNL_ARG_SCALE, sc}, {DNNL_ARG_SHIFT, sh}, {DNNL_ARG_MEAN, m}, {DNNL_ARG_VARIANCE, v}};
    bwd.args = {{DNNL_ARG_SCALE, sc}, {DNNL_ARG_SHIFT, sh}, {DNNL_ARG_MEAN, m}, {DNNL_ARG_VARIANCE, v}, {DNNL_ARG_DIFF_SCALE, dsc},
                {DNNL_ARG_DIFF_SHIFT, dsh}};
    if (tag == Tag::nchw) {
      fwd.args[DNNL_ARG_SRC] = x_plain;
      fwd.args[DNNL_ARG_DST] = y_plain;
      bwd.args[DNNL_ARG_SRC] = x_plain;
      bwd.args[DNNL_ARG_DIFF_DST] = gy_plain;
      bwd.args[DNNL_ARG_DIFF_SRC] = gx_plain;
    } else {
      const memory yb = buf.make(data), gxb = buf.make(data);
      fwd.args[DNNL_ARG_SRC] = buf.blocked_input(fwd, x_plain, tag);
      fwd.args[DNNL_ARG_DST] = yb;
      fwd.from_blocked.push_back({yb, y_plain});
      bwd.args[DNNL_ARG_SRC] = buf.blocked_input(bwd, x_plain, tag);
      bwd.args[DNNL_ARG_DIFF_DST] = buf.blocked_input(bwd, gy_plain, tag);
      bwd.args[DNNL_ARG_DIFF_SRC] = gxb;
      bwd.from_blocked.push_back({gxb, gx_plain});
    }
  };
  Layouts L(x, y, make);

  auto ember_fwd = [&] { nk.batch_norm(x3, wt, bs, rm, rv, y3, sm, si, true, kMomentum, kEps); };
  auto ember_bwd = [&] { nk.batch_norm_backward(gy3, x3, wt, sm, si, gx3, gw, gb, true, kEps); };
  ember_fwd();
  ember_bwd();
  L.fwd_p.exec();
  finish_stats();
  L.bwd_p.exec();
  Row f, b;
  f.diff = std::max({rel_diff(L.y_p.data<float>(), y.data<float>(), y.numel()),
                     rel_diff(mean.data<float>(), sm.data<float>(), c.c), rel_diff(si_d.data<float>(), si.data<float>(), c.c),
                     rel_diff(rm_d.data<float>(), rm.data<float>(), c.c), rel_diff(rv_d.data<float>(), rv.data<float>(), c.c)});
  b.diff = std::max({rel_diff(L.gx_p.data<float>(), gx.data<float>(), gx.numel()),
                     rel_diff(gw_d.data<float>(), gw.data<float>(), c.c), rel_diff(gb_d.data<float>(), gb.data<float>(), c.c)});
  f.time(reps, ember_fwd, [&] { L.fwd_p.exec(); finish_stats(); }, [&] { L.fwd_b.exec(); finish_stats(); }, [&] { L.fwd_b.exec_with_reorders(); finish_stats(); });
  b.time(reps, ember_bwd, [&] { L.bwd_p.exec(); }, [&] { L.bwd_b.exec(); }, [&] { L.bwd_b.exec_with_reorders(); });
  const double n = static_cast<double>(x.numel());
  print_row(c, "fwd", f, 4.0 * 2 * n);  // x read, y written
  print_row(c, "bwd", b, 4.0 * 3 * n);  // g and x read, dx written
}

// ---------------- ReLU ----------------

void sweep_relu(const Case& c, int reps) {
  const Tensor x = randn({c.n, c.c, c.h, c.w}), y = empty(x.shape()), gy = randn(x.shape()), gx = empty(x.shape());
  Backend& be = backend(kCPU);
  const memory::dims dims = {c.n, c.c, c.h, c.w};
  // relu_use_dst_for_bwd: the backward reads the output, as ember's relu_backward does.
  const auto alg = dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
  auto make = [&](Tag tag, Buffers& buf, Run& fwd, Run& bwd, const Tensor& y_out, const Tensor& gx_out) {
    const memory::desc data(dims, kF32, tag), plain(dims, kF32, Tag::nchw);
    const dnnl::eltwise_forward::desc fd(dnnl::prop_kind::forward_training, alg, data, 0.f, 0.f);
    const dnnl::eltwise_forward::primitive_desc fpd(fd, eng());
    const dnnl::eltwise_backward::desc bd(alg, data, data, 0.f, 0.f);
    const dnnl::eltwise_backward::primitive_desc bpd(bd, eng(), fpd);
    fwd.prim = dnnl::eltwise_forward(fpd);
    bwd.prim = dnnl::eltwise_backward(bpd);
    const memory x_plain = buf.wrap(plain, x), y_plain = buf.wrap(plain, y_out);
    const memory gy_plain = buf.wrap(plain, gy), gx_plain = buf.wrap(plain, gx_out);
    if (tag == Tag::nchw) {
      fwd.args = {{DNNL_ARG_SRC, x_plain}, {DNNL_ARG_DST, y_plain}};
      bwd.args = {{DNNL_ARG_DST, y_plain}, {DNNL_ARG_DIFF_DST, gy_plain}, {DNNL_ARG_DIFF_SRC, gx_plain}};
    } else {
      const memory yb = buf.make(data), gxb = buf.make(data);
      fwd.args = {{DNNL_ARG_SRC, buf.blocked_input(fwd, x_plain, tag)}, {DNNL_ARG_DST, yb}};
      fwd.from_blocked.push_back({yb, y_plain});
      bwd.args = {{DNNL_ARG_DST, yb}, {DNNL_ARG_DIFF_DST, buf.blocked_input(bwd, gy_plain, tag)}, {DNNL_ARG_DIFF_SRC, gxb}};
      bwd.from_blocked.push_back({gxb, gx_plain});
    }
  };
  Layouts L(x, y, make);
  auto ember_fwd = [&] { be.unary(UnaryOp::Relu, x, y, {}); };
  auto ember_bwd = [&] { be.binary(BinaryOp::ReluBackward, gy, y, gx); };
  ember_fwd();
  ember_bwd();
  L.fwd_p.exec();
  L.bwd_p.exec();
  L.fwd_b.exec();  // the blocked output the blocked backward reads
  Row f, b;
  f.diff = rel_diff(L.y_p.data<float>(), y.data<float>(), y.numel());
  b.diff = rel_diff(L.gx_p.data<float>(), gx.data<float>(), gx.numel());
  {  // NaN semantics: relu(NaN) and the gradient where the output is NaN
    float* xv = x.data<float>();
    const float keep = xv[0];
    xv[0] = std::nanf("");
    ember_fwd();
    ember_bwd();
    L.fwd_p.exec();
    L.bwd_p.exec();
    if (!same_with_nans(y.data<float>(), L.y_p.data<float>(), y.numel())) f.note += " NaN: differs";
    if (!same_with_nans(gx.data<float>(), L.gx_p.data<float>(), gx.numel())) b.note += " NaN: differs";
    xv[0] = keep;
    ember_fwd();
    L.fwd_p.exec();
  }
  f.time(reps, ember_fwd, [&] { L.fwd_p.exec(); }, [&] { L.fwd_b.exec(); }, [&] { L.fwd_b.exec_with_reorders(); });
  b.time(reps, ember_bwd, [&] { L.bwd_p.exec(); }, [&] { L.bwd_b.exec(); }, [&] { L.bwd_b.exec_with_reorders(); });
  const double n = static_cast<double>(x.numel());
  print_row(c, "fwd", f, 4.0 * 2 * n);
  print_row(c, "bwd", b, 4.0 * 3 * n);
}

}  // namespace

int main(int argc, char** argv) {
  const auto [threads, reps, model] = kArgs.sweep_flags(argc, argv);
  if (reps < 5) kArgs.fail("--reps needs at least 5 (the median of fewer is noise on a shared machine)");
  const std::vector<Case> all = cases();
  if (!model.empty() && std::none_of(all.begin(), all.end(), [&](const Case& c) { return model == c.model; }))
    kArgs.fail("no layer in model '" + model + "' (mlp, lenet, cnn, resnet20_b128, resnet20_b32)");
  set_num_threads(threads);
  manual_seed(0);
  std::printf("ms per call, median of %d after a warm-up, %d thread(s); oneDNN %d.%d.%d\n\n", reps, threads,
              dnnl::version()->major, dnnl::version()->minor, dnnl::version()->patch);
  std::printf("| model | layer [N,C,H,W] | op | pass | ember ms | onednn nchw ms | onednn blk ms | onednn blk+ro ms "
              "| ember GB/s | onednn GB/s | diff | faster | slower/faster |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Case& c : all) {
    if (!model.empty() && model != c.model) continue;
    const std::string op = c.op;
    if (op == "maxpool2x2") sweep_maxpool(c, reps);
    else if (op == "avgpool1x1") sweep_avgpool(c, reps);
    else if (op == "batchnorm") sweep_batchnorm(c, reps);
    else sweep_relu(c, reps);
  }
  return 0;
}
