// latchkeyd: the production store server. See net/PROTOCOL.md.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "net/auth.h"
#include "net/server.h"

using latchkey::net::FsyncPolicy;
using latchkey::net::ServerOptions;

namespace {

// "host:port" -> (host, port); an error names the option and the value.
bool ParseHostPort(const std::string& option, const std::string& text, std::string* host,
                   std::uint16_t* port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "error: " << option << " must be host:port, got '" << text << "'\n";
    return false;
  }
  *host = text.substr(0, colon);
  try {
    std::size_t used = 0;
    unsigned long p = std::stoul(text.substr(colon + 1), &used);
    if (p > 65535 || used != text.size() - colon - 1) throw std::out_of_range("port");
    *port = static_cast<std::uint16_t>(p);
  } catch (const std::exception&) {
    std::cerr << "error: bad port in " << option << " '" << text << "'\n";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"latchkeyd: the Latchkey store server"};
  app.set_version_flag("--version", std::string("latchkeyd ") + LATCHKEY_VERSION);
  // Every option can also come from a TOML (or INI) file, keyed by its long
  // name without dashes; flags on the command line win. A key that is not an
  // option is an error, so a typo is not silently ignored.
  app.set_config("--config", "", "read options from this TOML file (keys: long option names)");
  app.allow_config_extras(CLI::config_extras_mode::error);
  ServerOptions o;
  std::string listen = "127.0.0.1:7420";
  std::string secret_file;
  std::string fsync = "always";
  std::string wal_damage = "refuse";
  std::string port_file;
  std::string metrics_listen;
  std::uint64_t lease_ms = 2000, recall_retry_ms = 250, idle_ms = 0, grace_ms = 0;
  app.add_option("--listen", listen, "host:port to listen on (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "directory of the write-ahead log")->required();
  app.add_option("--secret-file", secret_file, "file holding the master secret")->required();
  app.add_option("--tls-cert", o.tls_cert_file, "PEM certificate chain: serve TLS (with --tls-key)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", o.tls_key_file, "PEM private key of --tls-cert")
      ->check(CLI::ExistingFile);
  app.add_option("--fsync", fsync, "always | batch | never (see net/PROTOCOL.md)")
      ->capture_default_str();
  app.add_option("--wal-damage", wal_damage,
                 "refuse | truncate: a bad record with valid ones after it (see net/PROTOCOL.md)")
      ->capture_default_str();
  app.add_option("--fsync-interval-ms", o.fsync_interval_ms, "fsync period under --fsync batch")
      ->capture_default_str();
  app.add_option("--node-id", o.store.node_id, "this store node's id")->capture_default_str();
  app.add_option("--lease-ms", lease_ms, "process lease (B1)")->capture_default_str();
  app.add_option("--recall-retry-ms", recall_retry_ms, "recall resend period (R7)")
      ->capture_default_str();
  app.add_option("--idle-ms", idle_ms, "drop sessions unused this long; 0 = never (B6)")
      ->capture_default_str();
  app.add_option("--grace-ms", grace_ms, "reclaim grace after restart; 0 = 1.25 x lease (B7)")
      ->capture_default_str();
  app.add_option("--max-queue", o.store.max_queue, "buffered requests per session; 0 = unbounded")
      ->capture_default_str();
  app.add_option("--max-frame-bytes", o.max_frame_bytes)->capture_default_str();
  app.add_option("--max-connections", o.max_connections)->capture_default_str();
  app.add_option("--max-sessions-per-process", o.max_sessions_per_process)->capture_default_str();
  app.add_option("--max-attributes", o.max_attributes_per_session, "per session")
      ->capture_default_str();
  app.add_option("--max-attribute-name-bytes", o.max_attribute_name_bytes)->capture_default_str();
  app.add_option("--max-attribute-value-bytes", o.max_attribute_value_bytes)->capture_default_str();
  app.add_option("--max-writes-per-commit", o.max_writes_per_commit)->capture_default_str();
  app.add_option("--max-outgoing-bytes", o.max_outgoing_bytes, "per connection (slow clients)")
      ->capture_default_str();
  app.add_option("--auth-timeout-ms", o.auth_timeout_ms)->capture_default_str();
  app.add_option("--compact-bytes", o.compact_bytes, "compact the log past this size")
      ->capture_default_str();
  app.add_option("--wal-reserve-bytes", o.wal_reserve_bytes,
                 "under --fsync always or batch, write this many zeros ahead of the log at a "
                 "time, so an fsync need not also commit a new file size; 0: off")
      ->capture_default_str();
  app.add_option("--max-concurrent-syncs", o.max_concurrent_syncs,
                 "under --fsync always, how many fdatasyncs of the log may run at once on "
                 "helper threads; 0: one at a time on the event loop (best when an "
                 "fdatasync is short and the CPU is the limit)")
      ->capture_default_str()
      ->check(CLI::Range(0, 16));
  app.add_option("--metrics-listen", metrics_listen,
                 "host:port of the Prometheus endpoint (GET /metrics); off if not given");
  app.add_option(
      "--port-file", port_file,
      "write the bound port (and the metrics port on a second line) here once listening");
  CLI11_PARSE(app, argc, argv);

  if (!ParseHostPort("--listen", listen, &o.listen_host, &o.listen_port)) return 2;
  if (!metrics_listen.empty()) {
    o.metrics = true;
    if (!ParseHostPort("--metrics-listen", metrics_listen, &o.metrics_host, &o.metrics_port)) {
      return 2;
    }
  }
  auto policy = latchkey::net::ParseFsyncPolicy(fsync);
  if (!policy.ok()) {
    std::cerr << "error: " << policy.status().message() << "\n";
    return 2;
  }
  o.fsync = policy.value();
  auto damage = latchkey::net::ParseDamagePolicy(wal_damage);
  if (!damage.ok()) {
    std::cerr << "error: " << damage.status().message() << "\n";
    return 2;
  }
  o.wal_damage = damage.value();
  auto secret = latchkey::net::ReadSecretFile(secret_file);
  if (!secret.ok()) {
    std::cerr << "error: " << secret.status().message() << "\n";
    return 2;
  }
  o.secret = secret.value();
  if (lease_ms == 0 || recall_retry_ms == 0) {
    std::cerr << "error: --lease-ms and --recall-retry-ms must be positive\n";
    return 2;
  }
  o.store.lease_us = lease_ms * 1000;
  o.store.recall_retry_us = recall_retry_ms * 1000;
  o.store.session_idle_us = idle_ms == 0 ? latchkey::core::kNever : idle_ms * 1000;
  o.store.grace_us = grace_ms * 1000;

  auto server = latchkey::net::Server::Create(o);
  if (!server.ok()) {
    std::cerr << "error: " << server.status().message() << "\n";
    return 1;
  }
  if (!port_file.empty()) {
    std::string tmp = port_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << server.value()->port() << "\n";
      if (o.metrics) out << server.value()->metrics_port() << "\n";
    }
    std::rename(tmp.c_str(), port_file.c_str());
  }
  server.value()->Run();
  return 0;
}
