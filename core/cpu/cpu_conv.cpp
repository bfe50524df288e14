// CPU 2-D convolution (NCHW). float32 runs on oneDNN's convolution primitives when ember is built
// with oneDNN and they are the faster path (onednn_conv.cpp says which passes); float64, every
// build without oneDNN, EMBER_GEMM=eigen|blas, and the passes ConvEngine::Auto leaves to it run
// here as im2col + GEMM, the classic CPU formulation:
//
//   forward        out[n, g] [Mg, P]  = W[g] [Mg, K] · col(in[n, g]) [K, P]
//   grad weight    gW[g]     [Mg, K] += gout[n, g] [Mg, P] · col(in[n, g])ᵀ [P, K]
//   grad input     in[n, g]         += col2im( W[g]ᵀ [K, Mg] · gout[n, g] [Mg, P] )
//
// with P = OH*OW output positions, K = Cg*kh*kw (input channels of the group times the window)
// and Mg the group's output channels. col(x) ("im2col") lays out, for every kernel tap (c, ki, kj),
// the row of input values that tap reads at each output position (0 where it falls in the
// padding); col2im is its adjoint and adds each column entry back where it was read from (its
// stride-1 rows with simd::add_into's vector loop).
// A 1x1 convolution with stride 1 and no padding needs no column matrix: the input plane is one.
//
// Threads split the batch: each image's products are independent, and a small single-threaded
// GEMM per image beats one parallel GEMM for the layer sizes of small CNNs (no synchronisation,
// the column buffer stays in the thread's cache). Each thread has its own column buffer for the
// whole call, and its own weight-gradient accumulator that the GEMMs add into directly (the
// matmul kernel's accumulate form, beta = 1) and that is summed over threads at the end. The
// weight gradient of float32 on oneDNN's sgemm takes blocks of images: their columns side by side
// ([K, nb*P]) and their output gradients gathered to match ([Mg, nb*P]) make one GEMM per block,
// which pays where P is small (weight_grad_images_per_block has the rule and its measurements);
// the forward and the input gradient stay one GEMM per image, which measured faster.
// With fewer images than threads the images run one after another and each GEMM uses every
// thread instead. The GEMMs go through this backend's matmul kernel on views, so they use the
// same engine (oneDNN, OpenBLAS or Eigen) as every other product; inside our parallel region it
// runs single-threaded.
//
// Columns kept for the backward (opt-in): when the weight will need a gradient (the op asks
// through ConvKernels::conv2d_keeping_columns) and a budget is set, the forward writes every
// image's columns into one [N, groups, K, P] tensor instead of a per-thread buffer, the op saves
// it in the graph node, and the backward's weight gradient reads it instead of running im2col
// again (one GEMM per image then: kept columns lie image by image, not in the side-by-side block
// layout). It is as safe as autograd's saved input: the node checks the input's version counter
// before the backward, so an in-place change of the input is an error, not stale columns. All
// kept columns together stay within cpu_conv_column_budget (EMBER_CONV_KEEP_COLUMNS_MB); past it
// a forward keeps nothing. The default budget is 0 because it measured slower on the Zen 5
// (2026-12-07, EMBER_CONV=im2col, alternated runs): the cnn's epoch 22.2-22.9 s kept against
// 21.4-22.9 s recomputed at 2 threads, with 64 MB more peak RSS; its conv layers' backward
// 688-738 ms against 655-721 ms and forward 296-319 against 277-306 ms per 30 steps at 1 thread;
// LeNet's epoch unchanged (2.06-2.38 s against 2.06-2.18 s). Writing N*K*P columns out to memory
// costs about what recomputing them from a cache-resident [K, P] buffer does. In
// ConvEngine::Auto the layers whose weight gradient runs here (the MNIST nets' conv2, ResNet's
// stem) have their forward on oneDNN anyway, which leaves no columns to keep.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_matmul.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/nchw_operands.h"
#include "core/cpu/onednn_conv.h"
#include "core/cpu/parallel.h"
#include "core/cpu/simd_loops.h"
#include "core/elementwise.h"
#include "core/ops.h"

namespace ember {

namespace {

struct ConvGeometry {
  int64_t N, C, H, W;  // input
  int64_t M, OH, OW;   // output channels and size
  int64_t groups, Cg, Mg;
  int64_t K, P;  // GEMM sizes (see the top of the file)
  Window2d w;
  bool direct;  // 1x1, stride 1, no padding: the input plane is the column matrix
};

ConvGeometry geometry(const Shape& in, const Tensor& out, Window2d w, int64_t groups) {
  ConvGeometry g;
  g.N = in[0], g.C = in[1], g.H = in[2], g.W = in[3];
  g.M = out.size(1), g.OH = out.size(2), g.OW = out.size(3);
  g.groups = groups, g.Cg = g.C / groups, g.Mg = g.M / groups;
  g.K = g.Cg * w.kh * w.kw, g.P = g.OH * g.OW;
  g.w = w;
  g.direct = w.kh == 1 && w.kw == 1 && w.sh == 1 && w.sw == 1 && w.ph == 0 && w.pw == 0;
  return g;
}

// A [1, rows, cols] matrix over t's storage starting `offset` elements after t's first element,
// rows `ld` apart — the 3-D form the matmul kernel takes. `transposed` reads the memory as the
// transpose of a row-major [cols, rows] matrix instead (no copy: the GEMM reads it transposed).
Tensor matrix(const Tensor& t, int64_t offset, int64_t rows, int64_t cols, int64_t ld, bool transposed = false) {
  const Shape strides = transposed ? Shape{0, 1, ld} : Shape{0, ld, 1};
  return make_tensor(t.storage(), Shape{1, rows, cols}, strides, t.offset() + offset, t.dtype());
}

// The output positions ow in [lo, hi) whose input column ow*stride + off lies inside [0, W).
inline void valid_range(int64_t off, int64_t stride, int64_t W, int64_t OW, int64_t& lo, int64_t& hi) {
  lo = off < 0 ? (-off + stride - 1) / stride : 0;
  hi = off >= W ? 0 : std::min(OW, (W - 1 - off) / stride + 1);
  lo = std::min(lo, hi);
}

// col [K, P] from one image's group of input channels x [Cg, H, W], written with rows `ldc` apart
// (ldc = P for one image; nb*P when the columns of nb images sit side by side).
template <typename T>
void im2col(const T* x, const ConvGeometry& g, T* col, int64_t ldc) {
  const Window2d& w = g.w;
  if (w.ph == 0 && w.pw == 0 && w.sh == 1 && w.sw == 1 && w.dh == 1 && w.dw == 1) {
    // Unpadded, stride 1, undilated (every MNIST net's layer): each output row reads a whole input
    // row segment, so the loop needs no bounds, no zero fill and no index arithmetic per row. The
    // MNIST layers' rows are 8-26 elements long and that bookkeeping was most of the time: this
    // path is 3x faster on their shapes (bench/RESULTS.md).
    for (int64_t c = 0; c < g.Cg; ++c)
      for (int64_t ki = 0; ki < w.kh; ++ki)
        for (int64_t kj = 0; kj < w.kw; ++kj) {
          const T* src = x + (c * g.H + ki) * g.W + kj;
          T* dst = col + ((c * w.kh + ki) * w.kw + kj) * ldc;
          for (int64_t oh = 0; oh < g.OH; ++oh, src += g.W, dst += g.OW) {
#pragma omp simd
            for (int64_t ow = 0; ow < g.OW; ++ow) dst[ow] = src[ow];
          }
        }
    return;
  }
  for (int64_t c = 0; c < g.Cg; ++c) {
    const T* plane = x + c * g.H * g.W;
    for (int64_t ki = 0; ki < w.kh; ++ki) {
      for (int64_t kj = 0; kj < w.kw; ++kj) {
        T* row = col + ((c * w.kh + ki) * w.kw + kj) * ldc;
        const int64_t off = kj * w.dw - w.pw;  // input column of output column ow: ow*sw + off
        int64_t lo, hi;
        valid_range(off, w.sw, g.W, g.OW, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          T* dst = row + oh * g.OW;
          const int64_t ih = oh * w.sh - w.ph + ki * w.dh;
          if (ih < 0 || ih >= g.H) {
            std::fill(dst, dst + g.OW, T(0));
            continue;
          }
          const T* src = plane + ih * g.W + off;
          std::fill(dst, dst + lo, T(0));
          if (w.sw == 1) {  // rows are short (the output width): an inline vector loop beats a memcpy call
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * w.sw];
          }
          std::fill(dst + hi, dst + g.OW, T(0));
        }
      }
    }
  }
}

// The adjoint of im2col: dx [Cg, H, W] += every entry of col [K, P] (rows `ldc` apart) at the
// place it was read from. The stride-1 run is simd::add_into's vector loop (its source and
// destination never overlap: one is the column buffer, the other the input gradient).
template <typename T>
void col2im(const T* col, const ConvGeometry& g, T* dx, int64_t ldc) {
  const Window2d& w = g.w;
  for (int64_t c = 0; c < g.Cg; ++c) {
    T* plane = dx + c * g.H * g.W;
    for (int64_t ki = 0; ki < w.kh; ++ki) {
      for (int64_t kj = 0; kj < w.kw; ++kj) {
        const T* row = col + ((c * w.kh + ki) * w.kw + kj) * ldc;
        const int64_t off = kj * w.dw - w.pw;
        int64_t lo, hi;
        valid_range(off, w.sw, g.W, g.OW, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * w.sh - w.ph + ki * w.dh;
          if (ih < 0 || ih >= g.H) continue;
          const T* src = row + oh * g.OW;
          T* dst = plane + ih * g.W + off;
          if (w.sw == 1) {
            simd::add_into(dst + lo, src + lo, hi - lo);
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow * w.sw] += src[ow];
          }
        }
      }
    }
  }
}

// One group's output gradient for a block of nb images, side by side: block [Mg, nb*P] gets, for
// image i < nb and row m < Mg, the P values at nchw + i*img_stride + m*P.
template <typename T>
void gather_rows(const T* nchw, int64_t img_stride, int64_t nb, int64_t Mg, int64_t P, T* block) {
  for (int64_t m = 0; m < Mg; ++m)
    for (int64_t i = 0; i < nb; ++i) std::copy_n(nchw + i * img_stride + m * P, P, block + (m * nb + i) * P);
}

// Images per weight-gradient GEMM. Each image's product gW[g] += gout [Mg, P] · col(x)ᵀ [P, K]
// sums over only P = OH*OW terms, so with a small output plane (ResNet stage 3's 8x8) the GEMM
// spends its time loading and storing the [Mg, K] result. Putting the columns of nb images side
// by side makes it one GEMM over nb*P terms. bench/conv_sweep with the block width varied call by
// call (interleaved, 2 threads, 2026-12-06): on oneDNN's sgemm, about kBlockColumns terms per GEMM
// took the weight gradient of ResNet-20's stage-3 3x3 convolution at batch 128 from 7.2 to 6.1 ms
// and of its 1x1 shortcut from 0.92 to 0.73 ms; 1024 or more terms were slower again (likely: the
// block's columns no longer fit in L2). On OpenBLAS and Eigen the same blocks were mixed (Eigen's
// stage-3 shortcut 16% faster, OpenBLAS's stage-3 3x3 20% slower, the rest within 10%), and the
// forward and the input gradient gained no more than 10% on any engine (their products already
// sum over K = Cg*kh*kw terms; a block adds a scatter and a larger working set, and was 1.2-1.5x
// slower at 512-1024 columns), so all of those keep one GEMM per image. Never so many images that
// a thread is left without a block, and the block is then the smallest that gives as many blocks
// (7 images at up to 5 per block: 4 + 3, not 5 + 2).
constexpr int64_t kBlockColumns = 256;

int64_t weight_grad_images_per_block(DType dtype, int64_t N, int64_t P, int threads) {
  if (dtype != kFloat32 || !cpu_gemm_uses_onednn() || P <= 0) return 1;
  const int64_t nb = std::min((kBlockColumns + P - 1) / P, (N + threads - 1) / threads);
  if (nb <= 1) return 1;
  const int64_t blocks = (N + nb - 1) / nb;
  return (N + blocks - 1) / blocks;
}

// Runs body(n0, nb, thread) for every block of images [n0, n0 + nb) (the last one may be shorter):
// threads split the blocks when there are enough images, otherwise the blocks run in order on
// thread 0 (and each GEMM inside uses all the threads).
template <typename F>
void for_each_block(int64_t N, int64_t block, int threads, F&& body) {
  const int64_t blocks = (N + block - 1) / block;
  auto run = [&](int64_t b, int t) {
    const int64_t n0 = b * block;
    body(n0, std::min(block, N - n0), t);
  };
  if (threads > 1) {
    parallel_for(blocks, 1, [&](int64_t lo, int64_t hi) {
      const int t = omp_get_thread_num();
      for (int64_t b = lo; b < hi; ++b) run(b, t);
    });
  } else {
    for (int64_t b = 0; b < blocks; ++b) run(b, 0);
  }
}

// Threads that split the batch (1 = images in order, each GEMM parallel).
int batch_threads(int64_t N) {
  const int t = get_num_threads();
  return N >= t ? t : 1;
}

}  // namespace

// ---------------- kept columns: the budget ----------------

namespace {

int64_t initial_column_budget() {
  const char* env = std::getenv("EMBER_CONV_KEEP_COLUMNS_MB");
  if (!env) return 0;  // off by default: it measured slower here (the note at the top of the file)
  char* end = nullptr;
  const long long mb = std::strtoll(env, &end, 10);
  EMBER_CHECK(end != env && *end == '\0' && mb >= 0 && mb <= (int64_t{1} << 40),
              "EMBER_CONV_KEEP_COLUMNS_MB: expected a whole number of MiB from 0, got '", env, "'");
  return static_cast<int64_t>(mb) << 20;
}

std::atomic<int64_t>& column_budget() {
  static std::atomic<int64_t> budget{initial_column_budget()};
  return budget;
}
std::atomic<int64_t> kept_column_bytes{0};

// A [N, groups, K, P] tensor for one forward's columns, when the budget has room for it: its
// storage gives the bytes back to the budget when the last reference (the graph node) goes.
Tensor keep_columns(const ConvGeometry& g, DType dtype) {
  int64_t bytes = static_cast<int64_t>(dtype_size(dtype));
  for (int64_t f : {g.N, g.groups, g.K, g.P})
    if (__builtin_mul_overflow(bytes, f, &bytes)) return Tensor();  // far past any budget
  int64_t used = kept_column_bytes.load();
  do {
    if (bytes > column_budget().load() - used) return Tensor();
  } while (!kept_column_bytes.compare_exchange_weak(used, used + bytes));
  const Tensor backing = empty({g.N, g.groups, g.K, g.P}, TensorOptions(dtype));
  auto* owner = new Tensor(backing);
  return from_blob(backing.data_ptr(), backing.shape(), dtype, kCPU, [owner, bytes](void*) {
    delete owner;
    kept_column_bytes.fetch_sub(bytes);
  });
}

}  // namespace

int64_t cpu_conv_column_budget() { return column_budget().load(); }
void set_cpu_conv_column_budget(int64_t bytes) {
  EMBER_CHECK(bytes >= 0, "set_cpu_conv_column_budget: expected a byte count from 0, got ", bytes);
  column_budget().store(bytes);
}
int64_t cpu_conv_kept_column_bytes() { return kept_column_bytes.load(); }

namespace {

// The forward, with the ReLU of conv2d_relu applied as each image's output is written when `relu`.
// With `keep`, the columns go into a kept [N, groups, K, P] tensor (when the budget allows), which
// is returned; otherwise an undefined tensor.
Tensor conv2d_forward(CpuBackend& be, const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out,
                      Window2d w, int64_t groups, bool relu, bool keep = false) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h); kept
  // columns are float32 then, as the backward's widened copies will be.
  if (has_reduced_floating({&in, &weight, &bias, &out})) {
    Float32Operands f;
    Tensor kept = conv2d_forward(be, f.in(in), f.in(weight), f.in(bias), f.out(out), w, groups, relu, keep);
    f.finish();
    return kept;
  }
  const ConvGeometry g = geometry(in.shape(), out, w, groups);
  if (out.numel() == 0) return Tensor();
  if (onednn_conv2d(in, weight, bias, out, w, groups, relu)) return Tensor();  // float32 with oneDNN built in
  if (has_strided({&in, &out})) {  // channels-last tensors: this path walks NCHW (core/cpu/nchw_operands.h)
    NchwOperands c;
    Tensor kept = conv2d_forward(be, c.in(in), weight, bias, c.out(out), w, groups, relu, keep);
    c.finish();
    return kept;
  }
  const Tensor kept = keep && !g.direct ? keep_columns(g, in.dtype()) : Tensor();
  EMBER_DISPATCH_FLOAT(in.dtype(), "conv2d", [&]<typename T>() {
    const int threads = batch_threads(g.N);
    // One [K, P] column buffer per thread, allocated once per call (unless the columns are kept).
    const Tensor col = g.direct || kept.defined() ? Tensor() : empty({threads, g.K, g.P}, TensorOptions(in.dtype()));
    const T* x = in.data<T>();
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    T* y = out.data<T>();
    for_each_block(g.N, 1, threads, [&](int64_t n, int64_t, int t) {
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const int64_t x_off = (n * g.C + gr * g.Cg) * g.H * g.W;
        Tensor cols;
        if (g.direct) {
          cols = matrix(in, x_off, g.K, g.P, g.P);
        } else {
          const Tensor& buf = kept.defined() ? kept : col;
          const int64_t off = (kept.defined() ? n * g.groups + gr : t) * g.K * g.P;
          im2col(x + x_off, g, buf.data<T>() + off, g.P);
          cols = matrix(buf, off, g.K, g.P, g.P);
        }
        be.matmul(matrix(weight, gr * g.Mg * g.K, g.Mg, g.K, g.K), cols,
                  matrix(out, (n * g.M + gr * g.Mg) * g.P, g.Mg, g.P, g.P));
      }
      if (b || relu) {  // bias and ReLU, applied while the image's output is still in cache
        for (int64_t m = 0; m < g.M; ++m) {
          T* row = y + (n * g.M + m) * g.P;
          const T bm = b ? b[m] : T(0);
          if (relu)
            for (int64_t p = 0; p < g.P; ++p) row[p] = ew::add_relu(row[p], bm);
          else
            for (int64_t p = 0; p < g.P; ++p) row[p] += bm;
        }
      }
    });
  });
  return kept;
}

}  // namespace

void CpuBackend::conv2d(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                        int64_t groups) {
  conv2d_forward(*this, in, weight, bias, out, w, groups, /*relu=*/false);
}

Tensor CpuBackend::conv2d_keeping_columns(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out,
                                          Window2d w, int64_t groups, bool relu) {
  column_budget();  // reads EMBER_CONV_KEEP_COLUMNS_MB now, so a typo is an error whichever path runs
  return conv2d_forward(*this, in, weight, bias, out, w, groups, relu, /*keep=*/true);
}

void CpuBackend::conv2d_relu(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out, Window2d w,
                             int64_t groups) {
  conv2d_forward(*this, in, weight, bias, out, w, groups, /*relu=*/true);
}

void CpuBackend::conv2d_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& grad_in,
                                 const Tensor& grad_weight, const Tensor& grad_bias, Window2d w, int64_t groups) {
  conv2d_backward_with_columns(grad_out, in, weight, grad_in, grad_weight, grad_bias, w, groups, Tensor());
}

void CpuBackend::conv2d_backward_with_columns(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                              const Tensor& grad_in, const Tensor& grad_weight,
                                              const Tensor& grad_bias, Window2d w, int64_t groups,
                                              const Tensor& columns) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &in, &weight, &grad_in, &grad_weight, &grad_bias})) {
    Float32Operands f;
    conv2d_backward_with_columns(f.in(grad_out), f.in(in), f.in(weight), f.out(grad_in), f.out(grad_weight),
                                 f.out(grad_bias), w, groups, columns);
    return f.finish();
  }
  // `in` is only there for the weight gradient; the input's shape may come from grad_in instead
  // (with neither, only the bias gradient is asked for, which needs no input geometry).
  const Shape in_shape = in.defined()        ? in.shape()
                         : grad_in.defined() ? grad_in.shape()
                                             : Shape{grad_out.size(0), weight.size(1) * groups, 0, 0};
  const ConvGeometry g = geometry(in_shape, grad_out, w, groups);
  const bool empty_input = g.P == 0 || g.N == 0 || g.C == 0 || grad_out.numel() == 0;
  // oneDNN's primitives take the passes they are faster at (float32, oneDNN built in); this
  // im2col path does whatever they left.
  const OneDnnBackwardDone done =
      empty_input ? OneDnnBackwardDone{}
                  : onednn_conv2d_backward(grad_out, in, weight, grad_in, grad_weight, grad_bias, w, groups);
  const bool need_in = grad_in.defined() && !done.grad_in;
  const bool need_w = grad_weight.defined() && !done.grad_weight;
  const bool need_b = grad_bias.defined() && !done.grad_weight;
  if (!need_in && !need_w && !need_b) return;
  if (has_strided({&grad_out, &in, &grad_in})) {  // channels-last tensors: the rest on NCHW stand-ins
    NchwOperands c;
    conv2d_backward_with_columns(c.in(grad_out), need_w ? c.in(in) : Tensor(), weight,
                                 need_in ? c.out(grad_in) : Tensor(), need_w ? grad_weight : Tensor(),
                                 need_b ? grad_bias : Tensor(), w, groups, columns);
    return c.finish();
  }
  EMBER_DISPATCH_FLOAT(grad_out.dtype(), "conv2d_backward", [&]<typename T>() {
    const int threads = batch_threads(g.N);
    // The forward's kept columns, when they are this call's (same geometry and dtype).
    const bool reuse = need_w && columns.defined() && !g.direct && columns.dtype() == grad_out.dtype() &&
                       columns.shape() == Shape{g.N, g.groups, g.K, g.P};
    // Images per block: several only for the weight gradient (see weight_grad_images_per_block),
    // and not over kept columns, which lie image by image.
    const int64_t nb_max =
        need_w && !reuse ? weight_grad_images_per_block(grad_out.dtype(), g.N, g.P, threads) : 1;
    const int64_t ldc_max = nb_max * g.P;
    const TensorOptions opts(grad_out.dtype());
    // Per thread: a [K, nb*P] column buffer (im2col of the block's inputs for gW, then W^T·gout of
    // one image at a time for the input gradient), with blocks of several images a [Mg, nb*P] copy
    // of the block's output gradient, a weight-gradient accumulator [M, K] that the GEMM adds into
    // (beta = 1), and a bias-gradient accumulator [M]. The thread-private sums are combined after
    // the loop.
    const bool blocked = nb_max > 1;
    const bool need_cols = (need_in || (need_w && !reuse)) && (!g.direct || blocked);
    const Tensor col = need_cols ? empty({threads, g.K, ldc_max}, opts) : Tensor();
    const Tensor gblock = blocked ? empty({threads, g.Mg, ldc_max}, opts) : Tensor();
    const Tensor w_acc = need_w ? zeros({threads, g.M, g.K}, opts) : Tensor();
    const Tensor b_acc = need_b ? zeros({threads, g.M}, opts) : Tensor();
    const T* x = need_w ? in.data<T>() : nullptr;
    const T* gy = grad_out.data<T>();
    if (g.P == 0 || g.N == 0) {
      if (need_in) fill(grad_in, 0.0);
      if (need_w) fill(grad_weight, 0.0);
      if (need_b) fill(grad_bias, 0.0);
      return;
    }

    for_each_block(g.N, nb_max, threads, [&](int64_t n0, int64_t nb, int t) {
      const int64_t col_off = t * g.K * ldc_max;
      T* cbuf = need_cols ? col.data<T>() + col_off : nullptr;
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const int64_t x_off = (n0 * g.C + gr * g.Cg) * g.H * g.W;
        const int64_t y_off = (n0 * g.M + gr * g.Mg) * g.P;
        if (need_w) {  // gW[g] += gout [Mg, nb*P] · col(x)ᵀ [nb*P, K], one GEMM for the block
          const int64_t ldc = nb * g.P;
          Tensor gout, cols_t;
          if (!blocked) {
            gout = matrix(grad_out, y_off, g.Mg, g.P, g.P);
          } else {
            gather_rows(gy + y_off, g.M * g.P, nb, g.Mg, g.P, gblock.data<T>() + t * g.Mg * ldc_max);
            gout = matrix(gblock, t * g.Mg * ldc_max, g.Mg, ldc, ldc);
          }
          if (g.direct && !blocked) {
            cols_t = matrix(in, x_off, g.P, g.K, g.P, /*transposed=*/true);
          } else if (reuse) {  // nb == 1: image n0's columns of this group, as the forward wrote them
            cols_t = matrix(columns, (n0 * g.groups + gr) * g.K * g.P, g.P, g.K, g.P, /*transposed=*/true);
          } else {
            for (int64_t i = 0; i < nb; ++i) im2col(x + x_off + i * g.C * g.H * g.W, g, cbuf + i * g.P, ldc);
            cols_t = matrix(col, col_off, ldc, g.K, ldc, /*transposed=*/true);
          }
          matmul(gout, cols_t, matrix(w_acc, (t * g.M + gr * g.Mg) * g.K, g.Mg, g.K, g.K), /*accumulate=*/true);
        }
        if (need_in) {  // one image at a time: the column gradient stays in cache for col2im
          const Tensor w_t = matrix(weight, gr * g.Mg * g.K, g.K, g.Mg, g.K, /*transposed=*/true);  // [K, Mg]
          for (int64_t i = 0; i < nb; ++i) {
            const int64_t xi = x_off + i * g.C * g.H * g.W;
            const Tensor gout = matrix(grad_out, y_off + i * g.M * g.P, g.Mg, g.P, g.P);
            if (g.direct) {  // the column gradient is the input gradient
              matmul(w_t, gout, matrix(grad_in, xi, g.K, g.P, g.P));
            } else {
              matmul(w_t, gout, matrix(col, col_off, g.K, g.P, g.P));
              T* dx = grad_in.data<T>() + xi;
              std::fill(dx, dx + g.Cg * g.H * g.W, T(0));  // col2im accumulates; zeroed here while in cache
              col2im(cbuf, g, dx, g.P);
            }
          }
        }
      }
      if (need_b) {
        T* acc = b_acc.data<T>() + t * g.M;
        for (int64_t n = n0; n < n0 + nb; ++n)
          for (int64_t m = 0; m < g.M; ++m) acc[m] += simd::sum(gy + (n * g.M + m) * g.P, g.P);
      }
    });

    // Combine the per-thread sums.
    auto reduce_threads = [&](const Tensor& acc, const Tensor& dst) {
      const int64_t n = dst.numel();
      const T* a = acc.data<T>();
      T* d = dst.data<T>();
      std::copy(a, a + n, d);
      for (int t = 1; t < threads; ++t) simd::add_into(d, a + t * n, n);
    };
    if (need_w) reduce_threads(w_acc, grad_weight);
    if (need_b) reduce_threads(b_acc, grad_bias);
  });
}

}  // namespace ember
