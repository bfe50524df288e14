// CUDA kernels for memory movement, random numbers and elementwise math. Each kernel sits right
// above the CudaBackend method that launches it.
//
// Every kernel has two forms, picked by the template flag kContiguous: when all operands are
// contiguous, element i is at offset i in each of them; otherwise OffsetCalc computes each
// operand's offset from its strides (stride 0 for broadcast dims). Unary and binary ops on large
// contiguous floating tensors have a third, vectorised form (16-byte loads and stores). The
// math itself comes from the functors in core/elementwise.h: exactly the definitions the CPU
// backend uses, whichever form calls them.
//
// bfloat16 and float16 (core/half.h) are storage types here as on the CPU: every kernel widens them
// to float32, computes, and rounds the result back with core/half.h's round-to-nearest-even
// conversions, which are EMBER_HD — one definition of the bit math for both devices, so a cast or
// an elementwise result has the same bits on the CPU and the GPU.
//
// Everything runs on the device's compute stream (cuda/runtime.h), never the legacy stream.
#include <cmath>
#include <type_traits>

#include "core/elementwise.h"
#include "core/generator.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

namespace {

// Offsets of flat element i in N operands.
template <bool kContiguous, size_t N>
__device__ __forceinline__ void offsets(const OffsetCalc<N>& oc, int64_t i, int64_t (&off)[N]) {
  if constexpr (kContiguous) {
    for (size_t k = 0; k < N; ++k) off[k] = i;
  } else {
    oc.get(i, off);
  }
}

// Calls launch.template operator()<true>() or <false>() — the contiguous or strided kernel.
template <typename Launch>
void launch_for(bool contiguous, Launch&& launch) {
  if (contiguous) launch.template operator()<true>();
  else launch.template operator()<false>();
  EMBER_CUDA_CHECK_LAUNCH();
}

}  // namespace

// ---------------- copy: dst[i] = Out(src[i]), any strides, casts dtype ----------------

template <bool kContiguous, typename Out, typename In>
__global__ void copy_kernel(int64_t n, Out* dst, const In* src, OffsetCalc<2> oc) {
  grid_stride(n, [&](int64_t i) {
    int64_t off[2];
    offsets<kContiguous>(oc, i, off);
    dst[off[0]] = static_cast<Out>(src[off[1]]);
  });
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  const std::array<const Tensor*, 2> ops{&dst, &src};
  if (src.dtype() == dst.dtype() && all_contiguous(ops)) {  // a plain byte copy
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const OffsetCalc<2> oc = make_offset_calc(ops);
  EMBER_DISPATCH_ALL_AND_HALF(dst.dtype(), "copy", [&]<typename Out>() {
    EMBER_DISPATCH_ALL_AND_HALF(src.dtype(), "copy", [&]<typename In>() {
      launch_for(all_contiguous(ops), [&]<bool kContiguous>() {
        copy_kernel<kContiguous><<<num_blocks(n), kThreads, 0, stream>>>(n, dst.data<Out>(), src.data<In>(), oc);
      });
    });
  });
}

// ---------------- fill: out[i] = value ----------------

template <bool kContiguous, typename T>
__global__ void fill_kernel(int64_t n, T* out, T value, OffsetCalc<1> oc) {
  grid_stride(n, [&](int64_t i) {
    int64_t off[1];
    offsets<kContiguous>(oc, i, off);
    out[off[0]] = value;
  });
}

void CudaBackend::fill(const Tensor& out, double value) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  if (value == 0.0 && !std::signbit(value) && out.is_contiguous()) {  // +0 is all-zero bytes in every dtype
    EMBER_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), stream));
    return;
  }
  const OffsetCalc<1> oc = make_offset_calc<1>({&out});
  EMBER_DISPATCH_ALL_AND_HALF(out.dtype(), "fill", [&]<typename T>() {
    launch_for(out.is_contiguous(), [&]<bool kContiguous>() {
      fill_kernel<kContiguous><<<num_blocks(n), kThreads, 0, stream>>>(n, out.data<T>(), static_cast<T>(value), oc);
    });
  });
}

// ---------------- arange: out[i] = start + step * i (out contiguous) ----------------

template <typename T>
__global__ void arange_kernel(int64_t n, T* out, double start, double step) {
  grid_stride(n, [&](int64_t i) { out[i] = static_cast<T>(start + step * static_cast<double>(i)); });
}

void CudaBackend::arange(const Tensor& out, double start, double step) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_ALL_AND_HALF(out.dtype(), "arange", [&]<typename T>() {
    arange_kernel<<<num_blocks(n), kThreads, 0, stream>>>(n, out.data<T>(), start, step);
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// ---------------- random (out contiguous) ----------------
// Element i uses Philox counter (offset + i) and the same formulas as CpuBackend::random
// (core/cpu/cpu_elementwise.cpp), so a seed gives the same numbers on the CPU and the GPU (up to
// the last bit of log/cos for Normal). Keep the two in step.

template <typename T>
__global__ void random_kernel(int64_t n, T* out, RandomOp op, PhiloxState st, double a, double b) {
  grid_stride(n, [&](int64_t i) {
    const Philox4 r = philox4x32(st.seed, st.offset + static_cast<uint64_t>(i));
    const double u = uniform_double(r.v[0], r.v[1]);
    switch (op) {
      case RandomOp::Uniform: out[i] = static_cast<T>(a + (b - a) * u); break;
      case RandomOp::Normal: {  // Box-Muller; 1-u is in (0, 1] so the log is finite
        const double u2 = uniform_double(r.v[2], r.v[3]);
        out[i] = static_cast<T>(a + b * sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * u2));
        break;
      }
      case RandomOp::RandInt: {
        const uint64_t range = static_cast<uint64_t>(b - a);
        const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
        out[i] = static_cast<T>(static_cast<int64_t>(a) + static_cast<int64_t>(bits % range));
        break;
      }
      case RandomOp::Bernoulli: out[i] = static_cast<T>(u < a ? 1 : 0); break;
    }
  });
}

void CudaBackend::random(RandomOp op, const Tensor& out, PhiloxState state, double a, double b) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_ALL_AND_HALF(out.dtype(), "random", [&]<typename T>() {
    random_kernel<<<num_blocks(n), kThreads, 0, stream>>>(n, out.data<T>(), op, state, a, b);
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// ---------------- unary: out[i] = f(in[i], a, b) ----------------
// Comparisons (EqScalar, ...) return bool and write uint8; every other op writes the input dtype.
// T is the storage type; f computes in C = opmath_t<T> (float for bfloat16 and float16, T itself
// otherwise) and the result is rounded back to T, as the CPU backend does element by element.
template <typename Result, typename T>
using ElementwiseOut = std::conditional_t<std::is_same_v<Result, bool>, uint8_t, T>;

// Floating storage types get the 16-byte vector form: float, double and the two 16-bit types.
template <typename T>
constexpr bool kVectorizable = std::is_floating_point_v<T> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>;

template <bool kContiguous, typename Out, typename T, typename C, typename F>
__global__ void unary_kernel(int64_t n, Out* out, const T* in, F f, C a, C b, OffsetCalc<2> oc) {
  grid_stride(n, [&](int64_t i) {
    int64_t off[2];
    offsets<kContiguous>(oc, i, off);
    out[off[0]] = static_cast<Out>(f(static_cast<C>(in[off[1]]), a, b));
  });
}

// The contiguous form with 16-byte vectors (N elements of T per load): each thread maps whole
// vectors, then the n % N elements left over are done one by one. Needs n >= N and every pointer
// aligned for its Vec (checked by the launcher).
template <int N, typename Out, typename T, typename C, typename F>
__global__ void unary_vec_kernel(int64_t n, Out* out, const T* in, F f, C a, C b) {
  const int64_t nvec = n / N;
  grid_stride(nvec, [&](int64_t v) {
    const Vec<T, N> x = reinterpret_cast<const Vec<T, N>*>(in)[v];
    Vec<Out, N> y;
#pragma unroll
    for (int k = 0; k < N; ++k) y.v[k] = static_cast<Out>(f(static_cast<C>(x.v[k]), a, b));
    reinterpret_cast<Vec<Out, N>*>(out)[v] = y;
  });
  grid_stride(n - nvec * N, [&](int64_t t) {
    const int64_t i = nvec * N + t;
    out[i] = static_cast<Out>(f(static_cast<C>(in[i]), a, b));
  });
}

void CudaBackend::unary(UnaryOp op, const Tensor& in, const Tensor& out, Scalars s) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  const std::array<const Tensor*, 2> ops{&out, &in};
  const bool contiguous = all_contiguous(ops);
  const OffsetCalc<2> oc = make_offset_calc(ops);
  EMBER_DISPATCH_ALL_AND_HALF(in.dtype(), "unary", [&]<typename T>() {
    using C = opmath_t<T>;
    const C a = static_cast<C>(s.a), b = static_cast<C>(s.b);
    visit_unary(op, [&](auto f) {
      using Out = ElementwiseOut<decltype(f(C(), C(), C())), T>;
      if constexpr (kVectorizable<T>) {
        constexpr int N = kVecWidth<T>;
        if (contiguous && n >= kVectorizeMinElements && is_aligned_for<Vec<Out, N>>(out.data_ptr()) &&
            is_aligned_for<Vec<T, N>>(in.data_ptr())) {
          unary_vec_kernel<N><<<num_blocks(n / N), kThreads, 0, stream>>>(n, out.data<Out>(), in.data<T>(), f, a, b);
          EMBER_CUDA_CHECK_LAUNCH();
          return;
        }
      }
      launch_for(contiguous, [&]<bool kContiguous>() {
        unary_kernel<kContiguous><<<num_blocks(n), kThreads, 0, stream>>>(n, out.data<Out>(), in.data<T>(), f, a, b, oc);
      });
    });
  });
}

// ---------------- binary: out[i] = f(a[i], b[i]) ----------------
// As unary: f computes in C = opmath_t<T>, the result is stored as T (or uint8 for comparisons).

template <bool kContiguous, typename C, typename Out, typename T, typename F>
__global__ void binary_kernel(int64_t n, Out* out, const T* a, const T* b, F f, OffsetCalc<3> oc) {
  grid_stride(n, [&](int64_t i) {
    int64_t off[3];
    offsets<kContiguous>(oc, i, off);
    out[off[0]] = static_cast<Out>(f(static_cast<C>(a[off[1]]), static_cast<C>(b[off[2]])));
  });
}

// The vectorised contiguous form, as unary_vec_kernel.
template <int N, typename C, typename Out, typename T, typename F>
__global__ void binary_vec_kernel(int64_t n, Out* out, const T* a, const T* b, F f) {
  const int64_t nvec = n / N;
  grid_stride(nvec, [&](int64_t v) {
    const Vec<T, N> x = reinterpret_cast<const Vec<T, N>*>(a)[v];
    const Vec<T, N> y = reinterpret_cast<const Vec<T, N>*>(b)[v];
    Vec<Out, N> z;
#pragma unroll
    for (int k = 0; k < N; ++k) z.v[k] = static_cast<Out>(f(static_cast<C>(x.v[k]), static_cast<C>(y.v[k])));
    reinterpret_cast<Vec<Out, N>*>(out)[v] = z;
  });
  grid_stride(n - nvec * N, [&](int64_t t) {
    const int64_t i = nvec * N + t;
    out[i] = static_cast<Out>(f(static_cast<C>(a[i]), static_cast<C>(b[i])));
  });
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  const std::array<const Tensor*, 3> ops{&out, &a, &b};
  const bool contiguous = all_contiguous(ops);
  const OffsetCalc<3> oc = make_offset_calc(ops);
  EMBER_DISPATCH_ALL_AND_HALF(a.dtype(), "binary", [&]<typename T>() {
    using C = opmath_t<T>;
    visit_binary(op, [&](auto f) {
      using Out = ElementwiseOut<decltype(f(C(), C())), T>;
      if constexpr (kVectorizable<T>) {
        constexpr int N = kVecWidth<T>;
        if (contiguous && n >= kVectorizeMinElements && is_aligned_for<Vec<Out, N>>(out.data_ptr()) &&
            is_aligned_for<Vec<T, N>>(a.data_ptr()) && is_aligned_for<Vec<T, N>>(b.data_ptr())) {
          binary_vec_kernel<N, C><<<num_blocks(n / N), kThreads, 0, stream>>>(n, out.data<Out>(), a.data<T>(),
                                                                               b.data<T>(), f);
          EMBER_CUDA_CHECK_LAUNCH();
          return;
        }
      }
      launch_for(contiguous, [&]<bool kContiguous>() {
        binary_kernel<kContiguous, C><<<num_blocks(n), kThreads, 0, stream>>>(n, out.data<Out>(), a.data<T>(),
                                                                               b.data<T>(), f, oc);
      });
    });
  });
}

// ---------------- where: out[i] = cond[i] ? a[i] : b[i] (cond uint8) ----------------

template <bool kContiguous, typename T>
__global__ void where_kernel(int64_t n, T* out, const uint8_t* cond, const T* a, const T* b, OffsetCalc<4> oc) {
  grid_stride(n, [&](int64_t i) {
    int64_t off[4];
    offsets<kContiguous>(oc, i, off);
    out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  });
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  cudaStream_t stream = compute_stream(index_);
  const std::array<const Tensor*, 4> ops{&out, &cond, &a, &b};
  const OffsetCalc<4> oc = make_offset_calc(ops);
  EMBER_DISPATCH_ALL_AND_HALF(out.dtype(), "where", [&]<typename T>() {
    launch_for(all_contiguous(ops), [&]<bool kContiguous>() {
      where_kernel<kContiguous><<<num_blocks(n), kThreads, 0, stream>>>(n, out.data<T>(), cond.data<uint8_t>(), a.data<T>(),
                                                             b.data<T>(), oc);
    });
  });
}

}  // namespace ember::cuda
