// CUDA reductions: sum, mean, max, min, argmax, argmin over any set of dims of any strided input.
// The semantics are the CPU's (core/cpu/cpu_reduce.cpp): NaN propagates through max/min, argmax
// and argmin point at the first NaN or else the first extremum, uint8 sums into int64, the mean
// of an integer tensor divides in integers, and an empty sum is 0 (an empty mean NaN).
//
// Layout, as on the CPU: the input's dims are put in memory order (largest stride outermost,
// broadcast dims first), size-1 dims are dropped, and neighbours of the same kind (both kept or
// both reduced) that are contiguous for input and output are merged. That leaves M outputs, each
// reducing N elements, and one question: is the innermost dim in memory reduced or kept?
//  * row mode (innermost reduced: the rows of a matrix, a full reduction): a group of lanes
//    along threadIdx.x works on one output; neighbouring lanes read neighbouring elements and
//    combine with warp shuffles (group_allreduce, cuda/block_reduce.cuh).
//  * column mode (innermost kept: an [N, C] gradient summed over N): threadIdx.x picks
//    neighbouring outputs, which are neighbours in memory, and lanes along threadIdx.y split the
//    reduced elements; they combine through shared memory.
// When the outputs alone cannot fill the GPU (a full reduction, a few long rows), or a lane would
// add too many elements in sequence, the reduced range is also split across blockIdx.y: each split
// writes a partial result to a scratch buffer, and the same kernel runs again over the [M, splits]
// partials (row mode), which is a smaller reduction of the same kind.
//
// Accuracy and determinism: float sums accumulate in the input's type, like the CPU's. A lane adds
// at most kMaxPerLane elements in sequence and everything above that is a tree, so the rounding
// error grows like log(N), as with the CPU's pairwise sums. The work split depends only on the
// shapes and the GPU's SM count and every combination happens in a fixed order, so results are
// bit-identical from run to run on one GPU.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/ops.h"
#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"

namespace ember::cuda {

namespace {

constexpr int64_t kPerLane = 16;     // elements per lane we aim for before adding lanes or splits
constexpr int64_t kMaxPerLane = 64;  // elements one lane adds in sequence at most (accuracy)
constexpr int64_t kMaxSplits = 65535;  // gridDim.y limit

// ---------------------------------------------------------------- the reductions
//
// Each is a struct with
//   Acc                      the running result of one lane (a trivial type: it lives in shared memory)
//   identity()               the Acc of no elements
//   load(x, j)               the Acc of element x at reduced index j
//   combine(a, b)            commutative; merges two Accs
//   finish<O>(acc, count)    the output value of an output that reduced `count` elements

template <typename T, typename A, bool kMean>
struct SumReduction {
  using Acc = A;
  __device__ static Acc identity() { return A(0); }
  __device__ static Acc load(T x, int64_t) { return static_cast<A>(x); }
  __device__ static Acc combine(Acc a, Acc b) { return a + b; }
  template <typename O>
  __device__ static O finish(Acc a, int64_t count) {
    if constexpr (kMean) return static_cast<O>(a / static_cast<A>(count));
    else return static_cast<O>(a);
  }
};

// The value a max (min) starts from: below (above) every element.
template <typename T, bool kMax>
__host__ __device__ constexpr T extreme_start() {
  if constexpr (std::is_floating_point_v<T>)
    return kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  else return kMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
}

template <typename T>
__device__ bool is_nan(T x) {
  if constexpr (std::is_floating_point_v<T>) return x != x;
  else return false;
}

template <typename T, bool kMax>
struct ExtremumReduction {
  using Acc = T;
  __device__ static Acc identity() { return extreme_start<T, kMax>(); }
  __device__ static Acc load(T x, int64_t) { return x; }
  // A NaN wins over any number and stays (PyTorch propagates it).
  __device__ static Acc combine(Acc a, Acc b) { return (kMax ? a > b : a < b) || is_nan(a) ? a : b; }
  template <typename O>
  __device__ static O finish(Acc a, int64_t) { return static_cast<O>(a); }
};

template <typename T>
struct ArgAcc {
  T v;
  int64_t i;  // reduced index of v; INT64_MAX for "no element yet"
};

// Shuffles for ArgAcc (found by group_allreduce through argument-dependent lookup).
template <typename T>
__device__ ArgAcc<T> shfl_xor(ArgAcc<T> a, int mask) {
  return {::ember::cuda::shfl_xor(a.v, mask), ::ember::cuda::shfl_xor(a.i, mask)};
}

template <typename T, bool kMax>
struct ArgReduction {
  using Acc = ArgAcc<T>;
  __device__ static Acc identity() { return {extreme_start<T, kMax>(), std::numeric_limits<int64_t>::max()}; }
  __device__ static Acc load(T x, int64_t j) { return {x, j}; }
  // Whether x beats y outright: a NaN beats any number (argmax points at the first NaN).
  __device__ static bool beats(T x, T y) { return (kMax ? x > y : x < y) || (is_nan(x) && !is_nan(y)); }
  // The better value; on a tie (equal, or both NaN) the earlier index, so that the order in which
  // lanes meet does not matter: the result is always the first extremum.
  __device__ static Acc combine(Acc a, Acc b) {
    if (beats(b.v, a.v)) return b;
    if (beats(a.v, b.v)) return a;
    return b.i < a.i ? b : a;
  }
  template <typename O>
  __device__ static O finish(Acc a, int64_t) { return static_cast<O>(a.i); }
};

template <typename R>
struct CombineOp {
  template <typename Acc>
  __device__ Acc operator()(Acc a, Acc b) const { return R::combine(a, b); }
};

// ---------------------------------------------------------------- layout

// Kept or reduced dims, outer -> inner, with input and output strides in elements (output
// strides are 0 for reduced dims). Never empty: a placeholder dim of size 1 stands for "none".
struct Dims {
  int nd = 0;
  int64_t size[kMaxDims];
  int64_t in[kMaxDims];
  int64_t out[kMaxDims];
};

// One launch's reduction: M outputs of N reduced elements each, split into `splits` chunks of
// `chunk` elements along blockIdx.y. Passed to the kernel by value.
struct Plan {
  Dims kept, red;
  int64_t M = 1, N = 1;
  int64_t count = 1;  // elements per output in the whole reduction (what a mean divides by)
  bool rows = true;   // row mode (innermost reduced) or column mode (innermost kept)
  int64_t splits = 1, chunk = 1;
};

Plan make_plan(const Tensor& in, const Tensor& out, uint32_t mask) {
  struct D {
    int64_t size, in, out;
    bool reduced;
  };
  D dims[kMaxDims];
  int n = 0;
  Plan p;
  for (int i = 0; i < in.dim(); ++i) {
    const bool reduced = (mask >> i) & 1u;
    if (reduced) p.N *= in.size(i);
    else p.M *= in.size(i);
    if (in.size(i) != 1) dims[n++] = {in.size(i), in.stride(i), reduced ? 0 : out.stride(i), reduced};
  }
  // Memory order: the smallest input stride innermost, broadcast (stride 0) dims outermost; ties
  // keep the logical order.
  auto key = [](const D& d) { return d.in == 0 ? std::numeric_limits<int64_t>::max() : std::abs(d.in); };
  std::stable_sort(dims, dims + n, [&](const D& a, const D& b) { return key(a) > key(b); });
  for (int i = 0; i < n; ++i) {
    Dims& list = dims[i].reduced ? p.red : p.kept;
    const D& d = dims[i];
    // Merge into the previous dim of the list only when it is the previous dim overall, too.
    const int last = list.nd - 1;
    if (i > 0 && dims[i - 1].reduced == d.reduced && list.in[last] == d.in * d.size &&
        list.out[last] == d.out * d.size) {
      list.size[last] *= d.size;
      list.in[last] = d.in;
      list.out[last] = d.out;
    } else {
      list.size[list.nd] = d.size;
      list.in[list.nd] = d.in;
      list.out[list.nd] = d.out;
      ++list.nd;
    }
  }
  p.rows = n == 0 || dims[n - 1].reduced;
  for (Dims* list : {&p.kept, &p.red})
    if (list->nd == 0) {
      list->size[0] = 1;
      list->in[0] = list->out[0] = 0;
      list->nd = 1;
    }
  p.count = p.N;
  return p;
}

// The plan that combines the partial results of `p`: partials[m * p.splits + k] for output m
// (m the flat index over p's kept dims) and split k, reduced in row mode into the same outputs.
Plan partials_plan(const Plan& p) {
  Plan q = p;
  int64_t stride = p.splits;  // the partials are [kept..., splits], contiguous
  for (int d = p.kept.nd - 1; d >= 0; --d) {
    q.kept.in[d] = stride;
    stride *= p.kept.size[d];
  }
  q.red.nd = 1;
  q.red.size[0] = p.splits;
  q.red.in[0] = 1;
  q.red.out[0] = 0;
  q.N = p.splits;
  q.rows = true;
  return q;
}

// Picks the block shape and the splits for p; returns the block (the grid follows from it).
dim3 configure(Plan& p, int64_t busy) {
  int lanes, slots;  // lanes per output, outputs per block
  dim3 block;
  const int64_t outputs_pow2 = std::bit_ceil(static_cast<uint64_t>(std::min<int64_t>(p.M, kThreads)));
  if (p.rows) {
    lanes = lanes_for(p.N, kPerLane);
    slots = kThreads / lanes;  // a full block: group_allreduce needs it
    block = dim3(lanes, slots);
  } else {
    // Up to a warp's width of neighbouring outputs along x, as many lanes along y as the reduced
    // length needs, then more outputs if the lanes leave room.
    const int min_slots = static_cast<int>(std::min<int64_t>(kWarp, outputs_pow2));
    lanes = std::min(lanes_for(p.N, kPerLane), kThreads / min_slots);
    slots = static_cast<int>(std::min<int64_t>(kThreads / lanes, outputs_pow2));
    block = dim3(slots, lanes);
  }
  const int64_t blocks = std::min<int64_t>((p.M + slots - 1) / slots, kMaxBlocks);
  int64_t splits = 1;
  if (blocks < busy) splits = std::min((busy + blocks - 1) / blocks, (p.N + lanes * kPerLane - 1) / (lanes * kPerLane));
  splits = std::max(splits, (p.N + lanes * kMaxPerLane - 1) / (lanes * kMaxPerLane));
  splits = std::clamp<int64_t>(splits, 1, kMaxSplits);
  p.chunk = (p.N + splits - 1) / splits;
  p.splits = (p.N + p.chunk - 1) / p.chunk;  // no empty split
  return block;
}

// ---------------------------------------------------------------- the kernel

__device__ __forceinline__ void kept_offsets(const Dims& k, int64_t m, int64_t& in_off, int64_t& out_off) {
  in_off = out_off = 0;
  for (int d = k.nd - 1; d >= 0; --d) {
    const int64_t i = m % k.size[d];
    m /= k.size[d];
    in_off += i * k.in[d];
    out_off += i * k.out[d];
  }
}

__device__ __forceinline__ int64_t reduced_offset(const Dims& r, int64_t j) {
  if (r.nd == 1) return j * r.in[0];  // the common case: no division
  int64_t off = 0;
  for (int d = r.nd - 1; d >= 0; --d) {
    off += (j % r.size[d]) * r.in[d];
    j /= r.size[d];
  }
  return off;
}

// Column mode: combines the Accs of the blockDim.y lanes of each output (threadIdx.x) through
// shared memory (kThreads Accs); the result is valid in the lanes with threadIdx.y == 0.
template <typename R, typename Acc>
__device__ Acc column_combine(Acc acc, Acc* smem) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  smem[tid] = acc;
  __syncthreads();
  for (int s = blockDim.y / 2; s > 0; s /= 2) {
    if (threadIdx.y < s) {
      acc = R::combine(acc, smem[tid + s * blockDim.x]);
      smem[tid] = acc;
    }
    __syncthreads();
  }
  return acc;
}

// One pass of plan p. kPartials: `in` holds the Accs of an earlier pass (partials_plan) instead of
// input elements. With p.splits > 1 the results are partials[m * p.splits + blockIdx.y]; otherwise
// the outputs.
template <typename R, bool kPartials, typename In, typename O>
__global__ void __launch_bounds__(kThreads) reduce_kernel(const In* in, O* out, typename R::Acc* partials, Plan p) {
  using Acc = typename R::Acc;
  __shared__ alignas(16) unsigned char smem_bytes[kThreads * sizeof(Acc)];
  Acc* smem = reinterpret_cast<Acc*>(smem_bytes);
  const int lane = p.rows ? threadIdx.x : threadIdx.y;
  const int lanes = p.rows ? blockDim.x : blockDim.y;
  const int slot = p.rows ? threadIdx.y : threadIdx.x;
  const int slots = p.rows ? blockDim.y : blockDim.x;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * p.chunk;
  const int64_t end = begin + p.chunk < p.N ? begin + p.chunk : p.N;
  // Every thread runs the same iterations (the combines below synchronise the block).
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * slots; first < p.M;
       first += static_cast<int64_t>(gridDim.x) * slots) {
    const int64_t m = first + slot;
    Acc acc = R::identity();
    int64_t out_off = 0;
    if (m < p.M) {
      int64_t in_off;
      kept_offsets(p.kept, m, in_off, out_off);
      for (int64_t j = begin + lane; j < end; j += lanes) {
        const In x = in[in_off + reduced_offset(p.red, j)];
        if constexpr (kPartials) acc = R::combine(acc, x);
        else acc = R::combine(acc, R::load(x, j));
      }
    }
    acc = p.rows ? group_allreduce(acc, CombineOp<R>{}, smem) : column_combine<R>(acc, smem);
    if (lane == 0 && m < p.M) {
      if (p.splits > 1) partials[m * p.splits + blockIdx.y] = acc;
      else out[out_off] = R::template finish<O>(acc, p.count);
    }
  }
}

// Runs plan p over `in` (input elements, or the Accs of an earlier pass when kPartials) into out.
template <typename R, bool kPartials, typename In, typename O>
void run(Plan p, const In* in, O* out, Device device, cudaStream_t stream) {
  using Acc = typename R::Acc;
  const dim3 block = configure(p, busy_blocks(device.index));
  const int64_t slots = p.rows ? block.y : block.x;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((p.M + slots - 1) / slots, kMaxBlocks)),
                  static_cast<unsigned>(p.splits));
  if (p.splits == 1) {
    reduce_kernel<R, kPartials><<<grid, block, 0, stream>>>(in, out, static_cast<Acc*>(nullptr), p);
    EMBER_CUDA_CHECK_LAUNCH();
    return;
  }
  // Scratch from the (stream-ordered) allocator; freed when this function returns, after both
  // launches are queued on the stream that uses it.
  const int64_t scratch_bytes = p.M * p.splits * static_cast<int64_t>(sizeof(Acc));
  const Tensor scratch = empty({scratch_bytes}, TensorOptions(kUInt8).device(device));
  Acc* partials = reinterpret_cast<Acc*>(scratch.data_ptr());
  reduce_kernel<R, kPartials><<<grid, block, 0, stream>>>(in, out, partials, p);
  EMBER_CUDA_CHECK_LAUNCH();
  run<R, true>(partials_plan(p), static_cast<const Acc*>(partials), out, device, stream);
}

template <typename R, typename T, typename O>
void run_reduction(const Plan& p, const Tensor& in, const Tensor& out, cudaStream_t stream) {
  run<R, false>(p, in.data<T>(), out.data<O>(), in.device(), stream);
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& in, const Tensor& out, uint32_t dims) {
  const Plan p = make_plan(in, out, dims);
  if (p.M == 0) return;
  if (p.N == 0) {  // an empty reduction: only sum (0) and mean (0/0) have a value; the ops reject the others
    EMBER_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean,
                "reduce: reduction over zero elements of a tensor of shape ", in.shape(), " has no identity");
    fill(out, op == ReduceOp::Sum ? 0.0 : std::numeric_limits<double>::quiet_NaN());
    return;
  }
  DeviceGuard guard(index_);
  const cudaStream_t stream = compute_stream(index_);
  EMBER_DISPATCH_ALL(in.dtype(), "reduce", [&]<typename T>() {
    // Sums accumulate in the input type, except integers, which sum into int64 (uint8's output dtype).
    using A = std::conditional_t<std::is_integral_v<T>, int64_t, T>;
    auto expect_out = [&](DType d) {
      EMBER_CHECK(out.dtype() == d, "reduce: output dtype ", dtype_name(out.dtype()), " for a ",
                  dtype_name(in.dtype()), " input; expected ", dtype_name(d));
    };
    switch (op) {
      case ReduceOp::Sum:
        if constexpr (std::is_same_v<T, uint8_t>) {
          expect_out(kInt64);
          run_reduction<SumReduction<T, A, false>, T, int64_t>(p, in, out, stream);
        } else {
          expect_out(in.dtype());
          run_reduction<SumReduction<T, A, false>, T, T>(p, in, out, stream);
        }
        break;
      case ReduceOp::Mean:
        expect_out(in.dtype());
        run_reduction<SumReduction<T, A, true>, T, T>(p, in, out, stream);
        break;
      case ReduceOp::Max:
        expect_out(in.dtype());
        run_reduction<ExtremumReduction<T, true>, T, T>(p, in, out, stream);
        break;
      case ReduceOp::Min:
        expect_out(in.dtype());
        run_reduction<ExtremumReduction<T, false>, T, T>(p, in, out, stream);
        break;
      case ReduceOp::ArgMax:
      case ReduceOp::ArgMin:
        expect_out(kInt64);
        EMBER_CHECK(std::popcount(dims) <= 1, "reduce: argmax/argmin reduce exactly one dim, got dims mask ", dims);
        if (op == ReduceOp::ArgMax) run_reduction<ArgReduction<T, true>, T, int64_t>(p, in, out, stream);
        else run_reduction<ArgReduction<T, false>, T, int64_t>(p, in, out, stream);
        break;
    }
  });
}

}  // namespace ember::cuda
