// CPU 2-D convolution on oneDNN's primitives (float32, when ember is built with oneDNN and the
// matmul engine is oneDNN; otherwise cpu_conv.cpp's im2col + GEMM path runs).
//
// Why oneDNN's own convolution and not im2col + its sgemm: its AVX-512 JIT kernels work on
// channel-blocked layouts (nChw16c: 16 channels side by side, one vector) and skip the column
// matrix entirely. Measured on this project's machine, one thread, ResNet-20's 3x3 layers at batch
// 128: 3-6x faster than oneDNN's own convolution on plain NCHW (which is im2col + sgemm inside),
// forward and both gradients, while moving a tensor between NCHW and the blocked layout costs a
// tenth of the convolution (bench/RESULTS.md). A call on NCHW tensors reorders its inputs into the
// layouts the primitive chose and its outputs back (weights are small, activations are not). A call
// on channels-last tensors (MemoryFormat::ChannelsLast, NHWC in memory) gets a primitive that reads
// and writes NHWC itself (AVX-512 kernels too), so a network kept channels-last
// (nn::models::ResNet) copies no activation around its direct convolutions; its Winograd ones
// still reorder, NHWC <-> nChw16c, several times cheaper than from NCHW (activation_layouts).
//
// Algorithm: direct, or Winograd F(4x4, 3x3) where the rule below measured it faster. Winograd
// computes a 3x3 convolution on 6x6 input tiles with 36 multiplications per 4x4 outputs instead of
// 144, at the cost of transforms and a little rounding (the tests' float32-vs-float64 tolerance
// holds); oneDNN has it for 3x3 stride-1 convolutions on AVX-512 only. PyTorch calls oneDNN's
// direct algorithm.
//
// Plans: one per shape (input, weight, stride, padding, dilation, groups, bias or not), made on
// first use and kept for the life of the process, like PyTorch's mkldnn primitive cache: choosing
// a kernel and JIT-compiling it costs milliseconds, a call microseconds. Buffers (blocked copies,
// scratchpads) come from ember's CPU allocator, which caches large blocks, so a training step
// neither maps fresh pages nor calls malloc for them.
#include "core/cpu/onednn_conv.h"

#include "core/cpu/cpu_matmul.h"

#if EMBER_HAVE_ONEDNN

#include <array>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <unordered_map>

#include "core/cpu/onednn_context.h"
#include "core/ops.h"

namespace ember {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

// Everything that decides which kernels a convolution gets.
using ConvKey = PlanKey<19>;

// The primitives for one convolution shape and algorithm. The backward primitives are made on the
// first backward (inference never pays for them).
struct ConvPlan {
  bool channels_last = false;  // the primitives read and write NHWC activations (else their own choice)
  bool winograd = false;  // the forward got oneDNN's Winograd kernels (the input gradient asks for them too)
  bool winograd_weight_grad = false;  // the weight gradient asks for them (winograd_weight_grad says when)
  memory::desc src_plain, weights_plain, dst_plain, bias;
  memory::dims strides, dilates, padding;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  std::once_flag backward_made;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_backward_weights bwd_weights;
};

// With `relu`, a ReLU post-op: the kernel applies it to each output block before storing it, so
// conv2d_relu costs no pass over the output of its own.
dnnl::primitive_attr user_scratchpad(bool relu = false) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // ember's allocator provides it per call
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    attr.set_post_ops(ops);
  }
  return attr;
}

dnnl::algorithm algorithm(bool winograd) {
  return winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
}

// A primitive descriptor for `algo` if oneDNN has kernels for it here, else for the direct
// algorithm (oneDNN reports a missing implementation as dnnl::error).
template <typename Pd, typename MakeDesc, typename... Hint>
Pd pd_preferring(bool winograd, bool* got_winograd, const dnnl::primitive_attr& attr, MakeDesc make_desc,
                 const Hint&... hint) {
  if (winograd) {
    try {
      Pd pd(make_desc(algorithm(true)), attr, onednn_cpu_engine(), hint...);
      if (got_winograd) *got_winograd = true;
      return pd;
    } catch (const dnnl::error&) {
    }
  }
  if (got_winograd) *got_winograd = false;
  return Pd(make_desc(algorithm(false)), attr, onednn_cpu_engine(), hint...);
}

// The layout the primitives get for activations. An NCHW plan: `any` (oneDNN picks; on AVX-512 the
// channel-blocked nChw16c, with a reorder of each activation in and out). A channels-last plan:
// NHWC, read and written in place, except where the forward got Winograd: those kernels exist for
// the blocked layout only and there all three passes take it, behind reorders NHWC <-> nChw16c
// (which oneDNN does several times faster than NCHW <-> nChw16c). Measured on the PVM-hosted
// Zen 5, ResNet-20 at batch 128, 2 threads (ms per call, NHWC direct vs blocked Winograd): stage
// 3's 3x3 forward 1.45 / 1.07, input gradient 1.97 / 1.01, weight gradient 2.39 / 1.48; stage 2's
// weight gradient (direct either way) 2.68 / 1.78. The reorders cost 5.6 ms per step in all.
struct ActivationLayouts {
  memory::desc src, dst;
};
ActivationLayouts activation_layouts(const ConvPlan& p, dnnl::algorithm algo) {
  const bool nhwc = p.channels_last && !p.winograd && algo != dnnl::algorithm::convolution_winograd;
  const Tag tag = nhwc ? Tag::nhwc : Tag::any;
  return {memory::desc(p.src_plain.dims(), kF32, tag), memory::desc(p.dst_plain.dims(), kF32, tag)};
}

std::unique_ptr<ConvPlan> make_plan(const Shape& in, const Shape& wt, bool has_bias, Window2d w, int64_t groups,
                                    bool winograd, bool relu, bool channels_last) {
  auto plan = std::make_unique<ConvPlan>();
  plan->channels_last = channels_last;
  const int64_t N = in[0], C = in[1], H = in[2], W = in[3], M = wt[0];
  const int64_t OH = (H + 2 * w.ph - (w.dh * (w.kh - 1) + 1)) / w.sh + 1;
  const int64_t OW = (W + 2 * w.pw - (w.dw * (w.kw - 1) + 1)) / w.sw + 1;
  plan->src_plain = memory::desc({N, C, H, W}, kF32, Tag::nchw);
  plan->dst_plain = memory::desc({N, M, OH, OW}, kF32, Tag::nchw);
  // Grouped weights are 5-D for oneDNN: [groups, M/groups, C/groups, kh, kw], the same memory.
  plan->weights_plain = groups == 1 ? memory::desc({M, C, w.kh, w.kw}, kF32, Tag::oihw)
                                    : memory::desc({groups, M / groups, C / groups, w.kh, w.kw}, kF32, Tag::goihw);
  plan->bias = memory::desc({M}, kF32, Tag::x);
  plan->strides = {w.sh, w.sw};
  plan->dilates = {w.dh - 1, w.dw - 1};  // oneDNN counts the gaps, PyTorch the step
  plan->padding = {w.ph, w.pw};

  // `any`: let oneDNN choose the layouts its fastest kernels want (activations: activation_layouts).
  const memory::desc weights_any(plan->weights_plain.dims(), kF32, Tag::any);
  const ConvPlan& p = *plan;
  auto desc = [&](dnnl::algorithm algo) {
    const auto [src_any, dst_any] = activation_layouts(p, algo);
    return has_bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algo, src_any, weights_any,
                                                      p.bias, dst_any, p.strides, p.dilates, p.padding, p.padding)
                    : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algo, src_any, weights_any,
                                                      dst_any, p.strides, p.dilates, p.padding, p.padding);
  };
  plan->fwd_pd =
      pd_preferring<dnnl::convolution_forward::primitive_desc>(winograd, &plan->winograd, user_scratchpad(relu), desc);
  plan->fwd = dnnl::convolution_forward(plan->fwd_pd);
  return plan;
}

void make_backward(ConvPlan& p) {
  const memory::desc weights_any(p.weights_plain.dims(), kF32, Tag::any);
  auto data_desc = [&](dnnl::algorithm algo) {
    const auto [src_any, dst_any] = activation_layouts(p, algo);
    return dnnl::convolution_backward_data::desc(algo, src_any, weights_any, dst_any, p.strides, p.dilates, p.padding,
                                                 p.padding);
  };
  p.bwd_data_pd =
      pd_preferring<dnnl::convolution_backward_data::primitive_desc>(p.winograd, nullptr, user_scratchpad(), data_desc,
                                                                     p.fwd_pd);
  p.bwd_data = dnnl::convolution_backward_data(p.bwd_data_pd);
  // The weight-gradient primitive always computes the bias gradient too (a sum over the output
  // gradient it reads anyway); a call that does not want it gets a throwaway buffer.
  auto weights_desc = [&](dnnl::algorithm algo) {
    const auto [src_any, dst_any] = activation_layouts(p, algo);
    return dnnl::convolution_backward_weights::desc(algo, src_any, weights_any, p.bias, dst_any, p.strides, p.dilates,
                                                    p.padding, p.padding);
  };
  p.bwd_weights_pd =
      pd_preferring<dnnl::convolution_backward_weights::primitive_desc>(p.winograd && p.winograd_weight_grad, nullptr,
                                                                        user_scratchpad(), weights_desc, p.fwd_pd);
  p.bwd_weights = dnnl::convolution_backward_weights(p.bwd_weights_pd);
}

// `relu` only for a forward (conv2d_relu's post-op); the backward looks up the plan without it.
// Whether a Winograd layer's weight gradient asks for Winograd too (ConvEngine::Winograd: always).
// Auto: with 64 or more output channels per group. bench/conv_sweep, PVM-hosted Zen 5, 2026-12-07,
// three runs (ms, direct / Winograd): the cnn's conv2 (64 outputs) 4.9-5.7 / 4.1-4.3, ResNet-20's
// stage-3 3x3 (64) 2.0-2.3 / 1.7-1.9 at batch 128 and 0.58-0.60 / 0.46-0.47 at 32, but its
// stage-2 3x3 (32 outputs) 2.06-2.28 / 2.49-2.82 at batch 128 and 0.56-0.57 / 0.50-0.58 at 32.
bool winograd_weight_grad(int64_t out_channels_per_group) {
  return cpu_conv_engine() == ConvEngine::Winograd || out_channels_per_group >= 64;
}

ConvPlan& plan_for(const Shape& in, const Shape& wt, bool has_bias, Window2d w, int64_t groups, bool winograd,
                   bool channels_last, bool relu = false) {
  static std::mutex mu;
  static std::unordered_map<ConvKey, std::unique_ptr<ConvPlan>, ConvKey::Hash> plans;
  const bool wgrad_winograd = winograd && winograd_weight_grad(wt[0] / groups);
  const ConvKey key{{in[0], in[1], in[2], in[3], wt[0], wt[1], w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.dh, w.dw, groups,
                     has_bias ? 1 : 0, winograd ? (wgrad_winograd ? 2 : 1) : 0, relu ? 1 : 0, channels_last ? 1 : 0}};
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<ConvPlan>& slot = plans[key];
  if (!slot) {
    slot = make_plan(in, wt, has_bias, w, groups, winograd, relu, channels_last);
    slot->winograd_weight_grad = wgrad_winograd;
  }
  return *slot;
}

// How an activation tensor lies in memory, for oneDNN: its own strides (NCHW or channels-last).
memory::desc layout_of(const Tensor& t) {
  const Shape& d = t.shape();
  const Shape& s = t.strides();
  return memory::desc({d[0], d[1], d[2], d[3]}, kF32, memory::dims{s[0], s[1], s[2], s[3]});
}

// A float32 buffer of at least `bytes` bytes from ember's allocator, kept alive by the tensor.
Tensor buffer(size_t bytes) { return empty({static_cast<int64_t>((bytes + 3) / 4)}, TensorOptions(kFloat32)); }

// One execution's memory: every argument a primitive reads or writes, with the reorders between
// ember's NCHW tensors and the primitive's layouts done around the call.
class Call {
 public:
  explicit Call(const dnnl::primitive_desc_base& pd) : stream_(onednn_cpu_stream()) {
    const memory::desc pad = pd.scratchpad_desc();
    if (pad.get_size() > 0) {
      scratch_.push_back(buffer(pad.get_size()));
      args_[DNNL_ARG_SCRATCHPAD] = memory(pad, onednn_cpu_engine(), scratch_.back().data<float>());
    }
  }

  // An input: ember's tensor t, laid out as `plain`, given to the primitive in layout `want`
  // (copied when different). Returns the memory the primitive reads, which lives as long as this Call.
  memory input(int arg, const Tensor& t, const memory::desc& plain, const memory::desc& want) {
    memory user(plain, onednn_cpu_engine(), const_cast<float*>(t.data<float>()));
    if (want == plain) return args_[arg] = user;
    scratch_.push_back(buffer(want.get_size()));
    memory blocked(want, onednn_cpu_engine(), scratch_.back().data<float>());
    dnnl::reorder(user, blocked).execute(stream_, user, blocked);
    return args_[arg] = blocked;
  }

  // An input another Call already put in the layout this primitive wants (that Call must still live).
  void input(int arg, const memory& ready) { args_[arg] = ready; }

  // An output: the primitive writes layout `want`; t (laid out as `plain`) receives it after run().
  void output(int arg, const Tensor& t, const memory::desc& plain, const memory::desc& want) {
    memory user(plain, onednn_cpu_engine(), t.data<float>());
    if (want == plain) {
      args_[arg] = user;
      return;
    }
    scratch_.push_back(buffer(want.get_size()));
    memory blocked(want, onednn_cpu_engine(), scratch_.back().data<float>());
    args_[arg] = blocked;
    copy_back_.push_back({blocked, user});
  }

  void run(const dnnl::primitive& prim) {
    prim.execute(stream_, args_);
    for (auto& [from, to] : copy_back_) dnnl::reorder(from, to).execute(stream_, from, to);
    stream_.wait();
  }

 private:
  dnnl::stream& stream_;
  std::unordered_map<int, memory> args_;
  std::vector<Tensor> scratch_;
  std::vector<std::pair<memory, memory>> copy_back_;
};

bool is_channels_last(const Tensor& t) { return suggest_memory_format(t) == MemoryFormat::ChannelsLast; }

bool takes(DType dtype) {
  return dtype == kFloat32 && cpu_gemm_uses_onednn() && cpu_conv_engine() != ConvEngine::Im2col;
}

enum class Pass { Forward, GradInput, GradWeight };

// ConvEngine::Auto: whether oneDNN's primitive takes this pass. The rule is bench/conv_sweep's
// table (bench/RESULTS.md, 2 threads, oneDNN 2.6), one per kind of kernel oneDNN runs here.
// Either way, im2col + oneDNN's sgemm wins 1x1 convolutions (ResNet's shortcuts), every pass:
// 1.05-2.7x; the column matrix is the input itself or a cheap strided gather, and oneDNN pays a
// layout reorder on both sides. oneDNN wins every padded convolution with 16 or more input
// channels, by 1.1-4.2x (AVX2) and 1.1-2.0x (AVX-512). Otherwise:
//   - AVX2 kernels (Zen 3): im2col wins one input channel (the MNIST nets' first layer), every
//     pass: 1.2-3.2x; and the weight gradient of a convolution without padding or with at most 3
//     input channels (MNIST conv layers, ResNet's stem): 1.1-3.2x; oneDNN's AVX2 weight-gradient
//     kernels for these reach 7-30 GFLOP/s.
//   - AVX-512 kernels (Zen 5): oneDNN's weight-gradient kernels for those shapes reach 150-260
//     GFLOP/s and win (ResNet's stem 5x, the MNIST first layers 1.1-1.9x, the cnn's unpadded
//     32-channel conv2 1.2-1.3x), but for LeNet's conv2 (unpadded, 10 input channels: im2col 1.3x);
//     im2col still wins the forward of one input channel into 16 or more output channels (the
//     cnn's conv1, 32: 1.2-1.3x on the KVM host, 1.1-1.2x on the PVM one, 1.6x at one thread);
//     into fewer (LeNet's conv1, 6 outputs: its GEMM has 6 rows) it wins on one thread (1.4x, PVM
//     host) but not on two: a tie on the KVM host (im2col 0.138 ms, oneDNN 0.145), 1.26-1.44x
//     behind on the PVM one (2026-12-07, three sweeps), so there oneDNN takes it.
//
// Channels-last activations: oneDNN takes every pass. Its NHWC kernels read and write them in
// place, while the im2col path walks NCHW and would copy each activation in and out.
bool onednn_wins(Pass pass, int64_t in_channels_per_group, int64_t out_channels_per_group, Window2d w,
                 bool channels_last) {
  const ConvEngine engine = cpu_conv_engine();
  if (engine == ConvEngine::OneDnn || engine == ConvEngine::Winograd || channels_last) return true;
  if (w.kh == 1 && w.kw == 1) return false;
  const bool unpadded = w.ph == 0 && w.pw == 0;
  if (cpu_onednn_runs_avx512()) {
    if (pass == Pass::Forward && in_channels_per_group == 1 && (out_channels_per_group >= 16 || get_num_threads() == 1))
      return false;
    if (pass == Pass::GradWeight && unpadded && in_channels_per_group > 1 && in_channels_per_group < 16) return false;
    return true;
  }
  if (in_channels_per_group == 1) return false;
  if (pass == Pass::GradWeight && (unpadded || in_channels_per_group <= 3)) return false;
  return true;
}

// Whether to ask oneDNN for its Winograd kernels (every pass of the convolution; where it has
// none, the plan falls back to direct). ConvEngine::Winograd asks for every convolution. Auto asks
// where bench/conv_sweep measured them faster on the Zen 5 (2 threads; ms, direct -> Winograd):
// 3x3 stride-1 convolutions with 32 or more input channels, i.e. the cnn's conv2 (forward 3.5 ->
// 1.7, input gradient 3.4 -> 2.4, weight gradient 4.0 -> 2.1) and ResNet-20's stage-2 and stage-3
// 3x3 layers (forward and input gradient 20-45% faster; the weight gradient 29% faster in stage 3;
// in stage 2, 32 output channels, it is slower at batch 128, and there the weight gradient stays
// direct: winograd_weight_grad). With 16 or fewer input channels
// (ResNet's stage 1: 1.2-1.8x slower) or 3 (its stem: 4-6x slower), Winograd loses.
bool wants_winograd(int64_t in_channels_per_group, int64_t groups, Window2d w) {
  const ConvEngine engine = cpu_conv_engine();
  if (engine == ConvEngine::Winograd) return true;
  if (engine != ConvEngine::Auto || !cpu_onednn_runs_avx512()) return false;
  return groups == 1 && in_channels_per_group >= 32 && w.kh == 3 && w.kw == 3 && w.sh == 1 && w.sw == 1 &&
         w.dh == 1 && w.dw == 1;
}

// oneDNN reports a shape it cannot run (or an internal failure) as dnnl::error; it becomes an
// ember error naming the op and the shapes, like every other failure.
template <typename F>
void guarded(const char* op, const Shape& in, const Shape& wt, F&& body) {
  try {
    body();
  } catch (const dnnl::error& e) {
    EMBER_FAIL(op, ": oneDNN failed for input ", in, " and weight ", wt, ": ", e.what(), " (status ",
               static_cast<int>(e.status), ")");
  }
}

}  // namespace

bool onednn_conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                   int64_t groups, bool relu) {
  if (!takes(in.dtype()) || in.numel() == 0 || weight.numel() == 0) return false;  // empty sums: the im2col path
  if (!onednn_wins(Pass::Forward, in.size(1) / groups, weight.size(0) / groups, w, is_channels_last(in))) return false;
  guarded("conv2d", in.shape(), weight.shape(), [&] {
    ConvPlan& p = plan_for(in.shape(), weight.shape(), bias.defined(), w, groups,
                           wants_winograd(in.size(1) / groups, groups, w), is_channels_last(in), relu);
    Call call(p.fwd_pd);
    call.input(DNNL_ARG_SRC, in, layout_of(in), p.fwd_pd.src_desc());
    call.input(DNNL_ARG_WEIGHTS, weight, p.weights_plain, p.fwd_pd.weights_desc());
    if (bias.defined()) call.input(DNNL_ARG_BIAS, bias, p.bias, p.bias);
    call.output(DNNL_ARG_DST, out, layout_of(out), p.fwd_pd.dst_desc());
    call.run(p.fwd);
  });
  return true;
}

OneDnnBackwardDone onednn_conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                          const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                          Window2d w, int64_t groups) {
  if (!takes(grad_out.dtype()) || weight.numel() == 0) return {};
  const int64_t cg = weight.size(1);  // input channels per group
  const int64_t mg = weight.size(0) / groups;  // output channels per group
  const bool cl = is_channels_last(grad_out);
  const bool need_in = grad_in.defined() && onednn_wins(Pass::GradInput, cg, mg, w, cl);
  // only the bias gradient, without the input: the im2col path
  const bool need_w =
      (grad_weight.defined() || grad_bias.defined()) && in.defined() && onednn_wins(Pass::GradWeight, cg, mg, w, cl);
  if (!need_in && !need_w) return {};
  const Tensor& input_like = in.defined() ? in : grad_in;
  const Shape in_shape = input_like.shape();
  guarded("conv2d_backward", in_shape, weight.shape(), [&] {
    // The forward plan (and so the kernels the backward is paired with) exists for every shape
    // whose forward ran; a bias changes only the forward, so look the plan up without one.
    ConvPlan& p = plan_for(in_shape, weight.shape(), /*has_bias=*/false, w, groups, wants_winograd(cg, groups, w),
                           is_channels_last(input_like));
    std::call_once(p.backward_made, [&] { make_backward(p); });
    // Both gradients read grad_out; when both primitives want it in the same layout (they
    // usually do), it is reordered once, by the data call, and the weights call reuses it.
    std::optional<Call> data_call;
    std::optional<memory> grad_out_ready;
    if (need_in) {
      Call& call = data_call.emplace(p.bwd_data_pd);
      const memory gy = call.input(DNNL_ARG_DIFF_DST, grad_out, layout_of(grad_out), p.bwd_data_pd.diff_dst_desc());
      if (gy.get_desc() == p.bwd_weights_pd.diff_dst_desc()) grad_out_ready = gy;
      call.input(DNNL_ARG_WEIGHTS, weight, p.weights_plain, p.bwd_data_pd.weights_desc());
      call.output(DNNL_ARG_DIFF_SRC, grad_in, layout_of(grad_in), p.bwd_data_pd.diff_src_desc());
      call.run(p.bwd_data);
    }
    if (need_w) {
      const Tensor gw = grad_weight.defined() ? grad_weight : empty(weight.shape(), TensorOptions(kFloat32));
      const Tensor gb = grad_bias.defined() ? grad_bias : empty({weight.size(0)}, TensorOptions(kFloat32));
      Call call(p.bwd_weights_pd);
      call.input(DNNL_ARG_SRC, in, layout_of(in), p.bwd_weights_pd.src_desc());
      if (grad_out_ready) call.input(DNNL_ARG_DIFF_DST, *grad_out_ready);
      else call.input(DNNL_ARG_DIFF_DST, grad_out, layout_of(grad_out), p.bwd_weights_pd.diff_dst_desc());
      call.output(DNNL_ARG_DIFF_WEIGHTS, gw, p.weights_plain, p.bwd_weights_pd.diff_weights_desc());
      call.output(DNNL_ARG_DIFF_BIAS, gb, p.bias, p.bias);
      call.run(p.bwd_weights);
    }
  });
  return {need_in, need_w};
}

OneDnnConvKernels onednn_conv2d_kernels(const Shape& in, const Shape& weight, Window2d w, int64_t groups) {
  OneDnnConvKernels k;
  if (!takes(kFloat32)) return k;
  const int64_t cg = in[1] / groups, mg = weight[0] / groups;
  const bool wino = wants_winograd(cg, groups, w);
  guarded("conv2d", in, weight, [&] {
    ConvPlan& p = plan_for(in, weight, /*has_bias=*/false, w, groups, wino, /*channels_last=*/false);
    std::call_once(p.backward_made, [&] { make_backward(p); });
    if (onednn_wins(Pass::Forward, cg, mg, w, false)) {
      k.forward = p.fwd_pd.impl_info_str();
      k.forward_relu =
          plan_for(in, weight, /*has_bias=*/false, w, groups, wino, /*channels_last=*/false, /*relu=*/true)
              .fwd_pd.impl_info_str();
    }
    if (onednn_wins(Pass::GradInput, cg, mg, w, false)) k.grad_input = p.bwd_data_pd.impl_info_str();
    if (onednn_wins(Pass::GradWeight, cg, mg, w, false)) k.grad_weight = p.bwd_weights_pd.impl_info_str();
  });
  return k;
}

}  // namespace ember

#else  // built without oneDNN: the im2col path takes every convolution

namespace ember {
// cpu_conv_engine() is read only so that a mistyped EMBER_CONV is an error in this build too.
bool onednn_conv2d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Window2d, int64_t, bool) {
  (void)cpu_conv_engine();
  return false;
}
OneDnnBackwardDone onednn_conv2d_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                          const Tensor&, Window2d, int64_t) {
  return {};
}
OneDnnConvKernels onednn_conv2d_kernels(const Shape&, const Shape&, Window2d, int64_t) { return {}; }
}  // namespace ember

#endif
