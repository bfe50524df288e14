// init_process_group: see process_group.h.
#include "distributed/process_group.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "core/backend.h"
#include "core/ember.h"
#include "core/error.h"
#include "distributed/gloo_communicator.h"
#include "distributed/mpi_communicator.h"
#include "distributed/nccl_communicator.h"

namespace ember::distributed {

using std::chrono::milliseconds;

std::string resolve_backend(const std::string& requested, InitMethod method, bool cuda, bool have_gloo,
                            bool have_mpi) {
  const bool mpi_launch = method == InitMethod::Mpi;
  if (requested == "auto") {
    if (cuda) return "nccl";
    if (have_mpi && mpi_launch) return "mpi";  // mpirun: MPI itself, as before Gloo existed
    if (have_gloo) return "gloo";
    if (have_mpi && method == InitMethod::Single) return "mpi";
    EMBER_FAIL("--backend auto: no CPU backend for this launch (", init_method_name(method),
               "): ember was built without Gloo (install libgloo-dev)", have_mpi ? "; launch with mpirun to use MPI" : "");
  }
  if (requested == "gloo") {
    EMBER_CHECK(!cuda, "--backend gloo takes CPU tensors; use --backend nccl (or auto) with --device cuda");
    EMBER_CHECK(have_gloo, "--backend gloo: ember was built without Gloo (install libgloo-dev and reconfigure)");
    return "gloo";
  }
  if (requested == "mpi") {
    EMBER_CHECK(!cuda, "--backend mpi takes CPU tensors; use --backend nccl (or auto) with --device cuda");
    EMBER_CHECK(have_mpi, "--backend mpi: ember was built without MPI (install libopenmpi-dev and reconfigure)");
    EMBER_CHECK(mpi_launch || method == InitMethod::Single, "--backend mpi needs a launch by mpirun (--init mpi), "
                "but this process was launched by ", init_method_name(method),
                "; use --backend gloo (or auto) with ember-run, torchrun or srun");
    return "mpi";
  }
  if (requested == "nccl") {
    EMBER_CHECK(cuda, "--backend nccl takes CUDA tensors: add --device cuda");
    return "nccl";
  }
  EMBER_FAIL("--backend: '", requested, "' is not one of auto, gloo, mpi, nccl");
}

std::string exchange_nccl_unique_id(Store& store, int rank, const std::function<std::string()>& new_unique_id,
                                    const std::string& key) {
  constexpr size_t kIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
  std::string id;
  if (rank == 0) {
    id = new_unique_id();
    EMBER_CHECK(id.size() == kIdBytes, "NCCL start-up: the unique id has ", id.size(), " bytes, not ", kIdBytes);
    store.set(key, id);
  } else {
    id = store.get(key);
    EMBER_CHECK(id.size() == kIdBytes, "NCCL start-up on rank ", rank, ": the unique id in the store has ", id.size(),
                " bytes, not ", kIdBytes);
  }
  return id;
}

void check_same_config(Store& store, int rank, int world_size, const std::string& config) {
  store.set("config/" + std::to_string(rank), config);
  const std::string first = store.get("config/0");
  for (int r = 1; r < world_size; ++r) {
    const std::string theirs = r == rank ? config : store.get("config/" + std::to_string(r));
    EMBER_CHECK(theirs == first, "start-up: rank ", r, " has ", theirs, ", rank 0 has ", first,
                " (every rank must be started with the same --backend and --device)");
  }
}

std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_DGRAM;
  if (getaddrinfo(host.c_str(), std::to_string(port > 0 ? port : 9).c_str(), &hints, &res) != 0 || res == nullptr)
    return "";
  std::string out;
  // Connecting a UDP socket sends nothing; it only asks the kernel which local address routes there.
  const int fd = ::socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    char text[INET6_ADDRSTRLEN] = {};
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      const void* addr = local.ss_family == AF_INET6
                             ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                             : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
      if (inet_ntop(local.ss_family, addr, text, sizeof text) != nullptr) out = text;
    }
  }
  if (fd >= 0) ::close(fd);
  freeaddrinfo(res);
  return out;
}

RendezvousOptions rendezvous_options_from_env(const EnvLookup& env) {
  RendezvousOptions o;
  auto seconds = [&](const char* name, int fallback) {
    auto v = env(name);
    if (!v) return milliseconds(fallback * 1000);
    char* end = nullptr;
    const double s = std::strtod(v->c_str(), &end);
    EMBER_CHECK(!v->empty() && end && *end == '\0' && s > 0 && s < 1e6, name, "='", *v,
                "' is not a positive number of seconds");
    return milliseconds(static_cast<int64_t>(s * 1000));
  };
  o.store.connect_timeout = seconds("EMBER_CONNECT_TIMEOUT", 5);
  o.store.timeout = seconds("EMBER_STORE_TIMEOUT", 60);
  o.join_timeout = o.store.timeout;
  return o;
}

namespace {


// Where Gloo listens: GLOO_SOCKET_IFNAME's interface when set (empty: make_gloo_communicator
// reads it), else the local address this host uses to reach the store, which the other ranks can
// reach too (loopback on one node; the right interface on a cluster, where the host name may
// resolve to 127.0.1.1).
std::string gloo_listen_host(const std::string& master_addr, int master_port) {
  if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface) return "";
  return local_address_towards(master_addr, master_port);
}

// Under mpirun there is no MASTER_ADDR: rank 0 starts a store on its host (or MASTER_ADDR when
// set) and sends "host:port" to the others over MPI.
void store_over_mpi(ProcessGroup& pg, Communicator& mpi, const RendezvousOptions& options) {
  std::string where;
  if (mpi.rank() == 0) {
    const char* addr = std::getenv("MASTER_ADDR");
    const std::string host = addr && *addr ? addr : host_name();
    const char* port = std::getenv("MASTER_PORT");
    pg.server = std::make_shared<TcpStoreServer>(host, port ? std::atoi(port) : 0, options.limits);
    where = host + ":" + std::to_string(pg.server->port());
  }
  Tensor len = from_vector<int64_t>({static_cast<int64_t>(where.size())}, {1});
  mpi.broadcast(len, 0);
  const int64_t n = len.to_vector<int64_t>()[0];
  EMBER_CHECK(n > 0 && n < 1024, "store address over MPI: bad length ", n);
  std::vector<uint8_t> bytes(where.begin(), where.end());
  bytes.resize(static_cast<size_t>(n));
  Tensor buf = from_vector<uint8_t>(bytes, {n});
  mpi.broadcast(buf, 0);
  const std::vector<uint8_t> got = buf.to_vector<uint8_t>();
  where.assign(got.begin(), got.end());
  const size_t colon = where.rfind(':');
  pg.store = std::make_shared<TcpStore>(where.substr(0, colon), std::atoi(where.c_str() + colon + 1), options.store);
}

std::shared_ptr<Communicator> make_nccl_over_store(ProcessGroup& pg, const ProcessGroupOptions& o) {
  const LaunchInfo& info = pg.launch;
  pg.gpu = choose_cuda_device(info.local_rank, cuda_device_count(), o.cuda_index, process_env()("CUDA_VISIBLE_DEVICES"));
  check_devices_unique(*pg.store, info.rank, info.world_size, *pg.gpu);
  // The real NCCL functions unless a test injected others (a build without CUDA has stubs that
  // throw "built without CUDA", naming the problem).
  const auto new_unique_id = o.nccl.new_unique_id ? o.nccl.new_unique_id : [] { return make_nccl_unique_id(); };
  const std::string id = exchange_nccl_unique_id(*pg.store, info.rank, new_unique_id);
  if (o.nccl.make) return o.nccl.make(info.rank, info.world_size, pg.gpu->index, id, o.comm);
  return make_nccl_communicator(info.rank, info.world_size, pg.gpu->index, id, o.comm);
}

}  // namespace

ProcessGroup init_process_group(const ProcessGroupOptions& o) {
  ProcessGroup pg;
  pg.launch = detect_launch(o.init);
  const InitMethod method = pg.launch.method;
  bool agreed = false;  // check_agreement has run
  pg.backend = resolve_backend(o.backend, method, o.cuda, gloo_available(), MpiEnvironment::available());

  // A world of one with no address to meet at (srun -n1, or WORLD_SIZE=1 without MASTER_ADDR) needs
  // no rendezvous: it starts as a process started by hand does.
  const bool alone = pg.launch.world_size == 1 && pg.launch.master_addr.empty();
  if ((method == InitMethod::Env || method == InitMethod::Slurm) && !alone) {
    Rendezvous rv = rendezvous(pg.launch, o.rendezvous);
    pg.store = rv.store;
    pg.server = rv.server;
    check_same_config(*pg.store, pg.launch.rank, pg.launch.world_size,
                      "backend " + pg.backend + ", device " + (o.cuda ? "cuda" : "cpu"));
    if (pg.backend == "gloo") {
      pg.comm = make_gloo_communicator(pg.store, pg.launch.rank, pg.launch.world_size, o.comm,
                                       gloo_listen_host(pg.launch.master_addr, pg.launch.master_port));
    } else {
      pg.comm = make_nccl_over_store(pg, o);
    }
  } else if (method == InitMethod::Mpi || ((method == InitMethod::Single || alone) && pg.backend == "mpi")) {
    MpiEnvironment::init();
    auto mpi = make_mpi_communicator(o.comm);  // refuses a world size other than the launcher's
    pg.launch.rank = mpi->rank();
    pg.launch.world_size = mpi->world_size();
    pg.launch.local_rank = MpiEnvironment::local_rank();
    if (o.check_agreement) o.check_agreement(*mpi);
    agreed = true;
    if (pg.backend == "mpi") {
      pg.comm = mpi;
    } else if (pg.backend == "gloo") {
      store_over_mpi(pg, *mpi, o.rendezvous);
      const std::string where = pg.store->address();
      const size_t colon = where.rfind(':');
      pg.comm = make_gloo_communicator(pg.store, pg.launch.rank, pg.launch.world_size, o.comm,
                                       gloo_listen_host(where.substr(0, colon), std::atoi(where.c_str() + colon + 1)));
    } else {  // nccl: the MPI-based start-up of nccl_communicator.h (GPU = local rank)
      pg.comm = make_nccl_communicator(o.comm);
    }
  } else {  // a world of one, started by hand
    if (pg.backend == "gloo") {
      pg.server = std::make_shared<TcpStoreServer>("127.0.0.1", 0, o.rendezvous.limits);
      pg.store = std::make_shared<TcpStore>("127.0.0.1", pg.server->port(), o.rendezvous.store);
      pg.comm = make_gloo_communicator(pg.store, 0, 1, o.comm, "127.0.0.1");
    } else {
      pg.comm = make_nccl_communicator(o.comm);
    }
  }
  EMBER_CHECK(pg.comm->world_size() == pg.launch.world_size || method == InitMethod::Single || alone, "init_process_group: the ",
              pg.backend, " communicator has ", pg.comm->world_size(), " ranks but the launch (", pg.launch.why,
              ") has ", pg.launch.world_size);
  check_world_size_matches_launch(pg.comm->world_size(), "init_process_group (" + pg.backend + ")");
  if (o.check_agreement && !agreed) o.check_agreement(*pg.comm);
  return pg;
}

}  // namespace ember::distributed
