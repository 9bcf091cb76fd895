// latchkeyd raw protocol load: many authenticated connections, each running
// acquire -> commit -> release loops as fast as the server answers, against
// a latchkeyd this program starts (one per fsync policy, each on a fresh
// data directory). Reports operations per second (each Acquire, Commit and
// Release answered counts as one) and the p50/p99/p999 latency of each
// request-response round trip, per policy, and the ratio of each policy's
// throughput to `never`'s.
//
//   ./build/bench/net_bench [--latchkeyd PATH] [--connections N] [--sessions S]
//                           [--seconds T] [--warmup T] [--fsync never,batch,always]
//                           [--value-bytes B] [--data-dir DIR]
//
// --sessions 0 (the default) gives every connection its own session, so the
// load measures the server and its log, not lock contention; with fewer
// sessions than connections, connections queue behind each other (Queued,
// then Granted after the holder's release).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "net/auth.h"
#include "net/codec.h"
#include "tests/latchkeyd_harness.h"

namespace {

namespace fs = std::filesystem;
namespace core = latchkey::core;
namespace net = latchkey::net;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string latchkeyd = LATCHKEYD_PATH;
  int connections = 64;
  int sessions = 0;
  double seconds = 5;
  double warmup = 1;
  std::vector<std::string> policies = {"never", "batch", "always"};
  int value_bytes = 100;
  std::string data_dir;
};

struct Stats {
  std::vector<double> latency_us;  // every round trip measured after the warm-up
  std::uint64_t operations = 0;    // answered after the warm-up
  std::uint64_t errors = 0;
};

// One connection's loop, as an Asio state machine on the shared io_context.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, std::uint16_t port, std::uint64_t id, core::SessionId session,
             const std::string& value, Stats* stats, const bool* measuring, const bool* stopping)
      : socket_(io),
        port_(port),
        id_(id),
        session_(session),
        value_(value),
        stats_(stats),
        measuring_(measuring),
        stopping_(stopping) {}

  void Start() {
    auto self = shared_from_this();
    socket_.async_connect({asio::ip::make_address("127.0.0.1"), port_},
                          [self](const asio::error_code& ec) {
                            if (ec) return self->Error("connect: " + ec.message());
                            self->socket_.set_option(asio::ip::tcp::no_delay(true));
                            self->Read();
                          });
  }

 private:
  void Error(const std::string& what) {
    ++stats_->errors;
    if (stats_->errors <= 5)
      std::fprintf(stderr, "connection %llu: %s\n", static_cast<unsigned long long>(id_),
                   what.c_str());
    asio::error_code ignored;
    socket_.close(ignored);
  }

  void Send(const net::Frame& frame) {
    out_queue_.push_back(net::EncodeFrame(frame));
    if (!writing_) Write();
  }
  void Write() {
    writing_ = true;
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_queue_.front()),
                      [self](const asio::error_code& ec, std::size_t) {
                        self->writing_ = false;
                        if (ec) return self->Error("write: " + ec.message());
                        self->out_queue_.erase(self->out_queue_.begin());
                        if (!self->out_queue_.empty()) self->Write();
                      });
  }

  void Read() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(buffer_),
                            [self](const asio::error_code& ec, std::size_t n) {
                              if (ec) {
                                if (!*self->stopping_) self->Error("read: " + ec.message());
                                return;
                              }
                              self->decoder_.Feed(std::string_view(self->buffer_.data(), n));
                              for (;;) {
                                auto next = self->decoder_.Next();
                                if (!next.ok())
                                  return self->Error("decode: " + next.status().message());
                                if (!next.value()) break;
                                if (!self->OnFrame(*next.value())) return;
                              }
                              self->Read();
                            });
  }

  // Sends the next request of the loop and starts its clock.
  void Request(core::Message m) {
    sent_at_ = Clock::now();
    Send(net::Frame(std::move(m)));
  }
  void Answered() {
    if (*measuring_) {
      stats_->latency_us.push_back(
          std::chrono::duration<double, std::micro>(Clock::now() - sent_at_).count());
      ++stats_->operations;
    }
  }

  bool OnFrame(const net::Frame& frame) {
    if (const auto* challenge = std::get_if<net::ChallengeFrame>(&frame)) {
      net::Mac key = net::IdentityKey(net::kSecret, net::Role::kProcess, id_);
      Send(net::Frame(
          net::HelloFrame{net::Role::kProcess, id_, 1,
                          net::AuthAnswer(key, challenge->nonce, net::Role::kProcess, id_, 1)}));
      return true;
    }
    if (std::holds_alternative<net::WelcomeFrame>(frame)) {
      Request(core::Acquire{session_, ++request_id_, {}, false});
      return true;
    }
    if (const auto* error = std::get_if<net::ErrorFrame>(&frame)) {
      Error("error frame: " + error->text);
      return false;
    }
    const auto& m = std::get<core::Message>(frame);
    if (*stopping_) return false;
    if (const auto* g = std::get_if<core::Granted>(&m)) {
      Answered();
      token_ = g->token;
      Request(core::Commit{session_, token_, ++seq_, false, {{"value", value_, false}}});
    } else if (std::holds_alternative<core::CommitAck>(m)) {
      Answered();
      Request(core::Release{session_, token_});
    } else if (std::holds_alternative<core::ReleaseAck>(m)) {
      Answered();
      seq_ = 0;
      Request(core::Acquire{session_, ++request_id_, {}, false});
    } else if (std::holds_alternative<core::Queued>(m) || std::holds_alternative<core::Recall>(m)) {
      // Queued: the grant follows the holder's release. Recall: this loop
      // releases right after its commit anyway.
    } else if (const auto* r = std::get_if<core::Rejected>(&m)) {
      Error(std::string("rejected: ") + std::string(core::ReasonName(r->reason)));
      return false;
    }
    return true;
  }

  asio::ip::tcp::socket socket_;
  std::uint16_t port_;
  std::uint64_t id_;
  core::SessionId session_;
  const std::string& value_;
  Stats* stats_;
  const bool* measuring_;
  const bool* stopping_;
  net::FrameDecoder decoder_{64u << 20};
  std::array<char, 64 * 1024> buffer_;
  std::vector<std::string> out_queue_;
  bool writing_ = false;
  Clock::time_point sent_at_;
  core::Token token_ = core::kNoToken;
  std::uint64_t request_id_ = 0;
  std::uint64_t seq_ = 0;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

struct Result {
  std::string policy;
  double ops_per_s = 0;
  double p50 = 0, p99 = 0, p999 = 0;
  std::uint64_t errors = 0;
};

Result RunPolicy(const Options& o, const std::string& policy, const std::string& dir) {
  Result r;
  r.policy = policy;
  fs::remove_all(dir);
  fs::create_directories(dir);
  net::Daemon daemon(dir, {"--fsync", policy, "--max-connections", "100000", "--lease-ms", "10000"},
                     o.latchkeyd);
  if (daemon.port() == 0) {
    std::fprintf(stderr, "latchkeyd did not start; see %s/log\n", dir.c_str());
    std::exit(1);
  }
  asio::io_context io;
  Stats stats;
  bool measuring = false, stopping = false;
  std::string value(static_cast<std::size_t>(o.value_bytes), 'v');
  int sessions = o.sessions > 0 ? o.sessions : o.connections;
  std::vector<std::shared_ptr<Connection>> connections;
  for (int i = 0; i < o.connections; ++i) {
    connections.push_back(std::make_shared<Connection>(
        io, daemon.port(), static_cast<std::uint64_t>(i + 1),
        static_cast<core::SessionId>(1 + i % sessions), value, &stats, &measuring, &stopping));
    connections.back()->Start();
  }
  asio::steady_timer timer(io);
  Clock::time_point measure_start;
  timer.expires_after(std::chrono::milliseconds(static_cast<long>(o.warmup * 1000)));
  timer.async_wait([&](const asio::error_code&) {
    measuring = true;
    measure_start = Clock::now();
    timer.expires_after(std::chrono::milliseconds(static_cast<long>(o.seconds * 1000)));
    timer.async_wait([&](const asio::error_code&) {
      measuring = false;
      stopping = true;
      io.stop();
    });
  });
  io.run();
  double elapsed = std::chrono::duration<double>(Clock::now() - measure_start).count();
  r.ops_per_s = static_cast<double>(stats.operations) / elapsed;
  r.p50 = Percentile(stats.latency_us, 0.50);
  r.p99 = Percentile(stats.latency_us, 0.99);
  r.p999 = Percentile(stats.latency_us, 0.999);
  r.errors = stats.errors;
  return r;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(part);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string policies = "never,batch,always";
  CLI::App app{"net_bench: raw protocol load against latchkeyd"};
  app.add_option("--latchkeyd", o.latchkeyd, "the latchkeyd binary")->capture_default_str();
  app.add_option("--connections", o.connections, "client connections")->capture_default_str();
  app.add_option("--sessions", o.sessions, "sessions shared by them; 0 = one per connection")
      ->capture_default_str();
  app.add_option("--seconds", o.seconds, "measured time per policy")->capture_default_str();
  app.add_option("--warmup", o.warmup, "unmeasured time first")->capture_default_str();
  app.add_option("--fsync", policies, "policies to run, comma-separated")->capture_default_str();
  app.add_option("--value-bytes", o.value_bytes, "bytes written per commit")->capture_default_str();
  app.add_option("--data-dir", o.data_dir,
                 "where the servers keep their logs (default: a temp dir)");
  CLI11_PARSE(app, argc, argv);
  o.policies = Split(policies);
  if (o.connections <= 0 || o.seconds <= 0) {
    std::fprintf(stderr, "error: --connections and --seconds must be positive\n");
    return 2;
  }
  std::string base = o.data_dir;
  bool temporary = base.empty();
  if (temporary) {
    std::string pattern = (fs::temp_directory_path() / "net-bench-XXXXXX").string();
    base = ::mkdtemp(pattern.data());
  }
  std::printf("connections %d, sessions %d, %g s measured after %g s warm-up, %d-byte values\n",
              o.connections, o.sessions > 0 ? o.sessions : o.connections, o.seconds, o.warmup,
              o.value_bytes);
  std::printf("%-7s %12s %10s %10s %10s %8s %7s\n", "fsync", "ops/s", "p50 us", "p99 us", "p999 us",
              "vs never", "errors");
  double never = 0;
  int status = 0;
  for (const std::string& policy : o.policies) {
    Result r = RunPolicy(o, policy, base + "/" + policy);
    if (policy == "never") never = r.ops_per_s;
    std::string ratio = never > 0 ? std::to_string(r.ops_per_s / never).substr(0, 4) : "-";
    std::printf("%-7s %12.0f %10.0f %10.0f %10.0f %8s %7llu\n", r.policy.c_str(), r.ops_per_s,
                r.p50, r.p99, r.p999, ratio.c_str(), static_cast<unsigned long long>(r.errors));
    std::fflush(stdout);
    if (r.errors > 0) status = 1;
  }
  if (temporary) fs::remove_all(base);
  return status;
}
