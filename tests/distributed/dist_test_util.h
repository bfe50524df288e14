// Shared by the tests in ember_dist_tests (run as several ranks by mpirun; see CMakeLists.txt).
#pragma once

#include <gtest/gtest.h>

#include "distributed/communicator.h"

namespace ember::test {

// The job's communicator (made once in main, 30 s timeout): MPI's under mpirun, Gloo's under
// ember-run; nullptr when ember was built without MPI and no launcher variables are set.
distributed::Communicator* mpi_comm();

}  // namespace ember::test

// Skips the test (with the reason) when there is no MPI communicator; otherwise `comm` is it.
#define EMBER_REQUIRE_MPI(comm)                                                        \
  ::ember::distributed::Communicator* comm = ::ember::test::mpi_comm();                \
  if (comm == nullptr) GTEST_SKIP() << "ember was built without MPI (no mpi communicator)"
