// Rendezvous (distributed/rendezvous.h), GPU binding (device_binding.h) and the backend choice of
// init_process_group (process_group.h): the environment is a map, the ranks are threads.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <vector>
#include <thread>

#include "distributed/device_binding.h"
#include "distributed/gloo_communicator.h"
#include "distributed/process_group.h"
#include "distributed/rendezvous.h"
#include "tests/test_util.h"

namespace ember::test {
namespace {

using namespace distributed;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Env = std::map<std::string, std::string>;

EnvLookup lookup(const Env& env) {
  return [env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

int unused_port() {
  TcpStoreServer probe("127.0.0.1", 0);
  return probe.port();
}

TEST(Rendezvous, EnvVariables) {
  LaunchInfo i = detect_launch(InitMethod::Auto, lookup({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"},
                                                          {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "10.0.0.1"},
                                                          {"MASTER_PORT", "29500"}}));
  EXPECT_EQ(i.method, InitMethod::Env);
  EXPECT_EQ(i.rank, 3);
  EXPECT_EQ(i.world_size, 4);
  EXPECT_EQ(i.local_rank, 1);
  EXPECT_EQ(i.local_world_size, 2);
  EXPECT_EQ(i.master_addr, "10.0.0.1");
  EXPECT_EQ(i.master_port, 29500);
  // LOCAL_* default to one node.
  LaunchInfo j = detect_launch(InitMethod::Env, lookup({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"},
                                                         {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(j.local_rank, 1);
  EXPECT_EQ(j.local_world_size, 2);
}

TEST(Rendezvous, BadEnvVariablesNameTheVariable) {
  const Env base = {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1234"}};
  auto with = [&](const std::string& k, const std::string& v) {
    Env e = base;
    e[k] = v;
    return lookup(e);
  };
  auto without = [&](const std::string& k) {
    Env e = base;
    e.erase(k);
    return lookup(e);
  };
  expect_error([&] { detect_launch(InitMethod::Auto, with("RANK", "2")); }, {"RANK=2 is not below WORLD_SIZE=2"});
  expect_error([&] { detect_launch(InitMethod::Auto, with("RANK", "x1")); }, {"RANK='x1' is not an integer"});
  expect_error([&] { detect_launch(InitMethod::Auto, with("WORLD_SIZE", "0")); }, {"WORLD_SIZE=0 is out of range"});
  expect_error([&] { detect_launch(InitMethod::Auto, with("MASTER_PORT", "99999")); },
               {"MASTER_PORT=99999 is out of range"});
  expect_error([&] { detect_launch(InitMethod::Auto, without("MASTER_ADDR")); },
               {"MASTER_ADDR and MASTER_PORT must be set", "MASTER_ADDR unset"});
  expect_error([&] { detect_launch(InitMethod::Auto, without("RANK")); },
               {"RANK and WORLD_SIZE must both be set", "RANK unset"});
  expect_error([&] { detect_launch(InitMethod::Env, lookup({})); }, {"RANK and WORLD_SIZE must both be set"});
  expect_error([&] { detect_launch(InitMethod::Auto, with("LOCAL_RANK", "5")); }, {"local rank 5"});
}

TEST(Rendezvous, SlurmVariables) {
  LaunchInfo i = detect_launch(InitMethod::Auto, lookup({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"},
                                                          {"SLURM_LOCALID", "1"}, {"SLURM_NODEID", "2"},
                                                          {"SLURM_STEP_TASKS_PER_NODE", "2(x3),2"},
                                                          {"SLURM_STEP_NODELIST", "gpu[07-10]"},
                                                          {"SLURM_JOB_ID", "123456"}}));
  EXPECT_EQ(i.method, InitMethod::Slurm);
  EXPECT_EQ(i.rank, 5);
  EXPECT_EQ(i.world_size, 8);
  EXPECT_EQ(i.local_rank, 1);
  EXPECT_EQ(i.local_world_size, 2);
  EXPECT_EQ(i.master_addr, "gpu07");
  EXPECT_EQ(i.master_port, 20000 + 123456 % 20000);
  // MASTER_ADDR/PORT win over the node list; the job's node list when there is no step's.
  LaunchInfo j = detect_launch(InitMethod::Slurm, lookup({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"},
                                                           {"SLURM_JOB_NODELIST", "a,b"}, {"MASTER_PORT", "777"}}));
  EXPECT_EQ(j.master_addr, "a");
  EXPECT_EQ(j.master_port, 777);
  expect_error([&] { detect_launch(InitMethod::Slurm, lookup({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}})); },
               {"neither MASTER_ADDR nor SLURM_STEP_NODELIST"});
  expect_error([&] { detect_launch(InitMethod::Slurm, lookup({})); }, {"SLURM_PROCID and SLURM_NTASKS"});
}

TEST(Rendezvous, SlurmFirstHostOfACompressedNodeList) {
  EXPECT_EQ(slurm_first_host("node[01-04,07]"), "node01");
  EXPECT_EQ(slurm_first_host("node[07,01-04]"), "node07");
  EXPECT_EQ(slurm_first_host("node[1-2]-ib,login3"), "node1-ib");
  EXPECT_EQ(slurm_first_host("rack[2-3]-n[005-009]"), "rack2-n005");
  EXPECT_EQ(slurm_first_host("single"), "single");
  EXPECT_EQ(slurm_first_host("a,b[1-2]"), "a");
  expect_error([] { slurm_first_host("node[01-04"); }, {"unclosed '['"});
  expect_error([] { slurm_first_host("node[x-y]"); }, {"does not start with a number"});
  expect_error([] { slurm_first_host(""); }, {"is empty"});
}

TEST(Rendezvous, AutoPicksEnvThenSlurmThenMpiThenOne) {
  EXPECT_EQ(detect_launch(InitMethod::Auto, lookup({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"SLURM_PROCID", "0"},
                                                    {"SLURM_NTASKS", "1"}}))
                .method,
            InitMethod::Env);
  EXPECT_EQ(detect_launch(InitMethod::Auto,
                          lookup({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}}))
                .method,
            InitMethod::Slurm);
  LaunchInfo mpi = detect_launch(InitMethod::Auto, lookup({{"OMPI_COMM_WORLD_SIZE", "3"}, {"OMPI_COMM_WORLD_RANK", "2"},
                                                           {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}}));
  EXPECT_EQ(mpi.method, InitMethod::Mpi);
  EXPECT_EQ(mpi.world_size, 3);
  EXPECT_EQ(mpi.rank, 2);
  EXPECT_EQ(detect_launch(InitMethod::Auto, lookup({})).method, InitMethod::Single);
  EXPECT_EQ(parse_init_method("slurm"), InitMethod::Slurm);
  expect_error([] { parse_init_method("pmi"); }, {"--init: 'pmi' is not one of auto, env, slurm, mpi"});
}

TEST(Rendezvous, AWorldOfOneUnderAMultiRankLaunchIsAnError) {
  const Env two = {{"WORLD_SIZE", "2"}, {"RANK", "1"}};
  check_world_size_matches_launch(2, "test", lookup(two));
  check_world_size_matches_launch(1, "test", lookup({}));
  expect_error([&] { check_world_size_matches_launch(1, "MPI start-up", lookup(two)); },
               {"MPI start-up: the launcher started 2 ranks (WORLD_SIZE=2)", "world of 1", "refusing to train alone"});
  expect_error([&] { check_world_size_matches_launch(1, "x", lookup({{"SLURM_NTASKS", "4"}})); },
               {"started 4 ranks (SLURM_NTASKS=4)"});
}

// Runs `body(rank)` on `world` threads and rethrows the first failure.
template <typename Body>
void run_ranks(int world, Body body) {
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

LaunchInfo env_rank(int rank, int world, int port) {
  return detect_launch(InitMethod::Env, lookup({{"RANK", std::to_string(rank)}, {"WORLD_SIZE", std::to_string(world)},
                                                {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}}));
}

TEST(Rendezvous, ThreeRanksMeetThroughRankZerosStore) {
  const int port = unused_port();
  run_ranks(3, [&](int r) {
    if (r > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 * r));  // any start order
    Rendezvous rv = rendezvous(env_rank(r, 3, port));
    EXPECT_EQ(rv.server != nullptr, r == 0);
    EXPECT_EQ(rv.store->add("arrived-after", 1) <= 3, true);
    rv.store->wait({"rendezvous/rank/0", "rendezvous/rank/1", "rendezvous/rank/2"});
    // Keep rank 0's server up until everyone is done with it.
    rv.store->add("done", 1);
    if (r == 0)
      while (rv.store->add("done", 0) < 3) std::this_thread::sleep_for(10ms);
  });
}

// A world larger than one request's key limit and the server's connection limit still meets: the
// ranks wait in chunks, and rank 0's server makes room for every rank (here: limits of 3 keys, the
// fewest compare_set needs, and 1 connection, 5 ranks; by default 1024 of each, so this is what a
// job of thousands needs).
TEST(Rendezvous, AWorldLargerThanTheStoreLimitsMeets) {
  const int port = unused_port();
  RendezvousOptions o;
  o.limits.max_keys_per_call = 3;
  o.limits.max_connections = 1;
  run_ranks(5, [&](int r) {
    Rendezvous rv = rendezvous(env_rank(r, 5, port), o);
    rv.store->add("done", 1);
    if (r == 0)
      while (rv.store->add("done", 0) < 5) std::this_thread::sleep_for(10ms);
  });
}

TEST(Rendezvous, NoStoreReachableFailsFastNamingTheAddressAndRank) {
  const int port = unused_port();
  RendezvousOptions o;
  o.store.connect_timeout = 1000ms;
  const auto start = Clock::now();
  expect_error([&] { rendezvous(env_rank(1, 2, port), o); },
               {"rendezvous (rank 1 of 2)", "MASTER_ADDR:MASTER_PORT = 127.0.0.1:" + std::to_string(port),
                "not reachable"});
  EXPECT_LT(Clock::now() - start, 3s);
}

TEST(Rendezvous, AMissingRankIsNamedAfterTheJoinTimeout) {
  const int port = unused_port();
  RendezvousOptions o;
  o.join_timeout = 500ms;
  expect_error([&] { rendezvous(env_rank(0, 3, port), o); },
               {"not every rank arrived within 500 ms; missing rank(s): 1, 2"});
}

TEST(Rendezvous, TwoProcessesWithTheSameRankAreAnError) {
  const int port = unused_port();
  RendezvousOptions o;
  o.join_timeout = 5000ms;
  // Rank 0, and two claimants of rank 1: whichever comes second is refused, the other joins.
  std::vector<Rendezvous> kept(3);  // kept until all are done: rank 0's server must outlive the waits
  std::vector<std::string> errors(3);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      try {
        kept[t] = rendezvous(env_rank(t == 0 ? 0 : 1, 2, port), o);
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "");
  const bool first_lost = !errors[1].empty();
  EXPECT_NE(first_lost, !errors[2].empty()) << "exactly one claimant of rank 1 must be refused: '" << errors[1]
                                             << "', '" << errors[2] << "'";
  const std::string& refusal = first_lost ? errors[1] : errors[2];
  EXPECT_NE(refusal.find("rank 1 is already taken by"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("same RANK"), std::string::npos) << refusal;
}

TEST(DeviceBinding, LocalRankModuloTheVisibleGpus) {
  DeviceBinding b = choose_cuda_device(3, 2, std::nullopt, std::nullopt);
  EXPECT_EQ(b.index, 1);
  EXPECT_EQ(b.physical, "1");
  EXPECT_EQ(b.why, "local rank 3 % 2 visible GPU(s)");
  // CUDA_VISIBLE_DEVICES: the index is renumbered, the physical GPU is the entry behind it.
  b = choose_cuda_device(1, 2, std::nullopt, std::string("4,6"));
  EXPECT_EQ(b.index, 1);
  EXPECT_EQ(b.physical, "6");
  // Slurm's per-task binding: each task sees one GPU as cuda:0.
  b = choose_cuda_device(5, 1, std::nullopt, std::string("GPU-abc"));
  EXPECT_EQ(b.index, 0);
  EXPECT_EQ(b.physical, "GPU-abc");
  b = choose_cuda_device(0, 4, 3, std::nullopt);
  EXPECT_EQ(b.index, 3);
  EXPECT_EQ(b.why, "--device cuda:3");
  expect_error([] { choose_cuda_device(0, 2, 2, std::string("0,1")); },
               {"--device cuda:2 is not visible", "sees 2 GPU(s)", "CUDA_VISIBLE_DEVICES='0,1'"});
  expect_error([] { choose_cuda_device(0, 0, std::nullopt, std::nullopt); }, {"no GPU is visible"});
}

TEST(DeviceBinding, TwoLocalRanksOnOneGpuAreFoundThroughTheStore) {
  TcpStoreServer server("127.0.0.1", 0);
  // Distinct GPUs: fine. Ranks 0 and 2 both on physical GPU 1 (e.g. --device cuda:1 twice): error.
  run_ranks(3, [&](int r) {
    TcpStore store("127.0.0.1", server.port());
    check_devices_unique(store, r, 3, choose_cuda_device(r, 4, std::nullopt, std::nullopt), "ok");
  });
  std::vector<std::string> errors(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([&, r] {
      TcpStore store("127.0.0.1", server.port());
      try {
        check_devices_unique(store, r, 3, choose_cuda_device(r, 4, r == 1 ? 0 : 1, std::nullopt), "clash");
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    EXPECT_NE(errors[r].find("ranks 0 and 2 both use GPU 1 on host " + host_name()), std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
  // Two tasks each bound to their own GPU, both seeing it as cuda:0: not a clash.
  run_ranks(2, [&](int r) {
    TcpStore store("127.0.0.1", server.port());
    check_devices_unique(store, r, 2, choose_cuda_device(r, 1, std::nullopt, std::string(r ? "GPU-b" : "GPU-a")),
                         "slurm");
  });
}

TEST(ProcessGroup, BackendChoice) {
  EXPECT_EQ(resolve_backend("auto", InitMethod::Env, false, true, true), "gloo");
  EXPECT_EQ(resolve_backend("auto", InitMethod::Mpi, false, true, true), "mpi");
  EXPECT_EQ(resolve_backend("auto", InitMethod::Mpi, false, true, false), "gloo");  // mpirun, no MPI library
  EXPECT_EQ(resolve_backend("gloo", InitMethod::Mpi, false, true, true), "gloo");
  EXPECT_EQ(resolve_backend("auto", InitMethod::Env, true, true, true), "nccl");
  EXPECT_EQ(resolve_backend("mpi", InitMethod::Mpi, false, true, true), "mpi");
  expect_error([] { resolve_backend("mpi", InitMethod::Env, false, true, true); },
               {"--backend mpi needs a launch by mpirun", "launched by env"});
  expect_error([] { resolve_backend("auto", InitMethod::Env, false, false, true); }, {"built without Gloo"});
  expect_error([] { resolve_backend("gloo", InitMethod::Env, true, true, true); }, {"--backend gloo takes CPU tensors"});
  expect_error([] { resolve_backend("nccl", InitMethod::Env, false, true, true); }, {"add --device cuda"});
  expect_error([] { resolve_backend("tcp", InitMethod::Env, false, true, true); }, {"'tcp' is not one of"});
}

TEST(ProcessGroup, NcclUniqueIdGoesThroughTheStore) {
  TcpStoreServer server("127.0.0.1", 0);
  const std::string id(128, '\x42');
  run_ranks(3, [&](int r) {
    TcpStore store("127.0.0.1", server.port());
    const std::string got = exchange_nccl_unique_id(store, r, [&] {
      EXPECT_EQ(r, 0) << "only rank 0 makes the id";
      return id;
    });
    EXPECT_EQ(got, id);
  });
  TcpStore store("127.0.0.1", server.port());
  expect_error([&] { exchange_nccl_unique_id(store, 0, [] { return std::string(5, 'x'); }, "short"); },
               {"the unique id has 5 bytes, not 128"});
}

TEST(ProcessGroup, GlooListensOnTheAddressThatReachesTheStore) {
  EXPECT_EQ(local_address_towards("127.0.0.1", 29500), "127.0.0.1");
  EXPECT_EQ(local_address_towards("127.0.0.5", 1).rfind("127.", 0), 0u);  // loopback, from loopback
}

TEST(ProcessGroup, TimeoutsFromTheEnvironment) {
  RendezvousOptions o = rendezvous_options_from_env(lookup({{"EMBER_CONNECT_TIMEOUT", "1.5"}}));
  EXPECT_EQ(o.store.connect_timeout, 1500ms);
  EXPECT_EQ(o.store.timeout, 60000ms);
  expect_error([] { rendezvous_options_from_env(lookup({{"EMBER_STORE_TIMEOUT", "-1"}})); },
               {"EMBER_STORE_TIMEOUT='-1' is not a positive number of seconds"});
}

// Sets environment variables for one test and restores them after (init_process_group reads the
// process's own environment).
class ScopedEnv {
 public:
  explicit ScopedEnv(const Env& vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k.c_str());
      saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) v ? setenv(k.c_str(), v->c_str(), 1) : unsetenv(k.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// A Slurm step of one task (srun -n1, or an sbatch script running the program directly) and
// WORLD_SIZE=1 without MASTER_ADDR have no address to meet at: they start alone instead of
// failing to bind an empty address.
TEST(ProcessGroup, AWorldOfOneWithoutAnAddressStartsAlone) {
  if (!gloo_available()) GTEST_SKIP() << "built without Gloo";
  for (const Env& env : {Env{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_LOCALID", "0"}},
                         Env{{"RANK", "0"}, {"WORLD_SIZE", "1"}}}) {
    ScopedEnv scoped(env);
    ProcessGroupOptions o;
    o.backend = "gloo";
    ProcessGroup pg = init_process_group(o);
    ASSERT_NE(pg.comm, nullptr);
    EXPECT_EQ(pg.comm->world_size(), 1);
    EXPECT_EQ(pg.comm->rank(), 0);
    Tensor t = from_vector<float>({1, 2, 3});
    pg.comm->all_reduce(t, ReduceOp::Sum);
    EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2, 3}));
  }
}

}  // namespace
}  // namespace ember::test
