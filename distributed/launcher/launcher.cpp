// ember-run's flags and its process loop: see launcher.h.
#include "distributed/launcher/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace ember::launcher {

using Clock = std::chrono::steady_clock;

const char* launch_usage() {
  return "usage: ember-run --nproc-per-node N [--nnodes M --node-rank R] [--master-addr A] [--master-port P]\n"
         "                 [--kill-grace SECONDS] [--] PROGRAM [ARGS...]\n"
         "Starts N ranks of PROGRAM on this node with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,\n"
         "MASTER_ADDR and MASTER_PORT set; prefixes their output with [rank K]; forwards SIGINT/SIGTERM;\n"
         "stops every rank when one fails and exits non-zero naming it.\n"
         "  --nproc-per-node N   ranks on this node (default 1)\n"
         "  --nnodes M           nodes in the job (default 1); run ember-run once per node\n"
         "  --node-rank R        this node's index in [0, M) (default 0)\n"
         "  --master-addr A      node 0's address; its rank 0 serves the store there (default 127.0.0.1)\n"
         "  --master-port P      the store's port (default: a free port on one node, 29500 on several)\n"
         "  --kill-grace S       seconds between SIGTERM and SIGKILL when stopping ranks (default 5)\n";
}

namespace {

int parse_int_flag(const std::string& flag, const std::string& value, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0)
    throw std::invalid_argument(flag + ": '" + value + "' is not an integer");
  if (v < lo || v > hi)
    throw std::invalid_argument(flag + ": " + value + " is out of range [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  return static_cast<int>(v);
}

}  // namespace

LaunchOptions parse_launch_args(const std::vector<std::string>& args) {
  LaunchOptions o;
  bool node_rank_given = false, addr_given = false;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") throw HelpRequested{};
    if (a.rfind("-", 0) != 0) break;  // PROGRAM: everything from here on is the rank's command
    std::string flag = a, value;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      flag = a.substr(0, eq);
      value = a.substr(eq + 1);
    } else {
      if (i + 1 >= args.size()) throw std::invalid_argument(flag + " needs a value");
      value = args[++i];
    }
    if (flag == "--nproc-per-node" || flag == "--nproc_per_node") {
      o.nproc_per_node = parse_int_flag(flag, value, 1, 4096);
    } else if (flag == "--nnodes") {
      o.nnodes = parse_int_flag(flag, value, 1, 65536);
    } else if (flag == "--node-rank" || flag == "--node_rank") {
      o.node_rank = parse_int_flag(flag, value, 0, 65535);
      node_rank_given = true;
    } else if (flag == "--master-addr" || flag == "--master_addr") {
      if (value.empty()) throw std::invalid_argument(flag + " is empty");
      o.master_addr = value;
      addr_given = true;
    } else if (flag == "--master-port" || flag == "--master_port") {
      o.master_port = parse_int_flag(flag, value, 1, 65535);
    } else if (flag == "--kill-grace") {
      char* end = nullptr;
      o.kill_grace_seconds = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(o.kill_grace_seconds >= 0 && o.kill_grace_seconds <= 3600))
        throw std::invalid_argument(flag + ": '" + value + "' is not a number of seconds in [0, 3600]");
    } else {
      throw std::invalid_argument("unknown flag " + flag);
    }
  }
  o.program.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (o.program.empty()) throw std::invalid_argument("no PROGRAM to run");
  if (o.node_rank >= o.nnodes)
    throw std::invalid_argument("--node-rank " + std::to_string(o.node_rank) + " is not below --nnodes " +
                                std::to_string(o.nnodes));
  if (o.nnodes > 1 && !addr_given)
    throw std::invalid_argument("--nnodes " + std::to_string(o.nnodes) +
                                " needs --master-addr (node 0's address, the same on every node)");
  if (o.nnodes > 1 && !node_rank_given)
    throw std::invalid_argument("--nnodes " + std::to_string(o.nnodes) + " needs --node-rank (this node's index)");
  if (static_cast<long>(o.nnodes) * o.nproc_per_node > (1 << 20))
    throw std::invalid_argument("--nnodes * --nproc-per-node is more than 2^20 ranks");
  return o;
}

namespace {

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const unsigned char byte = static_cast<unsigned char>(sig);
  const int saved = errno;
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

void write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // our own stdout is gone: nothing useful to do
    }
    done += static_cast<size_t>(n);
  }
}

void say(const std::string& s) { write_all(2, "ember-run: " + s + "\n"); }

// Is PROGRAM something execvp can start? Checked before forking, for a clear message.
bool findable(const std::string& program) {
  auto executable = [](const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string::npos) return executable(program);
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(start, end - start);
    if (executable((dir.empty() ? "." : dir) + "/" + program)) return true;
    start = end + 1;
  }
  return false;
}

// A free TCP port on addr (bound and released; rank 0 binds it again moments later).
int free_port(const std::string& addr) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(addr.c_str(), "0", &hints, &res) != 0 || res == nullptr)
    throw std::runtime_error("cannot resolve --master-addr '" + addr + "'");
  const int fd = ::socket(res->ai_family, SOCK_STREAM, 0);
  int port = -1;
  if (fd >= 0 && ::bind(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  const std::string why = std::strerror(errno);
  if (fd >= 0) ::close(fd);
  freeaddrinfo(res);
  if (port <= 0) throw std::runtime_error("cannot bind a port on --master-addr '" + addr + "': " + why);
  return port;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return "signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "status " + std::to_string(status);
}

struct Rank {
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;
  int out_fd = -1, err_fd = -1;      // read ends of the rank's stdout and stderr pipes
  std::string out_partial, err_partial;  // the unfinished last line of each
};

// Relays complete lines from `chunk` with the rank prefix; keeps the unfinished tail in partial.
void relay(Rank& r, int to_fd, std::string& partial, const char* chunk, size_t n) {
  partial.append(chunk, n);
  const std::string prefix = "[rank " + std::to_string(r.rank) + "] ";
  std::string out;
  size_t start = 0, nl;
  while ((nl = partial.find('\n', start)) != std::string::npos) {
    out += prefix + partial.substr(start, nl - start + 1);
    start = nl + 1;
  }
  partial.erase(0, start);
  if (partial.size() > 64 * 1024) {  // a very long line: pass it on in pieces
    out += prefix + partial + "\n";
    partial.clear();
  }
  if (!out.empty()) write_all(to_fd, out);
}

void flush_partial(Rank& r, int to_fd, std::string& partial) {
  if (!partial.empty()) write_all(to_fd, "[rank " + std::to_string(r.rank) + "] " + partial + "\n");
  partial.clear();
}

// Signals a rank's whole process group (it and anything it started), and the rank itself, in case
// it left that group (a wrapper calling setsid): otherwise it would never be stopped.
void signal_rank(const Rank& r, int sig) {
  if (!r.running) return;
  ::kill(-r.pid, sig);
  ::kill(r.pid, sig);
}

}  // namespace

int run_ranks(const LaunchOptions& o) {
  if (!findable(o.program[0])) {
    say("cannot run '" + o.program[0] + "': no such executable file" +
        (o.program[0].find('/') == std::string::npos ? " in PATH" : ""));
    return 127;
  }
  int port = o.master_port;
  try {
    if (port < 0) port = o.nnodes > 1 ? 29500 : free_port(o.master_addr);
  } catch (const std::exception& e) {
    say(e.what());
    return 2;
  }
  const int world = o.nnodes * o.nproc_per_node;
  const bool set_omp = o.nproc_per_node > 1 && std::getenv("OMP_NUM_THREADS") == nullptr;

  if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    say(std::string("pipe: ") + std::strerror(errno));
    return 2;
  }
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Whoever started ember-run may have blocked these (a blocked signal would stay pending and
  // never be forwarded): unblock them here; the ranks start with an empty mask below.
  sigset_t ours;
  sigemptyset(&ours);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&ours, sig);
  sigprocmask(SIG_UNBLOCK, &ours, nullptr);

  std::vector<Rank> ranks(static_cast<size_t>(o.nproc_per_node));
  for (int i = 0; i < o.nproc_per_node; ++i) {
    Rank& r = ranks[static_cast<size_t>(i)];
    r.rank = o.node_rank * o.nproc_per_node + i;
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      say(std::string("pipe: ") + std::strerror(errno));
      for (Rank& started : ranks) signal_rank(started, SIGKILL);
      return 2;
    }
    const pid_t launcher_pid = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      // The rank: its own process group (so a failure stops everything it started), the
      // launcher's signal handlers undone, stdout and stderr into the pipes.
      ::setpgid(0, 0);
      // Dies with the launcher: a SIGKILLed ember-run (OOM killer, a scheduler) must not leave ranks
      // holding the GPU and the port. The check after catches a launcher that died before prctl.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher_pid) _exit(1);
      // No terminal input: a rank is a background process group, and reading the tty would stop it
      // (SIGTTIN) without a word, hanging the job. Its stdin is /dev/null, as under a batch system.
      if (const int null_fd = ::open("/dev/null", O_RDONLY); null_fd >= 0) {
        ::dup2(null_fd, 0);
        if (null_fd != 0) ::close(null_fd);
      }
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      signal(SIGHUP, SIG_DFL);
      signal(SIGPIPE, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      setenv("RANK", std::to_string(r.rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(i).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
      setenv("NODE_RANK", std::to_string(o.node_rank).c_str(), 1);
      setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);  // torchrun's name for it
      setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      if (set_omp) setenv("OMP_NUM_THREADS", "1", 1);
      std::vector<char*> argv;
      for (const std::string& a : o.program) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      const std::string msg = "ember-run: rank " + std::to_string(r.rank) + ": cannot run '" + o.program[0] +
                              "': " + std::strerror(errno) + "\n";
      write_all(2, msg);
      _exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    if (pid < 0) {
      say(std::string("fork: ") + std::strerror(errno));
      for (Rank& started : ranks) signal_rank(started, SIGKILL);
      return 2;
    }
    ::setpgid(pid, pid);  // also here: no race with a signal sent before the child ran setpgid
    r.pid = pid;
    r.running = true;
    r.out_fd = out[0];
    r.err_fd = err[0];
  }
  if (set_omp)
    say("OMP_NUM_THREADS is unset: set to 1 for each of the " + std::to_string(o.nproc_per_node) +
        " ranks (they share this machine's cores); set it to override");

  int failed_rank = -1, failed_status = 0, interrupted = 0;
  // Every rank that fails within kFailureWindow of the first failure, before the others are
  // stopped. Which rank caused a failure cannot be read from the order of exits: one throws, its
  // peers lose their connections to it and may exit first (seen: the throwing rank's exit reaped
  // after its peer's). So the others get that long to end on their own, and all that failed are
  // named; the exit status is the first one's.
  constexpr auto kFailureWindow = std::chrono::milliseconds(500);
  std::vector<std::pair<int, int>> failures;  // rank, wait status
  Clock::time_point stop_at = Clock::time_point::max();
  bool stopped = false;
  Clock::time_point kill_at = Clock::time_point::max();
  bool killed = false;
  Clock::time_point all_exited_at = Clock::time_point::max();
  std::vector<char> chunk(64 * 1024);

  auto stop_all = [&](int sig) {
    for (Rank& r : ranks) signal_rank(r, sig);
    const auto grace = std::chrono::milliseconds(static_cast<int64_t>(o.kill_grace_seconds * 1000));
    if (kill_at == Clock::time_point::max()) kill_at = Clock::now() + grace;
  };

  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({g_signal_pipe[0], POLLIN, 0});
    for (Rank& r : ranks) {
      if (r.out_fd >= 0) fds.push_back({r.out_fd, POLLIN, 0});
      if (r.err_fd >= 0) fds.push_back({r.err_fd, POLLIN, 0});
    }
    ::poll(fds.data(), fds.size(), 100);

    // Signals to ember-run: forward to every rank; a second one kills at once.
    unsigned char sig;
    while (::read(g_signal_pipe[0], &sig, 1) == 1) {
      if (interrupted && !killed) {
        say(std::string("got SIG") + sigabbrev_np(sig) + " again: killing every rank");
        for (Rank& r : ranks) signal_rank(r, SIGKILL);
        killed = true;
      } else if (!interrupted) {
        interrupted = sig;
        say(std::string("got SIG") + sigabbrev_np(sig) + ": forwarding it to every rank");
        stop_all(sig);
      }
    }

    // Output.
    for (Rank& r : ranks) {
      for (int* fd : {&r.out_fd, &r.err_fd}) {
        if (*fd < 0) continue;
        pollfd p{*fd, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) continue;
        const ssize_t n = ::read(*fd, chunk.data(), chunk.size());
        const bool is_out = fd == &r.out_fd;
        std::string& partial = is_out ? r.out_partial : r.err_partial;
        if (n > 0) {
          relay(r, is_out ? 1 : 2, partial, chunk.data(), static_cast<size_t>(n));
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          flush_partial(r, is_out ? 1 : 2, partial);
          ::close(*fd);
          *fd = -1;
        }
      }
    }

    // Exits.
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      for (Rank& r : ranks) {
        if (r.pid != pid || !r.running) continue;
        r.running = false;
        r.status = status;
        ::kill(-r.pid, SIGKILL);  // anything the rank left behind in its group
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && !stopped && !interrupted) {
          if (failed_rank < 0) {
            failed_rank = r.rank;
            failed_status = status;
            stop_at = Clock::now() + kFailureWindow;
          }
          failures.emplace_back(r.rank, status);
          say("rank " + std::to_string(r.rank) + " (pid " + std::to_string(pid) + ") failed with " + describe(status) +
              "; stopping the other ranks");
        }
      }
    }
    bool any_running = false, any_pipe = false;
    for (const Rank& r : ranks) {
      any_running = any_running || r.running;
      any_pipe = any_pipe || r.out_fd >= 0 || r.err_fd >= 0;
    }
    if (failed_rank >= 0 && !stopped && (Clock::now() >= stop_at || !any_running)) {
      stopped = true;
      if (!interrupted) stop_all(SIGTERM);
    }
    if (!any_running) {
      if (all_exited_at == Clock::time_point::max()) all_exited_at = Clock::now();
      // Done once the pipes are drained (a grandchild holding one open gets a second at most).
      if (!any_pipe || Clock::now() - all_exited_at > std::chrono::seconds(1)) break;
    }
    if (any_running && !killed && Clock::now() > kill_at) {
      say("ranks still running " + std::to_string(o.kill_grace_seconds) + " s after SIGTERM: sending SIGKILL");
      for (Rank& r : ranks) signal_rank(r, SIGKILL);
      killed = true;
    }
  }
  for (Rank& r : ranks) {
    flush_partial(r, 1, r.out_partial);
    flush_partial(r, 2, r.err_partial);
  }

  if (failed_rank >= 0) {
    for (const auto& [rank, status] : failures) say("failed: rank " + std::to_string(rank) + " exited with " + describe(status));
    if (WIFEXITED(failed_status)) return WEXITSTATUS(failed_status);
    return 128 + WTERMSIG(failed_status);
  }
  if (interrupted) {
    say(std::string("stopped by SIG") + sigabbrev_np(interrupted));
    return 128 + interrupted;
  }
  return 0;
}

}  // namespace ember::launcher
