// SyncBatchNorm (distributed/sync_batch_norm.h): W ranks with B rows each normalise, differentiate
// and update running statistics exactly as one process with the W*B rows does (to float32
// rounding). Bodies run on a fake 2-thread world and on the MPI world (DDP_TEST).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/ember.h"
#include "distributed/ddp.h"
#include "distributed/sync_batch_norm.h"
#include "nn/nn.h"
#include "optim/sgd.h"
#include "tests/distributed/ddp_test_util.h"
#include "tests/test_util.h"

namespace {

using namespace ember;
using namespace ember::test::ddp;
using distributed::Communicator;

std::shared_ptr<nn::Sequential> make_bn_mlp(uint64_t seed) {
  Generator g(seed);
  return std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 8, true, &g),
                                          std::make_shared<nn::BatchNorm1d>(8), std::make_shared<nn::ReLU>(),
                                          std::make_shared<nn::Linear>(8, 3, true, &g));
}

// Under DDP: forward outputs, parameter gradients (DDP-averaged) and running statistics match one
// process on the global batch, step after step.
DDP_TEST(SyncBatchNormUnderDDPMatchesOneProcessOnTheGlobalBatch) {
  const int W = comm->world_size(), r = comm->rank();
  const int64_t B = 4;
  auto model = make_bn_mlp(11);
  auto ref = make_bn_mlp(11);
  EXPECT_EQ(distributed::convert_sync_batchnorm(*model, comm), 1);
  auto ddp = std::make_shared<nn::DistributedDataParallel>(model, comm, nn::DDPOptions().bucket_cap(0.0002));
  optim::SGD opt(ddp->parameters(), optim::SGDOptions(0.1));
  optim::SGD ref_opt(ref->parameters(), optim::SGDOptions(0.1));
  auto bn = model->at<nn::BatchNorm1d>(1);
  auto ref_bn = ref->at<nn::BatchNorm1d>(1);
  for (int step = 0; step < 3; ++step) {
    Data d = global_batch(step, W * B);
    ddp->zero_grad();
    Tensor out = ddp->forward(d.rows(r * B, B).x);
    F::cross_entropy(out, d.rows(r * B, B).y).backward();
    ref->zero_grad();
    Tensor ref_out = ref->forward(d.x);
    F::cross_entropy(ref_out, d.y).backward();
    ember::test::expect_close(out, ref_out.narrow(0, r * B, B), 1e-4, 1e-5);
    EXPECT_LT(max_abs_diff(flatten_all(grads_of(*model)), flatten_all(grads_of(*ref))), 1e-5) << "step " << step;
    ember::test::expect_close(bn->running_mean, ref_bn->running_mean, 1e-5, 1e-6);
    ember::test::expect_close(bn->running_var, ref_bn->running_var, 1e-5, 1e-6);
    opt.step();
    ref_opt.step();
  }
  EXPECT_EQ(bn->num_batches_tracked.item(), 3.0);
  EXPECT_TRUE(same_on_all_ranks(*comm, flatten_all(model->parameters())));
  // Evaluation normalises with the running statistics and communicates nothing.
  ddp->eval();
  ref->eval();
  NoGradGuard no_grad;
  Data d = global_batch(7, W * B);
  ember::test::expect_close(model->forward(d.x), ref->forward(d.x), 1e-5, 1e-6);
}

// Inside join(): with every rank training SyncBatchNorm works; once a rank runs out of data its
// collectives could not be matched (the joined rank waits in DDP's join round), so every rank
// throws at that round naming the joined and the training ranks, and the ranks stay in step. The
// same when one rank's SyncBatchNorm is in evaluation mode (no collectives) and the others' not.
// PyTorch documents SyncBatchNorm as unsupported in join() (there it hangs); ember is stricter.
DDP_TEST(SyncBatchNormInsideJoinThrowsOnEveryRankOnceARankJoins) {
  const int W = comm->world_size(), r = comm->rank();
  const int64_t B = 4;
  auto model = make_bn_mlp(11);
  distributed::convert_sync_batchnorm(*model, comm);
  auto ddp = std::make_shared<nn::DistributedDataParallel>(model, comm);
  optim::SGD opt(ddp->parameters(), optim::SGDOptions(0.1));
  auto train = [&](int steps) {
    for (int step = 0; step < steps; ++step) {
      Data d = global_batch(step, W * B);
      ddp->zero_grad();
      F::cross_entropy(ddp->forward(d.rows(r * B, B).x), d.rows(r * B, B).y).backward();
      opt.step();
    }
  };
  ddp->join([&] { train(2); });  // even inputs: every SyncBatchNorm collective has its partners
  EXPECT_EQ(ddp->stats().synced_steps, 2);
  if (W == 1) return;
  std::string training;  // every rank but the last trains one step longer
  for (int k = 0; k + 1 < W; ++k) training += (k ? ", " : "") + std::to_string(k);
  ember::test::expect_error(
      [&] {
        ddp->join([&] { train(r == W - 1 ? 1 : 2); });
        ADD_FAILURE() << "rank " << r << ": join() should have thrown";
      },
      {"DistributedDataParallel::join (seen on rank " + std::to_string(r) + "): rank(s) " + std::to_string(W - 1) +
           " ran out of data while rank(s) " + training + " still train a model whose forward runs collectives "
           "(SyncBatchNorm layers in training mode)"});
  EXPECT_TRUE(same_on_all_ranks(*comm, {1.0f, 2.0f})) << "the ranks are out of step after the error";
  // Every rank trains, but rank 0 is in evaluation mode: only the others' forwards would all-reduce.
  if (r == 0) ddp->eval();
  std::string others;
  for (int k = 1; k < W; ++k) others += (k > 1 ? ", " : "") + std::to_string(k);
  ember::test::expect_error(
      [&] {
        ddp->join([&] { train(1); });
        ADD_FAILURE() << "rank " << r << ": join() should have thrown";
      },
      {"): rank(s) " + others + " run SyncBatchNorm layers in training mode " +
       "(collectives inside forward) but rank(s) 0 do not"});
  ddp->train();
  EXPECT_TRUE(same_on_all_ranks(*comm, {1.0f, 2.0f})) << "the ranks are out of step after the error";
  // Without SyncBatchNorm's training forward (evaluation), uneven inputs inside join() work.
  ddp->eval();
  ddp->join([&] {
    NoGradGuard no_grad;
    for (int step = 0; step < (r == 0 ? 2 : 1); ++step) ddp->forward(global_batch(step, B).x);
  });
}

// The functional form on 4-D input [N, C, H, W], without DDP: the input gradient on each rank is
// the global batch's for its rows, and the weight gradients summed over ranks are the global ones
// (for a loss that sums over ranks: sum(out * G)).
DDP_TEST(SyncBatchNorm2dGradientsMatchOneProcess) {
  const int W = comm->world_size(), r = comm->rank();
  const int64_t B = 3, C = 4;
  Generator g(77);
  Tensor x_all = randn({W * B, C, 3, 2}, {}, &g) * 2.0 + 0.5;
  Tensor G = randn({W * B, C, 3, 2}, {}, &g);
  Tensor w_init = randn({C}, {}, &g), b_init = randn({C}, {}, &g);

  Tensor x = x_all.narrow(0, r * B, B).clone().requires_grad_();
  Tensor w = w_init.clone().requires_grad_(), b = b_init.clone().requires_grad_();
  Tensor rm = zeros({C}), rv = ones({C});
  Tensor out = distributed::sync_batch_norm(comm, x, rm, rv, w, b, 0.1, 1e-5);
  (out * G.narrow(0, r * B, B)).sum().backward();

  Tensor xr = x_all.clone().requires_grad_();
  Tensor wr = w_init.clone().requires_grad_(), br = b_init.clone().requires_grad_();
  Tensor rmr = zeros({C}), rvr = ones({C});
  Tensor ref = F::batch_norm(xr, rmr, rvr, wr, br, /*training=*/true, 0.1, 1e-5);
  (ref * G).sum().backward();

  ember::test::expect_close(out, ref.narrow(0, r * B, B), 1e-5, 1e-5);
  ember::test::expect_close(x.grad(), xr.grad().narrow(0, r * B, B), 1e-4, 1e-5);
  Tensor gw = w.grad().clone(), gb = b.grad().clone();
  comm->all_reduce(gw);
  comm->all_reduce(gb);
  ember::test::expect_close(gw, wr.grad(), 1e-4, 1e-5);
  ember::test::expect_close(gb, br.grad(), 1e-4, 1e-5);
  ember::test::expect_close(rm, rmr, 1e-5, 1e-6);
  ember::test::expect_close(rv, rvr, 1e-5, 1e-6);
}

// Ranks may hold different numbers of rows: the statistics are still the global batch's.
DDP_TEST(SyncBatchNormWithUnevenRowsUsesTheGlobalStatistics) {
  const int W = comm->world_size(), r = comm->rank();
  Generator g(5);
  const int64_t total = W * (W + 1) / 2 + W;  // rank k holds k + 2 rows
  Tensor x_all = randn({total, 3}, {}, &g);
  int64_t start = 0;
  for (int k = 0; k < r; ++k) start += k + 2;
  Tensor rm = zeros({3}), rv = ones({3}), rmr = zeros({3}), rvr = ones({3});
  Tensor out = distributed::sync_batch_norm(comm, x_all.narrow(0, start, r + 2), rm, rv, Tensor(), Tensor(), 0.1, 1e-5);
  Tensor ref = F::batch_norm(x_all, rmr, rvr, Tensor(), Tensor(), true, 0.1, 1e-5);
  ember::test::expect_close(out, ref.narrow(0, start, r + 2), 1e-5, 1e-5);
  ember::test::expect_close(rv, rvr, 1e-5, 1e-6);
}

// A rank with an empty batch still takes part (its count is 0): no reshape error on it, no hang on
// the others, and the statistics are those of the rows that exist. 4-D, so the spatial size matters.
DDP_TEST(SyncBatchNormWithAnEmptyRankUsesTheOthersRows) {
  const int W = comm->world_size(), r = comm->rank();
  if (W < 2) GTEST_SKIP() << "needs a rank with rows beside the empty one (world size " << W << ")";
  Generator g(7);
  const int64_t per_rank = 3;  // rank 0 holds none, every other rank per_rank
  Tensor x_all = randn({(W - 1) * per_rank, 2, 2, 3}, {}, &g);
  const int64_t rows = r == 0 ? 0 : per_rank, start = r == 0 ? 0 : (r - 1) * per_rank;
  Tensor rm = zeros({2}), rv = ones({2}), rmr = zeros({2}), rvr = ones({2});
  Tensor out = distributed::sync_batch_norm(comm, x_all.narrow(0, start, rows), rm, rv, Tensor(), Tensor(), 0.1, 1e-5);
  EXPECT_EQ(out.shape(), (Shape{rows, 2, 2, 3}));
  Tensor ref = F::batch_norm(x_all, rmr, rvr, Tensor(), Tensor(), true, 0.1, 1e-5);
  if (rows > 0) ember::test::expect_close(out, ref.narrow(0, start, rows), 1e-5, 1e-5);
  ember::test::expect_close(rm, rmr, 1e-6, 1e-6);
  ember::test::expect_close(rv, rvr, 1e-5, 1e-6);
}

// A bfloat16 input (autocast) is normalised with float32 statistics and gives float32, as
// batch_norm under autocast does: the same numbers as float32 on the bf16-rounded input.
DDP_TEST(SyncBatchNormOfBfloat16ComputesInFloat32) {
  const int r = comm->rank();
  Generator g(11 + r);
  Tensor x16 = (randn({70, 4}, {}, &g) * 3.0).to(kBFloat16);
  Tensor rm = zeros({4}), rv = ones({4}), rm32 = zeros({4}), rv32 = ones({4});
  Tensor out = distributed::sync_batch_norm(comm, x16, rm, rv, Tensor(), Tensor(), 0.1, 1e-5);
  Tensor ref = distributed::sync_batch_norm(comm, x16.to(kFloat32), rm32, rv32, Tensor(), Tensor(), 0.1, 1e-5);
  EXPECT_EQ(out.dtype(), kFloat32);
  ember::test::expect_close(out, ref, 0, 0);
  ember::test::expect_close(rv, rv32, 0, 0);
}

// float64 finite differences, first and second order (the all-reduce is an identity in a world of
// one, so this checks the normalisation formula and that its backward is differentiable again).
TEST(SyncBatchNormGradcheck, Float64FirstAndSecondOrder) {
  ember::testing::run_fake_world(1, [](std::shared_ptr<Communicator> comm) {
    auto fn = [comm](const std::vector<Tensor>& in) {
      return distributed::sync_batch_norm(comm, in[0], Tensor(), Tensor(), in[1], in[2], 0.1, 1e-5);
    };
    std::vector<Tensor> inputs = {ember::test::rand_f64({4, 3, 2}, -1, 1, 1), ember::test::rand_f64({3}, 0.5, 1.5, 2),
                                  ember::test::rand_f64({3}, -1, 1, 3)};
    ember::test::expect_gradcheck(fn, inputs);
    ember::test::expect_gradgradcheck(fn, inputs);
  });
}

TEST(SyncBatchNormModule, ConvertsEveryBatchNormInPlace) {
  ember::testing::run_fake_world(1, [](std::shared_ptr<Communicator> comm) {
    auto block = std::make_shared<nn::ResidualBlock>(4, 8, 2);  // bn1, bn2 and the shortcut's BatchNorm
    EXPECT_EQ(distributed::convert_sync_batchnorm(*block, comm), 3);
    EXPECT_TRUE(static_cast<bool>(block->bn1->training_forward));
    auto layer = std::make_shared<distributed::SyncBatchNorm>(4, comm);
    // A converted block computes what the local one does on one rank, including the ReLU that
    // ResidualBlock applies through BatchNorm::forward_relu (composed there with the sync forward).
    auto local = std::make_shared<nn::ResidualBlock>(4, 8, 2);
    local->load_state_dict(block->state_dict());
    const Tensor x = ember::test::rand_f64({3, 4, 6, 6}, -1, 1, 4).to(kFloat32);
    ember::test::expect_close(block->forward(x), local->forward(x), 1e-5, 1e-6);
    EXPECT_EQ(layer->type_name(), "SyncBatchNorm");
    EXPECT_EQ(layer->state_dict().keys(),
              (std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
    ember::test::expect_error([&] { layer->forward(zeros({2, 5})); }, {"SyncBatchNorm: input [2, 5] has 5 channels"});
  });
}

}  // namespace
