// latchkeyd's server: one Asio io_context thread owns the core Store, the
// write-ahead log and every connection, so none of them needs a lock.
//
// Per event (a decoded frame, or the timer at the core's next deadline) the
// server calls the core and applies its Effects in order: records go to the
// log, replies wait in `outbox_`. A flush handler posted behind the events
// already queued in the same loop iteration writes all their records with
// one write and one fsync (group commit), then sends the replies.
//
// Thread-safety: Run() on one thread; Stop() may be called from any thread.
//
// Invariants:
//   - no reply leaves before the records persisted with it are flushed
//     (and fsync'd under --fsync always) (B3);
//   - a connection sends only as the identity it authenticated as: the
//     envelope's sender is the connection's, never one from the wire (B9);
//   - the timer is armed at the deadline the core asked for last.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/store.h"
#include "net/status.h"
#include "net/wal.h"

namespace latchkey::net {

struct ServerOptions {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 7420;  // 0 picks a free port (see port())
  // The Prometheus endpoint (GET /metrics over HTTP/1.1, no authentication:
  // keep it on a loopback or otherwise private address); off unless set.
  bool metrics = false;
  std::string metrics_host = "127.0.0.1";
  std::uint16_t metrics_port = 0;  // 0 picks a free port (see metrics_port())
  std::string data_dir;
  std::string secret;  // the master secret (see net/auth.h)
  // TLS (1.2+) for every client connection when both are set: a PEM
  // certificate chain and its PEM private key. Authentication stays the
  // HMAC challenge-response, inside the encrypted channel.
  std::string tls_cert_file;
  std::string tls_key_file;
  FsyncPolicy fsync = FsyncPolicy::kAlways;
  DamagePolicy wal_damage = DamagePolicy::kRefuse;
  std::uint64_t wal_reserve_bytes = kDefaultReserveBytes;  // zeros written ahead of the log
  std::uint32_t fsync_interval_ms = 10;                    // --fsync batch
  // --fsync always: fdatasyncs at once on helper threads; 0: one at a time
  // on the event loop (larger batches, no thread hand-offs).
  std::uint32_t max_concurrent_syncs = 0;
  core::StoreConfig store;
  std::uint32_t max_frame_bytes = 1u << 20;
  std::uint32_t max_connections = 1024;
  std::uint32_t max_sessions_per_process = 4096;
  std::uint32_t max_attributes_per_session = 1024;
  std::uint32_t max_attribute_name_bytes = 256;
  std::uint32_t max_attribute_value_bytes = 256u << 10;
  std::uint32_t max_writes_per_commit = 1024;
  std::uint64_t max_outgoing_bytes = 8u << 20;  // per connection; past it: slow client, closed
  std::uint32_t auth_timeout_ms = 5000;
  std::uint64_t compact_bytes = 64u << 20;  // compact the log when it grows past this
};

class Server {
 public:
  // Opens and recovers the log, rebuilds the store, binds the listener.
  static Result<std::unique_ptr<Server>> Create(const ServerOptions& options);
  ~Server();

  std::uint16_t port() const;
  // The metrics endpoint's port, or 0 if it is off.
  std::uint16_t metrics_port() const;
  // Serves until Stop, then finishes in-flight commits and flushes the log.
  void Run();
  // Graceful shutdown; callable from any thread or a signal handler's strand.
  void Stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One structured log line on stderr: `ts=<unix ms> level=<level> event=<event> <fields>`.
void LogLine(const char* level, const char* event, const std::string& fields);

}  // namespace latchkey::net
