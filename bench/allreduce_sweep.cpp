// ember_allreduce_sweep: all-reduce time and bandwidth from 1 KiB to 1 GiB, over MPI (CPU tensors)
// or NCCL (CUDA tensors), reported in nccl-tests' convention (see bench/README.md):
//   algbw = bytes / time                     (one rank's buffer, per second)
//   busbw = algbw * 2 (n - 1) / n            (what each link carries in a ring all-reduce; comparable
//                                             with the hardware's bandwidth whatever n is)
//
//   mpirun -np 2 build/bench/ember_allreduce_sweep --device cpu
//   mpirun -np 8 build/bench/ember_allreduce_sweep --device cuda --max-bytes 4G
//   build/bench/ember_allreduce_sweep --device cuda     # one GPU: world size 1 (busbw is 0)
//
// Options: --device cpu|cuda, --min-bytes N, --max-bytes N (K/M/G suffixes, powers of 2),
// --step 2|4 (size factor), --iters N (timed iterations; default adapts to the size), --warmup N,
// --dtype float32|float64. Time is the slowest rank's average per all-reduce.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/ember.h"
#include "distributed/mpi_communicator.h"
#include "distributed/nccl_communicator.h"

using namespace ember;
using namespace ember::distributed;

namespace {

struct Options {
  std::string device = "cpu";
  int64_t min_bytes = 1 << 10;
  int64_t max_bytes = int64_t{1} << 30;
  int64_t step = 4;
  int iters = 0;  // 0: adapt to the size
  int warmup = 3;
  DType dtype = kFloat32;
};

int64_t parse_bytes(const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  switch (end && *end ? *end : ' ') {
    case 'K': case 'k': v *= 1024; break;
    case 'M': case 'm': v *= 1024.0 * 1024; break;
    case 'G': case 'g': v *= 1024.0 * 1024 * 1024; break;
    default: break;
  }
  return static_cast<int64_t>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      EMBER_CHECK(i + 1 < argc, "ember_allreduce_sweep: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--device") o.device = next();
    else if (a == "--min-bytes") o.min_bytes = parse_bytes(next());
    else if (a == "--max-bytes") o.max_bytes = parse_bytes(next());
    else if (a == "--step") o.step = std::atoi(next());
    else if (a == "--iters") o.iters = std::atoi(next());
    else if (a == "--warmup") o.warmup = std::atoi(next());
    else if (a == "--dtype") {
      const std::string d = next();
      EMBER_CHECK(d == "float32" || d == "float64", "ember_allreduce_sweep: --dtype float32|float64, got ", d);
      o.dtype = d == "float32" ? kFloat32 : kFloat64;
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: [mpirun -np N] ember_allreduce_sweep [--device cpu|cuda] [--min-bytes 1K] "
                  "[--max-bytes 1G] [--step 2|4] [--iters N] [--warmup N] [--dtype float32|float64]\n");
      std::exit(0);
    } else {
      EMBER_FAIL("ember_allreduce_sweep: unknown argument ", a, " (--help lists them)");
    }
  }
  EMBER_CHECK(o.device == "cpu" || o.device == "cuda", "ember_allreduce_sweep: --device cpu|cuda, got ", o.device);
  EMBER_CHECK(o.step >= 2, "ember_allreduce_sweep: --step must be at least 2");
  EMBER_CHECK(o.min_bytes > 0 && o.min_bytes <= o.max_bytes, "ember_allreduce_sweep: need 0 < --min-bytes <= --max-bytes");
  return o;
}

// Every rank of this node holds its buffer, and MPI or NCCL may need as much again: stay within a
// quarter of the node's memory (for CUDA, of host memory too: results come back for checking).
int64_t memory_cap(int ranks_per_node) {
  const int64_t phys = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  return phys / 4 / std::max(1, ranks_per_node);
}

}  // namespace

int run(int argc, char** argv);

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // set-up errors (bad arguments, no GPU); later ones abort the job
    std::fprintf(stderr, "ember_allreduce_sweep: %s\n", e.what());
    return 1;
  }
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const bool cuda = o.device == "cuda";
  CommunicatorOptions copts;
  copts.timeout = std::chrono::minutes(10);  // a 1 GiB all-reduce over slow links takes a while
  std::shared_ptr<Communicator> comm;
  if (cuda) {
    comm = make_nccl_communicator(copts);
  } else {
    MpiEnvironment::init(&argc, &argv);
    comm = make_mpi_communicator(copts);
  }
  return run_guarded(*comm, [&] {
    const int n = comm->world_size();
    const Device device = comm->device();
    const int64_t esize = static_cast<int64_t>(dtype_size(o.dtype));
    const int64_t cap = std::min(o.max_bytes, memory_cap(n));
    if (comm->rank() == 0) {
      std::printf("# ember all-reduce sweep: %s backend, %d rank(s), %s, device %s%s\n", comm->name().c_str(), n,
                  dtype_name(o.dtype), device.str().c_str(),
                  cap < o.max_bytes ? " (max size capped by memory)" : "");
      std::printf("# busbw = algbw * 2(n-1)/n (nccl-tests' convention); time = slowest rank's mean\n");
      std::printf("%14s %12s %8s %12s %12s %12s %6s\n", "bytes", "elements", "iters", "time_us", "algbw_GB/s",
                  "busbw_GB/s", "check");
    }
    for (int64_t bytes = o.min_bytes; bytes <= cap; bytes *= o.step) {
      const int64_t count = std::max<int64_t>(1, bytes / esize);
      const int iters = o.iters > 0 ? o.iters : static_cast<int>(std::clamp<int64_t>((int64_t{1} << 28) / bytes, 5, 200));
      Tensor t = full({count}, 1.0, TensorOptions(o.dtype).device(device));
      for (int i = 0; i < o.warmup; ++i) comm->all_reduce(t, ReduceOp::Max);
      comm->barrier();
      backend(device).synchronize();
      const auto start = std::chrono::steady_clock::now();
      // Max, not Sum: the values stay 1, so the result can be checked after any number of
      // iterations; both cost the same (one read-modify per element per step).
      for (int i = 0; i < iters; ++i) comm->all_reduce(t, ReduceOp::Max);
      backend(device).synchronize();  // CUDA: wait() only ordered the stream; the time needs the end
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
      // Max of 1s is 1 everywhere: a cheap check that every element took part.
      const bool ok = t.max().item() == 1.0 && t.min().item() == 1.0;
      Tensor slowest = from_vector<double>({seconds}, {1}).to(device);
      comm->all_reduce(slowest, ReduceOp::Max);
      const double time = slowest.to(kCPU).item();
      const double actual = static_cast<double>(count * esize);
      const double algbw = actual / time / 1e9;
      const double busbw = algbw * 2.0 * (n - 1) / n;
      if (comm->rank() == 0)
        std::printf("%14lld %12lld %8d %12.2f %12.3f %12.3f %6s\n", static_cast<long long>(count * esize),
                    static_cast<long long>(count), iters, time * 1e6, algbw, busbw, ok ? "ok" : "WRONG");
      std::fflush(stdout);
    }
    return 0;
  });
}
