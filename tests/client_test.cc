// The client library (net/client.h) against real latchkeyd processes on
// loopback ports: locking and committing, the process-level lock cached
// between requests, recall between processes, timeouts, try-locks, a lock
// lost to an administrator, a handle moved between threads, no lost update
// under contention from many threads, a store restart with reclaim, several
// store nodes, and configuration errors.
#include "net/client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "net/auth.h"
#include "net/codec.h"
#include "tests/latchkeyd_harness.h"
#include "tests/raw_client.h"

namespace latchkey::net {
namespace {

using namespace std::chrono_literals;
using core::Mode;
using core::Portion;

ClientOptions Options(std::vector<std::uint16_t> ports, std::uint64_t process_id) {
  ClientOptions o;
  for (auto p : ports) o.stores.push_back("127.0.0.1:" + std::to_string(p));
  o.process_id = process_id;
  o.secret = kSecret;
  o.connect_timeout = 3000ms;
  return o;
}

std::unique_ptr<Client> ConnectOrDie(std::vector<std::uint16_t> ports, std::uint64_t process_id) {
  auto c = Client::Connect(Options(std::move(ports), process_id));
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? std::move(c.value()) : nullptr;
}

// Sends one message as the administrator.
bool AdminSend(std::uint16_t port, const core::Message& message) {
  RawClient admin(port);
  auto welcome = admin.Authenticate(1, 1, Role::kAdmin);
  bool ok = welcome && std::holds_alternative<WelcomeFrame>(*welcome) && admin.Send(message);
  std::this_thread::sleep_for(50ms);  // let it be handled before closing
  return ok;
}

class ClientTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    daemon_ = std::make_unique<Daemon>(dir_.path(), std::move(extra));
    ASSERT_NE(daemon_->port(), 0) << daemon_->Log();
  }
  void TearDown() override {
    if (HasFailure() && daemon_) std::fprintf(stderr, "latchkeyd log:\n%s", daemon_->Log().c_str());
  }
  std::uint16_t port() const { return daemon_->port(); }
  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(ClientTest, LockSetCommitThenReadBackFromTheCachedLock) {
  Start();
  auto client = ConnectOrDie({port()}, 1);
  ASSERT_TRUE(client);
  {
    Lock lock = client->Acquire(7, Portion::Whole(Mode::kExclusive), 2s);
    ASSERT_TRUE(lock.held()) << lock.status().message();
    auto cart = lock.Get("cart");
    ASSERT_TRUE(cart.ok());
    EXPECT_FALSE(cart.value().has_value());
    ASSERT_TRUE(lock.Set("cart", "3 items").ok());
    ASSERT_TRUE(lock.Set("visits", "1").ok());
    Status committed = lock.Commit();
    ASSERT_TRUE(committed.ok()) << committed.message();
    EXPECT_FALSE(lock.held());
  }
  std::uint64_t acquires = client->stats().acquires;
  {
    Lock lock = client->Acquire(7, Portion::Of({"cart"}, Mode::kShared), 2s);
    ASSERT_TRUE(lock.held());
    auto cart = lock.Get("cart");
    ASSERT_TRUE(cart.ok());
    EXPECT_EQ(cart.value(), "3 items");
    // Outside the portion: refused, not silently read.
    auto visits = lock.Get("visits");
    ASSERT_FALSE(visits.ok());
    EXPECT_EQ(LockErrorOf(visits.status()), LockError::kRejected);
    EXPECT_FALSE(lock.Set("cart", "x").ok());  // shared: read-only
  }                                            // rolled back by the guard
  // R6: the process kept the session's lock; no new request went to the store.
  EXPECT_EQ(client->stats().acquires, acquires);
  EXPECT_EQ(client->stats().commits, 1u);
}

TEST_F(ClientTest, AnotherProcessGetsTheLockByRecallAndSeesCommittedData) {
  Start();
  auto a = ConnectOrDie({port()}, 1);
  auto b = ConnectOrDie({port()}, 2);
  ASSERT_TRUE(a && b);
  {
    Lock lock = a->Acquire(3, Portion::Whole(Mode::kExclusive), 2s);
    ASSERT_TRUE(lock.held());
    ASSERT_TRUE(lock.Set("n", "41").ok());
    ASSERT_TRUE(lock.Commit().ok());
  }
  Lock lock = b->Acquire(3, Portion::Whole(Mode::kExclusive), 2s);
  ASSERT_TRUE(lock.held()) << lock.status().message();
  auto n = lock.Get("n");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), "41");
  EXPECT_EQ(a->stats().recalls, 1u);  // R7: a gave the lock back when asked
}

TEST_F(ClientTest, TimeoutAndTryLockWhileAnotherThreadHolds) {
  Start();
  auto a = ConnectOrDie({port()}, 1);
  auto b = ConnectOrDie({port()}, 2);
  ASSERT_TRUE(a && b);
  Lock held = a->Acquire(5, Portion::Whole(Mode::kExclusive), 2s);
  ASSERT_TRUE(held.held());
  auto start = std::chrono::steady_clock::now();
  Lock waited = b->Acquire(5, Portion::Whole(Mode::kExclusive), 150ms);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(waited.held());
  EXPECT_EQ(LockErrorOf(waited.status()), LockError::kTimeout) << waited.status().message();
  EXPECT_GE(took, 140ms);
  EXPECT_LT(took, 1500ms);
  Lock tried = b->TryAcquire(5, Portion::Whole(Mode::kExclusive));
  EXPECT_FALSE(tried.held());
  EXPECT_EQ(LockErrorOf(tried.status()), LockError::kBusy) << tried.status().message();
  // Within one process, a non-overlapping portion is granted alongside (R9).
  Lock other = a->Acquire(5, Portion::Of({"z"}, Mode::kExclusive), 100ms);
  EXPECT_FALSE(other.held());  // `held` has the whole session
  EXPECT_EQ(LockErrorOf(other.status()), LockError::kTimeout);
  ASSERT_TRUE(held.Rollback().ok());
  Lock now = b->Acquire(5, Portion::Whole(Mode::kExclusive), 2s);
  EXPECT_TRUE(now.held()) << now.status().message();
}

TEST_F(ClientTest, ForceReleaseTellsTheHolderItsLockIsLost) {
  Start();
  auto a = ConnectOrDie({port()}, 1);
  ASSERT_TRUE(a);
  Lock lock = a->Acquire(9, Portion::Whole(Mode::kExclusive), 2s);
  ASSERT_TRUE(lock.held());
  ASSERT_TRUE(lock.Set("k", "v").ok());
  ASSERT_TRUE(AdminSend(port(), core::ForceRelease{9}));
  Status s;
  for (int i = 0; i < 100; ++i) {  // the Revoked arrives asynchronously
    s = lock.Set("k", "v2");
    if (!s.ok()) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(LockErrorOf(s), LockError::kLockLost) << s.message();
  Status c = lock.Commit();
  EXPECT_EQ(LockErrorOf(c), LockError::kLockLost) << c.message();
  // The session is usable again, without the uncommitted write.
  Lock again = a->Acquire(9, Portion::Whole(Mode::kExclusive), 3s);
  ASSERT_TRUE(again.held()) << again.status().message();
  auto k = again.Get("k");
  ASSERT_TRUE(k.ok());
  EXPECT_FALSE(k.value().has_value());
}

TEST_F(ClientTest, ALockMovesToAnotherThreadAndCommitsThere) {
  Start();
  auto a = ConnectOrDie({port()}, 1);
  ASSERT_TRUE(a);
  Lock lock = a->Acquire(11, Portion::Whole(Mode::kExclusive), 2s);
  ASSERT_TRUE(lock.held());
  Status committed;
  std::thread other([&, moved = std::move(lock)]() mutable {
    moved.Set("where", "other thread");
    committed = moved.Commit();
  });
  other.join();
  EXPECT_TRUE(committed.ok()) << committed.message();
  Lock check = a->Acquire(11, Portion::Whole(Mode::kShared), 2s);
  ASSERT_TRUE(check.held());
  EXPECT_EQ(check.Get("where").value(), "other thread");
}

// Counter workload over TCP: three processes x four threads increment four
// sessions' counters; every committed increment is in the final values.
TEST_F(ClientTest, ManyThreadsInSeveralProcessesLoseNoUpdate) {
  Start();
  constexpr int kProcesses = 3, kThreads = 4, kIncrements = 60, kSessions = 4;
  std::vector<std::unique_ptr<Client>> clients;
  for (int p = 0; p < kProcesses; ++p) clients.push_back(ConnectOrDie({port()}, 10 + p));
  std::atomic<int> committed{0}, failed{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < kProcesses; ++p) {
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, p, t] {
        for (int i = 0; i < kIncrements; ++i) {
          core::SessionId s = 1 + static_cast<core::SessionId>((p * 7 + t * 3 + i) % kSessions);
          Lock lock = clients[p]->Acquire(s, Portion::Of({"counter"}, Mode::kExclusive), 10s);
          if (!lock.held()) {
            ++failed;
            continue;
          }
          auto v = lock.Get("counter");
          long n = v.ok() && v.value() ? std::stol(*v.value()) : 0;
          lock.Set("counter", std::to_string(n + 1));
          if (lock.Commit().ok()) {
            ++committed;
          } else {
            ++failed;
          }
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  long total = 0;
  for (core::SessionId s = 1; s <= kSessions; ++s) {
    Lock lock = clients[0]->Acquire(s, Portion::Whole(Mode::kShared), 10s);
    ASSERT_TRUE(lock.held()) << lock.status().message();
    auto v = lock.Get("counter");
    ASSERT_TRUE(v.ok());
    total += v.value() ? std::stol(*v.value()) : 0;
  }
  EXPECT_EQ(total, committed.load());
  EXPECT_EQ(committed.load(), kProcesses * kThreads * kIncrements);
}

// B7: latchkeyd restarts (SIGKILL) while the process caches a lock; the
// client reconnects and reclaims it, and the data is all there.
TEST_F(ClientTest, StoreRestartIsSurvivedByReconnectAndReclaim) {
  Start({"--grace-ms", "1500"});
  auto a = ConnectOrDie({port()}, 1);
  ASSERT_TRUE(a);
  {
    Lock lock = a->Acquire(21, Portion::Whole(Mode::kExclusive), 2s);
    ASSERT_TRUE(lock.held());
    lock.Set("before", "restart");
    ASSERT_TRUE(lock.Commit().ok());
  }
  std::uint16_t old_port = port();
  daemon_->Signal(SIGKILL);
  Start({"--grace-ms", "1500", "--listen", "127.0.0.1:" + std::to_string(old_port)});
  ASSERT_EQ(port(), old_port);
  Lock lock = a->Acquire(21, Portion::Whole(Mode::kExclusive), 5s);
  ASSERT_TRUE(lock.held()) << lock.status().message();
  EXPECT_EQ(lock.Get("before").value(), "restart");
  lock.Set("after", "restart");
  Status s = lock.Commit();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_GE(a->stats().reconnects, 1u);
}

// B8: two store nodes; sessions live on StoreForSession(id, 2) and both
// nodes carry some.
TEST_F(ClientTest, SessionsAreSpreadOverSeveralStoreNodes) {
  TempDir second_dir;
  Start({"--node-id", "0"});
  Daemon second(second_dir.path(), {"--node-id", "1"});
  ASSERT_NE(second.port(), 0);
  auto a = ConnectOrDie({port(), second.port()}, 1);
  auto b = ConnectOrDie({port(), second.port()}, 2);
  ASSERT_TRUE(a && b);
  std::set<std::uint32_t> nodes;
  for (core::SessionId s = 1; s <= 8; ++s) {
    nodes.insert(core::StoreForSession(s, 2));
    Lock lock = a->Acquire(s, Portion::Whole(Mode::kExclusive), 2s);
    ASSERT_TRUE(lock.held()) << lock.status().message();
    lock.Set("v", std::to_string(s));
    ASSERT_TRUE(lock.Commit().ok());
  }
  EXPECT_EQ(nodes.size(), 2u);
  for (core::SessionId s = 1; s <= 8; ++s) {
    Lock lock = b->Acquire(s, Portion::Whole(Mode::kShared), 2s);
    ASSERT_TRUE(lock.held()) << lock.status().message();
    EXPECT_EQ(lock.Get("v").value(), std::to_string(s));
  }
  // A node list in the wrong order is refused by name.
  auto swapped = Client::Connect(Options({second.port(), port()}, 3));
  ASSERT_FALSE(swapped.ok());
  EXPECT_NE(swapped.status().message().find("but it is listed as node"), std::string::npos)
      << swapped.status().message();
}

TEST_F(ClientTest, ConfigurationErrorsAreClear) {
  Start();
  ClientOptions wrong = Options({port()}, 1);
  wrong.secret = "not the secret";
  wrong.connect_timeout = 500ms;
  auto c = Client::Connect(wrong);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("auth_failed"), std::string::npos) << c.status().message();
  ClientOptions nobody = Options({1}, 1);  // nothing listens on port 1
  nobody.connect_timeout = 300ms;
  c = Client::Connect(nobody);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("node 0 (127.0.0.1:1)"), std::string::npos)
      << c.status().message();
  ClientOptions bad = Options({port()}, 1);
  bad.stores = {"no-port-here"};
  c = Client::Connect(bad);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("expected host:port"), std::string::npos);
  // An identity key instead of the master secret works too.
  ClientOptions keyed = Options({port()}, 4);
  keyed.secret.clear();
  Mac key = IdentityKey(kSecret, Role::kProcess, 4);
  static const char* kHex = "0123456789abcdef";
  for (std::uint8_t byte : key) {
    keyed.identity_key_hex += kHex[byte >> 4];
    keyed.identity_key_hex += kHex[byte & 15];
  }
  auto k = Client::Connect(keyed);
  ASSERT_TRUE(k.ok()) << k.status().message();
}

TEST_F(ClientTest, LocksOutlivingTheClientFailCleanly) {
  Start();
  auto a = ConnectOrDie({port()}, 1);
  Lock lock = a->Acquire(2, Portion::Whole(Mode::kExclusive), 2s);
  ASSERT_TRUE(lock.held());
  a.reset();  // gives the process-level lock back
  EXPECT_EQ(LockErrorOf(lock.Set("k", "v")), LockError::kUnavailable);
  EXPECT_EQ(LockErrorOf(lock.Commit()), LockError::kUnavailable);
  // The release reached the store: another process gets the lock at once.
  auto b = ConnectOrDie({port()}, 2);
  auto start = std::chrono::steady_clock::now();
  Lock other = b->Acquire(2, Portion::Whole(Mode::kExclusive), 2s);
  EXPECT_TRUE(other.held());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
}

// A commit latchkeyd refuses (a value above --max-attribute-value-bytes)
// fails at once with the server's reason, applies nothing, and leaves the
// session usable, here and for other processes.
TEST_F(ClientTest, ACommitRefusedByALimitFailsAtOnceWithTheServersReason) {
  Start({"--max-attribute-value-bytes", "16"});
  auto a = ConnectOrDie({port()}, 1);
  auto b = ConnectOrDie({port()}, 2);
  ASSERT_TRUE(a && b);
  Lock lock = a->Acquire(31, Portion::Whole(Mode::kExclusive), 2s);
  ASSERT_TRUE(lock.held());
  ASSERT_TRUE(lock.Set("big", std::string(100, 'x')).ok());  // buffered: not checked yet
  auto start = std::chrono::steady_clock::now();
  Status refused = lock.Commit();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(LockErrorOf(refused), LockError::kRejected) << refused.message();
  EXPECT_NE(refused.message().find("attribute_too_large"), std::string::npos) << refused.message();
  EXPECT_EQ(lock.status().message(), refused.message());
  Lock again = a->Acquire(31, Portion::Whole(Mode::kExclusive), 2s);
  ASSERT_TRUE(again.held()) << again.status().message();
  EXPECT_FALSE(again.Get("big").value().has_value());
  again.Set("small", "ok");
  ASSERT_TRUE(again.Commit().ok());
  Lock other = b->Acquire(31, Portion::Whole(Mode::kShared), 2s);
  ASSERT_TRUE(other.held()) << other.status().message();
  EXPECT_EQ(other.Get("small").value(), "ok");
}

// An Acquire latchkeyd refuses (the process is at --max-sessions-per-process)
// fails at once with the reason instead of waiting out its timeout.
TEST_F(ClientTest, AnAcquireRefusedByALimitFailsAtOnce) {
  Start({"--max-sessions-per-process", "1"});
  ClientOptions o = Options({port()}, 1);
  o.idle_release.reset();  // keep the first session
  auto a = Client::Connect(o);
  ASSERT_TRUE(a.ok());
  {
    Lock first = a.value()->Acquire(1, Portion::Whole(Mode::kExclusive), 2s);
    ASSERT_TRUE(first.held());
    ASSERT_TRUE(first.Commit().ok());
    EXPECT_TRUE(first.status().ok());  // committed: not held, nothing wrong
    EXPECT_EQ(LockErrorOf(first.Commit()), LockError::kRejected);  // twice: not held
  }
  auto start = std::chrono::steady_clock::now();
  Lock second = a.value()->Acquire(2, Portion::Whole(Mode::kExclusive), 5s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  ASSERT_FALSE(second.held());
  EXPECT_EQ(LockErrorOf(second.status()), LockError::kRejected);
  EXPECT_NE(second.status().message().find("too_many_sessions"), std::string::npos)
      << second.status().message();
  EXPECT_EQ(LockErrorOf(a.value()->TryAcquire(1, Portion::Whole(Mode::kShared)).status()),
            LockError::kNone);
}

// R8: with a short idle release the process gives a session back on its own.
TEST_F(ClientTest, IdleReleaseGivesTheLockBackWithoutARecall) {
  Start();
  ClientOptions o = Options({port()}, 1);
  o.idle_release = 50ms;
  auto a = Client::Connect(o);
  auto b = ConnectOrDie({port()}, 2);
  ASSERT_TRUE(a.ok() && b);
  {
    Lock lock = a.value()->Acquire(3, Portion::Whole(Mode::kExclusive), 2s);
    ASSERT_TRUE(lock.held());
    ASSERT_TRUE(lock.Commit().ok());
  }
  std::this_thread::sleep_for(300ms);
  Lock other = b->Acquire(3, Portion::Whole(Mode::kExclusive), 2s);
  ASSERT_TRUE(other.held());
  EXPECT_EQ(a.value()->stats().recalls, 0u);  // released before anyone asked
}

}  // namespace
}  // namespace latchkey::net
