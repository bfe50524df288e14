// GPU binding: see device_binding.h.
#include "distributed/device_binding.h"

#include <unistd.h>

#include <map>
#include <vector>

#include "core/error.h"

namespace ember::distributed {

namespace {

// "0,2,GPU-abc" -> {"0", "2", "GPU-abc"} (spaces dropped).
std::vector<std::string> split_visible(const std::string& list) {
  std::vector<std::string> out;
  std::string item;
  for (char ch : list + ",") {
    if (ch == ',') {
      if (!item.empty()) out.push_back(item);
      item.clear();
    } else if (ch != ' ') {
      item.push_back(ch);
    }
  }
  return out;
}

}  // namespace

std::string host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) return "unknown-host";
  return host;
}

DeviceBinding choose_cuda_device(int local_rank, int visible_devices, std::optional<int> explicit_index,
                                 const std::optional<std::string>& cuda_visible_devices) {
  const std::string visible_text =
      cuda_visible_devices ? "CUDA_VISIBLE_DEVICES='" + *cuda_visible_devices + "'" : "CUDA_VISIBLE_DEVICES unset";
  EMBER_CHECK(visible_devices > 0, "GPU binding (local rank ", local_rank, "): no GPU is visible (", visible_text, ")");
  DeviceBinding b;
  if (explicit_index) {
    EMBER_CHECK(*explicit_index >= 0 && *explicit_index < visible_devices, "GPU binding: --device cuda:",
                *explicit_index, " is not visible: this process sees ", visible_devices, " GPU(s) (", visible_text, ")");
    b.index = *explicit_index;
    b.why = "--device cuda:" + std::to_string(b.index);
  } else {
    EMBER_CHECK(local_rank >= 0, "GPU binding: local rank ", local_rank, " is negative");
    b.index = local_rank % visible_devices;
    b.why = "local rank " + std::to_string(local_rank) + " % " + std::to_string(visible_devices) + " visible GPU(s)";
  }
  b.physical = std::to_string(b.index);
  if (cuda_visible_devices) {
    const std::vector<std::string> entries = split_visible(*cuda_visible_devices);
    if (b.index < static_cast<int>(entries.size())) b.physical = entries[b.index];
  }
  return b;
}

void check_devices_unique(Store& store, int rank, int world_size, const DeviceBinding& binding,
                          const std::string& tag) {
  // The value: "host\nphysical\nindex".
  const std::string mine = host_name() + "\n" + binding.physical + "\n" + std::to_string(binding.index);
  store.set(tag + "/" + std::to_string(rank), mine);
  std::map<std::string, int> owner;  // "host\nphysical" -> first rank using it
  for (int r = 0; r < world_size; ++r) {
    const std::string value = store.get(tag + "/" + std::to_string(r));
    const size_t a = value.find('\n'), b = value.rfind('\n');
    EMBER_CHECK(a != std::string::npos && b != a, "GPU binding: rank ", r, " published a malformed entry");
    const std::string host = value.substr(0, a), physical = value.substr(a + 1, b - a - 1);
    const auto [it, fresh] = owner.emplace(host + "\n" + physical, r);
    EMBER_CHECK(fresh, "GPU binding: ranks ", it->second, " and ", r, " both use GPU ", physical, " on host ", host,
                " (this is rank ", rank, ", on cuda:", binding.index, " by ", binding.why,
                "); give each local rank its own GPU: fewer ranks per node, CUDA_VISIBLE_DEVICES, or --device");
  }
}

}  // namespace ember::distributed
