#include "net/server.h"

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <asio/thread_pool.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "net/auth.h"
#include "net/clock.h"
#include "net/codec.h"
#include "net/metrics.h"

namespace latchkey::net {

namespace {

core::Time NowUs() { return MonotonicMicros(); }

bool ProcessMaySend(core::MessageKind k) {
  using K = core::MessageKind;
  return k == K::kAcquire || k == K::kRelease || k == K::kCommit || k == K::kHeartbeat ||
         k == K::kReclaim || k == K::kCancel;
}
bool AdminMaySend(core::MessageKind k) {
  return k == core::MessageKind::kForceRelease || k == core::MessageKind::kAdminInvalidate;
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c == '\n' ? ' ' : c);
  }
  return out + "\"";
}

}  // namespace

void LogLine(const char* level, const char* event, const std::string& fields) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  std::fprintf(stderr, "ts=%lld level=%s event=%s%s%s\n", static_cast<long long>(ms), level, event,
               fields.empty() ? "" : " ", fields.c_str());
}

// A client connection: its byte stream (plain TCP, or TLS over it when the
// server has a certificate) and its protocol state.
struct Connection : std::enable_shared_from_this<Connection> {
  Connection(asio::ip::tcp::socket s, asio::ssl::context* tls_context, std::uint64_t id,
             std::uint32_t max_frame)
      : id(id), decoder(max_frame), auth_timer(s.get_executor()) {
    if (tls_context != nullptr) {
      tls = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(s), *tls_context);
    } else {
      plain.emplace(std::move(s));
      stream_ready = true;
    }
  }

  asio::ip::tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }
  template <class Handler>
  void ReadSome(asio::mutable_buffer buffer, Handler&& handler) {
    if (tls) {
      tls->async_read_some(buffer, std::forward<Handler>(handler));
    } else {
      plain->async_read_some(buffer, std::forward<Handler>(handler));
    }
  }
  template <class Handler>
  void WriteAll(asio::const_buffer buffer, Handler&& handler) {
    if (tls) {
      asio::async_write(*tls, buffer, std::forward<Handler>(handler));
    } else {
      asio::async_write(*plain, buffer, std::forward<Handler>(handler));
    }
  }

  std::optional<asio::ip::tcp::socket> plain;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> tls;
  bool stream_ready = false;  // frames may flow: plain at once, TLS after its handshake
  std::uint64_t id;
  FrameDecoder decoder;
  asio::steady_timer auth_timer;
  Nonce nonce{};
  bool authenticated = false;
  Role role = Role::kProcess;
  core::Address address;
  std::deque<std::string> out;
  std::uint64_t out_bytes = 0;
  bool writing = false;
  bool closing = false;  // close once `out` drains
  bool closed = false;
  std::array<char, 64 * 1024> read_buffer;
};

// One HTTP request to the metrics endpoint.
struct MetricsScrape {
  explicit MetricsScrape(asio::ip::tcp::socket s)
      : socket(std::move(s)), timer(socket.get_executor()) {}
  asio::ip::tcp::socket socket;
  asio::steady_timer timer;
  std::array<char, 2048> buffer;
  std::string request;
  std::string response;
};

struct Server::Impl {
  explicit Impl(const ServerOptions& o)
      : options(o), store(o.store), acceptor(io), deadline_timer(io), sync_timer(io), signals(io) {}
  ~Impl() {
    if (sync_threads) sync_threads->join();
    if (compactor.joinable()) compactor.join();
  }

  ServerOptions options;
  asio::io_context io;
  core::Store store;
  std::unique_ptr<Wal> wal;
  LogState log_state;
  asio::ip::tcp::acceptor acceptor;
  asio::steady_timer deadline_timer;
  asio::steady_timer sync_timer;
  asio::signal_set signals;
  core::Time armed_deadline = core::kNever;
  std::uint64_t next_connection_id = 1;
  std::map<std::uint64_t, std::shared_ptr<Connection>> connections;
  std::map<std::pair<core::NodeKind, std::uint64_t>, std::shared_ptr<Connection>> routes;
  std::vector<core::Envelope> outbox;  // replies waiting for the group commit
  asio::ip::tcp::acceptor metrics_acceptor{io};
  std::unique_ptr<asio::ssl::context> tls_context;  // set when serving TLS
  struct {
    // Acquires not yet answered, by (process id, session): their wait time.
    std::map<std::pair<std::uint64_t, core::SessionId>, core::Time> waiting_since;
    // The live tenure of each session: (token, granted at), for hold times.
    std::map<core::SessionId, std::pair<core::Token, core::Time>> granted_at;
    Histogram wait_seconds = Histogram::Exponential(100e-6, 2, 18);  // 100 us .. 13 s
    Histogram hold_seconds = Histogram::Exponential(100e-6, 2, 20);  // 100 us .. 52 s
    std::map<core::Reason, std::uint64_t> refusals;
    std::map<core::Reason, std::uint64_t> revocations;
    std::map<ErrorCode, std::uint64_t> connection_errors;
    std::array<std::uint64_t, 32> messages_received{};
    std::array<std::uint64_t, 32> messages_sent{};
  } metrics;
  std::thread compactor;  // writes a snapshot off the loop (see Compact)
  // --fsync always with max_concurrent_syncs > 0: fdatasyncs off the loop,
  // up to that many at once. On this project's test machine (ext4 on a
  // virtual disk) one thread syncing a block at a time managed 800-1,000
  // fdatasyncs a second, two threads 3,200, three 5,300: the disk finishes
  // concurrent flushes together. But each fdatasync also costs CPU (about
  // 0.2 ms there) and two thread wake-ups, so when the CPU is the limit the
  // default, 0, syncs on the loop itself (see StartSync).
  std::unique_ptr<asio::thread_pool> sync_threads =
      options.max_concurrent_syncs > 0
          ? std::make_unique<asio::thread_pool>(options.max_concurrent_syncs)
          : nullptr;
  int syncs_running = 0;
  std::uint64_t sync_started_lsn = 0;  // the furthest log position a sync was started for
  struct UnsyncedReplies {
    std::uint64_t lsn;  // the log position they need durable
    std::vector<core::Envelope> replies;
  };
  std::deque<UnsyncedReplies> unsynced;
  bool flush_posted = false;
  bool stopping = false;
  bool failed = false;

  // ---- the core ------------------------------------------------------------

  void Apply(core::Time now, core::Effects fx) {
    for (core::Record& r : fx.persist) {
      wal->Append(r);
      log_state.Apply(r);
      Observe(now, r);
    }
    for (core::Envelope& e : fx.send) {
      Observe(now, e);
      outbox.push_back(std::move(e));
    }
    if (wal->has_pending() || !outbox.empty()) PostFlush();
    Arm(fx.next_deadline);
  }

  void PostFlush() {
    if (flush_posted) return;
    flush_posted = true;
    // Posted behind the completions already queued in this loop iteration,
    // so their records share this write and fsync (group commit).
    asio::post(io, [this] { Flush(); });
  }

  void Flush() {
    flush_posted = false;
    bool always = options.fsync == FsyncPolicy::kAlways;
    // Under --fsync always the write happens here and the fsync on the sync
    // thread; replies wait in `unsynced` for the fsync that covers them.
    Status s = always ? wal->WriteBuffered() : wal->Flush();
    if (!s.ok()) return WalFailed("wal_flush_failed", s.message());
    std::vector<core::Envelope> sending;
    sending.swap(outbox);
    if (always && (wal->synced_lsn() < wal->written_lsn() || !unsynced.empty())) {
      // Behind earlier replies too, so each connection's replies keep their order.
      if (!sending.empty()) unsynced.push_back({wal->written_lsn(), std::move(sending)});
      StartSync();
      if (failed) return;  // the log is unusable: no compaction from it
    } else {
      for (const core::Envelope& e : sending) Deliver(e);
    }
    if (wal->file_bytes() > options.compact_bytes) Compact();
  }

  // An fdatasync covers everything written when it starts. By default it
  // runs on the loop, as Redis's appendfsync always does: what arrives
  // meanwhile waits in the sockets and makes up the next batch (group
  // commit), with no thread hand-off. With max_concurrent_syncs > 0 it runs
  // on a sync thread; the loop keeps handling messages meanwhile, and their
  // records and replies make up the next batch, whose fsync starts at once
  // while fewer than max_concurrent_syncs run. One that returns makes
  // durable all that was written before it started, whatever the others are
  // doing.
  void StartSync() {
    if (syncs_running >= static_cast<int>(std::max<std::uint32_t>(options.max_concurrent_syncs, 1)))
      return;
    if (wal->written_lsn() <= std::max(wal->synced_lsn(), sync_started_lsn)) return;
    ++syncs_running;
    if (!sync_threads) {
      // Through the log's own descriptor: no open and close per fsync.
      sync_started_lsn = wal->written_lsn();
      Status s = wal->Sync();
      --syncs_running;
      if (!s.ok()) return WalFailed("wal_sync_failed", s.message());
      return DeliverDurable();  // nothing was written meanwhile: no next sync
    }
    Wal::SyncJob job = wal->PrepareSync();
    sync_started_lsn = job.lsn;
    asio::post(*sync_threads, [this, job = std::move(job)]() mutable {
      std::int64_t micros = job.Run();
      asio::post(io, [this, lsn = job.lsn, micros, error = std::move(job.error)] {
        Synced(lsn, micros, error);
      });
    });
  }

  void Synced(std::uint64_t lsn, std::int64_t micros, const std::string& error) {
    --syncs_running;
    if (micros < 0) {
      wal->SyncFailed(error);
      return WalFailed("wal_sync_failed", "on a sync thread: " + error);
    }
    wal->SyncDone(lsn, static_cast<std::uint64_t>(micros));
    DeliverDurable();
    StartSync();
  }

  // Sends the replies whose records an fsync has covered.
  void DeliverDurable() {
    while (!unsynced.empty() && unsynced.front().lsn <= wal->synced_lsn()) {
      for (const core::Envelope& e : unsynced.front().replies) Deliver(e);
      unsynced.pop_front();
    }
  }

  void DeliverSynced() {
    for (auto& batch : unsynced) {
      for (const core::Envelope& e : batch.replies) Deliver(e);
    }
    unsynced.clear();
  }

  // Nothing can be acknowledged without the log: stop serving.
  void WalFailed(const char* event, const std::string& why) {
    LogLine("error", event, "reason=" + Quote(why));
    failed = true;
    outbox.clear();
    unsynced.clear();
    io.stop();
  }

  // The snapshot is taken here, on the loop thread (an in-memory copy of
  // the live state); encoding, writing and fsyncing it happen on a helper
  // thread while the loop keeps serving and logging (see Wal::BeginCompaction).
  void Compact() {
    if (wal->compacting()) return;
    auto snapshot = std::make_shared<std::vector<core::Record>>(log_state.Snapshot());
    Result<std::uint64_t> next = wal->BeginCompaction();
    if (!next.ok()) {
      LogLine("error", "compaction_failed", "reason=" + Quote(next.status().message()));
      return;
    }
    if (compactor.joinable()) compactor.join();  // the previous one has finished
    std::uint64_t before = wal->file_bytes();
    std::uint64_t generation = next.value();
    auto started = std::chrono::steady_clock::now();
    compactor = std::thread([this, snapshot, generation, before, started] {
      Status written = Wal::WriteSnapshot(wal->dir(), generation, *snapshot);
      asio::post(io,
                 [this, written, before, started] { FinishCompaction(written, before, started); });
    });
  }

  void FinishCompaction(const Status& written, std::uint64_t before,
                        std::chrono::steady_clock::time_point started) {
    Status s = written;
    if (s.ok()) {
      s = wal->FinishCompaction();
    } else {
      wal->AbandonCompaction();
    }
    if (!s.ok()) {
      LogLine("error", "compaction_failed", "reason=" + Quote(s.message()));
      return;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    LogLine("info", "compacted",
            "generation=" + std::to_string(wal->generation()) +
                " bytes_before=" + std::to_string(before) +
                " bytes_after=" + std::to_string(wal->file_bytes()) + " ms=" + std::to_string(ms));
  }

  void Deliver(const core::Envelope& e) {
    auto it = routes.find({e.to.kind, e.to.id});
    if (it == routes.end()) return;              // not connected: the agent retries (B4)
    std::shared_ptr<Connection> c = it->second;  // a copy: Send may close and unroute it
    if (c->address.incarnation != e.to.incarnation) return;  // addressed to another life
    Send(c, Frame(e.message));
  }

  void Arm(core::Time deadline) {
    if (deadline == armed_deadline) return;
    armed_deadline = deadline;
    deadline_timer.cancel();
    if (deadline == core::kNever) return;
    core::Time now = NowUs();
    auto wait = std::chrono::microseconds(deadline > now ? deadline - now : 0);
    deadline_timer.expires_after(wait);
    deadline_timer.async_wait([this, deadline](const asio::error_code& ec) {
      if (ec || deadline != armed_deadline) return;
      armed_deadline = core::kNever;
      core::Time now = NowUs();
      Apply(now, store.OnTick(now));
    });
  }

  void ScheduleSync() {
    if (options.fsync != FsyncPolicy::kBatch) return;
    sync_timer.expires_after(std::chrono::milliseconds(options.fsync_interval_ms));
    sync_timer.async_wait([this](const asio::error_code& ec) {
      if (ec) return;
      Status s = wal->Sync();
      if (!s.ok()) LogLine("error", "wal_sync_failed", "reason=" + Quote(s.message()));
      ScheduleSync();
    });
  }

  // ---- metrics (B10) ------------------------------------------------------

  void Observe(core::Time now, const core::Record& r) {
    if (const auto* g = std::get_if<core::GrantRecord>(&r)) {
      metrics.granted_at[g->session] = {g->token, now};
    } else if (const auto* end = std::get_if<core::TenureEndRecord>(&r)) {
      auto it = metrics.granted_at.find(end->session);
      if (it != metrics.granted_at.end() && it->second.first == end->token) {
        metrics.hold_seconds.Observe(static_cast<double>(now - it->second.second) / 1e6);
        metrics.granted_at.erase(it);
      }
    }
  }

  void Observe(core::Time now, const core::Envelope& e) {
    const core::Message& m = e.message;
    auto waited = [&](core::SessionId session, bool granted) {
      auto it = metrics.waiting_since.find({e.to.id, session});
      if (it == metrics.waiting_since.end()) return;
      if (granted) metrics.wait_seconds.Observe(static_cast<double>(now - it->second) / 1e6);
      metrics.waiting_since.erase(it);
    };
    if (const auto* g = std::get_if<core::Granted>(&m)) {
      waited(g->session, true);
    } else if (const auto* b = std::get_if<core::Busy>(&m)) {
      waited(b->session, false);
      ++metrics.refusals[core::Reason::kBusy];
    } else if (const auto* c = std::get_if<core::CancelAck>(&m)) {
      waited(c->session, false);
    } else if (const auto* r = std::get_if<core::Rejected>(&m)) {
      if (r->what == static_cast<std::uint8_t>(core::MessageKind::kAcquire)) {
        waited(r->session, false);
      }
      ++metrics.refusals[r->reason];
    } else if (const auto* v = std::get_if<core::Revoked>(&m)) {
      ++metrics.revocations[v->reason];
    }
    ++metrics.messages_sent[static_cast<std::size_t>(core::KindOf(m))];
  }

  std::string RenderMetrics() const {
    std::string out;
    const core::StoreStats& st = store.stats();
    RenderCounter("latchkey_grants_total", "Locks granted (R1).", st.grants, &out);
    RenderCounter("latchkey_queued_total", "Requests buffered behind a holder (R4).", st.queued,
                  &out);
    RenderCounter("latchkey_recalls_total", "Recalls sent to holders (R7).", st.recalls, &out);
    RenderCounter("latchkey_lease_expiries_total", "Process leases that ran out (B1).",
                  st.lease_expiries, &out);
    RenderCounter("latchkey_commits_total", "Commits applied (R5).", st.commits, &out);
    std::vector<std::pair<std::string, double>> by_reason;
    for (const auto& [reason, n] : metrics.refusals) {
      by_reason.emplace_back(std::string(core::ReasonName(reason)), static_cast<double>(n));
    }
    RenderLabeled("latchkey_rejects_total",
                  "Requests the store refused (Rejected, and Busy for try-locks), by reason.",
                  "counter", "reason", by_reason, &out);
    by_reason.clear();
    for (const auto& [reason, n] : metrics.revocations) {
      by_reason.emplace_back(std::string(core::ReasonName(reason)), static_cast<double>(n));
    }
    RenderLabeled("latchkey_revocations_total",
                  "Tenures ended without the holder asking, by reason.", "counter", "reason",
                  by_reason, &out);

    std::size_t held = 0, queued = 0, longest = 0;
    for (const auto& [id, session] : store.state().sessions) {
      held += session.tenure ? 1 : 0;
      queued += session.queue.size();
      longest = std::max(longest, session.queue.size());
    }
    RenderGauge("latchkey_sessions", "Sessions the store knows.",
                static_cast<double>(store.state().sessions.size()), &out);
    RenderGauge("latchkey_sessions_held", "Sessions whose lock a process holds.",
                static_cast<double>(held), &out);
    RenderGauge("latchkey_queue_length", "Requests buffered, over all sessions.",
                static_cast<double>(queued), &out);
    RenderGauge("latchkey_queue_length_max", "The longest queue of any one session.",
                static_cast<double>(longest), &out);
    RenderGauge("latchkey_epoch", "This store life's epoch (bumped by every restart, B7).",
                static_cast<double>(store.state().epoch), &out);
    metrics.wait_seconds.Render("latchkey_wait_seconds", "From an Acquire's arrival to its grant.",
                                &out);
    metrics.hold_seconds.Render("latchkey_hold_seconds", "From a grant to the end of its tenure.",
                                &out);

    const WalStats& w = wal->stats();
    RenderCounter("latchkey_wal_records_total", "Records appended to the log.", w.records, &out);
    RenderCounter("latchkey_wal_flushes_total", "Group commits written.", w.flushes, &out);
    RenderCounter("latchkey_wal_fsyncs_total", "fdatasync calls on the log.", w.fsyncs, &out);
    RenderCounter("latchkey_wal_compactions_total", "Log compactions finished.", w.compactions,
                  &out);
    RenderGauge("latchkey_wal_bytes", "Size of the current log generation.",
                static_cast<double>(wal->file_bytes()), &out);
    w.fsync_seconds.Render("latchkey_wal_fsync_seconds", "Latency of each fdatasync of the log.",
                           &out);
    w.batch_records.Render("latchkey_wal_batch_records",
                           "Records per group commit (one write, one fsync under always).", &out);

    std::size_t authenticated = 0;
    for (const auto& [id, c] : connections) authenticated += c->authenticated ? 1 : 0;
    RenderGauge("latchkey_connections", "Open client connections.",
                static_cast<double>(connections.size()), &out);
    RenderGauge("latchkey_connections_authenticated", "Open connections that authenticated.",
                static_cast<double>(authenticated), &out);
    RenderCounter("latchkey_connections_total", "Client connections accepted.",
                  static_cast<double>(next_connection_id - 1), &out);
    std::vector<std::pair<std::string, double>> by_code;
    for (const auto& [code, n] : metrics.connection_errors) {
      by_code.emplace_back(std::string(ErrorCodeName(code)), static_cast<double>(n));
    }
    RenderLabeled("latchkey_errors_total", "Error frames sent to clients, by code.", "counter",
                  "code", by_code, &out);
    std::vector<std::pair<std::string, double>> received, sent;
    for (std::size_t k = 0; k < metrics.messages_sent.size(); ++k) {
      if (metrics.messages_received[k] == 0 && metrics.messages_sent[k] == 0) continue;
      auto name = std::string(core::MessageKindName(static_cast<core::MessageKind>(k)));
      if (metrics.messages_received[k] != 0) {
        received.emplace_back(name, static_cast<double>(metrics.messages_received[k]));
      }
      if (metrics.messages_sent[k] != 0) {
        sent.emplace_back(name, static_cast<double>(metrics.messages_sent[k]));
      }
    }
    RenderLabeled("latchkey_messages_received_total", "Messages from clients, by kind.", "counter",
                  "kind", received, &out);
    RenderLabeled("latchkey_messages_sent_total", "Messages the store sent, by kind.", "counter",
                  "kind", sent, &out);
    return out;
  }

  void AcceptMetrics() {
    metrics_acceptor.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec) {
        if (ec == asio::error::operation_aborted || stopping) return;
        AcceptMetrics();
        return;
      }
      auto scrape = std::make_shared<MetricsScrape>(std::move(socket));
      // A scraper that never finishes its request is dropped.
      scrape->timer.expires_after(std::chrono::seconds(5));
      scrape->timer.async_wait([scrape](const asio::error_code& e) {
        asio::error_code ignored;
        if (!e) scrape->socket.close(ignored);
      });
      ReadScrape(scrape);
      AcceptMetrics();
    });
  }

  void ReadScrape(const std::shared_ptr<MetricsScrape>& scrape) {
    scrape->socket.async_read_some(
        asio::buffer(scrape->buffer), [this, scrape](const asio::error_code& ec, std::size_t n) {
          if (ec) return;
          scrape->request.append(scrape->buffer.data(), n);
          bool complete = scrape->request.find("\r\n\r\n") != std::string::npos;
          if (!complete && scrape->request.size() < 8192) return ReadScrape(scrape);
          scrape->response = MetricsHttpResponse(scrape->request, RenderMetrics());
          asio::async_write(scrape->socket, asio::buffer(scrape->response),
                            [scrape](const asio::error_code&, std::size_t) {
                              asio::error_code ignored;
                              scrape->socket.shutdown(asio::ip::tcp::socket::shutdown_both,
                                                      ignored);
                              scrape->socket.close(ignored);
                              scrape->timer.cancel();
                            });
        });
  }

  // ---- connections -------------------------------------------------------

  void Accept() {
    acceptor.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec) {
        if (!stopping) LogLine("warn", "accept_failed", "reason=" + Quote(ec.message()));
        if (ec == asio::error::operation_aborted || stopping) return;
        Accept();
        return;
      }
      auto c = std::make_shared<Connection>(std::move(socket), tls_context.get(),
                                            next_connection_id++, options.max_frame_bytes);
      asio::error_code ignored;
      c->socket().set_option(asio::ip::tcp::no_delay(true), ignored);
      std::string peer = "?";
      auto ep = c->socket().remote_endpoint(ignored);
      if (!ignored) peer = ep.address().to_string() + ":" + std::to_string(ep.port());
      connections[c->id] = c;
      LogLine("info", "connection_opened",
              "conn=" + std::to_string(c->id) + " peer=" + peer + (c->tls ? " tls=1" : ""));
      // The authentication timeout covers the TLS handshake too.
      c->auth_timer.expires_after(std::chrono::milliseconds(options.auth_timeout_ms));
      std::weak_ptr<Connection> weak = c;
      c->auth_timer.async_wait([this, weak](const asio::error_code& e) {
        auto conn = weak.lock();
        if (e || !conn || conn->authenticated || conn->closed) return;
        Fail(conn, ErrorCode::kAuthTimeout, "no Hello within the authentication timeout");
      });
      if (c->tls) {
        c->tls->async_handshake(
            asio::ssl::stream_base::server, [this, c](const asio::error_code& e) {
              if (c->closed) return;
              if (e) {
                LogLine("warn", "tls_handshake_failed",
                        "conn=" + std::to_string(c->id) + " reason=" + Quote(e.message()));
                Close(c, "TLS handshake failed");
                return;
              }
              c->stream_ready = true;
              Greet(c);
            });
      } else {
        Greet(c);
      }
      Accept();
    });
  }

  // The first frame of a connection: the challenge, or a refusal.
  void Greet(const std::shared_ptr<Connection>& c) {
    if (connections.size() > options.max_connections) {
      Fail(c, ErrorCode::kTooManyConnections,
           "connection limit " + std::to_string(options.max_connections) + " reached");
      return;
    }
    c->nonce = RandomNonce();
    Send(c, Frame(ChallengeFrame{kProtocolVersion, c->nonce, options.store.node_id}));
    Read(c);
  }

  void Read(const std::shared_ptr<Connection>& c) {
    c->ReadSome(asio::buffer(c->read_buffer), [this, c](const asio::error_code& ec, std::size_t n) {
      if (c->closed) return;
      if (ec) {
        Close(c, ec == asio::error::eof ? "peer closed" : ec.message());
        return;
      }
      if (c->closing) return;  // a refused peer: ignore what else it says
      c->decoder.Feed(std::string_view(c->read_buffer.data(), n));
      for (;;) {
        auto next = c->decoder.Next();
        if (!next.ok()) {
          Fail(c, c->decoder.error_code(), next.status().message());
          return;
        }
        if (!next.value()) break;
        OnFrame(c, std::move(*next.value()));
        if (c->closing || c->closed) return;
      }
      Read(c);
    });
  }

  void OnFrame(const std::shared_ptr<Connection>& c, Frame frame) {
    if (!c->authenticated) {
      auto* hello = std::get_if<HelloFrame>(&frame);
      if (hello == nullptr) {
        return Fail(c, ErrorCode::kUnexpectedFrame, "expected Hello before anything else");
      }
      return OnHello(c, *hello);
    }
    auto* message = std::get_if<core::Message>(&frame);
    if (message == nullptr) {
      return Fail(c, ErrorCode::kUnexpectedFrame, "only Message frames after authentication");
    }
    core::MessageKind kind = core::KindOf(*message);
    bool allowed = c->role == Role::kAdmin ? AdminMaySend(kind) : ProcessMaySend(kind);
    if (!allowed) {
      return Refuse(c, ErrorCode::kNotPermitted, kind, 0,
                    std::string(core::MessageKindName(kind)) + " may not be sent by this role");
    }
    if (!CheckLimits(c, *message)) return;
    // B9: the sender is the authenticated identity, never a field of the frame.
    core::Envelope env{c->address, store.address(), std::move(*message)};
    core::Time now = NowUs();
    ++metrics.messages_received[static_cast<std::size_t>(kind)];
    if (const auto* a = std::get_if<core::Acquire>(&env.message)) {
      metrics.waiting_since.try_emplace({c->address.id, a->session}, now);
    }
    Apply(now, store.OnMessage(now, env));
  }

  void OnHello(const std::shared_ptr<Connection>& c, const HelloFrame& hello) {
    Mac key = IdentityKey(options.secret, hello.role, hello.id);
    Mac expected = AuthAnswer(key, c->nonce, hello.role, hello.id, hello.incarnation);
    std::string who = "role=" + std::string(hello.role == Role::kAdmin ? "admin" : "process") +
                      " id=" + std::to_string(hello.id) +
                      " incarnation=" + std::to_string(hello.incarnation);
    if (!MacEqual(expected, hello.mac)) {
      LogLine("warn", "auth_failed", "conn=" + std::to_string(c->id) + " " + who);
      return Fail(c, ErrorCode::kAuthFailed, "authentication failed");
    }
    c->authenticated = true;
    c->auth_timer.cancel();
    c->role = hello.role;
    c->address = {hello.role == Role::kAdmin ? core::NodeKind::kAdmin : core::NodeKind::kProcess,
                  hello.id, hello.incarnation};
    std::pair<core::NodeKind, std::uint64_t> identity{c->address.kind, c->address.id};
    auto old = routes.find(identity);
    if (old != routes.end() && old->second != c) {
      // One live connection per identity: the newest wins (a reconnect).
      std::shared_ptr<Connection> previous = old->second;
      routes.erase(old);
      Fail(previous, ErrorCode::kSuperseded, "a newer connection authenticated as this identity");
    }
    routes[identity] = c;
    LogLine("info", "authenticated", "conn=" + std::to_string(c->id) + " " + who);
    Send(c, Frame(WelcomeFrame{options.store.node_id, store.state().epoch, options.max_frame_bytes,
                               options.store.lease_us}));
  }

  bool CheckLimits(const std::shared_ptr<Connection>& c, const core::Message& m) {
    if (const auto* a = std::get_if<core::Acquire>(&m)) {
      auto p = store.state().processes.find(c->address.id);
      if (p != store.state().processes.end() && !p->second.held.count(a->session) &&
          !p->second.queued.count(a->session) &&
          p->second.held.size() + p->second.queued.size() >= options.max_sessions_per_process) {
        Refuse(c, ErrorCode::kTooManySessions, core::MessageKind::kAcquire, a->session,
               "process holds or waits for " + std::to_string(options.max_sessions_per_process) +
                   " sessions already");
        return false;
      }
    }
    if (const auto* commit = std::get_if<core::Commit>(&m)) {
      if (commit->writes.size() > options.max_writes_per_commit) {
        Refuse(c, ErrorCode::kTooManyWrites, core::MessageKind::kCommit, commit->session,
               std::to_string(commit->writes.size()) + " writes, limit " +
                   std::to_string(options.max_writes_per_commit));
        return false;
      }
      // How many attributes the session would have: its count now, plus
      // the change of each name this commit touches (a commit may write a
      // name twice), without copying the session's names.
      auto s = store.state().sessions.find(commit->session);
      const core::AttributeMap* before = nullptr;
      if (s != store.state().sessions.end() && !commit->clear_first) before = &s->second.attributes;
      struct Touched {
        std::string_view name;
        bool existed, exists;
      };
      std::vector<Touched> touched;
      touched.reserve(commit->writes.size());
      for (const core::AttributeWrite& w : commit->writes) {
        if (w.name.size() > options.max_attribute_name_bytes ||
            w.value.size() > options.max_attribute_value_bytes) {
          Refuse(c, ErrorCode::kAttributeTooLarge, core::MessageKind::kCommit, commit->session,
                 "attribute name of " + std::to_string(w.name.size()) + " bytes or value of " +
                     std::to_string(w.value.size()) + " bytes above the limits " +
                     std::to_string(options.max_attribute_name_bytes) + "/" +
                     std::to_string(options.max_attribute_value_bytes));
          return false;
        }
        auto t = std::find_if(touched.begin(), touched.end(),
                              [&](const Touched& x) { return x.name == w.name; });
        if (t == touched.end()) {
          const bool existed = before != nullptr && before->count(w.name) != 0;
          t = touched.insert(touched.end(), Touched{w.name, existed, existed});
        }
        t->exists = !w.erase;
      }
      std::size_t count = before != nullptr ? before->size() : 0;
      for (const Touched& t : touched) count = count + t.exists - t.existed;
      if (count > options.max_attributes_per_session) {
        Refuse(c, ErrorCode::kTooManyAttributes, core::MessageKind::kCommit, commit->session,
               "session would have " + std::to_string(count) + " attributes, limit " +
                   std::to_string(options.max_attributes_per_session));
        return false;
      }
    }
    return true;
  }

  // A non-fatal refusal: the connection stays.
  void Refuse(const std::shared_ptr<Connection>& c, ErrorCode code, core::MessageKind what,
              core::SessionId session, const std::string& text) {
    ++metrics.connection_errors[code];
    LogLine("info", "refused",
            "conn=" + std::to_string(c->id) + " code=" + std::string(ErrorCodeName(code)) +
                " reason=" + Quote(text));
    Send(c, Frame(ErrorFrame{code, false, static_cast<std::uint8_t>(what), session, text}));
  }

  // A fatal error: say why, then close this connection only.
  void Fail(std::shared_ptr<Connection> c, ErrorCode code, const std::string& text) {
    if (c->closing || c->closed) return;
    ++metrics.connection_errors[code];
    if (!c->stream_ready) {
      // TLS not yet set up: no way to send an Error frame.
      LogLine("warn", "connection_error",
              "conn=" + std::to_string(c->id) + " code=" + std::string(ErrorCodeName(code)) +
                  " reason=" + Quote(text));
      Close(c, text);
      return;
    }
    LogLine("warn", "connection_error",
            "conn=" + std::to_string(c->id) + " code=" + std::string(ErrorCodeName(code)) +
                " reason=" + Quote(text));
    Send(c, Frame(ErrorFrame{code, true, 0xff, 0, text}));
    c->closing = true;
    if (!c->writing) Close(c, "error sent");
  }

  void Send(std::shared_ptr<Connection> c, const Frame& frame) {
    if (c->closed || c->closing) return;
    std::string bytes = EncodeFrame(frame);
    if (c->out_bytes + bytes.size() > options.max_outgoing_bytes) {
      // A client that does not read must not make the server buffer forever.
      Close(c, "slow client: " + std::to_string(c->out_bytes) + " bytes unread");
      return;
    }
    c->out_bytes += bytes.size();
    c->out.push_back(std::move(bytes));
    if (!c->writing) Write(c);
  }

  void Write(const std::shared_ptr<Connection>& c) {
    c->writing = true;
    // Frames queued meanwhile leave together: one write for many replies.
    if (c->out.size() > 1) {
      std::string all;
      for (std::string& f : c->out) all += f;
      c->out.clear();
      c->out.push_back(std::move(all));
    }
    c->WriteAll(asio::buffer(c->out.front()), [this, c](const asio::error_code& ec, std::size_t) {
      c->writing = false;
      if (c->closed) return;
      if (ec) {
        Close(c, "write failed: " + ec.message());
        return;
      }
      c->out_bytes -= c->out.front().size();
      c->out.pop_front();
      if (!c->out.empty()) {
        Write(c);
      } else if (c->closing) {
        Close(c, "error sent");
      }
    });
  }

  // By value: `c` may be the very pointer stored in `routes` or `connections`.
  void Close(std::shared_ptr<Connection> c, const std::string& why) {
    if (c->closed) return;
    c->closed = true;
    asio::error_code ignored;
    c->socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    c->socket().close(ignored);
    c->auth_timer.cancel();
    auto route = routes.find({c->address.kind, c->address.id});
    if (c->authenticated && route != routes.end() && route->second == c) routes.erase(route);
    connections.erase(c->id);
    LogLine("info", "connection_closed", "conn=" + std::to_string(c->id) + " reason=" + Quote(why));
  }

  void BeginStop() {
    if (stopping) return;
    stopping = true;
    LogLine("info", "stopping", "");
    asio::error_code ignored;
    acceptor.close(ignored);
    metrics_acceptor.close(ignored);
    signals.cancel(ignored);
    // Finish in-flight commits: the records of events already handled are
    // written and synced, and their replies go out before we close.
    Flush();
    // After a failure the log's state is unknown: nothing more is synced or
    // acknowledged (WalFailed dropped the waiting replies).
    Status s = failed ? Status::Ok() : wal->Sync();
    if (!s.ok()) {
      LogLine("error", "wal_sync_failed", "reason=" + Quote(s.message()));
    } else if (!failed) {
      DeliverSynced();
    }
    deadline_timer.cancel();
    sync_timer.cancel();
    std::vector<std::shared_ptr<Connection>> all;
    for (auto& [id, c] : connections) all.push_back(c);
    for (auto& c : all) Fail(c, ErrorCode::kShuttingDown, "server shutting down");
    // Give the last frames a moment to leave, then end the loop.
    auto t = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(200));
    t->async_wait([this, t](const asio::error_code&) {
      std::vector<std::shared_ptr<Connection>> rest;
      for (auto& [id, c] : connections) rest.push_back(c);
      for (auto& c : rest) Close(c, "shutdown");
      io.stop();
    });
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::Create(const ServerOptions& options) {
  if (options.secret.empty()) return Status::Error("the shared secret is empty");
  if (options.max_concurrent_syncs > 16)
    return Status::Error("max_concurrent_syncs must be 0 to 16, not " +
                         std::to_string(options.max_concurrent_syncs));
  auto impl = std::make_unique<Impl>(options);
  RecoveredLog recovered;
  auto wal = Wal::Open(options.data_dir, options.fsync, &recovered, options.wal_damage,
                       options.wal_reserve_bytes);
  if (!wal.ok()) return wal.status();
  impl->wal = std::move(wal.value());
  if (!recovered.damaged_copy.empty()) {
    LogLine("error", "wal_damage_truncated",
            "bytes=" + std::to_string(recovered.dropped_bytes) +
                " reason=" + Quote(recovered.tail_problem) +
                " next_valid_record=" + std::to_string(recovered.valid_record_after_problem) +
                " copy=" + Quote(recovered.damaged_copy));
  } else if (!recovered.tail_problem.empty()) {
    LogLine("warn", "wal_tail_dropped",
            "bytes=" + std::to_string(recovered.dropped_bytes) +
                " reason=" + Quote(recovered.tail_problem));
  }
  core::Time now = NowUs();
  core::Effects fx;
  if (recovered.records.empty()) {
    fx = impl->store.Start(now);
  } else {
    for (const core::Record& r : recovered.records) impl->log_state.Apply(r);
    impl->store = core::Store::Recover(options.store, recovered.records, now, &fx);
  }
  LogLine("info", "recovered",
          "records=" + std::to_string(recovered.records.size()) +
              " generation=" + std::to_string(recovered.generation) +
              " epoch=" + std::to_string(impl->store.state().epoch) +
              " last_token=" + std::to_string(impl->store.state().last_token) +
              " fsync=" + std::string(FsyncPolicyName(options.fsync)));
  impl->Apply(now, std::move(fx));
  impl->Flush();
  if (impl->failed) return Status::Error("could not write the log");
  Status synced = impl->wal->Sync();
  if (!synced.ok()) return synced;
  impl->DeliverSynced();

  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return Status::Error("TLS needs both a certificate (--tls-cert) and its key (--tls-key)");
  }
  if (!options.tls_cert_file.empty()) {
    auto tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    // TLS 1.2 or newer only.
    tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    asio::error_code tls_ec;
    tls->use_certificate_chain_file(options.tls_cert_file, tls_ec);
    if (tls_ec) {
      return Status::Error("cannot use TLS certificate " + options.tls_cert_file + ": " +
                           tls_ec.message());
    }
    tls->use_private_key_file(options.tls_key_file, asio::ssl::context::pem, tls_ec);
    if (tls_ec) {
      return Status::Error("cannot use TLS key " + options.tls_key_file + ": " + tls_ec.message());
    }
    impl->tls_context = std::move(tls);
  }

  asio::error_code ec;
  auto address = asio::ip::make_address(options.listen_host, ec);
  if (ec) return Status::Error("bad listen address '" + options.listen_host + "': " + ec.message());
  asio::ip::tcp::endpoint endpoint(address, options.listen_port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Error("cannot listen on " + options.listen_host + ":" +
                         std::to_string(options.listen_port) + ": " + ec.message());
  }
  if (options.metrics) {
    auto metrics_address = asio::ip::make_address(options.metrics_host, ec);
    if (ec) {
      return Status::Error("bad metrics address '" + options.metrics_host + "': " + ec.message());
    }
    asio::ip::tcp::endpoint metrics_endpoint(metrics_address, options.metrics_port);
    impl->metrics_acceptor.open(metrics_endpoint.protocol(), ec);
    if (!ec) impl->metrics_acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
    if (!ec) impl->metrics_acceptor.bind(metrics_endpoint, ec);
    if (!ec) impl->metrics_acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Error("cannot listen for metrics on " + options.metrics_host + ":" +
                           std::to_string(options.metrics_port) + ": " + ec.message());
    }
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::uint16_t Server::metrics_port() const {
  if (!impl_->metrics_acceptor.is_open()) return 0;
  return impl_->metrics_acceptor.local_endpoint().port();
}

std::uint16_t Server::port() const { return impl_->acceptor.local_endpoint().port(); }

void Server::Run() {
  Impl& s = *impl_;
  s.signals.add(SIGTERM);
  s.signals.add(SIGINT);
  s.signals.async_wait([&s](const asio::error_code& ec, int signal) {
    if (ec) return;
    LogLine("info", "signal", "signal=" + std::to_string(signal));
    s.BeginStop();
  });
  LogLine("info", "listening",
          "host=" + s.options.listen_host + " port=" + std::to_string(port()) +
              " tls=" + (s.tls_context ? "1" : "0"));
  s.Accept();
  if (s.metrics_acceptor.is_open()) {
    LogLine("info", "metrics_listening",
            "host=" + s.options.metrics_host + " port=" + std::to_string(metrics_port()));
    s.AcceptMetrics();
  }
  s.ScheduleSync();
  s.io.run();
  if (!s.failed) {
    Status st = s.wal->Flush();
    if (st.ok()) st = s.wal->Sync();
    if (!st.ok()) LogLine("error", "wal_final_sync_failed", "reason=" + Quote(st.message()));
  }
  LogLine("info", "stopped", "");
}

void Server::Stop() {
  asio::post(impl_->io, [this] { impl_->BeginStop(); });
}

}  // namespace latchkey::net
