// core/cpu/parallel.h: parallel_for covers every index once whatever the grain and the team, each
// kind of loop has its own grain, and a kind's grain decides whether its loops split without
// changing any result.
#include <atomic>
#include <vector>

#include "core/cpu/parallel.h"
#include "tests/test_util.h"

using namespace ember;

namespace {

// Restores every kind's grain and the thread count when a test ends.
class GrainGuard {
 public:
  GrainGuard() : threads_(get_num_threads()) {
    for (int k = 0; k < kGrainKinds; ++k) saved_.push_back(grain_size(static_cast<Grain>(k)));
  }
  ~GrainGuard() {
    for (int k = 0; k < kGrainKinds; ++k) set_grain_size(static_cast<Grain>(k), saved_[k]);
    set_num_threads(threads_);
  }

 private:
  int threads_;
  std::vector<int64_t> saved_;
};

}  // namespace

TEST(CpuParallel, EachKindHasItsOwnGrain) {
  GrainGuard guard;
  for (int k = 0; k < kGrainKinds; ++k) EXPECT_GE(grain_size(static_cast<Grain>(k)), 1);
  const int64_t elementwise = grain_size(Grain::Elementwise);
  set_grain_size(Grain::RowWise, 123);
  EXPECT_EQ(grain_size(Grain::RowWise), 123);
  EXPECT_EQ(grain_size(Grain::Elementwise), elementwise);  // the other kinds keep theirs
  set_grain_size(Grain::RowWise, 0);                       // clamped: a grain is at least one element
  EXPECT_EQ(grain_size(Grain::RowWise), 1);
}

TEST(CpuParallel, TheGrainDecidesTheSplitAndEveryIndexRunsOnce) {
  GrainGuard guard;
  set_num_threads(2);
  const int64_t n = 10000;
  for (int64_t grain : {int64_t{1}, int64_t{5000}, int64_t{9999}, n, int64_t{1} << 40}) {
    SCOPED_TRACE(grain);
    std::vector<std::atomic<int>> hits(n);
    std::atomic<int> chunks{0};
    parallel_for(n, grain, [&](int64_t b, int64_t e) {
      ++chunks;
      for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i;
    // Two chunks (two threads) exactly when there is more than one grain of work.
    EXPECT_EQ(chunks.load(), n > grain ? 2 : 1);
  }
}

TEST(CpuParallel, ResultsDoNotDependOnTheGrain) {
  // Elementwise loops split the flat range into disjoint chunks and row-wise loops whole rows, so
  // one thread and two give the same bits.
  GrainGuard guard;
  set_num_threads(2);
  const Tensor x = test::rand_f64({300, 257}, -2, 2, 3).to(kFloat32);
  std::vector<Tensor> relus, softmaxes;
  for (int64_t grain : {int64_t{1}, int64_t{1} << 40}) {
    set_grain_size(Grain::Elementwise, grain);
    set_grain_size(Grain::RowWise, grain);
    relus.push_back(relu(x));
    softmaxes.push_back(softmax(x, 1));
  }
  EXPECT_TRUE(allclose(relus[0], relus[1], 0, 0));
  EXPECT_TRUE(allclose(softmaxes[0], softmaxes[1], 0, 0));
}
