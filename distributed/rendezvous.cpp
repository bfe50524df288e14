// Rendezvous: see rendezvous.h.
#include "distributed/rendezvous.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <thread>
#include <vector>

#include "core/error.h"

namespace ember::distributed {

using std::chrono::milliseconds;

InitMethod parse_init_method(const std::string& name) {
  if (name == "auto") return InitMethod::Auto;
  if (name == "env") return InitMethod::Env;
  if (name == "slurm") return InitMethod::Slurm;
  if (name == "mpi") return InitMethod::Mpi;
  EMBER_FAIL("--init: '", name, "' is not one of auto, env, slurm, mpi");
}

const char* init_method_name(InitMethod method) {
  switch (method) {
    case InitMethod::Auto: return "auto";
    case InitMethod::Env: return "env";
    case InitMethod::Slurm: return "slurm";
    case InitMethod::Mpi: return "mpi";
    case InitMethod::Single: return "single";
  }
  return "?";
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

namespace {

// A whole-string integer in [lo, hi] from variable `name`, or an error naming both.
int parse_int(const std::string& name, const std::string& value, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(value.c_str(), &end, 10);
  EMBER_CHECK(!value.empty() && end != nullptr && *end == '\0' && errno == 0, name, "='", value,
              "' is not an integer");
  EMBER_CHECK(v >= lo && v <= hi, name, "=", v, " is out of range [", lo, ", ", hi, "]");
  return static_cast<int>(v);
}

std::optional<int> int_var(const EnvLookup& env, const std::string& name, long lo, long hi) {
  auto v = env(name);
  if (!v) return std::nullopt;
  return parse_int(name, *v, lo, hi);
}

constexpr long kMaxRanks = 1 << 20;

// Slurm's tasks-per-node list: "2(x3),1" -> {2, 2, 2, 1}.
std::vector<int> expand_tasks_per_node(const std::string& list) {
  std::vector<int> out;
  size_t i = 0;
  while (i < list.size()) {
    size_t j = list.find(',', i);
    if (j == std::string::npos) j = list.size();
    const std::string item = list.substr(i, j - i);
    const size_t paren = item.find("(x");
    const int count = parse_int("SLURM_STEP_TASKS_PER_NODE", item.substr(0, paren), 1, kMaxRanks);
    int repeat = 1;
    if (paren != std::string::npos) {
      EMBER_CHECK(item.back() == ')', "SLURM_STEP_TASKS_PER_NODE='", list, "' is malformed");
      repeat = parse_int("SLURM_STEP_TASKS_PER_NODE", item.substr(paren + 2, item.size() - paren - 3), 1, kMaxRanks);
    }
    for (int k = 0; k < repeat && out.size() < static_cast<size_t>(kMaxRanks); ++k) out.push_back(count);
    i = j + 1;
  }
  return out;
}

void check_rank(const LaunchInfo& info, const char* rank_var, const char* size_var) {
  EMBER_CHECK(info.rank < info.world_size, rank_var, "=", info.rank, " is not below ", size_var, "=", info.world_size);
  EMBER_CHECK(info.local_world_size <= info.world_size && info.local_rank < info.local_world_size, "local rank ",
              info.local_rank, " of ", info.local_world_size, " local ranks does not fit a world of ", info.world_size,
              " (", info.why, ")");
}

LaunchInfo from_env(const EnvLookup& env) {
  LaunchInfo info;
  info.method = InitMethod::Env;
  const auto rank = int_var(env, "RANK", 0, kMaxRanks);
  const auto world = int_var(env, "WORLD_SIZE", 1, kMaxRanks);
  EMBER_CHECK(rank && world, "env:// launch: RANK and WORLD_SIZE must both be set (RANK ",
              rank ? std::to_string(*rank) : "unset", ", WORLD_SIZE ", world ? std::to_string(*world) : "unset", ")");
  info.rank = *rank;
  info.world_size = *world;
  info.local_rank = int_var(env, "LOCAL_RANK", 0, kMaxRanks).value_or(info.rank);
  info.local_world_size = int_var(env, "LOCAL_WORLD_SIZE", 1, kMaxRanks).value_or(info.world_size);
  info.why = "RANK=" + std::to_string(info.rank) + " WORLD_SIZE=" + std::to_string(info.world_size);
  check_rank(info, "RANK", "WORLD_SIZE");
  auto addr = env("MASTER_ADDR");
  auto port = int_var(env, "MASTER_PORT", 1, 65535);
  if (info.world_size > 1) {
    EMBER_CHECK(addr && !addr->empty() && port, "env:// launch (", info.why,
                "): MASTER_ADDR and MASTER_PORT must be set to rank 0's address and a free port (MASTER_ADDR ",
                addr ? "'" + *addr + "'" : "unset", ", MASTER_PORT ", port ? std::to_string(*port) : "unset", ")");
    info.master_addr = *addr;
    info.master_port = *port;
  }
  return info;
}

LaunchInfo from_slurm(const EnvLookup& env) {
  LaunchInfo info;
  info.method = InitMethod::Slurm;
  const auto rank = int_var(env, "SLURM_PROCID", 0, kMaxRanks);
  const auto world = int_var(env, "SLURM_NTASKS", 1, kMaxRanks);
  EMBER_CHECK(rank && world, "Slurm launch: SLURM_PROCID and SLURM_NTASKS must both be set (run under srun)");
  info.rank = *rank;
  info.world_size = *world;
  info.local_rank = int_var(env, "SLURM_LOCALID", 0, kMaxRanks).value_or(0);
  info.why = "SLURM_PROCID=" + std::to_string(info.rank) + " SLURM_NTASKS=" + std::to_string(info.world_size);
  if (auto per_node = int_var(env, "SLURM_NTASKS_PER_NODE", 1, kMaxRanks)) {
    info.local_world_size = *per_node;
  } else if (auto list = env("SLURM_STEP_TASKS_PER_NODE"); list && !list->empty()) {
    const std::vector<int> counts = expand_tasks_per_node(*list);
    const int node = int_var(env, "SLURM_NODEID", 0, kMaxRanks).value_or(0);
    EMBER_CHECK(node < static_cast<int>(counts.size()), "SLURM_NODEID=", node, " but SLURM_STEP_TASKS_PER_NODE='",
                *list, "' lists ", counts.size(), " nodes");
    info.local_world_size = counts[node];
  } else {
    info.local_world_size = info.local_rank + 1;  // unknown: at least this many
  }
  check_rank(info, "SLURM_PROCID", "SLURM_NTASKS");
  if (info.world_size == 1) return info;  // a one-task step: nobody to meet
  if (auto addr = env("MASTER_ADDR"); addr && !addr->empty()) {
    info.master_addr = *addr;
  } else {
    auto list = env("SLURM_STEP_NODELIST");
    if (!list || list->empty()) list = env("SLURM_JOB_NODELIST");
    EMBER_CHECK(list && !list->empty(), "Slurm launch (", info.why,
                "): neither MASTER_ADDR nor SLURM_STEP_NODELIST/SLURM_JOB_NODELIST is set");
    info.master_addr = slurm_first_host(*list);
  }
  if (auto port = int_var(env, "MASTER_PORT", 1, 65535)) {
    info.master_port = *port;
  } else {
    // The same on every task of the job, and different between jobs sharing a node.
    const auto job = env("SLURM_JOB_ID");
    info.master_port = 20000 + (job ? parse_int("SLURM_JOB_ID", *job, 0, 0x7fffffff) % 20000 : 0);
  }
  return info;
}

LaunchInfo from_mpi(const EnvLookup& env) {
  LaunchInfo info;
  info.method = InitMethod::Mpi;
  // Rank and size come from MPI itself; the launcher's numbers are kept for the size check.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (auto n = int_var(env, var, 1, kMaxRanks)) {
      info.world_size = *n;
      info.why = std::string(var) + "=" + std::to_string(*n);
      break;
    }
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"})
    if (auto r = int_var(env, var, 0, kMaxRanks)) {
      info.rank = *r;
      break;
    }
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"})
    if (auto r = int_var(env, var, 0, kMaxRanks)) {
      info.local_rank = *r;
      break;
    }
  if (auto n = int_var(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, kMaxRanks)) info.local_world_size = *n;
  if (info.why.empty()) info.why = "MPI (no launcher variables: a world of one unless MPI says otherwise)";
  return info;
}

bool has_mpi_vars(const EnvLookup& env) {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMIX_RANK") || env("PMI_RANK");
}

}  // namespace

LaunchInfo detect_launch(InitMethod requested, const EnvLookup& env) {
  switch (requested) {
    case InitMethod::Env: return from_env(env);
    case InitMethod::Slurm: return from_slurm(env);
    case InitMethod::Mpi: return from_mpi(env);
    case InitMethod::Single: return LaunchInfo{};
    case InitMethod::Auto: break;
  }
  if (env("RANK") || env("WORLD_SIZE")) return from_env(env);
  // SLURM_PROCID exists in any job step; a step of one task is a world of one, not an error.
  if (env("SLURM_PROCID") && env("SLURM_NTASKS")) return from_slurm(env);
  if (has_mpi_vars(env)) return from_mpi(env);
  LaunchInfo single;
  single.why = "no launcher variables (RANK/WORLD_SIZE, SLURM_*, OMPI_*/PMI_*)";
  return single;
}

int announced_world_size(const EnvLookup& env) {
  for (const char* var : {"WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    auto v = env(var);
    if (!v) continue;
    char* end = nullptr;
    const long n = std::strtol(v->c_str(), &end, 10);
    if (end && *end == '\0' && n > 1) return static_cast<int>(std::min(n, kMaxRanks));
  }
  return 1;
}

void check_world_size_matches_launch(int world_size, const std::string& what, const EnvLookup& env) {
  const int announced = announced_world_size(env);
  if (announced == world_size || announced == 1) return;
  std::string vars;
  for (const char* var : {"WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (auto v = env(var)) vars += std::string(vars.empty() ? "" : " ") + var + "=" + *v;
  EMBER_FAIL(what, ": the launcher started ", announced, " ranks (", vars, ") but this process would run as a world of ",
             world_size, "; refusing to train alone (pick the launcher's init method: --init env for "
             "ember-run/torchrun, slurm for srun, mpi for mpirun)");
}

std::string slurm_first_host(const std::string& nodelist) {
  // The first entry: up to the first comma outside brackets.
  std::string first;
  int depth = 0;
  for (char ch : nodelist) {
    if (ch == '[') ++depth;
    if (ch == ']') --depth;
    if (ch == ',' && depth == 0) break;
    first.push_back(ch);
  }
  // Each bracket "[01-04,07]" becomes its first number, zero padding kept: "01".
  std::string host;
  for (size_t i = 0; i < first.size(); ++i) {
    if (first[i] != '[') {
      host.push_back(first[i]);
      continue;
    }
    const size_t close = first.find(']', i);
    EMBER_CHECK(close != std::string::npos, "Slurm node list '", nodelist, "': unclosed '['");
    const std::string inside = first.substr(i + 1, close - i - 1);
    const size_t stop = inside.find_first_of(",-");
    const std::string start = inside.substr(0, stop);
    EMBER_CHECK(!start.empty() && start.find_first_not_of("0123456789") == std::string::npos, "Slurm node list '",
                nodelist, "': '[", inside, "]' does not start with a number");
    host += start;
    i = close;
  }
  EMBER_CHECK(!host.empty(), "Slurm node list '", nodelist, "' is empty");
  return host;
}

Rendezvous rendezvous(const LaunchInfo& info, const RendezvousOptions& options) {
  EMBER_CHECK(info.method == InitMethod::Env || info.method == InitMethod::Slurm, "rendezvous: init method ",
              init_method_name(info.method), " has no store (only env and slurm do)");
  const std::string where = info.master_addr + ":" + std::to_string(info.master_port);
  const std::string who = "rank " + std::to_string(info.rank) + " of " + std::to_string(info.world_size);
  Rendezvous r;
  r.info = info;
  if (info.rank == 0) {
    try {
      // Every rank keeps a connection: room for all of them beside the default's margin (a world
      // of thousands also needs rank 0's RLIMIT_NOFILE raised, as PyTorch's TCPStore does).
      StoreLimits limits = options.limits;
      limits.max_connections = std::max(limits.max_connections, info.world_size + 64);
      r.server = std::make_shared<TcpStoreServer>(info.master_addr, info.master_port, limits);
    } catch (const std::exception& e) {
      EMBER_FAIL("rendezvous (", who, "): rank 0 cannot start the store on MASTER_ADDR:MASTER_PORT = ", where, ": ",
                 e.what());
    }
  }
  try {
    r.store = std::make_shared<TcpStore>(info.master_addr, info.master_port, options.store);
  } catch (const std::exception& e) {
    EMBER_FAIL("rendezvous (", who, "): cannot reach the store at MASTER_ADDR:MASTER_PORT = ", where,
               " (rank 0 starts it): ", e.what());
  }

  // Check in: each rank claims its number once (two processes with the same RANK is an error),
  // then waits for all.
  // Who claims the rank: host, process and a per-process count (ranks may be threads in tests).
  static std::atomic<int> claims{0};
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  const std::string me = std::string(host) + " pid " + std::to_string(getpid()) + " (claim " +
                         std::to_string(claims++) + ")";
  const std::string key = "rendezvous/rank/" + std::to_string(info.rank);
  const std::string owner = r.store->compare_set(key, "", me);
  EMBER_CHECK(owner == me, "rendezvous (", who, "): rank ", info.rank, " is already taken by ", owner,
              " (two processes were given the same RANK; this one is ", me, ")");
  r.store->add("rendezvous/arrived", 1);
  std::vector<std::string> keys;
  for (int i = 0; i < info.world_size; ++i) keys.push_back("rendezvous/rank/" + std::to_string(i));
  try {
    // In chunks: one request may name at most StoreLimits::max_keys_per_call keys (1024 by
    // default), and a world can be larger. One deadline for all of them.
    const auto deadline = std::chrono::steady_clock::now() + options.join_timeout;
    const size_t kChunk = std::clamp<size_t>(options.limits.max_keys_per_call, 1, 512);
    for (size_t first = 0; first < keys.size(); first += kChunk) {
      const std::vector<std::string> chunk(keys.begin() + first, keys.begin() + std::min(keys.size(), first + kChunk));
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      r.store->wait(chunk, std::max(left, std::chrono::milliseconds(1)));
    }
  } catch (const std::exception& e) {
    std::string missing;
    try {
      for (int i = 0; i < info.world_size; ++i)
        if (!r.store->check({keys[i]})) missing += (missing.empty() ? "" : ", ") + std::to_string(i);
    } catch (const std::exception&) {
      missing = "unknown (the store is gone)";
    }
    EMBER_FAIL("rendezvous (", who, ", store at ", where, "): not every rank arrived within ",
               options.join_timeout.count(), " ms; missing rank(s): ", missing, " (", e.what(), ")");
  }
  return r;
}

}  // namespace ember::distributed
