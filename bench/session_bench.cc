// The "session requests" workload of ../shared/WORKLOAD.md on Latchkey,
// through the client library: P real OS processes of T threads each, against
// running latchkeyd node(s). Prints one JSON line with the workload's keys
// (the same as the Redis peer's, so the two can be compared side by side).
//
//   ./build/bench/session_bench --store 127.0.0.1:7420 --secret-file secret
//       [--sessions 1000] [--procs 4] [--threads 8] [--affinity 0.9]
//       [--dist uniform|zipf] [--zipf-s 0.99] [--duration 10 | --requests N]
//       [--seed 1] [--persistence LABEL]
//
// Choices the workload leaves open, and ours:
//   - the lock is the whole session, exclusive, through Client::Acquire: a
//     thread that finds the session busy waits in the store's queue (or the
//     process's) instead of retrying, so `retries` counts only Acquire
//     timeouts (10 s), which are retried;
//   - process p's sessions are cached in p (lock caching, R6): a request on a
//     session the process already holds costs one round trip (the fenced
//     commit); a request on a session another process holds recalls it (R7);
//   - the write is fenced by the token the store checks on the commit (R1).
// Exit status: 0 ok, 3 verification failed (lost updates or locks left), 1
// a run error.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/types.h"
#include "net/auth.h"
#include "net/client.h"

namespace {

namespace net = latchkey::net;
namespace core = latchkey::core;
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> stores;
  std::string secret_file;
  int sessions = 1000;
  int procs = 4;
  int threads = 8;
  double affinity = 0.9;
  std::string dist = "uniform";
  double zipf_s = 0.99;
  double duration = 10;
  std::uint64_t requests = 0;  // count mode when nonzero
  std::uint64_t seed = 1;
  std::string persistence = "unknown";
  std::string secret;
  std::int64_t idle_release_us = 60'000'000;  // < 0: until recalled
  bool release_when_contended = true;
};

constexpr int kAttributes = 8;
constexpr int kValueBytes = 64;
constexpr int kCounterDigits = 20;

// The workload's home function: the splitmix64 finalizer, mod P.
int Home(std::uint64_t session, int procs) {
  return static_cast<int>(core::Splitmix64(session) % static_cast<std::uint64_t>(procs));
}

std::string CounterValue(std::uint64_t counter, std::string_view rest) {
  char digits[kCounterDigits + 1];
  std::snprintf(digits, sizeof digits, "%020" PRIu64, counter);
  return std::string(digits) + std::string(rest);
}

std::string OtherValue(int session, int j) {
  std::string v = "s" + std::to_string(session) + "a" + std::to_string(j) + ":";
  v.resize(kValueBytes, '-');
  return v;
}

// A worker's random numbers: splitmix64 over a per-worker state.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    return core::Splitmix64(state_ - 0x9E3779B97F4A7C15ULL);
  }
  double Uniform01() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  std::uint64_t Below(std::uint64_t n) { return Next() % n; }

 private:
  std::uint64_t state_;
};

// Sessions to draw from: uniform, or Zipf weights 1/(s+1)^zipf_s restricted
// to the set.
struct SessionSet {
  std::vector<int> ids;
  std::vector<double> cdf;  // empty: uniform
  int Draw(Rng& r) const {
    if (cdf.empty()) return ids[r.Below(ids.size())];
    double u = r.Uniform01() * cdf.back();
    auto k = static_cast<std::size_t>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    return ids[std::min(k, ids.size() - 1)];
  }
};

SessionSet MakeSet(const Options& o, std::vector<int> ids) {
  SessionSet set;
  set.ids = std::move(ids);
  if (o.dist == "zipf") {
    double acc = 0;
    for (int s : set.ids) {
      acc += 1.0 / std::pow(static_cast<double>(s) + 1.0, o.zipf_s);
      set.cdf.push_back(acc);
    }
  }
  return set;
}

net::ClientOptions ClientFor(const Options& o, std::uint64_t process_id) {
  net::ClientOptions c;
  c.stores = o.stores;
  c.process_id = process_id;
  c.secret = o.secret;
  c.connect_timeout = std::chrono::milliseconds(10000);
  if (o.idle_release_us < 0) {
    c.idle_release.reset();
  } else {
    c.idle_release = std::chrono::microseconds(o.idle_release_us);
  }
  c.release_when_contended = o.release_when_contended;
  return c;
}

// What one worker process reports back to the parent (through a file).
struct WorkerResult {
  std::int64_t start_ns = INT64_MAX, end_ns = 0;  // steady clock, comparable across processes
  std::uint64_t completed = 0, failed = 0, retries = 0, home_hits = 0;
  std::vector<double> latency_us;        // requests on sessions homed at the worker's process
  std::vector<double> other_latency_us;  // the rest (each moves the lock here and back)
};

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

bool ReadByte(int fd) {
  char b;
  return ::read(fd, &b, 1) == 1;
}

// One application-server process: T threads running requests.
int RunWorkerProcess(const Options& o, int p, int ready_fd, int go_fd, const std::string& out) {
  auto client = net::Client::Connect(ClientFor(o, static_cast<std::uint64_t>(p + 1)));
  if (!client.ok()) {
    std::fprintf(stderr, "process %d: %s\n", p, client.status().message().c_str());
    return 1;
  }
  std::vector<int> home, other;
  for (int s = 0; s < o.sessions; ++s) (Home(s, o.procs) == p ? home : other).push_back(s);
  SessionSet home_set = MakeSet(o, home), other_set = MakeSet(o, other);
  std::uint64_t total_workers = static_cast<std::uint64_t>(o.procs) * o.threads;
  std::vector<WorkerResult> results(static_cast<std::size_t>(o.threads));
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) {
    threads.emplace_back([&, t] {
      WorkerResult& r = results[static_cast<std::size_t>(t)];
      std::uint64_t worker = static_cast<std::uint64_t>(p) * o.threads + t;
      Rng rng(core::Splitmix64(o.seed * 1'000'003ULL + worker));
      std::uint64_t quota = 0;
      if (o.requests > 0) {
        quota = o.requests / total_workers + (worker < o.requests % total_workers ? 1 : 0);
      }
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      r.start_ns = NowNs();
      auto deadline = r.start_ns + static_cast<std::int64_t>(o.duration * 1e9);
      for (std::uint64_t i = 0;; ++i) {
        if (o.requests > 0 ? i >= quota : NowNs() >= deadline) break;
        bool from_home =
            other_set.ids.empty() || (!home_set.ids.empty() && rng.Uniform01() < o.affinity);
        int s = (from_home ? home_set : other_set).Draw(rng);
        int j = 1 + static_cast<int>(rng.Below(7));
        auto started = Clock::now();
        net::Lock lock;
        for (;;) {
          lock = client.value()->Acquire(static_cast<core::SessionId>(s),
                                         core::Portion::Whole(core::Mode::kExclusive),
                                         std::chrono::seconds(10));
          if (lock.held()) break;
          ++r.retries;  // a timeout: try again
          if (net::LockErrorOf(lock.status()) == net::LockError::kUnavailable) return;
        }
        auto a0 = lock.Get("a0");
        auto aj = lock.Get("a" + std::to_string(j));
        bool good = a0.ok() && a0.value() && a0.value()->size() == kValueBytes && aj.ok();
        if (good) {
          std::uint64_t counter =
              std::strtoull(a0.value()->substr(0, kCounterDigits).c_str(), nullptr, 10);
          good = lock.Set("a0", CounterValue(counter + 1, a0.value()->substr(kCounterDigits))).ok();
        }
        net::Status committed = good ? lock.Commit() : lock.Rollback();
        if (good && committed.ok()) {
          ++r.completed;
          double us = std::chrono::duration<double, std::micro>(Clock::now() - started).count();
          if (Home(static_cast<std::uint64_t>(s), o.procs) == p) {
            ++r.home_hits;
            r.latency_us.push_back(us);
          } else {
            r.other_latency_us.push_back(us);
          }
        } else {
          ++r.failed;
        }
      }
      r.end_ns = NowNs();
    });
  }
  // Connected and ready: tell the parent, wait for everyone's start.
  if (::write(ready_fd, "r", 1) != 1 || !ReadByte(go_fd)) {
    go = true;
    for (auto& t : threads) t.join();
    return 1;
  }
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  WorkerResult all;
  for (auto& r : results) {
    all.start_ns = std::min(all.start_ns, r.start_ns);
    all.end_ns = std::max(all.end_ns, r.end_ns);
    all.completed += r.completed;
    all.failed += r.failed;
    all.retries += r.retries;
    all.home_hits += r.home_hits;
    all.latency_us.insert(all.latency_us.end(), r.latency_us.begin(), r.latency_us.end());
    all.other_latency_us.insert(all.other_latency_us.end(), r.other_latency_us.begin(),
                                r.other_latency_us.end());
  }
  std::ofstream f(out, std::ios::binary);
  f << all.start_ns << ' ' << all.end_ns << ' ' << all.completed << ' ' << all.failed << ' '
    << all.retries << ' ' << all.home_hits << ' ' << all.latency_us.size() << ' '
    << all.other_latency_us.size() << '\n';
  f.write(reinterpret_cast<const char*>(all.latency_us.data()),
          static_cast<std::streamsize>(all.latency_us.size() * sizeof(double)));
  f.write(reinterpret_cast<const char*>(all.other_latency_us.data()),
          static_cast<std::streamsize>(all.other_latency_us.size() * sizeof(double)));
  return f ? 0 : 1;
}

bool ReadResult(const std::string& path, WorkerResult* r) {
  std::ifstream f(path, std::ios::binary);
  std::size_t n = 0, other = 0;
  if (!(f >> r->start_ns >> r->end_ns >> r->completed >> r->failed >> r->retries >> r->home_hits >>
        n >> other)) {
    return false;
  }
  f.get();
  r->latency_us.resize(n);
  f.read(reinterpret_cast<char*>(r->latency_us.data()),
         static_cast<std::streamsize>(n * sizeof(double)));
  r->other_latency_us.resize(other);
  f.read(reinterpret_cast<char*>(r->other_latency_us.data()),
         static_cast<std::streamsize>(other * sizeof(double)));
  return static_cast<bool>(f);
}

// Every session with exactly a0..a7, counters 0 (not timed).
bool Preload(const Options& o) {
  auto client = net::Client::Connect(ClientFor(o, static_cast<std::uint64_t>(o.procs) + 1));
  if (!client.ok()) {
    std::fprintf(stderr, "preload: %s\n", client.status().message().c_str());
    return false;
  }
  std::string rest = "|" + std::string(43, 'x');
  for (int s = 0; s < o.sessions; ++s) {
    net::Lock lock = client.value()->Acquire(static_cast<core::SessionId>(s),
                                             core::Portion::Whole(core::Mode::kExclusive),
                                             std::chrono::seconds(10));
    if (!lock.held()) {
      std::fprintf(stderr, "preload session %d: %s\n", s, lock.status().message().c_str());
      return false;
    }
    lock.Clear();
    lock.Set("a0", CounterValue(0, rest));
    for (int j = 1; j < kAttributes; ++j) lock.Set("a" + std::to_string(j), OtherValue(s, j));
    net::Status st = lock.Commit();
    if (!st.ok()) {
      std::fprintf(stderr, "preload session %d: %s\n", s, st.message().c_str());
      return false;
    }
  }
  return true;
}

struct Verification {
  std::uint64_t counter_sum = 0;
  std::int64_t locks_left = 0;
  std::int64_t bad_values = 0;
};

// After the run: every counter read back, and no session left locked (a
// try-lock from a fresh process succeeds on each).
bool Verify(const Options& o, Verification* v) {
  auto client = net::Client::Connect(ClientFor(o, static_cast<std::uint64_t>(o.procs) + 2));
  if (!client.ok()) {
    std::fprintf(stderr, "verify: %s\n", client.status().message().c_str());
    return false;
  }
  for (int s = 0; s < o.sessions; ++s) {
    net::Lock lock = client.value()->TryAcquire(static_cast<core::SessionId>(s),
                                                core::Portion::Whole(core::Mode::kShared));
    if (!lock.held()) {
      ++v->locks_left;
      lock = client.value()->Acquire(static_cast<core::SessionId>(s),
                                     core::Portion::Whole(core::Mode::kShared),
                                     std::chrono::seconds(10));
      if (!lock.held()) return false;
    }
    auto a0 = lock.Get("a0");
    if (!a0.ok() || !a0.value() || a0.value()->size() != kValueBytes) {
      ++v->bad_values;
      continue;
    }
    v->counter_sum += std::strtoull(a0.value()->substr(0, kCounterDigits).c_str(), nullptr, 10);
  }
  return true;
}

double NearestRank(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, k == 0 ? 0 : k - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"session_bench: the session-requests workload (../shared/WORKLOAD.md) on Latchkey"};
  app.add_option("--store", o.stores, "latchkeyd node host:port (repeat: node 0, 1, ...)")
      ->required();
  app.add_option("--secret-file", o.secret_file, "latchkeyd's master secret")->required();
  app.add_option("--sessions", o.sessions)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--procs", o.procs)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--affinity", o.affinity)->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--dist", o.dist)
      ->capture_default_str()
      ->check(CLI::IsMember({"uniform", "zipf"}));
  app.add_option("--zipf-s", o.zipf_s)->capture_default_str();
  auto* duration = app.add_option("--duration", o.duration, "seconds")->capture_default_str();
  app.add_option("--requests", o.requests, "total requests instead of a duration")
      ->excludes(duration);
  app.add_option("--seed", o.seed)->capture_default_str();
  app.add_option("--idle-release-us", o.idle_release_us,
                 "how long a process keeps an unused session lock (-1: until recalled)")
      ->capture_default_str();
  app.add_option("--release-when-contended", o.release_when_contended,
                 "give back at once a lock taken from another process")
      ->capture_default_str();
  app.add_option("--persistence", o.persistence, "label for the JSON (e.g. the --fsync policy)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto secret = net::ReadSecretFile(o.secret_file);
  if (!secret.ok()) {
    std::fprintf(stderr, "error: %s\n", secret.status().message().c_str());
    return 2;
  }
  o.secret = secret.value();
  if (!Preload(o)) return 1;

  char dir_pattern[] = "/tmp/session-bench-XXXXXX";
  std::string dir = ::mkdtemp(dir_pattern);
  struct Child {
    pid_t pid;
    int ready_r, go_w;
  };
  std::vector<Child> children;
  for (int p = 0; p < o.procs; ++p) {
    int ready[2], go[2];
    if (::pipe(ready) != 0 || ::pipe(go) != 0) return 1;
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      std::_Exit(RunWorkerProcess(o, p, ready[1], go[0], dir + "/p" + std::to_string(p)));
    }
    ::close(ready[1]);
    ::close(go[0]);
    children.push_back({pid, ready[0], go[1]});
  }
  bool started = true;
  for (auto& c : children) started = ReadByte(c.ready_r) && started;
  for (auto& c : children) {
    if (!started || ::write(c.go_w, "g", 1) != 1) started = false;
    ::close(c.go_w);
  }
  bool child_failed = !started;
  for (auto& c : children) {
    int status = 0;
    ::waitpid(c.pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) child_failed = true;
    ::close(c.ready_r);
  }
  if (child_failed) {
    std::fprintf(stderr, "a worker process failed\n");
    return 1;
  }
  WorkerResult total;
  std::vector<double> home_latency, other_latency;
  for (int p = 0; p < o.procs; ++p) {
    WorkerResult r;
    if (!ReadResult(dir + "/p" + std::to_string(p), &r)) {
      std::fprintf(stderr, "cannot read worker %d's results\n", p);
      return 1;
    }
    total.start_ns = std::min(total.start_ns, r.start_ns);
    total.end_ns = std::max(total.end_ns, r.end_ns);
    total.completed += r.completed;
    total.failed += r.failed;
    total.retries += r.retries;
    total.home_hits += r.home_hits;
    home_latency.insert(home_latency.end(), r.latency_us.begin(), r.latency_us.end());
    other_latency.insert(other_latency.end(), r.other_latency_us.begin(), r.other_latency_us.end());
    std::remove((dir + "/p" + std::to_string(p)).c_str());
  }
  ::rmdir(dir.c_str());
  std::vector<double> latency = home_latency;
  latency.insert(latency.end(), other_latency.begin(), other_latency.end());
  std::sort(latency.begin(), latency.end());
  std::sort(home_latency.begin(), home_latency.end());
  std::sort(other_latency.begin(), other_latency.end());
  Verification v;
  if (!Verify(o, &v)) return 1;
  double elapsed = static_cast<double>(total.end_ns - total.start_ns) / 1e9;
  auto lost = static_cast<std::int64_t>(total.completed) - static_cast<std::int64_t>(v.counter_sum);
  bool ok = lost == 0 && v.locks_left == 0 && v.bad_values == 0;
  std::printf(
      "{\"peer\":\"latchkey\",\"variant\":\"latchkey\",\"persistence\":\"%s\",\"sessions\":%d,"
      "\"procs\":%d,\"threads\":%d,\"affinity\":%.3f,\"dist\":\"%s\",\"zipf_s\":%.2f,"
      "\"duration_s\":%.3f,\"requests\":%" PRIu64
      ",\"rps\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
      "\"p50_home_us\":%.1f,\"p99_home_us\":%.1f,\"p50_other_us\":%.1f,\"p90_other_us\":%.1f,"
      "\"p99_other_us\":%.1f,"
      "\"retries\":%" PRIu64 ",\"failed\":%" PRIu64
      ",\"home_fraction\":%.4f,\"counter_sum\":%" PRIu64 ",\"lost_updates\":%" PRId64
      ",\"locks_left\":%" PRId64 ",\"ok\":%s}\n",
      o.persistence.c_str(), o.sessions, o.procs, o.threads, o.affinity, o.dist.c_str(), o.zipf_s,
      elapsed, total.completed, elapsed > 0 ? static_cast<double>(total.completed) / elapsed : 0.0,
      NearestRank(latency, 0.50), NearestRank(latency, 0.99), NearestRank(latency, 0.999),
      latency.empty() ? 0.0 : latency.back(), NearestRank(home_latency, 0.50),
      NearestRank(home_latency, 0.99), NearestRank(other_latency, 0.50),
      NearestRank(other_latency, 0.90), NearestRank(other_latency, 0.99), total.retries,
      total.failed,
      total.completed ? static_cast<double>(total.home_hits) / static_cast<double>(total.completed)
                      : 0.0,
      v.counter_sum, lost, v.locks_left, ok ? "true" : "false");
  return ok ? 0 : 3;
}
