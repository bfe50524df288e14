// Which GPU a rank drives, and the check that no two ranks on a node drive the same one.
//
// The rule (as torchrun users expect): device = LOCAL_RANK modulo the GPUs this process can see,
// or the one named explicitly (--device cuda:K). The visible GPUs are what CUDA_VISIBLE_DEVICES
// leaves (the CUDA runtime renumbers them from 0), so Slurm's per-task binding (each task sees
// only its own GPU as cuda:0) and a shared node (each rank sees all) both work.
//
// Two local ranks on one GPU would run, slowly, and NCCL would fail or hang, so it is an error:
// every rank publishes "host + physical GPU" in the store and compares with the others. The
// physical GPU is the CUDA_VISIBLE_DEVICES entry behind the index (the index itself when the
// variable is unset), so "cuda:0" on two tasks bound to different GPUs is not a conflict.
// Everything here is host code, tested on the CPU.
#pragma once

#include <optional>
#include <string>

#include "distributed/rendezvous.h"
#include "distributed/store.h"

namespace ember::distributed {

struct DeviceBinding {
  int index = 0;          // the cuda:K this process uses
  std::string physical;   // the GPU behind it, e.g. "2" or "GPU-5f3c..." (CUDA_VISIBLE_DEVICES entry)
  std::string why;        // "LOCAL_RANK 3 % 2 visible GPUs", "--device cuda:1"
};

// Throws when there is no GPU, or the explicit index is not visible. `cuda_visible_devices` is
// the variable's value (nullopt when unset).
DeviceBinding choose_cuda_device(int local_rank, int visible_devices, std::optional<int> explicit_index,
                                 const std::optional<std::string>& cuda_visible_devices);

// Collective over the store (every rank calls it once, with the same `tag`): publishes this
// rank's host and physical GPU, and throws on every rank of a node where two ranks share one,
// naming both ranks, the host and the GPU.
void check_devices_unique(Store& store, int rank, int world_size, const DeviceBinding& binding,
                          const std::string& tag = "gpu");

// This machine's host name (for the check above and messages).
std::string host_name();

}  // namespace ember::distributed
