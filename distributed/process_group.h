// One call from a training program's flags to a ready communicator, however the job was launched
// (PyTorch's init_process_group):
//
//   ProcessGroupOptions o;
//   o.backend = "auto";             // --backend auto|gloo|mpi|nccl
//   o.init = InitMethod::Auto;      // --init auto|env|slurm|mpi
//   o.cuda = false;                 // --device cpu|cuda[:K]
//   ProcessGroup pg = init_process_group(o);
//   train(*pg.comm);
//
// It reads the launch (rendezvous.h), meets the other ranks through the store (env, slurm) or MPI
// (mpi), picks the backend, binds the GPU (device_binding.h) and makes the communicator; and it
// refuses a communicator whose world size is not the one the launcher announced (a process started
// by ember-run with WORLD_SIZE=2 never trains alone).
//
// Backends: auto is nccl for CUDA; for the CPU mpi under an MPI launch (mpirun), else gloo. mpi needs an MPI launch (mpirun); gloo and nccl work with every launch:
// under mpirun the store's address travels over MPI.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "distributed/communicator.h"
#include "distributed/device_binding.h"
#include "distributed/rendezvous.h"

namespace ember::distributed {

// How an NCCL communicator is made from a unique id (rank 0 makes the id, the store carries it).
// Left empty, init_process_group uses nccl_communicator.h's make_nccl_unique_id and
// make_nccl_communicator; tests set them to drive the exchange without a GPU.
struct NcclFromStore {
  std::function<std::string()> new_unique_id;  // 128 bytes (ncclGetUniqueId)
  std::function<std::shared_ptr<Communicator>(int rank, int world_size, int device, const std::string& unique_id,
                                              const CommunicatorOptions& options)>
      make;
};

struct ProcessGroupOptions {
  std::string backend = "auto";       // auto | gloo | mpi | nccl
  InitMethod init = InitMethod::Auto;
  bool cuda = false;                  // CUDA tensors (NCCL) or CPU tensors
  std::optional<int> cuda_index;      // --device cuda:K; otherwise LOCAL_RANK modulo the visible GPUs
  CommunicatorOptions comm;
  RendezvousOptions rendezvous;
  NcclFromStore nccl;
  // Called once every rank is connected, on the first CPU communicator there is (MPI's under
  // mpirun, made before NCCL's) or else on the final one: a program checks here that its ranks
  // agree on their flags (ddp_mnist's --epochs, --seed, --device).
  std::function<void(Communicator&)> check_agreement;
};

struct ProcessGroup {
  LaunchInfo launch;
  std::string backend;                       // the one chosen: gloo, mpi or nccl
  std::shared_ptr<Communicator> comm;
  std::shared_ptr<Store> store;              // env, slurm and gloo/nccl under mpi; kept for the job
  std::shared_ptr<TcpStoreServer> server;    // rank 0's, kept alive as long as the group
  std::optional<DeviceBinding> gpu;          // CUDA only
};

// The backend `requested` resolves to for this launch and device kind; throws for impossible
// pairs (mpi without an MPI launch or without MPI, gloo for CUDA tensors, nccl for CPU ones).
std::string resolve_backend(const std::string& requested, InitMethod method, bool cuda, bool have_gloo,
                            bool have_mpi);

ProcessGroup init_process_group(const ProcessGroupOptions& options);

// Collective over the store: every rank publishes `config` (e.g. "backend gloo, device cpu") and
// all must equal rank 0's; otherwise throws naming both ranks' values. Run before any backend
// starts, so ranks that would start different backends fail at once instead of timing out.
void check_same_config(Store& store, int rank, int world_size, const std::string& config);

// Rank 0 calls new_unique_id() and publishes the bytes under `key`; the others read them.
// Throws when the id is not 128 bytes (NCCL_UNIQUE_ID_BYTES).
std::string exchange_nccl_unique_id(Store& store, int rank, const std::function<std::string()>& new_unique_id,
                                    const std::string& key = "nccl/unique_id");

// The local address this machine uses to reach host:port (a connected UDP socket's own address:
// nothing is sent), e.g. "127.0.0.1" for "127.0.0.1"; "" when there is no route. Gloo listens
// there, so the other ranks can reach it (GLOO_SOCKET_IFNAME overrides).
std::string local_address_towards(const std::string& host, int port);

// Reads the rendezvous timeouts from the environment: EMBER_CONNECT_TIMEOUT (seconds to retry
// reaching the store; default 5), EMBER_STORE_TIMEOUT (each store call, and the wait for all
// ranks; default 60).
RendezvousOptions rendezvous_options_from_env(const EnvLookup& env = process_env());

}  // namespace ember::distributed
