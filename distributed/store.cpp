// TcpStoreServer and TcpStore: see store.h. POSIX sockets and poll(), nothing else.
#include "distributed/store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <string_view>
#include <unordered_map>

#include "core/error.h"

namespace ember::distributed {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

std::string errno_text(int e) { return std::strerror(e); }

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}
std::string int64_bytes(int64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
  return out;
}
int64_t bytes_int64(std::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(s[i])) << (8 * i);
  return static_cast<int64_t>(v);
}

// Reads the fields of a request body; any malformed length makes ok() false.
class FieldReader {
 public:
  explicit FieldReader(std::string_view body) : rest_(body) {}
  bool next(std::string_view& field) {
    if (rest_.size() < 4) return ok_ = false;
    const uint32_t n = get_u32(rest_.data());
    if (rest_.size() - 4 < n) return ok_ = false;
    field = rest_.substr(4, n);
    rest_.remove_prefix(4 + n);
    return true;
  }
  bool at_end() const { return rest_.empty(); }
  bool ok() const { return ok_; }

 private:
  std::string_view rest_;
  bool ok_ = true;
};

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

// getaddrinfo for host:port (TCP); throws naming what it was looking up.
struct AddrList {
  addrinfo* head = nullptr;
  AddrList(const std::string& host, int port, bool passive, const char* what) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (passive) hints.ai_flags = AI_PASSIVE;
    const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &head);
    EMBER_CHECK(rc == 0 && head != nullptr, what, ": cannot resolve '", host, "' (port ", port, "): ", gai_strerror(rc));
  }
  ~AddrList() {
    if (head) freeaddrinfo(head);
  }
};

}  // namespace

uint32_t StoreLimits::max_message_bytes() const {
  // compare_set carries a key and two values; wait/check up to max_keys_per_call keys.
  const uint64_t compare_set = 1 + 3 * 4 + uint64_t{max_key_bytes} + 2 * uint64_t{max_value_bytes};
  const uint64_t many_keys = 1 + uint64_t{max_keys_per_call} * (4 + uint64_t{max_key_bytes});
  return static_cast<uint32_t>(std::min<uint64_t>(std::max(compare_set, many_keys), 1u << 30));
}

namespace store_wire {
std::string frame(Command command, const std::vector<std::string>& fields) {
  std::string body(1, static_cast<char>(command));
  for (const std::string& f : fields) {
    put_u32(body, static_cast<uint32_t>(f.size()));
    body += f;
  }
  std::string out;
  put_u32(out, static_cast<uint32_t>(body.size()));
  return out + body;
}
}  // namespace store_wire

// ------------------------------------------------------------------------------------------------
// Server
// ------------------------------------------------------------------------------------------------

namespace {

struct Connection {
  int fd = -1;
  bool greeted = false;          // has sent a valid Hello
  Clock::time_point opened;
  Clock::time_point message_started;  // when the unfinished bytes in `in` began to arrive
  std::string in, out;           // bytes received but not yet handled; reply bytes not yet sent
  // A Get or Wait whose keys are missing: answered once they exist.
  bool waiting = false;
  store_wire::Command wait_command = store_wire::Get;
  std::vector<std::string> wait_keys;
};

}  // namespace

struct TcpStoreServer::State {
  StoreLimits limits;
  std::map<int, Connection> connections;  // by fd
  std::unordered_map<std::string, std::string> data;
  uint64_t data_bytes = 0;
  std::atomic<bool> stop{false};
  std::atomic<int> open{0};
  std::atomic<int64_t> rejected{0};

  void close_connection(int fd, bool for_a_limit) {
    ::close(fd);
    connections.erase(fd);
    open = static_cast<int>(connections.size());
    if (for_a_limit) ++rejected;
  }

  static void reply(Connection& c, bool ok, const std::string& payload) {
    put_u32(c.out, static_cast<uint32_t>(1 + payload.size()));
    c.out.push_back(ok ? 0 : 1);
    c.out += payload;
  }

  bool all_present(const std::vector<std::string>& keys) const {
    return std::all_of(keys.begin(), keys.end(), [&](const std::string& k) { return data.count(k) > 0; });
  }

  // Stores key = value if the limit on held bytes allows; false (and an error reply) otherwise.
  bool store(Connection& c, const std::string& key, std::string value) {
    auto it = data.find(key);
    const uint64_t old_bytes = it == data.end() ? 0 : key.size() + it->second.size();
    const uint64_t new_bytes = key.size() + value.size();
    if (data_bytes - old_bytes + new_bytes > limits.max_total_bytes) {
      reply(c, false, "store full (StoreLimits::max_total_bytes = " + std::to_string(limits.max_total_bytes) + ")");
      return false;
    }
    data_bytes = data_bytes - old_bytes + new_bytes;
    data[key] = std::move(value);
    return true;
  }

  // Answers a waiting Get or Wait whose keys now exist.
  void try_finish_wait(Connection& c) {
    if (!c.waiting || !all_present(c.wait_keys)) return;
    c.waiting = false;
    reply(c, true, c.wait_command == store_wire::Get ? data[c.wait_keys[0]] : std::string());
    c.wait_keys.clear();
  }

  // Handles one complete request body. Returns false when the connection must be closed.
  bool handle(Connection& c, std::string_view body) {
    using namespace store_wire;
    if (body.empty()) return false;
    const auto command = static_cast<Command>(static_cast<unsigned char>(body[0]));
    FieldReader r(body.substr(1));
    std::vector<std::string_view> fields;
    std::string_view f;
    while (!r.at_end() && r.next(f)) {
      fields.push_back(f);
      if (fields.size() > limits.max_keys_per_call) return false;  // (every command has fewer fields)
    }
    if (!r.ok()) return false;
    if (!c.greeted) {  // the first message must be a Hello with the magic
      if (command != Hello || fields.size() != 1 || fields[0] != kStoreMagic) return false;
      c.greeted = true;
      reply(c, true, "");
      return true;
    }
    for (size_t i = 0; i < fields.size(); ++i) {
      const bool is_key = i == 0 || command == Check || command == Wait;
      if (is_key && fields[i].size() > limits.max_key_bytes) return false;
      if (!is_key && fields[i].size() > limits.max_value_bytes) return false;
    }
    auto key = [&](size_t i) { return std::string(fields[i]); };
    switch (command) {
      case Set:
        if (fields.size() != 2) return false;
        if (store(c, key(0), std::string(fields[1]))) reply(c, true, "");
        return true;
      case Get:
      case Wait:
        if (fields.empty() || (command == Get && fields.size() != 1)) return false;
        c.waiting = true;
        c.wait_command = command;
        c.wait_keys.clear();
        for (size_t i = 0; i < fields.size(); ++i) c.wait_keys.push_back(key(i));
        try_finish_wait(c);
        return true;
      case Add: {
        if (fields.size() != 2 || fields[1].size() != 8) return false;
        int64_t value = 0;
        if (auto it = data.find(key(0)); it != data.end()) {
          try {
            size_t used = 0;
            value = std::stoll(it->second, &used);
            if (used != it->second.size()) throw std::invalid_argument("trailing bytes");
          } catch (const std::exception&) {
            reply(c, false, "add: the value of '" + key(0) + "' is not an integer");
            return true;
          }
        }
        value = static_cast<int64_t>(static_cast<uint64_t>(value) + static_cast<uint64_t>(bytes_int64(fields[1])));
        if (store(c, key(0), std::to_string(value))) reply(c, true, int64_bytes(value));
        wake_waiters();
        return true;
      }
      case Check:
        if (fields.empty()) return false;
        {
          std::vector<std::string> keys;
          for (size_t i = 0; i < fields.size(); ++i) keys.push_back(key(i));
          reply(c, true, std::string(1, all_present(keys) ? 1 : 0));
        }
        return true;
      case CompareSet: {
        if (fields.size() != 3) return false;
        auto it = data.find(key(0));
        const std::string current = it == data.end() ? std::string() : it->second;
        if (current == fields[1]) {
          if (store(c, key(0), std::string(fields[2]))) reply(c, true, std::string(fields[2]));
        } else {
          reply(c, true, current);
        }
        wake_waiters();
        return true;
      }
      default:
        return false;  // Hello again, or an unknown command
    }
  }

  void wake_waiters() {
    for (auto& [fd, c] : connections) try_finish_wait(c);
  }

  // Handles every complete frame in c.in. Returns false when the connection must be closed.
  bool drain_input(Connection& c) {
    // Before its Hello a connection may send only a Hello (command, length, magic): otherwise a
    // thousand silent connections could each pin a full-size message here for the hello window.
    static const uint32_t kHelloBody =
        static_cast<uint32_t>(store_wire::frame(store_wire::Hello, {store_wire::kStoreMagic}).size() - 4);
    auto max_body_now = [&] { return c.greeted ? limits.max_message_bytes() : kHelloBody; };
    size_t used = 0;
    // One request at a time: none is read while the previous reply is waiting or unsent, so a
    // client that never reads its replies holds at most one of them here.
    while (!c.waiting && c.out.empty() && c.in.size() - used >= 4) {
      const uint32_t n = get_u32(c.in.data() + used);
      if (n == 0 || n > max_body_now()) return false;
      if (c.in.size() - used - 4 < n) break;
      const bool was_set = c.in[used + 4] == store_wire::Set;
      if (!handle(c, std::string_view(c.in).substr(used + 4, n))) return false;
      if (was_set) wake_waiters();
      used += 4 + n;
    }
    c.in.erase(0, used);
    if (used > 0 && !c.in.empty()) c.message_started = Clock::now();  // the next message's clock
    if (c.in.size() >= 4 && get_u32(c.in.data()) > max_body_now()) return false;
    if (c.in.size() > 4 + size_t{max_body_now()}) return false;  // more than one pending request
    return true;
  }
};

TcpStoreServer::TcpStoreServer(const std::string& host, int port, StoreLimits limits)
    : host_(host), state_(std::make_unique<State>()) {
  state_->limits = limits;
  EMBER_CHECK(port >= 0 && port <= 65535, "TcpStoreServer: port ", port, " is not in [0, 65535]");
  EMBER_CHECK(!host.empty(), "TcpStoreServer: no address to bind (MASTER_ADDR is empty)");
  AddrList addrs(host, port, /*passive=*/false, "TcpStoreServer");
  std::string last_error = "no address";
  for (addrinfo* a = addrs.head; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_error = errno_text(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // a restarted job reuses its port
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 512) == 0) {
      listen_fd_ = fd;
      break;
    }
    last_error = errno_text(errno);
    ::close(fd);
  }
  EMBER_CHECK(listen_fd_ >= 0, "TcpStoreServer: cannot listen on ", host, ":", port, ": ", last_error,
              " (is MASTER_ADDR an address of this machine, and is MASTER_PORT free?)");
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  set_nonblocking(listen_fd_);
  if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(listen_fd_);
    EMBER_FAIL("TcpStoreServer: pipe: ", errno_text(errno));
  }
  thread_ = std::thread([this] { run(); });
}

TcpStoreServer::~TcpStoreServer() {
  state_->stop = true;
  const char byte = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], &byte, 1);
  if (thread_.joinable()) thread_.join();
  for (auto& [fd, c] : state_->connections) ::close(fd);
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
}

int TcpStoreServer::num_connections() const { return state_->open.load(); }
int64_t TcpStoreServer::num_rejected() const { return state_->rejected.load(); }

void TcpStoreServer::run() {
  State& s = *state_;
  std::vector<pollfd> fds;
  std::vector<char> chunk(64 * 1024);
  // Out of file descriptors (EMFILE/ENFILE), accept fails while the listening socket stays
  // readable: polling it then would spin. It is left out of poll for a moment instead.
  Clock::time_point accept_paused_until{};
  while (!s.stop) {
    // Deadlines: a connection that has not said hello, or has sent part of a message, in time.
    const auto now = Clock::now();
    std::vector<int> expired;
    for (auto& [fd, c] : s.connections) {
      if (!c.greeted && now - c.opened > s.limits.hello_deadline) expired.push_back(fd);
      else if (!c.in.empty() && !c.waiting && now - c.message_started > s.limits.message_deadline)
        expired.push_back(fd);
    }
    for (int fd : expired) s.close_connection(fd, true);

    fds.clear();
    fds.push_back({wake_pipe_[0], POLLIN, 0});
    fds.push_back({Clock::now() < accept_paused_until ? -1 : listen_fd_, POLLIN, 0});  // -1: poll skips it
    for (auto& [fd, c] : s.connections)
      fds.push_back({fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
    // Wake at least every 100 ms to enforce the deadlines above.
    if (::poll(fds.data(), fds.size(), 100) < 0) {
      if (errno == EINTR) continue;
      break;  // cannot happen with valid descriptors; never spin
    }
    if (fds[0].revents) break;  // the destructor's wake-up
    const auto polled_at = Clock::now();  // connections accepted after this have no revents below

    if (fds[1].revents & POLLIN) {
      // Accept everything waiting, so nobody sits in the kernel's backlog unanswered.
      for (int accepted = 0; accepted < 256; ++accepted) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            accept_paused_until = Clock::now() + std::chrono::milliseconds(100);
          break;
        }
        if (static_cast<int>(s.connections.size()) >= s.limits.max_connections) {
          // Full: make room by evicting the oldest connection that never said hello; if every
          // connection is a real client, the newcomer is turned away (it retries or times out).
          int oldest = -1;
          for (auto& [cfd, c] : s.connections)
            if (!c.greeted && (oldest < 0 || c.opened < s.connections[oldest].opened)) oldest = cfd;
          if (oldest < 0) {
            ::close(fd);
            ++s.rejected;
            continue;
          }
          s.close_connection(oldest, true);
        }
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        Connection c;
        c.fd = fd;
        c.opened = Clock::now();
        s.connections[fd] = std::move(c);
        s.open = static_cast<int>(s.connections.size());
      }
    }

    for (size_t i = 2; i < fds.size(); ++i) {
      const int fd = fds[i].fd;
      auto it = s.connections.find(fd);
      if (it == s.connections.end()) continue;  // closed while handling another connection
      Connection& c = it->second;
      // A descriptor evicted above and reused by a connection accepted since the poll: these
      // revents were the old socket's.
      if (c.opened >= polled_at) continue;
      bool close_it = false, for_a_limit = false;
      if (fds[i].revents & (POLLERR | POLLNVAL)) close_it = true;
      if (!close_it && (fds[i].revents & (POLLIN | POLLHUP))) {
        const ssize_t n = ::recv(fd, chunk.data(), chunk.size(), 0);
        if (n == 0) {
          close_it = true;  // the client closed
        } else if (n < 0) {
          close_it = errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
        } else {
          if (c.in.empty()) c.message_started = Clock::now();
          c.in.append(chunk.data(), static_cast<size_t>(n));
          if (!s.drain_input(c)) close_it = for_a_limit = true;
        }
      }
      if (!close_it && !c.out.empty()) {
        const ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
          c.out.erase(0, static_cast<size_t>(n));
          if (c.out.empty() && !s.drain_input(c)) close_it = for_a_limit = true;  // the next queued request
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          close_it = true;
        }
      }
      if (close_it) s.close_connection(fd, for_a_limit);
    }
    // Replies made for other connections (a Set woke waiters) go out on the next round's POLLOUT.
  }
}

// ------------------------------------------------------------------------------------------------
// Client
// ------------------------------------------------------------------------------------------------

namespace {

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

// Sends or receives exactly n bytes before the deadline. Returns "" or what went wrong.
std::string send_all(int fd, const char* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    pollfd pfd{fd, POLLOUT, 0};
    const int rc = ::poll(&pfd, 1, remaining_ms(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) return "timed out";
    const ssize_t sent = ::send(fd, p, n, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return "send: " + errno_text(errno);
    }
    p += sent;
    n -= static_cast<size_t>(sent);
  }
  return "";
}

std::string recv_all(int fd, char* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    const int rc = ::poll(&pfd, 1, remaining_ms(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) return "timed out";
    const ssize_t got = ::recv(fd, p, n, 0);
    if (got == 0) return "the server closed the connection";
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return "recv: " + errno_text(errno);
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
  return "";
}

}  // namespace

TcpStore::TcpStore(std::string host, int port, StoreOptions options)
    : host_(std::move(host)), port_(port), options_(options) {
  EMBER_CHECK(port > 0 && port <= 65535, "TcpStore: port ", port, " is not in [1, 65535]");
  std::lock_guard<std::mutex> lock(mutex_);
  connect(Clock::now() + options_.connect_timeout);
}

TcpStore::~TcpStore() { disconnect(); }

std::string TcpStore::address() const { return host_ + ":" + std::to_string(port_); }

void TcpStore::disconnect() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TcpStore::connect(Clock::time_point deadline) {
  const auto start = Clock::now();
  std::string last_error;
  // Ranks start in any order: a refused connection is retried (every 50 ms) until the deadline.
  do {
    AddrList addrs(host_, port_, /*passive=*/false, "TcpStore");
    for (addrinfo* a = addrs.head; a != nullptr && fd_ < 0; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) {
        last_error = errno_text(errno);
        continue;
      }
      int err = 0;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
          pollfd pfd{fd, POLLOUT, 0};
          if (::poll(&pfd, 1, std::min(remaining_ms(deadline), 1000)) == 1) {
            socklen_t len = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
          } else {
            err = ETIMEDOUT;
          }
        }
      }
      if (err != 0) {
        last_error = errno_text(err);
        ::close(fd);
        continue;
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fd_ = fd;
    }
    if (fd_ >= 0) {
      // Say hello; a server that answers with anything else is not an ember store.
      const std::string hello = store_wire::frame(store_wire::Hello, {store_wire::kStoreMagic});
      std::string err = send_all(fd_, hello.data(), hello.size(), deadline);
      char reply[5];
      if (err.empty()) err = recv_all(fd_, reply, 5, deadline);
      if (err.empty() && (get_u32(reply) != 1 || reply[4] != 0)) err = "not an ember store (bad hello reply)";
      if (err.empty()) return;
      last_error = err;
      disconnect();
    }
    if (Clock::now() + milliseconds(50) >= deadline) break;
    std::this_thread::sleep_for(milliseconds(50));
  } while (Clock::now() < deadline);
  const auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  EMBER_FAIL("store at ", address(), " not reachable after ", waited, " ms (last error: ", last_error,
             "): is rank 0 running, and are MASTER_ADDR and MASTER_PORT the same on every rank?");
}

std::string TcpStore::call(const std::string& what, const std::string& request, milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto deadline = Clock::now() + timeout;
  if (fd_ < 0) connect(std::min(deadline, Clock::now() + options_.connect_timeout));
  std::string err = send_all(fd_, request.data(), request.size(), deadline);
  char header[4];
  std::string body;
  if (err.empty()) err = recv_all(fd_, header, 4, deadline);
  if (err.empty()) {
    const uint32_t n = get_u32(header);
    if (n == 0 || n > (1u << 30)) {
      err = "bad reply length " + std::to_string(n);
    } else {
      body.resize(n);
      err = recv_all(fd_, body.data(), n, deadline);
    }
  }
  if (!err.empty()) {
    disconnect();  // the reply stream is out of step now; the next call reconnects
    if (err == "timed out")
      EMBER_FAIL("store ", what, " timed out after ", timeout.count(), " ms (store at ", address(), ")");
    EMBER_FAIL("store ", what, " failed: ", err, " (store at ", address(), ")");
  }
  if (body[0] != 0) EMBER_FAIL("store ", what, ": the server refused: ", body.substr(1), " (store at ", address(), ")");
  return body.substr(1);
}

namespace {
std::string quoted(const std::string& key) { return "('" + key + "')"; }
std::string quoted(const std::vector<std::string>& keys) {
  std::string out = "(";
  for (size_t i = 0; i < keys.size() && i < 4; ++i) out += (i ? ", '" : "'") + keys[i] + "'";
  if (keys.size() > 4) out += ", ... " + std::to_string(keys.size()) + " keys";
  return out + ")";
}
}  // namespace

void TcpStore::set(const std::string& key, const std::string& value) {
  call("set" + quoted(key), store_wire::frame(store_wire::Set, {key, value}), options_.timeout);
}

std::string TcpStore::get(const std::string& key) {
  return call("get" + quoted(key), store_wire::frame(store_wire::Get, {key}), options_.timeout);
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  const std::string reply = call("add" + quoted(key), store_wire::frame(store_wire::Add, {key, int64_bytes(delta)}),
                                 options_.timeout);
  EMBER_CHECK(reply.size() == 8, "store add", quoted(key), ": bad reply of ", reply.size(), " bytes");
  return bytes_int64(reply);
}

bool TcpStore::check(const std::vector<std::string>& keys) {
  EMBER_CHECK(!keys.empty(), "store check: no keys");
  const std::string reply = call("check" + quoted(keys), store_wire::frame(store_wire::Check, keys), options_.timeout);
  EMBER_CHECK(reply.size() == 1, "store check: bad reply of ", reply.size(), " bytes");
  return reply[0] != 0;
}

void TcpStore::wait(const std::vector<std::string>& keys, milliseconds timeout) {
  EMBER_CHECK(!keys.empty(), "store wait: no keys");
  call("wait" + quoted(keys), store_wire::frame(store_wire::Wait, keys), timeout);
}

std::string TcpStore::compare_set(const std::string& key, const std::string& expected, const std::string& desired) {
  return call("compare_set" + quoted(key), store_wire::frame(store_wire::CompareSet, {key, expected, desired}),
              options_.timeout);
}

}  // namespace ember::distributed
