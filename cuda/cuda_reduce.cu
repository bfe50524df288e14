// CUDA reductions: sum, mean, max, min, argmax, argmin over any set of dims of any strided input.
// The semantics are the CPU's (core/cpu/cpu_reduce.cpp): NaN propagates through max/min, argmax
// and argmin point at the first NaN or else the first extremum, uint8 sums into int64, the mean
// of an integer tensor divides in integers, and an empty sum is 0 (an empty mean NaN).
//
// The layout plan, the dtype rules and the NaN and tie rules are the CPU's own definitions
// (core/reduce_math.h): the input's dims are put in memory order, size-1 dims dropped and
// contiguous neighbours merged. That leaves M outputs, each reducing N elements, and one
// question: is the innermost dim in memory reduced or kept?
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

#include "core/cpu/float32_operands.h"
#include "core/ops.h"
#include "core/reduce_math.h"
#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/error.h"
#include "cuda/loops.cuh"
#include "cuda/reduce_index.h"

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
    if constexpr (kMean) return reduction::mean<O>(a, count);
    else return static_cast<O>(a);
  }
};

template <typename T, bool kMax>
struct ExtremumReduction {
  using Acc = T;
  __device__ static Acc identity() { return reduction::identity<kMax, T>(); }
  __device__ static Acc load(T x, int64_t) { return x; }
  // A NaN wins over any number and stays (PyTorch propagates it): core/reduce_math.h.
  __device__ static Acc combine(Acc a, Acc b) { return reduction::pick<kMax>(a, b); }
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
  __device__ static Acc identity() { return {reduction::identity<kMax, T>(), std::numeric_limits<int64_t>::max()}; }
  __device__ static Acc load(T x, int64_t j) { return {x, j}; }
  // The better value (reduction::beats: a NaN beats any number, argmax points at the first NaN);
  // on a tie (equal, or both NaN) the earlier index, so that the order in which lanes meet does
  // not matter: the result is always the first extremum.
  __device__ static Acc combine(Acc a, Acc b) {
    if (reduction::beats<kMax>(b.v, a.v)) return b;
    if (reduction::beats<kMax>(a.v, b.v)) return a;
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

// One launch's reduction: the layout plan L (core/reduce_math.h: M outputs of N reduced elements
// over kept dims L.kept and reduced dims L.red), split into `splits` chunks of `chunk` elements
// along blockIdx.y, and the index math that walks it (cuda/reduce_index.h: 32-bit when it fits,
// set by run()). Passed to the kernel by value.
struct Plan {
  reduction::Layout L;
  int64_t count = 1;  // elements per output in the whole reduction (what a mean divides by)
  int64_t splits = 1, chunk = 1;
  ReduceIndex index;
};

Plan make_plan(const Tensor& in, const Tensor& out, uint32_t mask) {
  Plan p;
  p.L = reduction::plan(in, out, mask);
  p.count = p.L.N;
  return p;
}

// The plan that combines the partial results of `p` (cuda/reduce_index.h: partials_layout).
Plan partials_plan(const Plan& p) {
  Plan q = p;
  q.L = partials_layout(p.L, p.splits);
  return q;
}

// Picks the block shape and the splits for p; returns the block (the grid follows from it).
dim3 configure(Plan& p, int64_t busy) {
  const int64_t M = p.L.M, N = p.L.N;
  int lanes, slots;  // lanes per output, outputs per block
  dim3 block;
  const int64_t outputs_pow2 = std::bit_ceil(static_cast<uint64_t>(std::min<int64_t>(M, kThreads)));
  if (p.L.rows) {
    lanes = lanes_for(N, kPerLane);
    slots = kThreads / lanes;  // a full block: group_allreduce needs it
    block = dim3(lanes, slots);
  } else {
    // Up to a warp's width of neighbouring outputs along x, as many lanes along y as the reduced
    // length needs, then more outputs if the lanes leave room.
    const int min_slots = static_cast<int>(std::min<int64_t>(kWarp, outputs_pow2));
    lanes = std::min(lanes_for(N, kPerLane), kThreads / min_slots);
    slots = static_cast<int>(std::min<int64_t>(kThreads / lanes, outputs_pow2));
    block = dim3(slots, lanes);
  }
  const int64_t blocks = std::min<int64_t>((M + slots - 1) / slots, kMaxBlocks);
  int64_t splits = 1;
  if (blocks < busy) splits = std::min((busy + blocks - 1) / blocks, (N + lanes * kPerLane - 1) / (lanes * kPerLane));
  splits = std::max(splits, (N + lanes * kMaxPerLane - 1) / (lanes * kMaxPerLane));
  splits = std::clamp<int64_t>(splits, 1, kMaxSplits);
  p.chunk = (N + splits - 1) / splits;
  p.splits = (N + p.chunk - 1) / p.chunk;  // no empty split
  return block;
}

// ---------------------------------------------------------------- the kernel

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
// the outputs. kNarrow: p.index.narrow, the 32-bit index math (the host chose it).
template <typename R, bool kPartials, bool kNarrow, typename In, typename O>
__global__ void __launch_bounds__(kThreads) reduce_kernel(const In* in, O* out, typename R::Acc* partials, Plan p) {
  using Acc = typename R::Acc;
  using Index = ReduceIndexType<kNarrow>;  // reduced indices: N fits in it
  __shared__ alignas(16) unsigned char smem_bytes[kThreads * sizeof(Acc)];
  Acc* smem = reinterpret_cast<Acc*>(smem_bytes);
  const reduction::Layout& L = p.L;
  const int lane = L.rows ? threadIdx.x : threadIdx.y;
  const int lanes = L.rows ? blockDim.x : blockDim.y;
  const int slot = L.rows ? threadIdx.y : threadIdx.x;
  const int slots = L.rows ? blockDim.y : blockDim.x;
  const Index begin = static_cast<Index>(blockIdx.y * p.chunk);
  const Index end = static_cast<Index>(begin + p.chunk < L.N ? begin + p.chunk : L.N);
  // Every thread runs the same iterations (the combines below synchronise the block).
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * slots; first < L.M;
       first += static_cast<int64_t>(gridDim.x) * slots) {
    const int64_t m = first + slot;
    Acc acc = R::identity();
    int64_t out_off = 0;
    if (m < L.M) {
      int64_t in_off;
      output_offsets<kNarrow>(p.index, m, in_off, out_off);
      const In* row = in + in_off;
      // j + lanes stays below 2^32 on the narrow path (N <= 2^31 - 1): no wrap-around.
      for (Index j = begin + lane; j < end; j += lanes) {
        const In x = row[reduced_offset<kNarrow>(p.index, j)];
        if constexpr (kPartials) acc = R::combine(acc, x);
        else acc = R::combine(acc, R::load(x, j));
      }
    }
    acc = L.rows ? group_allreduce(acc, CombineOp<R>{}, smem) : column_combine<R>(acc, smem);
    if (lane == 0 && m < L.M) {
      if (p.splits > 1) partials[m * p.splits + blockIdx.y] = acc;
      else out[out_off] = R::template finish<O>(acc, p.count);
    }
  }
}

// Launches one pass of plan p on the index path the host chose for it.
template <typename R, bool kPartials, typename In, typename O>
void launch(const Plan& p, dim3 grid, dim3 block, const In* in, O* out, typename R::Acc* partials,
            cudaStream_t stream) {
  if (p.index.narrow) reduce_kernel<R, kPartials, true><<<grid, block, 0, stream>>>(in, out, partials, p);
  else reduce_kernel<R, kPartials, false><<<grid, block, 0, stream>>>(in, out, partials, p);
  EMBER_CUDA_CHECK_LAUNCH();
}

// Runs plan p over `in` (input elements, or the Accs of an earlier pass when kPartials) into out.
template <typename R, bool kPartials, typename In, typename O>
void run(Plan p, const In* in, O* out, Device device, cudaStream_t stream) {
  using Acc = typename R::Acc;
  const dim3 block = configure(p, busy_blocks(device.index));
  p.index = make_reduce_index(p.L);
  const int64_t slots = p.L.rows ? block.y : block.x;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((p.L.M + slots - 1) / slots, kMaxBlocks)),
                  static_cast<unsigned>(p.splits));
  if (p.splits == 1) {
    launch<R, kPartials>(p, grid, block, in, out, static_cast<Acc*>(nullptr), stream);
    return;
  }
  // Scratch from the (stream-ordered) allocator; freed when this function returns, after both
  // launches are queued on the stream that uses it.
  const int64_t scratch_bytes = p.L.M * p.splits * static_cast<int64_t>(sizeof(Acc));
  const Tensor scratch = empty({scratch_bytes}, TensorOptions(kUInt8).device(device));
  Acc* partials = reinterpret_cast<Acc*>(scratch.data_ptr());
  launch<R, kPartials>(p, grid, block, in, out, partials, stream);
  run<R, true>(partials_plan(p), static_cast<const Acc*>(partials), out, device, stream);
}

template <typename R, typename T, typename O>
void run_reduction(const Plan& p, const Tensor& in, const Tensor& out, cudaStream_t stream) {
  run<R, false>(p, in.data<T>(), out.data<O>(), in.device(), stream);
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& in, const Tensor& out, uint32_t dims) {
  // 16-bit floats: the float32 kernel on widened copies (core/cpu/float32_operands.h)
  if (has_reduced_floating({&in, &out})) {
    Float32Operands f;
    reduce(op, f.in(in), f.out(out), dims);
    return f.finish();
  }
  const Plan p = make_plan(in, out, dims);
  if (p.L.M == 0) return;
  if (p.L.N == 0) {  // an empty reduction: only sum (0) and mean (0/0) have a value; the ops reject the others
    EMBER_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean,
                "reduce: reduction over zero elements of a tensor of shape ", in.shape(), " has no identity");
    fill(out, op == ReduceOp::Sum ? 0.0 : std::numeric_limits<double>::quiet_NaN());
    return;
  }
  DeviceGuard guard(index_);
  const cudaStream_t stream = compute_stream(index_);
  const DType want = reduction::output_dtype(op, in.dtype());
  EMBER_CHECK(out.dtype() == want, "reduce: output dtype ", dtype_name(out.dtype()), " for a ", dtype_name(in.dtype()),
              " input; expected ", dtype_name(want));
  EMBER_DISPATCH_ALL(in.dtype(), "reduce", [&]<typename T>() {
    using A = reduction::SumAcc<T>;  // core/reduce_math.h: integers accumulate in int64
    switch (op) {
      case ReduceOp::Sum:
        run_reduction<SumReduction<T, A, false>, T, reduction::SumOut<T>>(p, in, out, stream);
        break;
      case ReduceOp::Mean:
        run_reduction<SumReduction<T, A, true>, T, T>(p, in, out, stream);
        break;
      case ReduceOp::Max:
        run_reduction<ExtremumReduction<T, true>, T, T>(p, in, out, stream);
        break;
      case ReduceOp::Min:
        run_reduction<ExtremumReduction<T, false>, T, T>(p, in, out, stream);
        break;
      case ReduceOp::ArgMax:
      case ReduceOp::ArgMin:
        EMBER_CHECK(std::popcount(dims) <= 1, "reduce: argmax/argmin reduce exactly one dim, got dims mask ", dims);
        if (op == ReduceOp::ArgMax) run_reduction<ArgReduction<T, true>, T, int64_t>(p, in, out, stream);
        else run_reduction<ArgReduction<T, false>, T, int64_t>(p, in, out, stream);
        break;
    }
  });
}

}  // namespace ember::cuda
