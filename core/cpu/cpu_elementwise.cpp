// CPU kernels for memory movement, random numbers and elementwise math.
// All of them run through StridedLoop: contiguous operands get a flat loop the compiler vectorises;
// strided and broadcast operands are walked in place, never copied first.
#include <cstring>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided_loop.h"

namespace ember {

namespace {

// out[i] = f(in[i]) for a run of n elements; the contiguous case is a plain loop (vectorised).
template <typename O, typename I, typename F>
inline void map1(char** p, const int64_t* s, int64_t n, F f) {
  O* out = reinterpret_cast<O*>(p[0]);
  const I* in = reinterpret_cast<const I*>(p[1]);
  if (s[0] == sizeof(O) && s[1] == sizeof(I)) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<O>(f(in[i]));
  } else {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<O*>(p[0] + i * s[0]) = static_cast<O>(f(*reinterpret_cast<const I*>(p[1] + i * s[1])));
  }
}

template <typename O, typename I, typename F>
inline void map2(char** p, const int64_t* s, int64_t n, F f) {
  O* out = reinterpret_cast<O*>(p[0]);
  const I* a = reinterpret_cast<const I*>(p[1]);
  const I* b = reinterpret_cast<const I*>(p[2]);
  if (s[0] == sizeof(O) && s[1] == sizeof(I) && s[2] == sizeof(I)) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<O>(f(a[i], b[i]));
  } else if (s[0] == sizeof(O) && s[1] == sizeof(I) && s[2] == 0) {  // tensor (op) scalar-broadcast
    const I bv = *b;
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<O>(f(a[i], bv));
  } else if (s[0] == sizeof(O) && s[1] == 0 && s[2] == sizeof(I)) {
    const I av = *a;
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<O>(f(av, b[i]));
  } else {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<O*>(p[0] + i * s[0]) = static_cast<O>(
          f(*reinterpret_cast<const I*>(p[1] + i * s[1]), *reinterpret_cast<const I*>(p[2] + i * s[2])));
  }
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    const size_t n = src.nbytes();
    char* d = static_cast<char*>(dst.data_ptr());
    const char* s = static_cast<const char*>(src.data_ptr());
    parallel_for(static_cast<int64_t>(n), 1 << 20, [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, e - b); });
    return;
  }
  StridedLoop<2> loop({&dst, &src});
  EMBER_DISPATCH_ALL_AND_HALF(dst.dtype(), "copy", [&]<typename O>() {
    EMBER_DISPATCH_ALL_AND_HALF(src.dtype(), "copy", [&]<typename I>() {
      loop.run([](char** p, const int64_t* s, int64_t n) { map1<O, I>(p, s, n, [](I x) { return x; }); });
    });
  });
}

void CpuBackend::copy_from_host(const void* host, const Tensor& dst) { std::memcpy(dst.data_ptr(), host, dst.nbytes()); }
void CpuBackend::copy_to_host(const Tensor& src, void* host) { std::memcpy(host, src.data_ptr(), src.nbytes()); }

void CpuBackend::fill(const Tensor& out, double value) {
  StridedLoop<1> loop({&out});
  EMBER_DISPATCH_ALL_AND_HALF(out.dtype(), "fill", [&]<typename T>() {
    const T v = static_cast<T>(value);
    loop.run([v](char** p, const int64_t* s, int64_t n) {
      if (s[0] == sizeof(T)) {
        T* o = reinterpret_cast<T*>(p[0]);
        for (int64_t i = 0; i < n; ++i) o[i] = v;
      } else {
        for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = v;
      }
    });
  });
}

void CpuBackend::arange(const Tensor& out, double start, double step) {
  EMBER_DISPATCH_ALL_AND_HALF(out.dtype(), "arange", [&]<typename T>() {
    T* o = out.data<T>();
    parallel_for(out.numel(), grain_size(Grain::Elementwise), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = static_cast<T>(start + step * static_cast<double>(i));
    });
  });
}

// Element i uses Philox counter (offset + i): the result does not depend on the thread count.
void CpuBackend::random(RandomOp op, const Tensor& out, PhiloxState st, double a, double b) {
  EMBER_DISPATCH_ALL_AND_HALF(out.dtype(), "random", [&]<typename T>() {
    T* o = out.data<T>();
    parallel_for(out.numel(), 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        Philox4 r = philox4x32(st.seed, st.offset + static_cast<uint64_t>(i));
        double u = uniform_double(r.v[0], r.v[1]);
        switch (op) {
          case RandomOp::Uniform: o[i] = static_cast<T>(a + (b - a) * u); break;
          case RandomOp::Normal: {  // Box-Muller; 1-u is in (0, 1] so the log is finite
            double u2 = uniform_double(r.v[2], r.v[3]);
            o[i] = static_cast<T>(a + b * std::sqrt(-2.0 * std::log(1.0 - u)) * std::cos(6.283185307179586 * u2));
            break;
          }
          case RandomOp::RandInt: {
            uint64_t range = static_cast<uint64_t>(b - a);
            uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
            o[i] = static_cast<T>(static_cast<int64_t>(a) + static_cast<int64_t>(bits % range));
            break;
          }
          case RandomOp::Bernoulli: o[i] = static_cast<T>(u < a ? 1 : 0); break;
        }
      }
    });
  });
}

void CpuBackend::unary(UnaryOp op, const Tensor& in, const Tensor& out, Scalars sc) {
  StridedLoop<2> loop({&out, &in});
  const bool cmp = unary_is_comparison(op);
  // T is the storage type; the math runs in C = opmath_t<T> (float for the 16-bit types), and
  // map1 rounds the result back to T.
  EMBER_DISPATCH_ALL_AND_HALF(in.dtype(), "unary", [&]<typename T>() {
    using C = opmath_t<T>;
    const C a = static_cast<C>(sc.a), b = static_cast<C>(sc.b);
    visit_unary(op, [&](auto f) {
      auto g = [f, a, b](T x) { return f(static_cast<C>(x), a, b); };
      if (cmp) loop.run([g](char** p, const int64_t* s, int64_t n) { map1<uint8_t, T>(p, s, n, g); });
      else loop.run([g](char** p, const int64_t* s, int64_t n) { map1<T, T>(p, s, n, g); });
    });
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  StridedLoop<3> loop({&out, &a, &b});
  const bool cmp = binary_is_comparison(op);
  EMBER_DISPATCH_ALL_AND_HALF(a.dtype(), "binary", [&]<typename T>() {
    using C = opmath_t<T>;  // as in unary: compute in float for the 16-bit types
    visit_binary(op, [&](auto f) {
      auto g = [f](T x, T y) { return f(static_cast<C>(x), static_cast<C>(y)); };
      if (cmp) loop.run([g](char** p, const int64_t* s, int64_t n) { map2<uint8_t, T>(p, s, n, g); });
      else loop.run([g](char** p, const int64_t* s, int64_t n) { map2<T, T>(p, s, n, g); });
    });
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  StridedLoop<4> loop({&out, &cond, &a, &b});
  EMBER_DISPATCH_ALL_AND_HALF(out.dtype(), "where", [&]<typename T>() {
    loop.run([](char** p, const int64_t* s, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const uint8_t*>(p[1] + i * s[1])
                                                     ? *reinterpret_cast<const T*>(p[2] + i * s[2])
                                                     : *reinterpret_cast<const T*>(p[3] + i * s[3]);
    });
  });
}

}  // namespace ember
