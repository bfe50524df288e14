// CUDA indexing kernels: index_select / gather (reads at indexed positions) and their adjoints
// index_add / scatter_add (accumulation at indexed positions). Semantics are the CPU's
// (core/cpu/cpu_index.cpp), for every dtype, any dim and any strides.
//
// The layout trick is the CPU's too: the indexed operand is "restrided" to the iteration shape
// with stride 0 along `dim`, so OffsetCalc walks every other coordinate, and the kernel adds
// `index * stride(dim)` to reach the indexed element. index_select and index_add are gather and
// scatter_add with a 1-D index broadcast (stride 0) over every dim but `dim`.
//
// Accumulation: one thread per source element, adding with atomics, so repeated indices never
// lose an update. Float atomics add in whatever order the threads arrive, which changes the last
// bits from run to run; with ember::deterministic() on, float accumulation instead takes the CPU's
// scheme: one thread per coordinate other than `dim`, walking `dim` serially in index order
// (race-free, bit-identical to the CPU, but with less parallelism). Integer sums are exact either way.
//
// Indices: the op checks them on the host only for CPU tensors (reading a GPU index back would
// synchronise), so the kernels check each one and stop with a device-side assert naming the op.
#include <cstdio>

#include "core/cpu/float32_operands.h"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

// What assert() calls on failure; CUDA implements it in device code. glibc's <assert.h> declares it
// only without NDEBUG, and check_index below needs it in Release builds too.
#ifdef NDEBUG
extern "C" __host__ __device__ void __assert_fail(const char* assertion, const char* file, unsigned int line,
                                                  const char* function) noexcept __attribute__((__noreturn__));
#endif

namespace ember::cuda {

namespace {

enum class IndexOp : uint8_t { IndexSelect, IndexAdd, Gather, ScatterAdd };

__device__ const char* op_name(IndexOp op) {
  switch (op) {
    case IndexOp::IndexSelect: return "index_select";
    case IndexOp::IndexAdd: return "index_add";
    case IndexOp::Gather: return "gather";
    default: return "scatter_add";
  }
}

// Like PyTorch's CUDA_KERNEL_ASSERT: the kernel stops and the next synchronising call fails with
// "device-side assert triggered". It calls __assert_fail (what assert() expands to) directly, so
// the check stays in Release builds (declared above).
__device__ __forceinline__ void check_index(IndexOp op, int64_t k, int64_t dim_size) {
  if (k < 0 || k >= dim_size) {
    printf("%s: index %lld is out of range for a dim of size %lld\n", op_name(op), static_cast<long long>(k),
           static_cast<long long>(dim_size));
    __assert_fail("index out of range", __FILE__, __LINE__, op_name(op));
  }
}

// *address += v, atomically. float, double and 64-bit integers have native atomics; uint8 has
// none, so it updates the aligned 32-bit word holding the byte with a compare-and-swap loop, as
// PyTorch does (allocations start 256-byte aligned, so that word is always mapped memory).
__device__ __forceinline__ void atomic_add(float* address, float v) { atomicAdd(address, v); }
__device__ __forceinline__ void atomic_add(double* address, double v) { atomicAdd(address, v); }
__device__ __forceinline__ void atomic_add(int64_t* address, int64_t v) {
  static_assert(sizeof(int64_t) == sizeof(unsigned long long));
  // Two's-complement addition is the same operation for signed and unsigned integers.
  atomicAdd(reinterpret_cast<unsigned long long*>(address), static_cast<unsigned long long>(v));
}
__device__ __forceinline__ void atomic_add(uint8_t* address, uint8_t v) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(address);
  unsigned int* word = reinterpret_cast<unsigned int*>(addr & ~uintptr_t{3});
  const unsigned int shift = static_cast<unsigned int>(addr & 3) * 8;  // little-endian: byte 0 is the low byte
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    const unsigned int sum = ((assumed >> shift) + v) & 0xffu;  // wraps modulo 256, like the CPU's +=
    old = atomicCAS(word, assumed, (assumed & ~(0xffu << shift)) | (sum << shift));
  } while (old != assumed);
}

// A header over t's storage with another shape and strides (no copy), as on the CPU: only used to
// describe the iteration to make_offset_calc; shapes never exceed t along a dim with nonzero stride.
Tensor restride(const Tensor& t, const Shape& shape, const Shape& strides) {
  return make_tensor(t.storage(), shape, strides, t.offset(), t.dtype());
}

Shape with_dim(Shape s, int dim, int64_t v) {
  s[dim] = v;
  return s;
}

// ---------------- gather: out(x) = in(x with x[dim] = index(x)) over out's shape ----------------
// oc's operands: out, in (stride 0 along dim), index.

template <typename T>
__global__ void gather_kernel(int64_t n, T* out, const T* in, const int64_t* index, OffsetCalc<3> oc,
                              int64_t in_dim_stride, int64_t dim_size, IndexOp op) {
  grid_stride(n, [&](int64_t i) {
    int64_t off[3];
    oc.get(i, off);
    const int64_t k = index[off[2]];
    check_index(op, k, dim_size);
    out[off[0]] = in[off[1] + k * in_dim_stride];
  });
}

// The index tensor is described by its strides over out's shape (`index_strides`).
void launch_gather(IndexOp op, const Tensor& in, int dim, const Tensor& index, const Shape& index_strides,
                   const Tensor& out, cudaStream_t stream) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const Tensor in_r = restride(in, out.shape(), with_dim(in.strides(), dim, 0));
  const Tensor idx_r = make_tensor(index.storage(), out.shape(), index_strides, index.offset(), kInt64);
  const OffsetCalc<3> oc = make_offset_calc<3>({&out, &in_r, &idx_r});
  EMBER_DISPATCH_ALL(in.dtype(), op == IndexOp::Gather ? "gather" : "index_select", [&]<typename T>() {
    gather_kernel<<<num_blocks(n), kThreads, 0, stream>>>(n, out.data<T>(), in.data<T>(), index.data<int64_t>(), oc,
                                                          in.stride(dim), in.size(dim), op);
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// ---------------- scatter_add: out(x with x[dim] = index(x)) += src(x) over the loop shape ----------------

// One thread per source element. oc's operands: src, out (stride 0 along dim), index.
template <typename T>
__global__ void scatter_add_atomic_kernel(int64_t n, T* out, const T* src, const int64_t* index, OffsetCalc<3> oc,
                                          int64_t out_dim_stride, int64_t dim_size, IndexOp op) {
  grid_stride(n, [&](int64_t i) {
    int64_t off[3];
    oc.get(i, off);
    const int64_t k = index[off[2]];
    check_index(op, k, dim_size);
    atomic_add(out + off[1] + k * out_dim_stride, src[off[0]]);
  });
}

// One thread per coordinate other than dim (oc's loop shape has size 1 there), walking the `len`
// positions along dim in order: no two threads touch the same output element.
template <typename T>
__global__ void scatter_add_serial_kernel(int64_t n, int64_t len, T* out, const T* src, const int64_t* index,
                                          OffsetCalc<3> oc, int64_t src_dim_stride, int64_t out_dim_stride,
                                          int64_t index_dim_stride, int64_t dim_size, IndexOp op) {
  grid_stride(n, [&](int64_t i) {
    int64_t off[3];
    oc.get(i, off);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t k = index[off[2] + j * index_dim_stride];
      check_index(op, k, dim_size);
      out[off[1] + k * out_dim_stride] += src[off[0] + j * src_dim_stride];
    }
  });
}

// `shape` is the loop shape (src's for index_add, index's for scatter_add); `index_strides` are
// the index tensor's strides over it.
void launch_scatter_add(IndexOp op, const Tensor& out, int dim, const Tensor& index, const Shape& index_strides,
                        const Tensor& src, const Shape& shape, cudaStream_t stream) {
  const char* name = op == IndexOp::ScatterAdd ? "scatter_add" : "index_add";
  const bool serial = deterministic() && (out.dtype() == kFloat32 || out.dtype() == kFloat64);
  const Shape loop_shape = serial ? with_dim(shape, dim, 1) : shape;
  const int64_t n = loop_shape.numel();
  if (n == 0 || shape[dim] == 0) return;
  const Tensor src_r = restride(src, loop_shape, src.strides());
  const Tensor out_r = restride(out, loop_shape, with_dim(out.strides(), dim, 0));
  const Tensor idx_r = make_tensor(index.storage(), loop_shape, index_strides, index.offset(), kInt64);
  const OffsetCalc<3> oc = make_offset_calc<3>({&src_r, &out_r, &idx_r});
  EMBER_DISPATCH_ALL(out.dtype(), name, [&]<typename T>() {
    if (serial) {
      scatter_add_serial_kernel<<<num_blocks(n), kThreads, 0, stream>>>(
          n, shape[dim], out.data<T>(), src.data<T>(), index.data<int64_t>(), oc, src.stride(dim), out.stride(dim),
          index_strides[dim], out.size(dim), op);
    } else {
      scatter_add_atomic_kernel<<<num_blocks(n), kThreads, 0, stream>>>(
          n, out.data<T>(), src.data<T>(), index.data<int64_t>(), oc, out.stride(dim), out.size(dim), op);
    }
  });
  EMBER_CUDA_CHECK_LAUNCH();
}

// A 1-D index broadcast over every dim of an `ndim`-dim loop shape but `dim`.
Shape broadcast_index_strides(const Tensor& index, int ndim, int dim) {
  return with_dim(Shape(ndim, 0), dim, index.stride(0));
}

}  // namespace

// out[.., k, ..] = in[.., index[k], ..]
void CudaBackend::index_select(const Tensor& in, int dim, const Tensor& index, const Tensor& out) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    index_select(f.in(in), dim, index, f.out(out));
    return f.finish();
  }
  DeviceGuard guard(index_);
  launch_gather(IndexOp::IndexSelect, in, dim, index, broadcast_index_strides(index, out.dim(), dim), out,
                compute_stream(index_));
}

// out[.., index[k], ..] += src[.., k, ..]
void CudaBackend::index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&out, &src})) {
    Float32Operands f;
    index_add(f.out(out), dim, index, f.in(src));
    return f.finish();
  }
  DeviceGuard guard(index_);
  launch_scatter_add(IndexOp::IndexAdd, out, dim, index, broadcast_index_strides(index, src.dim(), dim), src,
                     src.shape(), compute_stream(index_));
}

// out[x] = in[x with x[dim] = index[x]], over index's shape
void CudaBackend::gather(const Tensor& in, int dim, const Tensor& index, const Tensor& out) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    gather(f.in(in), dim, index, f.out(out));
    return f.finish();
  }
  DeviceGuard guard(index_);
  launch_gather(IndexOp::Gather, in, dim, index, index.strides(), out, compute_stream(index_));
}

// out[x with x[dim] = index[x]] += src[x], over index's shape
void CudaBackend::scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&out, &src})) {
    Float32Operands f;
    scatter_add(f.out(out), dim, index, f.in(src));
    return f.finish();
  }
  DeviceGuard guard(index_);
  launch_scatter_add(IndexOp::ScatterAdd, out, dim, index, index.strides(), src, index.shape(),
                     compute_stream(index_));
}

}  // namespace ember::cuda
