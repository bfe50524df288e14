// main() of ember_dist_tests: makes the shared communicator, runs GoogleTest on every rank. Under
// mpirun it is MPI's; under ember-run (RANK and WORLD_SIZE set) it is Gloo's, so the same
// collective and DDP tests check both backends (tests/launch/CMakeLists.txt runs them that way). Every rank runs the same tests in the same order, so their collectives pair up. Only rank 0
// prints the full log; other ranks print their failures, prefixed with their rank.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "distributed/mpi_communicator.h"
#include "distributed/process_group.h"
#include "tests/distributed/dist_test_util.h"

namespace ember::test {

namespace {
std::shared_ptr<distributed::Communicator>& shared_comm() {
  static std::shared_ptr<distributed::Communicator> comm;
  return comm;
}

// On ranks > 0: failed assertions only, each naming the rank and the test.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::fprintf(stderr, "[rank %d] FAILED %s.%s\n%s:%d: %s\n", rank_, info ? info->test_suite_name() : "?",
                 info ? info->name() : "?", r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
  }

 private:
  int rank_;
};
}  // namespace

distributed::Communicator* mpi_comm() { return shared_comm().get(); }

}  // namespace ember::test

int main(int argc, char** argv) {
  using namespace ember::distributed;
  ::testing::InitGoogleTest(&argc, argv);
  static ProcessGroup group;  // under ember-run: holds rank 0's store for the whole run
  const bool env_launch = detect_launch(InitMethod::Auto).method == InitMethod::Env;
  if (env_launch || MpiEnvironment::available()) {
    CommunicatorOptions options;
    options.timeout = std::chrono::seconds(30);  // a rank whose test failed early aborts the job in 30 s
    if (env_launch) {
      ProcessGroupOptions o;
      o.backend = "gloo";
      o.init = InitMethod::Env;
      o.comm = options;
      group = init_process_group(o);
      ember::test::shared_comm() = group.comm;
    } else {
      MpiEnvironment::init(&argc, &argv);
      ember::test::shared_comm() = make_mpi_communicator(options);
    }
    const int rank = ember::test::shared_comm()->rank();
    if (rank != 0) {
      ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new ember::test::FailurePrinter(rank));
    }
  }
  const int result = RUN_ALL_TESTS();
  ember::test::shared_comm().reset();  // before MPI_Finalize (at exit)
  return result;
}
