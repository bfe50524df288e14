// ember-run: starts the local ranks of a data-parallel job without MPI (see launcher.h).
//
//   ember-run --nproc-per-node 2 build/examples/ember_ddp_mnist --epochs 1
#include <cstdio>
#include <stdexcept>

#include "distributed/launcher/launcher.h"

int main(int argc, char** argv) {
  using namespace ember::launcher;
  LaunchOptions options;
  try {
    options = parse_launch_args(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const HelpRequested&) {
    std::printf("%s", launch_usage());
    return 0;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "ember-run: %s\n\n%s", e.what(), launch_usage());
    return 2;
  }
  return run_ranks(options);
}
