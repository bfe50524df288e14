// Rendezvous: how a process learns its rank and world size, and meets the other ranks.
//
// Three ways a job is launched, chosen automatically (InitMethod::Auto) or by flag:
//   env    ember-run, torchrun or by hand: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and
//          LOCAL_RANK, LOCAL_WORLD_SIZE, which default to RANK and WORLD_SIZE: one node).
//   slurm  srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE or
//          SLURM_STEP_TASKS_PER_NODE; MASTER_ADDR defaults to the first host of
//          SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST), MASTER_PORT to 20000 + SLURM_JOB_ID % 20000.
//   mpi    mpirun: OMPI_COMM_WORLD_* or PMI_* are present; the MPI library gives rank and size.
// Auto picks env when RANK or WORLD_SIZE is set, else slurm when SLURM_PROCID is, else mpi when
// an MPI launcher's variables are, else a world of one.
//
// For env and slurm, rank 0 starts the TCP store (store.h) on MASTER_ADDR:MASTER_PORT and every
// rank connects to it, then checks in: rendezvous() returns once all WORLD_SIZE ranks have
// arrived, each rank number exactly once, or throws naming the missing or doubled ranks.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "distributed/store.h"

namespace ember::distributed {

enum class InitMethod { Auto, Env, Slurm, Mpi, Single };

// "auto", "env", "slurm", "mpi" -> InitMethod; throws on anything else.
InitMethod parse_init_method(const std::string& name);
const char* init_method_name(InitMethod method);

// Where this process stands in the job, as read from the launcher's variables.
struct LaunchInfo {
  InitMethod method = InitMethod::Single;  // never Auto: the method that was found
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr;  // env and slurm
  int master_port = 0;
  std::string why;  // which variables decided it, for messages: "RANK=1 WORLD_SIZE=2"
};

// Reads one environment variable (tests pass a map instead of the process's environment).
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Reads the launch from the environment. Throws with the variable's name and value when one is
// malformed or out of range (RANK=2 with WORLD_SIZE=2, MASTER_PORT=99999, ...), when the method
// asked for finds none of its variables, and for env without MASTER_ADDR/MASTER_PORT. Method Mpi
// leaves rank and size to the MPI library (world_size = the launcher's, when it says).
LaunchInfo detect_launch(InitMethod requested, const EnvLookup& env = process_env());

// The world size a launcher announced in any of the variables above (WORLD_SIZE, SLURM_NTASKS,
// OMPI_COMM_WORLD_SIZE, PMI_SIZE), or 1. A communicator of another size is an error
// (check_world_size_matches_launch): never a silent run alone.
int announced_world_size(const EnvLookup& env = process_env());
// Throws "... launched as N ranks (VAR=N) but this process would run as a world of M ..." when
// the announced world size is not `world_size`.
void check_world_size_matches_launch(int world_size, const std::string& what, const EnvLookup& env = process_env());

// The first host of a Slurm node list: "node[01-04,07],gpu5" -> "node01"; "a,b" -> "a".
std::string slurm_first_host(const std::string& nodelist);

struct RendezvousOptions {
  StoreOptions store;       // each store call's timeout and how long to retry connecting
  StoreLimits limits;       // of the server (rank 0)
  // How long rank 0 waits for the others to check in (then names the missing ones).
  std::chrono::milliseconds join_timeout{std::chrono::seconds(60)};
};

// The job's meeting point: rank 0 owns the server, everyone holds a client.
struct Rendezvous {
  LaunchInfo info;
  std::shared_ptr<TcpStoreServer> server;  // rank 0 only
  std::shared_ptr<Store> store;
};

// Starts (rank 0) or reaches the store and waits until every rank has checked in. info.method
// must be Env or Slurm. Errors name MASTER_ADDR:MASTER_PORT and the rank.
Rendezvous rendezvous(const LaunchInfo& info, const RendezvousOptions& options = {});

}  // namespace ember::distributed
