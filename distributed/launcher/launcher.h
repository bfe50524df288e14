// ember-run's parts: its flags, and the loop that starts and watches the local ranks.
//
//   ember-run --nproc-per-node N [--nnodes M --node-rank R] [--master-addr A] [--master-port P]
//             [--kill-grace SECONDS] [--] PROGRAM [ARGS...]
//
// Each local rank i runs PROGRAM ARGS with RANK = R * N + i, WORLD_SIZE = M * N, LOCAL_RANK = i,
// LOCAL_WORLD_SIZE = N, NODE_RANK = R, MASTER_ADDR and MASTER_PORT (rendezvous.h reads them; so
// does torch.distributed), and OMP_NUM_THREADS=1 when it is unset and N > 1 (the ranks share the
// cores). Every line a rank prints comes out prefixed "[rank K] ", on stdout or stderr as the rank
// wrote it. SIGINT and SIGTERM are forwarded to every rank. When a rank fails (non-zero exit or a
// signal), the others get SIGTERM, then SIGKILL after --kill-grace seconds, and ember-run exits
// non-zero naming the rank and its status; when all exit 0, so does ember-run.
//
// One node (the default): MASTER_ADDR is 127.0.0.1 and, unless --master-port is given, a free port
// is picked. Several nodes: run ember-run once per node with the same --nnodes, --master-addr
// (node 0's address, which its rank 0 binds) and --master-port, and each node's --node-rank.
#pragma once

#include <string>
#include <vector>

namespace ember::launcher {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = -1;  // -1: 29500 for several nodes, a free port for one
  double kill_grace_seconds = 5;
  std::vector<std::string> program;  // PROGRAM and its ARGS
};

// Parses ember-run's arguments (without argv[0]). Throws std::invalid_argument with a message
// naming the flag and the value for anything wrong; "--help" throws HelpRequested.
struct HelpRequested {};
LaunchOptions parse_launch_args(const std::vector<std::string>& args);
const char* launch_usage();

// Starts the ranks, relays their output, waits; returns ember-run's exit code.
int run_ranks(const LaunchOptions& options);

}  // namespace ember::launcher
