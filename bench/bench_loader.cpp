// DataLoader throughput: batches/s the loader delivers to a consumer that does nothing else, on
// synthetic data of the real shapes and sizes (no download needed):
//   MNIST-shaped  60000 x 1x28x28 uint8, batch 64 and 128, to-float + normalize (fused)
//   CIFAR-shaped  50000 x 3x32x32 uint8, batch 128, normalize + RandomCrop(4) + RandomHorizontalFlip
// each with num_workers = 0 (batches made on the consumer's thread), 1 and 2, shuffled.
// A "direct" row per shape is the floor: the same work (shuffled order, decode, augment) done by one
// thread straight into one reused buffer (no loader, no threads, no batch tensors); the loader's
// overhead at workers:0 is the gap to it.
//
//   ember_bench_loader [Google Benchmark flags, e.g. --benchmark_filter=CIFAR]
// Counters: batches/s and samples/s (rates over wall time, since the work runs on worker threads).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "core/ember.h"
#include "data/data.h"

using namespace ember;

namespace {

// Random pixels and labels (a fixed LCG: fast, and the same every run).
std::shared_ptr<data::ImageDataset> synthetic(const char* name, int64_t n, int64_t c, int64_t hw) {
  Tensor images = empty({n, c, hw, hw}, kUInt8);
  Tensor labels = empty({n}, kInt64);
  uint64_t state = 0x9e3779b97f4a7c15ull;
  uint8_t* px = images.data<uint8_t>();
  for (int64_t i = 0; i < images.numel(); ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    px[i] = static_cast<uint8_t>(state >> 56);
  }
  for (int64_t i = 0; i < n; ++i) labels.data<int64_t>()[i] = i % 10;
  return std::make_shared<data::ImageDataset>(name, images, labels, 10);
}

const std::shared_ptr<data::ImageDataset>& mnist_like() {
  static auto ds = [] {
    auto d = synthetic("MNIST-like", 60000, 1, 28);
    d->normalize({data::MNIST::kMean}, {data::MNIST::kStd});
    return d;
  }();
  return ds;
}

const std::shared_ptr<data::ImageDataset>& cifar_like() {
  static auto ds = [] {
    auto d = synthetic("CIFAR-like", 50000, 3, 32);
    d->normalize(data::CIFAR10::kMean, data::CIFAR10::kStd);
    return d;
  }();
  return ds;
}

void set_counters(benchmark::State& state, int64_t batch) {
  state.counters["batches/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["samples/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * batch), benchmark::Counter::kIsRate);
}

// One benchmark iteration = one batch handed to the consumer; epochs roll over as needed.
void run_loader(benchmark::State& state, const std::shared_ptr<data::ImageDataset>& ds, int64_t batch, bool augment) {
  auto opts = data::DataLoaderOptions().batch_size(batch).shuffle().seed(1).drop_last().num_workers(
      static_cast<int>(state.range(0)));
  if (augment) opts = opts.transform(data::RandomCrop(4)).transform(data::RandomHorizontalFlip());
  data::DataLoader loader(ds, opts);
  auto it = loader.begin();
  for (auto _ : state) {
    if (it == loader.end()) it = loader.begin();
    benchmark::DoNotOptimize(it->data.data_ptr());
    ++it;
  }
  set_counters(state, batch);
}

// The floor: decode `batch` consecutive samples (and augment) into one reused buffer, one thread.
void run_direct(benchmark::State& state, const std::shared_ptr<data::ImageDataset>& ds, int64_t batch, bool augment,
                bool prefetch = true) {
  const Shape shape = ds->sample_shape();
  const int64_t per = shape.numel();
  std::vector<float> buf(batch * per);
  std::vector<int64_t> target(batch);
  data::RandomCrop crop(4);
  data::RandomHorizontalFlip flip;
  // The same kind of random visiting order as the shuffled loader (random reads cost cache misses).
  std::vector<int64_t> order(ds->size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::shuffle(order.begin(), order.end(), std::mt19937_64(1));
  int64_t pos = 0;
  for (auto _ : state) {
    for (int64_t i = 0; i < batch; ++i, pos = (pos + 1) % ds->size()) {
      if (prefetch) ds->prefetch(order[(pos + 2) % ds->size()]);  // as the loader does
      const int64_t index = order[pos];
      ds->get_into(index, buf.data() + i * per, target.data() + i);
      if (augment) {
        data::SampleRng rng(1, 0, index);
        crop.apply(buf.data() + i * per, shape, rng);
        flip.apply(buf.data() + i * per, shape, rng);
      }
    }
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, batch);
}

void BM_MNIST_b64(benchmark::State& s) { run_loader(s, mnist_like(), 64, false); }
void BM_MNIST_b128(benchmark::State& s) { run_loader(s, mnist_like(), 128, false); }
void BM_CIFAR_b128_crop_flip(benchmark::State& s) { run_loader(s, cifar_like(), 128, true); }
void BM_MNIST_b128_direct(benchmark::State& s) { run_direct(s, mnist_like(), 128, false); }
void BM_CIFAR_b128_crop_flip_direct(benchmark::State& s) { run_direct(s, cifar_like(), 128, true); }
// Without Dataset::prefetch: what the hint buys.
void BM_CIFAR_b128_crop_flip_direct_noprefetch(benchmark::State& s) { run_direct(s, cifar_like(), 128, true, false); }

BENCHMARK(BM_MNIST_b64)->ArgName("workers")->Arg(0)->Arg(1)->Arg(2)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_MNIST_b128)->ArgName("workers")->Arg(0)->Arg(1)->Arg(2)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_MNIST_b128_direct)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_CIFAR_b128_crop_flip)->ArgName("workers")->Arg(0)->Arg(1)->Arg(2)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_CIFAR_b128_crop_flip_direct)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_CIFAR_b128_crop_flip_direct_noprefetch)->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
