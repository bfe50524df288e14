// The TCP store (distributed/store.h): every call against a real server on loopback.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "distributed/store.h"
#include "tests/launch/raw_socket.h"
#include "tests/test_util.h"

namespace ember::test {
namespace {

using distributed::PrefixStore;
using distributed::StoreLimits;
using distributed::StoreOptions;
using distributed::TcpStore;
using distributed::TcpStoreServer;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

StoreOptions quick(std::chrono::milliseconds timeout = 2000ms) {
  StoreOptions o;
  o.timeout = timeout;
  o.connect_timeout = 1000ms;
  return o;
}

// A port nobody listens on (bound, then released).
int unused_port() {
  TcpStoreServer probe("127.0.0.1", 0);
  return probe.port();
}

TEST(Store, SetGetAddCheckWaitCompareSet) {
  TcpStoreServer server("127.0.0.1", 0);
  ASSERT_GT(server.port(), 0);
  TcpStore store("127.0.0.1", server.port(), quick());
  store.set("a", "1");
  EXPECT_EQ(store.get("a"), "1");
  store.set("a", std::string("\0bytes\xff", 7));  // values are bytes, overwritten
  EXPECT_EQ(store.get("a"), std::string("\0bytes\xff", 7));
  EXPECT_EQ(store.add("n", 5), 5);
  EXPECT_EQ(store.add("n", -7), -2);
  EXPECT_EQ(store.get("n"), "-2");  // counters are decimal text, as in c10d
  EXPECT_TRUE(store.check({"a", "n"}));
  EXPECT_FALSE(store.check({"a", "missing"}));
  store.wait({"a", "n"}, 100ms);  // present: returns at once
  // compare_set: a missing key counts as "", and the reply is the value afterwards.
  EXPECT_EQ(store.compare_set("c", "", "first"), "first");
  EXPECT_EQ(store.compare_set("c", "", "second"), "first");  // lost: the key was taken
  EXPECT_EQ(store.compare_set("c", "first", "third"), "third");
  EXPECT_EQ(store.get("c"), "third");
  EXPECT_EQ(store.address(), "127.0.0.1:" + std::to_string(server.port()));
}

TEST(Store, GetAndWaitBlockUntilAnotherClientSets) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStore reader("127.0.0.1", server.port(), quick(5000ms));
  std::thread writer([&] {
    TcpStore w("127.0.0.1", server.port(), quick());
    std::this_thread::sleep_for(200ms);
    w.set("late", "here");
    std::this_thread::sleep_for(100ms);
    w.add("later", 1);
  });
  const auto start = Clock::now();
  EXPECT_EQ(reader.get("late"), "here");
  reader.wait({"late", "later"});
  EXPECT_GE(Clock::now() - start, 250ms);
  writer.join();
}

TEST(Store, GetTimesOutNamingTheKeyAndTheServer) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStore store("127.0.0.1", server.port(), quick(300ms));
  const auto start = Clock::now();
  expect_error([&] { store.get("never"); },
               {"store get('never') timed out after 300 ms", "127.0.0.1:" + std::to_string(server.port())});
  expect_error([&] { store.wait({"x", "y"}, 200ms); }, {"store wait('x', 'y') timed out after 200 ms"});
  EXPECT_LT(Clock::now() - start, 3s);
  // The client reconnects after a timeout, and the server answers it.
  store.set("after", "ok");
  EXPECT_EQ(store.get("after"), "ok");
}

TEST(Store, ConnectingToNobodyFailsWithinItsDeadline) {
  const int port = unused_port();
  const auto start = Clock::now();
  expect_error([&] { TcpStore("127.0.0.1", port, quick()); },
               {"store at 127.0.0.1:" + std::to_string(port) + " not reachable after", "MASTER_ADDR"});
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 900ms);  // it retried until the deadline...
  EXPECT_LT(took, 3s);     // ...and not past it
}

TEST(Store, AClientStartedBeforeTheServerConnectsOnceItListens) {
  const int port = unused_port();
  std::unique_ptr<TcpStoreServer> server;
  std::thread late([&] {
    std::this_thread::sleep_for(300ms);
    server = std::make_unique<TcpStoreServer>("127.0.0.1", port);
  });
  StoreOptions o = quick();
  o.connect_timeout = 5000ms;
  TcpStore store("127.0.0.1", port, o);
  late.join();
  store.set("k", "v");
  EXPECT_EQ(store.get("k"), "v");
}

TEST(Store, TheServerBindsOnlyTheAddressItIsGiven) {
  TcpStoreServer server("127.0.0.1", 0);
  // 127.0.0.2 is this machine too; a server bound to 0.0.0.0 would answer there.
  RawSocket other(server.port(), "127.0.0.2");
  EXPECT_FALSE(other.ok()) << "the server listens on more than 127.0.0.1";
  expect_error([&] { TcpStoreServer("192.0.2.1", 0); }, {"cannot listen on 192.0.2.1:0"});  // not ours
  TcpStoreServer taken_check("127.0.0.1", 0);
  expect_error([&] { TcpStoreServer("127.0.0.1", taken_check.port()); },
               {"cannot listen on 127.0.0.1:" + std::to_string(taken_check.port())});
}

TEST(Store, OversizedKeysAndValuesCloseOnlyThatConnection) {
  StoreLimits limits;
  limits.max_key_bytes = 16;
  limits.max_value_bytes = 64;
  TcpStoreServer server("127.0.0.1", 0, limits);
  TcpStore store("127.0.0.1", server.port(), quick());
  expect_error([&] { store.set(std::string(17, 'k'), "v"); }, {"store set", "failed"});
  expect_error([&] { store.set("k", std::string(65, 'v')); }, {"store set('k') failed"});
  store.set(std::string(16, 'k'), std::string(64, 'v'));  // at the limits: fine
  EXPECT_EQ(store.get(std::string(16, 'k')), std::string(64, 'v'));
  EXPECT_GE(server.num_rejected(), 2);
}

TEST(Store, AFullStoreRefusesNewBytesButKeepsServing) {
  StoreLimits limits;
  limits.max_total_bytes = 100;
  TcpStoreServer server("127.0.0.1", 0, limits);
  TcpStore store("127.0.0.1", server.port(), quick());
  store.set("a", std::string(60, 'x'));
  expect_error([&] { store.set("b", std::string(60, 'x')); }, {"store full", "max_total_bytes = 100"});
  store.set("a", std::string(90, 'y'));  // replacing a value frees its old bytes
  EXPECT_EQ(store.get("a").size(), 90u);
}

TEST(Store, AddOnANonIntegerIsAnError) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStore store("127.0.0.1", server.port(), quick());
  store.set("text", "abc");
  expect_error([&] { store.add("text", 1); }, {"add: the value of 'text' is not an integer"});
  EXPECT_EQ(store.add("fresh", 3), 3);  // the connection is still fine
}

TEST(Store, ConcurrentAddsFromManyClientsAllCount) {
  TcpStoreServer server("127.0.0.1", 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      TcpStore s("127.0.0.1", server.port(), quick());
      for (int i = 0; i < 50; ++i) s.add("count", 1);
    });
  for (auto& t : threads) t.join();
  TcpStore s("127.0.0.1", server.port(), quick());
  EXPECT_EQ(s.add("count", 0), 400);
}

TEST(Store, PrefixStoreKeepsNamespacesApart) {
  TcpStoreServer server("127.0.0.1", 0);
  auto base = std::make_shared<TcpStore>("127.0.0.1", server.port(), quick());
  PrefixStore a("a", base), b("b", base);
  a.set("k", "from a");
  b.set("k", "from b");
  EXPECT_EQ(a.get("k"), "from a");
  EXPECT_EQ(b.get("k"), "from b");
  EXPECT_EQ(base->get("a/k"), "from a");
  EXPECT_TRUE(a.check({"k"}));
  EXPECT_FALSE(a.check({"b/k"}));
}

TEST(Store, ARequestBeforeHelloIsDroppedUnexecuted) {
  const int port = unused_port();
  TcpStoreServer server("127.0.0.1", port);
  RawSocket raw(port);
  ASSERT_TRUE(raw.ok());
  raw.send(distributed::store_wire::frame(distributed::store_wire::Set, {"k", "v"}));
  EXPECT_TRUE(raw.closed_by_peer(2000));
  TcpStore store("127.0.0.1", port, quick());
  EXPECT_FALSE(store.check({"k"})) << "a request before hello must not be executed";
}

}  // namespace
}  // namespace ember::test
