// Where the tests find tests/data (PyTorch reference values, the fuzz corpus beside it): the
// EMBER_TEST_DATA_DIR environment variable when set, else the source folder the binary was built
// from. Binaries built on one machine and run on another (scripts/make_carry.sh --binaries, then
// scripts/gpu_check.sh on the GPU machine) point the variable at that machine's checkout.
#pragma once

#include <cstdlib>
#include <string>

namespace ember::test {

inline std::string data_dir() {
  const char* env = std::getenv("EMBER_TEST_DATA_DIR");
  return env && *env ? std::string(env) : std::string(EMBER_TEST_DATA_DIR);
}

}  // namespace ember::test
