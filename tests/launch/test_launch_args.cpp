// ember-run's flags (distributed/launcher/launcher.h). Its process handling is tested end to end
// by tests/launch/launcher_test.sh.
#include <gtest/gtest.h>

#include <stdexcept>

#include "distributed/launcher/launcher.h"

namespace ember::test {
namespace {

using launcher::LaunchOptions;
using launcher::parse_launch_args;

void expect_rejected(const std::vector<std::string>& args, const std::string& text) {
  try {
    parse_launch_args(args);
    ADD_FAILURE() << "accepted; expected an error containing: " << text;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << "message: " << e.what();
  }
}

TEST(LaunchArgs, FlagsThenTheProgramAndItsOwnFlags) {
  LaunchOptions o = parse_launch_args({"--nproc-per-node", "4", "--master-port=1234", "prog", "--epochs", "2", "--"});
  EXPECT_EQ(o.nproc_per_node, 4);
  EXPECT_EQ(o.master_port, 1234);
  EXPECT_EQ(o.master_addr, "127.0.0.1");
  EXPECT_EQ(o.program, (std::vector<std::string>{"prog", "--epochs", "2", "--"}));
  o = parse_launch_args({"--nnodes", "2", "--node-rank", "1", "--master-addr", "10.1.2.3", "--", "--weird-name"});
  EXPECT_EQ(o.nnodes, 2);
  EXPECT_EQ(o.node_rank, 1);
  EXPECT_EQ(o.master_port, -1);  // 29500 when several nodes (chosen at launch)
  EXPECT_EQ(o.program, (std::vector<std::string>{"--weird-name"}));
  o = parse_launch_args({"--nproc_per_node=2", "x"});  // torchrun's spelling works too
  EXPECT_EQ(o.nproc_per_node, 2);
}

TEST(LaunchArgs, BadFlagsSayWhatIsWrong) {
  expect_rejected({"--nproc-per-node", "0", "p"}, "--nproc-per-node: 0 is out of range [1, 4096]");
  expect_rejected({"--nproc-per-node", "two", "p"}, "--nproc-per-node: 'two' is not an integer");
  expect_rejected({"--nproc-per-node"}, "--nproc-per-node needs a value");
  expect_rejected({"--nproc-per-node", "2"}, "no PROGRAM to run");
  expect_rejected({"--master-port", "70000", "p"}, "--master-port: 70000 is out of range");
  expect_rejected({"--frobnicate", "1", "p"}, "unknown flag --frobnicate");
  expect_rejected({"--nnodes", "2", "--node-rank", "2", "--master-addr", "a", "p"},
                  "--node-rank 2 is not below --nnodes 2");
  expect_rejected({"--nnodes", "2", "--node-rank", "0", "p"}, "--nnodes 2 needs --master-addr");
  expect_rejected({"--nnodes", "2", "--master-addr", "a", "p"}, "needs --node-rank");
  expect_rejected({"--kill-grace", "-1", "p"}, "--kill-grace: '-1' is not a number of seconds");
  EXPECT_THROW(parse_launch_args({"--help"}), launcher::HelpRequested);
}

}  // namespace
}  // namespace ember::test
