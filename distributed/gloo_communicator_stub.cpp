// Stands in for gloo_communicator.cpp when CMake found no Gloo: the API links, and the factory
// says why it cannot work.
#include "core/error.h"
#include "distributed/gloo_communicator.h"

namespace ember::distributed {

bool gloo_available() { return false; }

std::shared_ptr<Communicator> make_gloo_communicator(std::shared_ptr<Store>, int, int, const CommunicatorOptions&,
                                                     const std::string&) {
  EMBER_FAIL("make_gloo_communicator: ember was built without Gloo (install libgloo-dev, e.g. scripts/setup.sh, "
             "and reconfigure), so --backend gloo is not available; use --backend mpi under mpirun");
}

}  // namespace ember::distributed
