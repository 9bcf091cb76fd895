// End to end: several real client processes (tests/e2e_client.cc, each with
// several threads, through the client library) against real latchkeyd
// processes. Mutual exclusion and no lost update under contention, with
// recalls; a holder SIGKILLed (its lock comes back after its lease); a paused
// holder's late write fenced; latchkeyd SIGKILLed and restarted mid-run
// (holders reclaim; nothing acknowledged is lost); two latchkeyd nodes.
#include <gtest/gtest.h>
#include <poll.h>
#include <nlohmann/json.hpp>

#include "net/client.h"
#include "tests/latchkeyd_harness.h"

namespace latchkey::net {
namespace {

using namespace std::chrono_literals;
using core::Mode;
using core::Portion;

// A child process with its stdin and stdout on pipes.
class Subprocess {
 public:
  explicit Subprocess(std::vector<std::string> args) {
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::close(in[1]);
      ::close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }
  ~Subprocess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (stdin_ >= 0) ::close(stdin_);
    if (stdout_ >= 0) ::close(stdout_);
  }
  // The next line of its output, or "" after `timeout` or at its end.
  std::string ReadLine(std::chrono::milliseconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{stdout_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
      char buf[4096];
      ssize_t n = ::read(stdout_, buf, sizeof buf);
      if (n <= 0) return "";
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }
  void WriteLine(const std::string& line) {
    std::string l = line + "\n";
    EXPECT_EQ(::write(stdin_, l.data(), l.size()), static_cast<ssize_t>(l.size()));
  }
  void Signal(int signal) { ::kill(pid_, signal); }
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1;
  std::string buffer_;
};

std::vector<std::string> ClientArgs(const std::vector<std::uint16_t>& ports, int process_id) {
  std::vector<std::string> args = {E2E_CLIENT_PATH};
  for (auto p : ports) {
    args.push_back("--store");
    args.push_back("127.0.0.1:" + std::to_string(p));
  }
  args.insert(args.end(), {"--secret", kSecret, "--process-id", std::to_string(process_id)});
  return args;
}

std::unique_ptr<Client> Reader(const std::vector<std::uint16_t>& ports, std::uint64_t id) {
  ClientOptions o;
  for (auto p : ports) o.stores.push_back("127.0.0.1:" + std::to_string(p));
  o.process_id = id;
  o.secret = kSecret;
  o.connect_timeout = 10s;
  auto c = Client::Connect(o);
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? std::move(c.value()) : nullptr;
}

// The sum of the "counter" attributes of sessions 1..n.
long CounterSum(Client& c, int sessions) {
  long total = 0;
  for (core::SessionId s = 1; s <= static_cast<core::SessionId>(sessions); ++s) {
    Lock lock = c.Acquire(s, Portion::Whole(Mode::kShared), 20s);
    EXPECT_TRUE(lock.held()) << lock.status().message();
    if (!lock.held()) continue;
    auto v = lock.Get("counter");
    if (v.ok() && v.value()) total += std::stol(*v.value());
  }
  return total;
}

struct Counts {
  int committed = 0, failed = 0, unknown = 0, reconnects = 0;
};

// Runs `processes` counter clients to the end and adds up what they report.
Counts RunCounters(const std::vector<std::uint16_t>& ports, int processes, int threads,
                   int increments, int sessions, const std::function<void()>& meanwhile = {}) {
  std::vector<std::unique_ptr<Subprocess>> children;
  for (int p = 0; p < processes; ++p) {
    auto args = ClientArgs(ports, 100 + p);
    args.insert(args.end(), {"counter", "--threads", std::to_string(threads), "--increments",
                             std::to_string(increments), "--sessions", std::to_string(sessions)});
    children.push_back(std::make_unique<Subprocess>(args));
  }
  if (meanwhile) meanwhile();
  Counts total;
  for (auto& child : children) {
    std::string line = child->ReadLine(60s);
    EXPECT_FALSE(line.empty()) << "a counter client reported nothing";
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    total.committed += j.at("committed").get<int>();
    total.failed += j.at("failed").get<int>();
    total.unknown += j.at("unknown").get<int>();
    total.reconnects += j.at("reconnects").get<int>();
    EXPECT_EQ(child->Wait(), 0);
  }
  return total;
}

class EndToEnd : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && daemon_) std::fprintf(stderr, "latchkeyd log:\n%s", daemon_->Log().c_str());
  }
  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

// Four processes x four threads on three sessions: every lock moves between
// processes by recall, and the counters equal the acknowledged increments.
TEST_F(EndToEnd, SeveralProcessesUnderContentionLoseNoUpdate) {
  daemon_ = std::make_unique<Daemon>(dir_.path(), std::vector<std::string>{"--lease-ms", "1000"});
  ASSERT_NE(daemon_->port(), 0);
  Counts c = RunCounters({daemon_->port()}, 4, 4, 60, 3);
  EXPECT_EQ(c.failed, 0);
  EXPECT_EQ(c.unknown, 0);
  EXPECT_EQ(c.committed, 4 * 4 * 60);
  auto reader = Reader({daemon_->port()}, 1);
  ASSERT_TRUE(reader);
  EXPECT_EQ(CounterSum(*reader, 3), c.committed);
}

// A holder killed with SIGKILL never releases: its lock comes back to others
// after its lease (1 s here), not before, and its data is intact.
TEST_F(EndToEnd, AKilledHolderLosesItsLockAfterItsLease) {
  daemon_ = std::make_unique<Daemon>(dir_.path(), std::vector<std::string>{"--lease-ms", "1000"});
  ASSERT_NE(daemon_->port(), 0);
  auto args = ClientArgs({daemon_->port()}, 7);
  args.insert(args.end(), {"hold", "--session", "42"});
  Subprocess holder(args);
  ASSERT_EQ(holder.ReadLine(), "holding");
  holder.Signal(SIGKILL);
  holder.Wait();
  auto killed_at = std::chrono::steady_clock::now();
  auto other = Reader({daemon_->port()}, 8);
  ASSERT_TRUE(other);
  Lock lock = other->Acquire(42, Portion::Whole(Mode::kExclusive), 10s);
  auto waited = std::chrono::steady_clock::now() - killed_at;
  ASSERT_TRUE(lock.held()) << lock.status().message();
  EXPECT_GE(waited, 700ms);  // the lease, less what had run of it
  EXPECT_LT(waited, 5s);
}

// A holder paused (SIGSTOP) past its lease: another process takes the lock
// and commits; the paused one, resumed, tries its write: refused (fenced), and
// the other's value stands.
TEST_F(EndToEnd, APausedHoldersLateWriteIsFenced) {
  daemon_ = std::make_unique<Daemon>(dir_.path(), std::vector<std::string>{"--lease-ms", "1000"});
  ASSERT_NE(daemon_->port(), 0);
  auto args = ClientArgs({daemon_->port()}, 7);
  args.insert(args.end(), {"hold", "--session", "43"});
  Subprocess holder(args);
  ASSERT_EQ(holder.ReadLine(), "holding");
  holder.Signal(SIGSTOP);
  auto other = Reader({daemon_->port()}, 8);
  ASSERT_TRUE(other);
  {
    Lock lock = other->Acquire(43, Portion::Whole(Mode::kExclusive), 10s);
    ASSERT_TRUE(lock.held()) << lock.status().message();
    lock.Set("v", "from the new holder");
    ASSERT_TRUE(lock.Commit().ok());
  }
  holder.Signal(SIGCONT);
  holder.WriteLine("write from the paused holder");
  std::string answer = holder.ReadLine();
  EXPECT_NE(answer, "committed");
  EXPECT_TRUE(answer == "lock_lost" || answer == "unknown_outcome") << answer;
  Lock check = other->Acquire(43, Portion::Whole(Mode::kShared), 10s);
  ASSERT_TRUE(check.held());
  EXPECT_EQ(check.Get("v").value(), "from the new holder");
}

// latchkeyd is SIGKILLed in the middle of a counter run and restarted on the
// same port: clients reconnect and reclaim, and the final counters hold every
// acknowledged increment (plus at most the ones whose outcome was unknown).
TEST_F(EndToEnd, LatchkeydKilledAndRestartedMidRunLosesNothingAcknowledged) {
  std::vector<std::string> flags = {"--lease-ms", "1000", "--grace-ms", "1500"};
  daemon_ = std::make_unique<Daemon>(dir_.path(), flags);
  ASSERT_NE(daemon_->port(), 0);
  std::uint16_t port = daemon_->port();
  Counts c = RunCounters({port}, 3, 3, 400, 4, [&] {
    std::this_thread::sleep_for(300ms);
    daemon_->Signal(SIGKILL);
    auto fixed = flags;
    fixed.insert(fixed.end(), {"--listen", "127.0.0.1:" + std::to_string(port)});
    daemon_ = std::make_unique<Daemon>(dir_.path(), fixed);
    ASSERT_EQ(daemon_->port(), port);
  });
  EXPECT_GT(c.committed, 0);
  EXPECT_GE(c.reconnects, 3) << "every client should have lived through the restart";
  auto reader = Reader({port}, 1);
  ASSERT_TRUE(reader);
  long sum = CounterSum(*reader, 4);
  EXPECT_GE(sum, c.committed) << "acknowledged increments lost";
  EXPECT_LE(sum, c.committed + c.unknown);
  EXPECT_EQ(c.committed + c.failed + c.unknown, 3 * 3 * 400);
  EXPECT_NE(daemon_->Log().find("event=recovered"), std::string::npos);
}

// Two latchkeyd nodes: sessions spread over both (B8), same guarantees.
TEST_F(EndToEnd, TwoStoreNodesShareTheSessions) {
  TempDir second_dir;
  daemon_ = std::make_unique<Daemon>(dir_.path(), std::vector<std::string>{"--node-id", "0"});
  Daemon second(second_dir.path(), {"--node-id", "1"});
  ASSERT_NE(daemon_->port(), 0);
  ASSERT_NE(second.port(), 0);
  std::vector<std::uint16_t> ports = {daemon_->port(), second.port()};
  Counts c = RunCounters(ports, 3, 3, 50, 6);
  EXPECT_EQ(c.failed + c.unknown, 0);
  auto reader = Reader(ports, 1);
  ASSERT_TRUE(reader);
  EXPECT_EQ(CounterSum(*reader, 6), c.committed);
  std::set<std::uint32_t> nodes;
  for (core::SessionId s = 1; s <= 6; ++s) nodes.insert(core::StoreForSession(s, 2));
  EXPECT_EQ(nodes.size(), 2u);
  // Each node logged grants for the sessions it owns.
  EXPECT_NE(daemon_->Log().find("authenticated"), std::string::npos);
  EXPECT_NE(second.Log().find("authenticated"), std::string::npos);
}

}  // namespace
}  // namespace latchkey::net
