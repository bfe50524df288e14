// A small key-value store over TCP that the ranks of a job meet through (rendezvous): they publish
// their addresses, the NCCL unique id, which GPU they took, and wait for each other. It plays the
// part of c10d's TCPStore/PrefixStore in PyTorch.
//
//   // rank 0 (or the launcher): the server, bound only to the address it is given
//   TcpStoreServer server("127.0.0.1", 29500);
//   // every rank, rank 0 included: a client
//   TcpStore store("127.0.0.1", 29500);
//   store.set("rank/1/host", "node07");
//   std::string v = store.get("rank/1/host");   // waits until the key exists (or times out)
//   int64_t n = store.add("arrived", 1);        // atomic counter
//
// Every client call has a deadline (StoreOptions::timeout) and throws ember::Error naming the call,
// the key and the server's address when it passes; connecting retries until its own deadline
// (StoreOptions::connect_timeout) so ranks may start in any order. Values are bytes in a
// std::string.
//
// The server must survive any client: every message is length-bounded (StoreLimits), a message
// started and not finished in time closes that connection, connections are capped (the oldest
// one that never said hello is evicted first), and a bad message closes only its own connection.
// It runs one thread with poll(); no call of a client can block it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ember::distributed {

// The interface rendezvous code uses (TcpStore, PrefixStore, and in tests any fake).
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::string& value) = 0;
  // Waits until the key exists, then returns its value.
  virtual std::string get(const std::string& key) = 0;
  // Adds delta to the integer stored at key (missing = 0; stored as decimal text) and returns the sum.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // True when every key exists; never waits.
  virtual bool check(const std::vector<std::string>& keys) = 0;
  // Waits until every key exists, or throws after `timeout`.
  virtual void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) = 0;
  void wait(const std::vector<std::string>& keys) { wait(keys, timeout()); }
  // Sets key to desired if its value is expected (a missing key counts as ""); returns the value
  // the key has afterwards, so the caller knows whether it won.
  virtual std::string compare_set(const std::string& key, const std::string& expected, const std::string& desired) = 0;
  virtual std::chrono::milliseconds timeout() const = 0;  // of each call
  virtual std::string address() const = 0;               // for error messages, e.g. "127.0.0.1:29500"
};

// What the server accepts. Anything beyond closes the offending connection (never the server).
// Worst-case memory is about max_connections * 2 * max_message_bytes() plus max_total_bytes.
struct StoreLimits {
  uint32_t max_key_bytes = 1024;
  uint32_t max_value_bytes = 1 << 20;    // 1 MiB: addresses and ids are bytes, not tensors
  uint32_t max_keys_per_call = 1024;     // of check and wait
  int max_connections = 1024;
  uint64_t max_total_bytes = 64ull << 20;  // keys + values held; a set past it is refused
  std::chrono::milliseconds hello_deadline{5000};    // a new connection must say hello within this
  std::chrono::milliseconds message_deadline{10000}; // a message once started must arrive within this

  uint32_t max_message_bytes() const;  // the largest well-formed request
};

// The server: one thread, poll() over the listening socket and the clients.
class TcpStoreServer {
 public:
  // Binds host:port (host is an address or a name; never widened to 0.0.0.0). port 0 picks a free
  // port (see port()). Throws naming host:port when it cannot listen there.
  TcpStoreServer(const std::string& host, int port, StoreLimits limits = {});
  ~TcpStoreServer();  // stops the thread and closes every connection
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  int port() const { return port_; }
  const std::string& host() const { return host_; }
  // For tests: connections open now, and connections closed for breaking a limit so far.
  int num_connections() const;
  int64_t num_rejected() const;

 private:
  struct State;
  void run();

  std::string host_;
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  std::unique_ptr<State> state_;
  std::thread thread_;
};

struct StoreOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};         // each call
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};  // retrying a refused connect
};

// A client. Thread-safe (one call at a time per client). After a failed call the connection is
// dropped and the next call connects again.
class TcpStore final : public Store {
 public:
  // Connects now (retrying until options.connect_timeout): throws "store at HOST:PORT not reachable
  // after N ms" when nobody listens there.
  TcpStore(std::string host, int port, StoreOptions options = {});
  ~TcpStore() override;

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  using Store::wait;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  std::string compare_set(const std::string& key, const std::string& expected, const std::string& desired) override;
  std::chrono::milliseconds timeout() const override { return options_.timeout; }
  std::string address() const override;

 private:
  // Sends one request and returns the reply's payload; throws on error, timeout or a lost server.
  std::string call(const std::string& what, const std::string& request, std::chrono::milliseconds timeout);
  void connect(std::chrono::steady_clock::time_point deadline);
  void disconnect();

  std::string host_;
  int port_;
  StoreOptions options_;
  int fd_ = -1;
  std::mutex mutex_;
};

// Every key of `base` under "prefix/": separate namespaces on one server (e.g. one per communicator).
class PrefixStore final : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> base) : prefix_(std::move(prefix) + "/"), base_(std::move(base)) {}
  void set(const std::string& key, const std::string& value) override { base_->set(prefix_ + key, value); }
  std::string get(const std::string& key) override { return base_->get(prefix_ + key); }
  int64_t add(const std::string& key, int64_t delta) override { return base_->add(prefix_ + key, delta); }
  bool check(const std::vector<std::string>& keys) override { return base_->check(prefixed(keys)); }
  using Store::wait;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override {
    base_->wait(prefixed(keys), timeout);
  }
  std::string compare_set(const std::string& key, const std::string& expected, const std::string& desired) override {
    return base_->compare_set(prefix_ + key, expected, desired);
  }
  std::chrono::milliseconds timeout() const override { return base_->timeout(); }
  std::string address() const override { return base_->address(); }

 private:
  std::vector<std::string> prefixed(const std::vector<std::string>& keys) const {
    std::vector<std::string> out;
    for (const std::string& k : keys) out.push_back(prefix_ + k);
    return out;
  }
  std::string prefix_;
  std::shared_ptr<Store> base_;
};

// The wire format, shared by server and client (and the fuzz test, which builds hostile frames):
//   frame   = u32 length (little-endian) + body of that many bytes
//   request = u8 command + fields;  field = u32 length + bytes
//   reply   = u8 status (0 ok, 1 error) + payload (a value, 8 bytes of int64, 1 byte of bool, or
//             an error message)
// The first request on a connection must be Hello with kStoreMagic.
namespace store_wire {
enum Command : uint8_t { Hello = 1, Set = 2, Get = 3, Add = 4, Check = 5, Wait = 6, CompareSet = 7 };
inline constexpr const char* kStoreMagic = "ember-store-1";
std::string frame(Command command, const std::vector<std::string>& fields);
}  // namespace store_wire

}  // namespace ember::distributed
