// CPU indexing kernels: index_select / gather (reads at indexed positions) and their adjoints
// index_add / scatter_add (accumulation at indexed positions).
//
// All four reuse StridedLoop the way PyTorch's TensorIterator does: the indexed operand is
// "restrided" to the iteration shape with stride 0 along `dim`, so the loop walks every other
// coordinate for free and the kernel only adds `index * stride(dim)` to reach the indexed element.
// Any strides (transposed, sliced, expanded inputs or index tensors) work without copies.
//
// The accumulating kernels are deterministic and race-free: two updates can only hit the same
// output element when they differ in their coordinate along `dim` alone, so threads split the
// *other* coordinates and each walks `dim` serially, in index order. The result does not depend on
// the thread count (bit-for-bit, also for floats).
//
// Indices are trusted here: the ops (core/ops/index.cpp) bounds-check them before calling.
#include <cstring>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/float32_operands.h"
#include "core/cpu/strided_loop.h"

namespace ember {

namespace {

constexpr int64_t kIdxBytes = sizeof(int64_t);

// A header over t's storage with a different shape/strides (no copy). Shapes passed here are never
// larger than t along a dim with nonzero stride, so every address stays inside t's storage.
Tensor restride(const Tensor& t, const Shape& shape, const Shape& strides) {
  return make_tensor(t.storage(), shape, strides, t.offset(), t.dtype());
}

Shape with_dim(Shape s, int dim, int64_t v) {
  s[dim] = v;
  return s;
}

// True when each slice t[i] (all dims but the first) is one contiguous block of memory.
bool rows_contiguous(const Tensor& t) {
  int64_t expected = 1;
  for (int d = t.dim() - 1; d >= 1; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) return false;
    expected *= t.size(d);
  }
  return true;
}

// out(x) = in(x with x[dim] replaced by idx(x)), over out's shape. `in` has stride 0 along dim, so
// `in_dim_bytes` (the real stride of dim in bytes) moves to the indexed element.
template <typename T>
void gather_loop(const Tensor& out, const Tensor& in, const Tensor& idx, int64_t in_dim_bytes) {
  StridedLoop<3> loop({&out, &in, &idx});
  loop.run([in_dim_bytes](char** p, const int64_t* s, int64_t n) {
    if (s[2] == 0) {  // the whole run reads one index (dim is not the innermost): a plain copy
      const char* src = p[1] + *reinterpret_cast<const int64_t*>(p[2]) * in_dim_bytes;
      if (s[0] == sizeof(T) && s[1] == sizeof(T)) {
        T* o = reinterpret_cast<T*>(p[0]);
        const T* v = reinterpret_cast<const T*>(src);
        for (int64_t i = 0; i < n; ++i) o[i] = v[i];  // vectorised; no call overhead for short runs
      } else {
        for (int64_t i = 0; i < n; ++i)
          *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>(src + i * s[1]);
      }
      return;
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = *reinterpret_cast<const int64_t*>(p[2] + i * s[2]);
      *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>(p[1] + i * s[1] + k * in_dim_bytes);
    }
  });
}

// For every coordinate x of the loop shape (which has size 1 along dim) and j in [0, len):
//   out(x with dim = idx(x, j)) += src(x, j)
// Threads split x; j runs serially inside, so no two threads touch the same output element and the
// additions happen in index order. `*_dim_bytes` are the real strides of dim (the loop never sees dim).
template <typename T>
void scatter_add_loop(const Tensor& out, const Tensor& idx, const Tensor& src, int64_t len, int64_t out_dim_bytes,
                      int64_t idx_dim_bytes, int64_t src_dim_bytes) {
  StridedLoop<3> loop({&out, &idx, &src});
  // Each loop element does `len` additions: scale the grain so small problems stay on one thread.
  const int64_t grain = items_per_grain(Grain::Elementwise, len);
  loop.run(
      [=](char** p, const int64_t* s, int64_t n) {
        for (int64_t j = 0; j < len; ++j) {
          const char* ip = p[1] + j * idx_dim_bytes;
          const char* sp = p[2] + j * src_dim_bytes;
          if (s[1] == 0) {  // one index for the whole run (index_add, or scatter along an outer dim)
            char* op = p[0] + *reinterpret_cast<const int64_t*>(ip) * out_dim_bytes;
            if (s[0] == sizeof(T) && s[2] == sizeof(T)) {  // contiguous rows: vectorised
              T* o = reinterpret_cast<T*>(op);
              const T* v = reinterpret_cast<const T*>(sp);
              for (int64_t i = 0; i < n; ++i) o[i] += v[i];
            } else {
              for (int64_t i = 0; i < n; ++i)
                *reinterpret_cast<T*>(op + i * s[0]) += *reinterpret_cast<const T*>(sp + i * s[2]);
            }
          } else {
            for (int64_t i = 0; i < n; ++i) {
              const int64_t k = *reinterpret_cast<const int64_t*>(ip + i * s[1]);
              *reinterpret_cast<T*>(p[0] + i * s[0] + k * out_dim_bytes) += *reinterpret_cast<const T*>(sp + i * s[2]);
            }
          }
        }
      },
      grain);
}

}  // namespace

// out = in with dim replaced by index: out[.., k, ..] = in[.., index[k], ..].
void CpuBackend::index_select(const Tensor& in, int dim, const Tensor& index, const Tensor& out) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    index_select(f.in(in), dim, index, f.out(out));
    return f.finish();
  }
  const int64_t k_count = index.numel();
  if (out.numel() == 0) return;
  const int64_t esize = static_cast<int64_t>(in.element_size());

  // Fast path (embedding lookups): dim 0, each selected row is one contiguous block in both tensors.
  // Copy whole rows with memcpy, in parallel over the indices. Rows under 64 bytes go through the
  // general loop below: a memcpy call per few bytes costs more than copying elements in a loop.
  const int64_t row_bytes = out.numel() / k_count * esize;
  if (dim == 0 && row_bytes >= 64 && rows_contiguous(in) && out.is_contiguous()) {
    const char* src = static_cast<const char*>(in.data_ptr());
    char* dst = static_cast<char*>(out.data_ptr());
    const int64_t* idx = index.data<int64_t>();
    const int64_t idx_stride = index.stride(0), in_row_stride = in.stride(0) * esize;
    const int64_t grain = std::max<int64_t>(1, (grain_size(Grain::Elementwise) * 4) / row_bytes);  // ~128 KiB per thread at least
    parallel_for(k_count, grain, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k)
        std::memcpy(dst + k * row_bytes, src + idx[k * idx_stride] * in_row_stride, row_bytes);
    });
    return;
  }

  // General case: loop over out's shape. `in` has stride 0 along dim (the index supplies that
  // coordinate); the 1-D index is broadcast over every other dim (stride 0 there).
  const Tensor in_r = restride(in, out.shape(), with_dim(in.strides(), dim, 0));
  const Tensor idx_r = make_tensor(index.storage(), out.shape(), with_dim(Shape(out.dim(), 0), dim, index.stride(0)),
                                   index.offset(), kInt64);
  EMBER_DISPATCH_ALL(in.dtype(), "index_select",
                     [&]<typename T>() { gather_loop<T>(out, in_r, idx_r, in.stride(dim) * esize); });
}

// out[.., index[k], ..] += src[.., k, ..]. Threads split the coordinates other than dim (for an
// embedding gradient: the D columns); each walks k serially, so repeated indices never race.
void CpuBackend::index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&out, &src})) {
    Float32Operands f;
    index_add(f.out(out), dim, index, f.in(src));
    return f.finish();
  }
  if (src.numel() == 0) return;
  const Shape loop_shape = with_dim(src.shape(), dim, 1);
  const Tensor out_r = restride(out, loop_shape, out.strides());
  const Tensor src_r = restride(src, loop_shape, src.strides());
  const Tensor idx_r = make_tensor(index.storage(), loop_shape, Shape(src.dim(), 0), index.offset(), kInt64);
  EMBER_DISPATCH_ALL(out.dtype(), "index_add", [&]<typename T>() {
    const int64_t es = sizeof(T);
    scatter_add_loop<T>(out_r, idx_r, src_r, index.numel(), out.stride(dim) * es, index.stride(0) * kIdxBytes,
                        src.stride(dim) * es);
  });
}

// out[x] = in[x with x[dim] = index[x]], over index's shape (PyTorch's gather).
void CpuBackend::gather(const Tensor& in, int dim, const Tensor& index, const Tensor& out) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    gather(f.in(in), dim, index, f.out(out));
    return f.finish();
  }
  if (out.numel() == 0) return;
  const Tensor in_r = restride(in, index.shape(), with_dim(in.strides(), dim, 0));
  EMBER_DISPATCH_ALL(in.dtype(), "gather", [&]<typename T>() {
    gather_loop<T>(out, in_r, index, in.stride(dim) * static_cast<int64_t>(sizeof(T)));
  });
}

// out[x with x[dim] = index[x]] += src[x], over index's shape (PyTorch's scatter_add).
void CpuBackend::scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&out, &src})) {
    Float32Operands f;
    scatter_add(f.out(out), dim, index, f.in(src));
    return f.finish();
  }
  if (index.numel() == 0) return;
  const Shape loop_shape = with_dim(index.shape(), dim, 1);
  const Tensor out_r = restride(out, loop_shape, out.strides());
  const Tensor idx_r = restride(index, loop_shape, index.strides());
  const Tensor src_r = restride(src, loop_shape, src.strides());
  EMBER_DISPATCH_ALL(out.dtype(), "scatter_add", [&]<typename T>() {
    const int64_t es = sizeof(T);
    scatter_add_loop<T>(out_r, idx_r, src_r, index.size(dim), out.stride(dim) * es, index.stride(dim) * kIdxBytes,
                        src.stride(dim) * es);
  });
}

}  // namespace ember
