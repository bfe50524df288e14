// libFuzzer target: see tests/fuzz/fuzz_targets.h.
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ember::fuzz::fuzz_safetensors(data, size);
  return 0;
}
