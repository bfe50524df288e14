// Hostile clients against the store server (label fuzz): random bytes, huge lengths, half
// messages then silence, clients that never read, thousands of connections. After each, the
// server must still be alive and answer a real client promptly: never a crash, a hang, or a
// server starved by the attacker.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "distributed/store.h"
#include "tests/launch/raw_socket.h"

namespace ember::test {
namespace {

using distributed::StoreLimits;
using distributed::StoreOptions;
using distributed::TcpStore;
using distributed::TcpStoreServer;
namespace wire = distributed::store_wire;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string u32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

std::string hello() { return wire::frame(wire::Hello, {wire::kStoreMagic}); }

// A real client's round trip, bounded: the server is alive and not starved.
void expect_served(int port, const std::string& tag) {
  StoreOptions o;
  o.timeout = 3000ms;
  o.connect_timeout = 3000ms;
  const auto start = Clock::now();
  TcpStore store("127.0.0.1", port, o);
  store.set("probe/" + tag, tag);
  EXPECT_EQ(store.get("probe/" + tag), tag);
  EXPECT_LT(Clock::now() - start, 3s) << tag;
}

StoreLimits small_limits() {
  StoreLimits l;
  l.max_key_bytes = 64;
  l.max_value_bytes = 4096;
  l.max_keys_per_call = 16;
  l.max_connections = 64;
  l.hello_deadline = 500ms;
  l.message_deadline = 500ms;
  return l;
}

TEST(StoreFuzz, RandomBytesNeverHurtTheServer) {
  TcpStoreServer server("127.0.0.1", 0, small_limits());
  std::mt19937 rng(1234);
  for (int round = 0; round < 300; ++round) {
    RawSocket raw(server.port());
    ASSERT_TRUE(raw.ok());
    std::string bytes;
    switch (round % 4) {
      case 0:  // pure noise
        bytes.resize(rng() % 200);
        for (char& c : bytes) c = static_cast<char>(rng());
        break;
      case 1:  // a hello, then noise
        bytes = hello();
        for (uint32_t i = 0, n = rng() % 200; i < n; ++i) bytes.push_back(static_cast<char>(rng()));
        break;
      case 2: {  // a hello, then a well-framed request with random command and fields
        bytes = hello();
        std::string body(1, static_cast<char>(rng() % 10));
        for (uint32_t f = 0, nf = rng() % 5; f < nf; ++f) {
          const uint32_t len = rng() % 3 == 0 ? rng() : rng() % 80;  // some lie about their length
          body += u32(len);
          for (uint32_t i = 0; i < std::min<uint32_t>(len, 80); ++i) body.push_back(static_cast<char>(rng()));
        }
        bytes += u32(static_cast<uint32_t>(body.size())) + body;
        break;
      }
      default: {  // a valid request with one byte flipped
        bytes = hello() + wire::frame(wire::Set, {"key" + std::to_string(round), "value"});
        bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
        break;
      }
    }
    raw.send(bytes, 500);
    raw.recv(5);
    if (round % 50 == 0) expect_served(server.port(), "random" + std::to_string(round));
  }
  expect_served(server.port(), "random-end");
}

TEST(StoreFuzz, HugeLengthsAreRefusedAtOnce) {
  TcpStoreServer server("127.0.0.1", 0, small_limits());
  for (uint32_t length : {0xffffffffu, 0x7fffffffu, 1u << 24, 0u}) {
    RawSocket raw(server.port());
    ASSERT_TRUE(raw.ok());
    raw.send(hello());
    raw.recv(200);  // the hello's reply
    raw.send(u32(length) + "x");
    EXPECT_TRUE(raw.closed_by_peer(3000)) << "length " << length << " was not refused";
  }
  // A field that claims more bytes than its frame holds.
  RawSocket raw(server.port());
  raw.send(hello() + u32(9) + std::string(1, wire::Get) + u32(1000) + "abcd");
  EXPECT_TRUE(raw.closed_by_peer(3000));
  // Too many keys in one wait.
  std::vector<std::string> keys(17, "k");
  RawSocket many(server.port());
  many.send(hello() + wire::frame(wire::Wait, keys));
  EXPECT_TRUE(many.closed_by_peer(3000));
  expect_served(server.port(), "huge");
}

// Before its Hello a connection may announce nothing bigger than a Hello: a frame header claiming
// more is refused at once, not buffered until the hello deadline (here far away: 30 s).
TEST(StoreFuzz, NoBigFrameBeforeHello) {
  StoreLimits l = small_limits();
  l.hello_deadline = 30s;
  TcpStoreServer server("127.0.0.1", 0, l);
  RawSocket raw(server.port());
  ASSERT_TRUE(raw.ok());
  raw.send(u32(1000) + "x");
  EXPECT_TRUE(raw.closed_by_peer(3000)) << "a 1000-byte frame before the hello was buffered";
  expect_served(server.port(), "no-big-frame");
}

// Out of file descriptors, accept() fails while the listening socket stays readable: the server
// must not spin on it (measured as this process's CPU time while idle), and must serve again once
// descriptors are free.
TEST(StoreFuzz, RunningOutOfDescriptorsDoesNotSpin) {
  TcpStoreServer server("127.0.0.1", 0, small_limits());
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  int probe = ::dup(0);  // the lowest free descriptor: about how many are open
  ASSERT_GE(probe, 0);
  ::close(probe);
  // Clients in a child process (its own descriptors), connecting while this process, the
  // server's, has almost none left: their connections wait in the backlog, unacceptable.
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(probe + 2);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  const int port = server.port();
  const pid_t child = ::fork();
  if (child == 0) {
    setrlimit(RLIMIT_NOFILE, &old);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 32; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (fd >= 0) (void)::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    }
    ::sleep(2);
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  std::this_thread::sleep_for(300ms);  // the connections are in; the server has taken what it could
  const std::clock_t before = std::clock();
  std::this_thread::sleep_for(500ms);
  const double cpu_seconds = static_cast<double>(std::clock() - before) / CLOCKS_PER_SEC;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_LT(cpu_seconds, 0.25) << "the server spun while out of descriptors";
  expect_served(server.port(), "after-emfile");
}

TEST(StoreFuzz, HalfMessagesThenSilenceAreDropped) {
  TcpStoreServer server("127.0.0.1", 0, small_limits());
  std::vector<RawSocket> silent;
  for (int i = 0; i < 20; ++i) {
    silent.emplace_back(server.port());
    const std::string full = hello() + wire::frame(wire::Set, {"k", std::string(1000, 'v')});
    silent.back().send(i % 2 ? full.substr(0, 3) : full.substr(0, full.size() - 10));  // then nothing
  }
  expect_served(server.port(), "during-silence");  // served while they hang on
  for (RawSocket& s : silent) EXPECT_TRUE(s.closed_by_peer(3000)) << "a silent half message kept its connection";
  // Never said hello at all: dropped too.
  RawSocket mute(server.port());
  EXPECT_TRUE(mute.closed_by_peer(3000));
}

TEST(StoreFuzz, AClientThatNeverReadsItsRepliesCannotGrowTheServer) {
  TcpStoreServer server("127.0.0.1", 0, small_limits());
  {
    StoreOptions o;
    o.timeout = 2000ms;
    TcpStore store("127.0.0.1", server.port(), o);
    store.set("big", std::string(4096, 'b'));
  }
  RawSocket greedy(server.port());
  std::string requests = hello();
  // 10000 replies of 4 KiB are more than the kernel's socket buffers hold, so the server's own
  // reply queue would have to grow: instead it stops reading that client and then drops it.
  for (int i = 0; i < 10000; ++i) requests += wire::frame(wire::Get, {"big"});
  greedy.send(requests, 1000);  // may stop early when the server stops reading: fine
  expect_served(server.port(), "greedy");
  EXPECT_TRUE(greedy.closed_by_peer(3000)) << "a client pipelining without reading was not dropped";
}

TEST(StoreFuzz, ThousandsOfConnectionsDoNotLockOutARealClient) {
  TcpStoreServer server("127.0.0.1", 0, small_limits());  // at most 64 connections
  for (int wave = 0; wave < 10; ++wave) {
    std::vector<RawSocket> crowd;
    for (int i = 0; i < 200; ++i) crowd.emplace_back(server.port());  // never say hello
    expect_served(server.port(), "crowd" + std::to_string(wave));    // evicts the silent crowd
  }
  EXPECT_LE(server.num_connections(), 64);
  // Greeted clients that hold every slot: a newcomer is turned away with an error, not a hang.
  std::vector<RawSocket> squatters;
  for (int i = 0; i < 64; ++i) {
    squatters.emplace_back(server.port());
    squatters.back().send(hello());
    squatters.back().recv(100, 5);
  }
  StoreOptions o;
  o.timeout = 1000ms;
  o.connect_timeout = 1000ms;
  const auto start = Clock::now();
  EXPECT_THROW(TcpStore("127.0.0.1", server.port(), o), std::exception);
  EXPECT_LT(Clock::now() - start, 4s);
  squatters.clear();
  expect_served(server.port(), "after-squatters");
}

}  // namespace
}  // namespace ember::test
