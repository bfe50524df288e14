// Stands in for mpi_communicator.cpp when CMake found no MPI: the API links, and every entry point
// says why it cannot work. Single-GPU NCCL (world size 1) needs none of this.
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "distributed/mpi_communicator.h"

namespace ember::distributed {

namespace {
[[noreturn]] void no_mpi(const char* fn) {
  EMBER_FAIL(fn, ": ember was built without MPI (install libopenmpi-dev, e.g. scripts/setup.sh, and reconfigure)");
}
}  // namespace

void MpiEnvironment::init(int*, char***) { no_mpi("MpiEnvironment::init"); }
bool MpiEnvironment::available() { return false; }
int MpiEnvironment::rank() { no_mpi("MpiEnvironment::rank"); }
int MpiEnvironment::world_size() { no_mpi("MpiEnvironment::world_size"); }
int MpiEnvironment::local_rank() { no_mpi("MpiEnvironment::local_rank"); }
void MpiEnvironment::abort(const std::string& reason) {
  std::fprintf(stderr, "%s\n", reason.c_str());
  std::abort();
}
void fail_startup(const std::string& what) {
  std::fprintf(stderr, "error: %s\n", what.c_str());
  std::exit(1);
}
std::shared_ptr<Communicator> make_mpi_communicator(const CommunicatorOptions&) { no_mpi("make_mpi_communicator"); }
void check_same_on_all_ranks(Communicator&, const std::string&, const std::vector<int64_t>&) {
  no_mpi("check_same_on_all_ranks");
}

}  // namespace ember::distributed
