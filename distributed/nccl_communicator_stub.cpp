// Stands in for nccl_communicator.cpp when ember is built without CUDA.
#include "core/error.h"
#include "distributed/nccl_communicator.h"

namespace ember::distributed {

std::shared_ptr<Communicator> make_nccl_communicator(const CommunicatorOptions&) {
  EMBER_FAIL("make_nccl_communicator: ember was built without CUDA (NCCL needs the CUDA backend; "
             "use make_mpi_communicator for CPU tensors)");
}

std::string make_nccl_unique_id() {
  EMBER_FAIL("make_nccl_unique_id: ember was built without CUDA (NCCL needs the CUDA backend)");
}

std::shared_ptr<Communicator> make_nccl_communicator(int, int, int, const std::string&,
                                                     const CommunicatorOptions&) {
  EMBER_FAIL("make_nccl_communicator: ember was built without CUDA (NCCL needs the CUDA backend; "
             "use make_mpi_communicator for CPU tensors)");
}

std::vector<std::shared_ptr<Communicator>> make_nccl_communicators(const std::vector<int>&,
                                                                   const CommunicatorOptions&) {
  EMBER_FAIL("make_nccl_communicators: ember was built without CUDA (NCCL needs the CUDA backend; "
             "use make_mpi_communicator for CPU tensors)");
}

}  // namespace ember::distributed
