// CPU batch norm and layer norm: forward and backward, each fused into one kernel.
//
// Statistics are accumulated in double whatever the tensor's dtype, in one pass over the data.
// Batch norm's sums are shifted by the channel's first value k: with d = x - k,
//   mean = k + sum(d)/n      var = sum(d^2)/n - (sum(d)/n)^2
// which is exact algebra and, because k lies inside the data, keeps E[d^2] - E[d]^2 from the
// cancellation that E[x^2] - E[x]^2 suffers when the mean is large beside the spread (tested with a
// mean of 1e4 and a spread of 1e-2). One pass instead of two reads the activations once; the sums
// are `omp simd` reductions, which lets the compiler keep several double lanes (a plain `s += x`
// in double is one serial dependency chain and runs at a quarter of the loads' speed).
//
// With xhat = (x - mean) * invstd and y = w * xhat + b, the gradients over a group of n values
// normalised together are
//   db = sum(g)    dw = sum(g * xhat)
//   dx = w * invstd * (g - db/n - xhat * dw/n)       (statistics of the batch: they depend on x)
//   dx = w * invstd * g                              (running statistics: constants)
// Batch norm normalises each channel over (batch, spatial), so threads split the channels; layer
// norm normalises each row, so threads split the rows.
//
// batch_norm_relu is batch norm with a ReLU on its output in the same pass, y = max(0, w * xhat + b)
// (ResNet's conv-BN-ReLU). Its backward is batch norm's with g replaced by the ReLU's masked
// gradient g * (y > 0), the mask recomputed from x, which the backward reads anyway. Against
// batch_norm then relu, that saves the ReLU's own passes: a read and a write of the activation
// forward, two reads and a write backward.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/parallel.h"

namespace ember {

namespace {

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// The loops below are plain functions, not lambdas, for the reason core/cpu/simd_loops.h gives.

// s += sum(x - k), ss += sum((x - k)^2) over n values.
template <typename T>
void add_shifted_sums(const T* x, int64_t n, double k, double& s, double& ss) {
  double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - k;
    a += d;
    b += d * d;
  }
  s += a;
  ss += b;
}

// sum_g += sum(g), sum_gd += sum(g * (x - mean)) over n values.
template <typename T>
void add_grad_sums(const T* g, const T* x, int64_t n, double mean, double& sum_g, double& sum_gd) {
  double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < n; ++i) {
    const double gi = g[i];
    a += gi;
    b += gi * (static_cast<double>(x[i]) - mean);
  }
  sum_g += a;
  sum_gd += b;
}

// y = x * scale + shift over n values.
template <typename T>
void scale_shift(const T* x, int64_t n, T scale, T shift, T* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale + shift;
}

// batch_norm_relu: y = relu(fma(x, scale, shift)). The backward recomputes the ReLU's mask the
// same way with the same scale and shift (relu_scale_shift), so the two passes agree on every
// element bit for bit without the backward reading the output. As ember's relu: relu(NaN) is NaN,
// and the gradient passes where the pre-activation is not <= 0 (NaN included).
template <typename T>
void scale_shift_relu(const T* x, int64_t n, T scale, T shift, T* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T v = std::fma(x[i], scale, shift);
    y[i] = v <= T(0) ? T(0) : v;
  }
}

// add_grad_sums of the ReLU-masked gradient: g where fma(x, scale, shift) is not <= 0, else 0. The
// masked values are written out first, to `keep` (n values: the input gradient's memory, where the
// backward writes it, so that its second pass reads them instead of masking again) or to a small
// buffer chunk by chunk. The select inside the double reduction made GCC 12's vector loop 13x
// slower than add_grad_sums (its accumulators went through the stack).
template <typename T>
void add_grad_sums_relu(const T* g, const T* x, int64_t n, double mean, T scale, T shift, double& sum_g,
                        double& sum_gd, T* keep) {
  constexpr int64_t kChunk = 512;
  alignas(64) T buffer[kChunk];
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t m = std::min(kChunk, n - i0);
    T* masked = keep ? keep + i0 : buffer;
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) masked[i] = std::fma(x[i0 + i], scale, shift) <= T(0) ? T(0) : g[i0 + i];
    add_grad_sums(masked, x + i0, m, mean, sum_g, sum_gd);
  }
}

// The per-channel scale and shift of batch_norm_relu, from the statistics as saved (rounded to T),
// so that the backward, which has only those, computes exactly the forward's.
template <typename T>
void relu_scale_shift(T mean, T invstd, const T* w, const T* b, int64_t c, T& scale, T& shift) {
  const double s = static_cast<double>(invstd) * (w ? w[c] : 1.0);
  scale = static_cast<T>(s);
  shift = static_cast<T>((b ? b[c] : 0.0) - static_cast<double>(mean) * s);
}

// out = k * g + a * x + b over n values.
template <typename T>
void affine2(const T* g, const T* x, int64_t n, T k, T a, T b, T* out) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = k * g[i] + a * x[i] + b;
}

}  // namespace

// ---------------- batch norm: in [N, C, S] ----------------

namespace {

// The forward's data pointers (optional tensors: nullptr), for both layouts' loops.
template <typename T>
struct ForwardPointers {
  const T *x, *w, *b;
  T *rm, *rv, *y, *sm, *si;
  ForwardPointers(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd)
      : x(in.data<T>()),
        w(ptr_or_null<T>(weight)),
        b(ptr_or_null<T>(bias)),
        rm(running_mean.defined() ? running_mean.data<T>() : nullptr),
        rv(running_var.defined() ? running_var.data<T>() : nullptr),
        y(out.data<T>()),
        sm(save_mean.data<T>()),
        si(save_invstd.data<T>()) {}
};

// One channel's statistics, the same for both layouts. Training: from the shifted sums s = sum(x - k)
// and q = sum((x - k)^2) over `count` values (see the top of the file), and the running statistics
// (when given) updated with `momentum`; otherwise the running statistics. Writes the saved mean and
// invstd (rounded to T) and returns them unrounded.
struct ChannelStats {
  double mean, invstd;
};
template <typename T>
ChannelStats channel_statistics(int64_t c, bool training, double k, double s, double q, int64_t count,
                                double momentum, double eps, T* rm, T* rv, T* sm, T* si) {
  double mean, invstd;
  if (training) {
    const double shifted_mean = s / static_cast<double>(count);
    mean = k + shifted_mean;
    // biased: what normalises the batch; q becomes the sum of squared deviations from the mean
    q = std::max(0.0, q - s * shifted_mean);
    invstd = 1.0 / std::sqrt(q / static_cast<double>(count) + eps);
    if (rm) rm[c] = static_cast<T>((1 - momentum) * rm[c] + momentum * mean);
    if (rv) {  // unbiased, as PyTorch stores it (count > 1 is checked by the op)
      const double unbiased = q / static_cast<double>(count - 1);
      rv[c] = static_cast<T>((1 - momentum) * rv[c] + momentum * unbiased);
    }
  } else {
    mean = rm[c];
    invstd = 1.0 / std::sqrt(static_cast<double>(rv[c]) + eps);
  }
  sm[c] = static_cast<T>(mean);
  si[c] = static_cast<T>(invstd);
  return {mean, invstd};
}

// The backward for channel c from sum_g = sum(g) and sum_gd = sum(g * (x - mean)) (of the ReLU-
// masked g under relu): writes the weight and bias gradients (where wanted) and returns the
// constants of dx = k * g + a * x + b. With batch statistics (training)
//   dx = k * (g - mean(g) - (x - mean) * invstd^2 * mean(g * (x - mean))),   k = invstd * w;
// with running ones the last two terms are constants' derivatives, zero.
template <typename T>
struct InputGradCoefficients {
  T k, a, b;
};
template <typename T>
InputGradCoefficients<T> channel_backward(int64_t c, double sum_g, double sum_gd, int64_t count, bool training,
                                          const T* sm, const T* si, const T* w, T* gw, T* gb) {
  const double mean = sm[c], invstd = si[c];
  if (gb) gb[c] = static_cast<T>(sum_g);
  if (gw) gw[c] = static_cast<T>(sum_gd * invstd);
  const double k = invstd * (w ? w[c] : 1.0);
  const double mean_g = training ? sum_g / static_cast<double>(count) : 0.0;
  const double proj = training ? sum_gd / static_cast<double>(count) * invstd * invstd : 0.0;
  return {static_cast<T>(k), static_cast<T>(-k * proj), static_cast<T>(-k * mean_g + k * proj * mean)};
}

// The forward's y = x * scale + shift for channel c: batch_norm_relu's from the saved (rounded)
// statistics (relu_scale_shift, so the backward's mask agrees), batch_norm's from the unrounded ones.
template <typename T>
void forward_scale_shift(ChannelStats st, const T* sm, const T* si, const T* w, const T* b, int64_t c, bool relu,
                         T& scale, T& shift) {
  if (relu) return relu_scale_shift(sm[c], si[c], w, b, c, scale, shift);
  const double sc = st.invstd * (w ? w[c] : 1.0);
  scale = static_cast<T>(sc);
  shift = static_cast<T>((b ? b[c] : 0.0) - st.mean * sc);
}

// ---- channels-last: in [N, C, S] with strides (S*C, 1, C), i.e. N*S rows of C channels ----
// Every row holds one value of each channel, so the per-channel sums run along the row (a vector
// of channels) and threads split the rows, each keeping its own partial sums, added up after. The
// arithmetic per channel is the NCHW loops' (same shift, same saved statistics, same scale and
// shift, same ReLU mask), only the order of the additions differs.

// Whether the op handed this kernel channels-last tensors (core/ops/norm.cpp: out, grad_out and
// grad_in are then laid out like in).
bool channels_last(const Tensor& in) { return in.size(1) > 1 && in.stride(1) == 1 && !in.is_contiguous(); }

// Row chunks for per-thread partial sums: a fixed count, so results do not depend on the threads.
constexpr int64_t kRowChunks = 16;

// Per channel over `rows` rows of C: s += sum(x - k), ss += sum((x - k)^2).
template <typename T>
void row_shifted_sums(const T* x, int64_t rows, int64_t C, const double* k, double* s, double* ss) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const double d = static_cast<double>(xr[c]) - k[c];
      s[c] += d;
      ss[c] += d * d;
    }
  }
}

// One row of C channels, per-channel constants (the loops are functions for simd_loops.h's reason).
template <typename T>
void row_scale_shift(const T* x, int64_t C, const T* scale, const T* shift, bool relu, T* y) {
  if (relu) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const T v = std::fma(x[c], scale[c], shift[c]);  // as scale_shift_relu: the backward's mask agrees
      y[c] = v <= T(0) ? T(0) : v;
    }
  } else {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) y[c] = x[c] * scale[c] + shift[c];
  }
}

// masked = g where fma(x, scale, shift) is not <= 0, else 0 (add_grad_sums_relu's mask).
template <typename T>
void row_relu_mask(const T* g, const T* x, int64_t C, const T* scale, const T* shift, T* masked) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) masked[c] = std::fma(x[c], scale[c], shift[c]) <= T(0) ? T(0) : g[c];
}

// sum_g += g, sum_gd += g * (x - mean), per channel.
template <typename T>
void row_grad_sums(const T* g, const T* x, int64_t C, const double* mean, double* sum_g, double* sum_gd) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const double gi = g[c];
    sum_g[c] += gi;
    sum_gd[c] += gi * (static_cast<double>(x[c]) - mean[c]);
  }
}

// out = k * g + a * x + b per channel (affine2 with per-channel constants).
template <typename T>
void row_affine2(const T* g, const T* x, int64_t C, const T* k, const T* a, const T* b, T* out) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) out[c] = k[c] * g[c] + a[c] * x[c] + b[c];
}

// The shifted sums of every channel of x [rows, C] (for channel_statistics): k[c] the shift (row
// 0's value, as the NCHW loop's first value of the channel), s[c] and q[c] the sums, chunked over
// rows (each chunk its own partial sums) and added up in chunk order.
template <typename T>
void channels_last_sums(const T* x, int64_t count, int64_t C, std::vector<double>& k, std::vector<double>& s,
                        std::vector<double>& q) {
  k.assign(x, x + C);  // count > 0 here
  std::vector<double> part(static_cast<size_t>(2 * kRowChunks * C), 0.0);
  const int64_t per = (count + kRowChunks - 1) / kRowChunks;
  parallel_for(kRowChunks, items_per_grain(Grain::Normalization, per * C), [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t r0 = std::min(count, j * per), r1 = std::min(count, r0 + per);
      row_shifted_sums(x + r0 * C, r1 - r0, C, k.data(), &part[2 * j * C], &part[(2 * j + 1) * C]);
    }
  });
  s.assign(C, 0.0);
  q.assign(C, 0.0);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t j = 0; j < kRowChunks; ++j) {
      s[c] += part[2 * j * C + c];
      q[c] += part[(2 * j + 1) * C + c];
    }
}

void batch_norm_channels_last(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, const Tensor& out, const Tensor& save_mean,
                              const Tensor& save_invstd, bool training, double momentum, double eps, bool relu) {
  const int64_t C = in.size(1), count = in.size(0) * in.size(2);
  EMBER_DISPATCH_FLOAT(in.dtype(), "batch_norm", [&]<typename T>() {
    const ForwardPointers<T> p(in, weight, bias, running_mean, running_var, out, save_mean, save_invstd);
    const T *x = p.x, *w = p.w, *b = p.b;
    T *rm = p.rm, *rv = p.rv, *y = p.y, *sm = p.sm, *si = p.si;
    std::vector<double> k, sums, squares;
    if (training) channels_last_sums(x, count, C, k, sums, squares);
    std::vector<T> scale(C), shift(C);
    for (int64_t c = 0; c < C; ++c) {
      const ChannelStats st = training ? channel_statistics(c, true, k[c], sums[c], squares[c], count, momentum, eps,
                                                            rm, rv, sm, si)
                                       : channel_statistics(c, false, 0, 0, 0, count, momentum, eps, rm, rv, sm, si);
      forward_scale_shift(st, sm, si, w, b, c, relu, scale[c], shift[c]);
    }
    const T *sc = scale.data(), *sh = shift.data();
    parallel_for(count, items_per_grain(Grain::Normalization, C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) row_scale_shift(x + r * C, C, sc, sh, relu, y + r * C);
    });
  });
}

void batch_norm_backward_channels_last(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                       const Tensor& bias, const Tensor& save_mean, const Tensor& save_invstd,
                                       const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                       bool training, bool relu) {
  const int64_t C = in.size(1), count = in.size(0) * in.size(2);
  EMBER_DISPATCH_FLOAT(in.dtype(), "batch_norm_backward", [&]<typename T>() {
    const T *x = in.data<T>(), *g = grad_out.data<T>(), *w = ptr_or_null<T>(weight), *bb = ptr_or_null<T>(bias);
    const T *sm = save_mean.data<T>(), *si = save_invstd.data<T>();
    T* gx = grad_in.defined() ? grad_in.data<T>() : nullptr;
    std::vector<T> scale(C, T(0)), shift(C, T(0));  // batch_norm_relu: the forward's, for the mask
    if (relu)
      for (int64_t c = 0; c < C; ++c) relu_scale_shift(sm[c], si[c], w, bb, c, scale[c], shift[c]);
    std::vector<double> mean(sm, sm + C);
    // Pass 1, per chunk of rows: sum(g) and sum(g * (x - mean)) per channel, of the masked g under
    // relu (written to gx, as add_grad_sums_relu does, when there is a gx).
    std::vector<double> part(static_cast<size_t>(2 * kRowChunks * C), 0.0);
    const int64_t per = (count + kRowChunks - 1) / kRowChunks;
    const T *sc = scale.data(), *sh = shift.data();
    const double* mu = mean.data();
    parallel_for(kRowChunks, items_per_grain(Grain::Normalization, per * C), [&](int64_t j0, int64_t j1) {
      std::vector<T> masked_row(relu && !gx ? C : 0);
      for (int64_t j = j0; j < j1; ++j) {
        double* sg = &part[2 * j * C];
        double* sgd = &part[(2 * j + 1) * C];
        const int64_t r0 = std::min(count, j * per), r1 = std::min(count, r0 + per);
        for (int64_t r = r0; r < r1; ++r) {
          const T* xr = x + r * C;
          const T* gr = g + r * C;
          if (relu) {
            T* m = gx ? gx + r * C : masked_row.data();
            row_relu_mask(gr, xr, C, sc, sh, m);
            gr = m;
          }
          row_grad_sums(gr, xr, C, mu, sg, sgd);
        }
      }
    });
    T* gw = grad_weight.defined() ? grad_weight.data<T>() : nullptr;
    T* gb = grad_bias.defined() ? grad_bias.data<T>() : nullptr;
    std::vector<T> kk(C), a(C), b0(C);
    for (int64_t c = 0; c < C; ++c) {
      double sum_g = 0, sum_gd = 0;
      for (int64_t j = 0; j < kRowChunks; ++j) {
        sum_g += part[2 * j * C + c];
        sum_gd += part[(2 * j + 1) * C + c];
      }
      const InputGradCoefficients<T> d = channel_backward(c, sum_g, sum_gd, count, training, sm, si, w, gw, gb);
      kk[c] = d.k;
      a[c] = d.a;
      b0[c] = d.b;
    }
    if (!gx) return;
    const T *pk = kk.data(), *pa = a.data(), *pb = b0.data();
    parallel_for(count, items_per_grain(Grain::Normalization, C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)  // under relu, gx holds the masked gradient: in place
        row_affine2(relu ? gx + r * C : g + r * C, x + r * C, C, pk, pa, pb, gx + r * C);
    });
  });
}

// batch_norm, and batch_norm_relu when `relu`.
void batch_norm_cpu(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                    const Tensor& running_var, const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                    bool training, double momentum, double eps, bool relu) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &weight, &bias, &running_mean, &running_var, &out, &save_mean, &save_invstd})) {
    Float32Operands f;
    batch_norm_cpu(f.in(in), f.in(weight), f.in(bias), f.out(running_mean), f.out(running_var), f.out(out),
                   f.out(save_mean), f.out(save_invstd), training, momentum, eps, relu);
    return f.finish();
  }
  if (channels_last(in))
    return batch_norm_channels_last(in, weight, bias, running_mean, running_var, out, save_mean, save_invstd, training,
                                    momentum, eps, relu);
  const int64_t N = in.size(0), C = in.size(1), S = in.size(2), count = N * S;
  EMBER_DISPATCH_FLOAT(in.dtype(), "batch_norm", [&]<typename T>() {
    const ForwardPointers<T> p(in, weight, bias, running_mean, running_var, out, save_mean, save_invstd);
    const T *x = p.x, *w = p.w, *b = p.b;
    T *rm = p.rm, *rv = p.rv, *y = p.y, *sm = p.sm, *si = p.si;
    parallel_for(C, items_per_grain(Grain::Normalization, count), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double k = 0, s = 0, q = 0;
        if (training) {
          k = x[c * S];  // the shift (see the top of the file); count > 0 here
          for (int64_t n = 0; n < N; ++n) add_shifted_sums(x + (n * C + c) * S, S, k, s, q);
        }
        const ChannelStats st = channel_statistics(c, training, k, s, q, count, momentum, eps, rm, rv, sm, si);
        T sc, sh;  // y = x * scale + shift: one multiply-add per element
        forward_scale_shift(st, sm, si, w, b, c, relu, sc, sh);
        if (relu) {
          for (int64_t n = 0; n < N; ++n) scale_shift_relu(x + (n * C + c) * S, S, sc, sh, y + (n * C + c) * S);
          continue;
        }
        for (int64_t n = 0; n < N; ++n) scale_shift(x + (n * C + c) * S, S, sc, sh, y + (n * C + c) * S);
      }
    });
  });
}

// batch_norm_backward, and batch_norm_relu's backward when `relu` (then bias is the forward's: the
// ReLU's mask is recomputed from x, see scale_shift_relu). The saved invstd already holds eps.
void batch_norm_backward_cpu(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& bias,
                             const Tensor& save_mean, const Tensor& save_invstd, const Tensor& grad_in,
                             const Tensor& grad_weight, const Tensor& grad_bias, bool training, bool relu) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating(
          {&grad_out, &in, &weight, &bias, &save_mean, &save_invstd, &grad_in, &grad_weight, &grad_bias})) {
    Float32Operands f;
    batch_norm_backward_cpu(f.in(grad_out), f.in(in), f.in(weight), f.in(bias), f.in(save_mean), f.in(save_invstd),
                            f.out(grad_in), f.out(grad_weight), f.out(grad_bias), training, relu);
    return f.finish();
  }
  if (channels_last(in))
    return batch_norm_backward_channels_last(grad_out, in, weight, bias, save_mean, save_invstd, grad_in, grad_weight,
                                             grad_bias, training, relu);
  const int64_t N = in.size(0), C = in.size(1), S = in.size(2), count = N * S;
  EMBER_DISPATCH_FLOAT(in.dtype(), "batch_norm_backward", [&]<typename T>() {
    const T *x = in.data<T>(), *g = grad_out.data<T>(), *w = ptr_or_null<T>(weight), *bb = ptr_or_null<T>(bias);
    const T *sm = save_mean.data<T>(), *si = save_invstd.data<T>();
    T* gx = grad_in.defined() ? grad_in.data<T>() : nullptr;
    T* gw = grad_weight.defined() ? grad_weight.data<T>() : nullptr;
    T* gb = grad_bias.defined() ? grad_bias.data<T>() : nullptr;
    parallel_for(C, items_per_grain(Grain::Normalization, count), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double mean = sm[c];
        T sc = 0, sh = 0;  // batch_norm_relu: the forward's scale and shift, for the mask
        if (relu) relu_scale_shift(sm[c], si[c], w, bb, c, sc, sh);
        double sum_g = 0, sum_gd = 0;  // sum(g), sum(g * (x - mean)), of the masked g under relu
        for (int64_t n = 0; n < N; ++n) {
          const int64_t at = (n * C + c) * S;
          if (relu) add_grad_sums_relu(g + at, x + at, S, mean, sc, sh, sum_g, sum_gd, gx ? gx + at : nullptr);
          else add_grad_sums(g + at, x + at, S, mean, sum_g, sum_gd);
        }
        const InputGradCoefficients<T> d = channel_backward(c, sum_g, sum_gd, count, training, sm, si, w, gw, gb);
        if (!gx) continue;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t at = (n * C + c) * S;
          // Under relu, gx holds the masked gradient already (add_grad_sums_relu): in place.
          affine2(relu ? gx + at : g + at, x + at, S, d.k, d.a, d.b, gx + at);
        }
      }
    });
  });
}

}  // namespace

void CpuBackend::batch_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                            const Tensor& running_var, const Tensor& out, const Tensor& save_mean,
                            const Tensor& save_invstd, bool training, double momentum, double eps) {
  batch_norm_cpu(in, weight, bias, running_mean, running_var, out, save_mean, save_invstd, training, momentum, eps,
                 /*relu=*/false);
}

void CpuBackend::batch_norm_relu(const Tensor& in, const Tensor& weight, const Tensor& bias,
                                 const Tensor& running_mean, const Tensor& running_var, const Tensor& out,
                                 const Tensor& save_mean, const Tensor& save_invstd, bool training, double momentum,
                                 double eps) {
  batch_norm_cpu(in, weight, bias, running_mean, running_var, out, save_mean, save_invstd, training, momentum, eps,
                 /*relu=*/true);
}

void CpuBackend::batch_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                     const Tensor& save_mean, const Tensor& save_invstd, const Tensor& grad_in,
                                     const Tensor& grad_weight, const Tensor& grad_bias, bool training, double) {
  batch_norm_backward_cpu(grad_out, in, weight, Tensor(), save_mean, save_invstd, grad_in, grad_weight, grad_bias,
                          training, /*relu=*/false);
}

void CpuBackend::batch_norm_relu_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight,
                                          const Tensor& bias, const Tensor& save_mean, const Tensor& save_invstd,
                                          const Tensor& grad_in, const Tensor& grad_weight, const Tensor& grad_bias,
                                          bool training, double) {
  batch_norm_backward_cpu(grad_out, in, weight, bias, save_mean, save_invstd, grad_in, grad_weight, grad_bias, training,
                          /*relu=*/true);
}

// ---------------- layer norm: in [M, N], each row normalised ----------------

void CpuBackend::layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, const Tensor& out,
                            const Tensor& mean, const Tensor& rstd, double eps) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &weight, &bias, &out, &mean, &rstd})) {
    Float32Operands f;
    layer_norm(f.in(in), f.in(weight), f.in(bias), f.out(out), f.out(mean), f.out(rstd), eps);
    return f.finish();
  }
  const int64_t M = in.size(0), N = in.size(1);
  EMBER_DISPATCH_FLOAT(in.dtype(), "layer_norm", [&]<typename T>() {
    const T *x = in.data<T>(), *w = ptr_or_null<T>(weight), *b = ptr_or_null<T>(bias);
    T *y = out.data<T>(), *mu = mean.data<T>(), *rs = rstd.data<T>();
    parallel_for(M, items_per_grain(Grain::Normalization, N), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * N;
        T* yr = y + r * N;
        double s = 0;
        for (int64_t j = 0; j < N; ++j) s += xr[j];
        const double m = s / static_cast<double>(N);
        double ss = 0;
        for (int64_t j = 0; j < N; ++j) ss += (xr[j] - m) * (xr[j] - m);
        const double r_std = 1.0 / std::sqrt(ss / static_cast<double>(N) + eps);
        mu[r] = static_cast<T>(m);
        rs[r] = static_cast<T>(r_std);
        const T tm = static_cast<T>(m), tr = static_cast<T>(r_std);
        if (w && b) {
          for (int64_t j = 0; j < N; ++j) yr[j] = (xr[j] - tm) * tr * w[j] + b[j];
        } else if (w) {
          for (int64_t j = 0; j < N; ++j) yr[j] = (xr[j] - tm) * tr * w[j];
        } else {
          for (int64_t j = 0; j < N; ++j) yr[j] = (xr[j] - tm) * tr + (b ? b[j] : T(0));
        }
      }
    });
  });
}

void CpuBackend::layer_norm_backward(const Tensor& grad_out, const Tensor& in, const Tensor& weight, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& grad_in, const Tensor& grad_weight,
                                     const Tensor& grad_bias) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&grad_out, &in, &weight, &mean, &rstd, &grad_in, &grad_weight, &grad_bias})) {
    Float32Operands f;
    layer_norm_backward(f.in(grad_out), f.in(in), f.in(weight), f.in(mean), f.in(rstd), f.out(grad_in), f.out(grad_weight),
                        f.out(grad_bias));
    return f.finish();
  }
  const int64_t M = in.size(0), N = in.size(1);
  EMBER_DISPATCH_FLOAT(in.dtype(), "layer_norm_backward", [&]<typename T>() {
    const T *x = in.data<T>(), *g = grad_out.data<T>(), *w = ptr_or_null<T>(weight);
    const T *mu = mean.data<T>(), *rs = rstd.data<T>();
    if (grad_in.defined()) {
      T* gx = grad_in.data<T>();
      parallel_for(M, items_per_grain(Grain::Normalization, N), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const T *xr = x + r * N, *gr = g + r * N;
          const double m = mu[r], r_std = rs[r];
          // dxhat = g * w;  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
          double sum_d = 0, sum_dx = 0;
          for (int64_t j = 0; j < N; ++j) {
            const double d = gr[j] * (w ? w[j] : T(1));
            sum_d += d;
            sum_dx += d * (xr[j] - m) * r_std;
          }
          const double mean_d = sum_d / static_cast<double>(N), mean_dx = sum_dx / static_cast<double>(N);
          T* out = gx + r * N;
          for (int64_t j = 0; j < N; ++j) {
            const double d = gr[j] * (w ? w[j] : T(1));
            out[j] = static_cast<T>(r_std * (d - mean_d - (xr[j] - m) * r_std * mean_dx));
          }
        }
      });
    }
    if (grad_weight.defined() || grad_bias.defined()) {
      // Column sums over the rows: threads split the columns, each walking every row over its own
      // slice (contiguous within a row), so no partial sums need combining.
      T* gw = grad_weight.defined() ? grad_weight.data<T>() : nullptr;
      T* gb = grad_bias.defined() ? grad_bias.data<T>() : nullptr;
      parallel_for(N, items_per_grain(Grain::Normalization, M), [&](int64_t j0, int64_t j1) {
        std::vector<double> aw(j1 - j0, 0.0), ab(j1 - j0, 0.0);
        for (int64_t r = 0; r < M; ++r) {
          const T *xr = x + r * N, *gr = g + r * N;
          const double m = mu[r], r_std = rs[r];
          for (int64_t j = j0; j < j1; ++j) {
            aw[j - j0] += gr[j] * (xr[j] - m) * r_std;
            ab[j - j0] += gr[j];
          }
        }
        for (int64_t j = j0; j < j1; ++j) {
          if (gw) gw[j] = static_cast<T>(aw[j - j0]);
          if (gb) gb[j] = static_cast<T>(ab[j - j0]);
        }
      });
    }
  });
}

}  // namespace ember
