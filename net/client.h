// The Latchkey client library: an application-server process's side of the
// protocol over TCP. It drives the unchanged core::ProcessAgent (the same one
// the simulator drives) and gives request threads a blocking, thread-safe API.
//
//   auto client = Client::Connect(options);          // one per process
//   Lock lock = client.value()->Acquire(session, Portion::Whole(kExclusive), 500ms);
//   if (!lock.held()) { ... lock.status(): Timeout, Rejected, LockLost ... }
//   auto cart = lock.Get("cart");                     // from the process's cache
//   lock.Set("cart", "3 items");                      // buffered
//   Status s = lock.Commit();                         // one round trip; releases
//
// A Lock is an RAII guard of a thread-level lock (R9): destroyed without
// Commit, it rolls back. It is not tied to the OS thread that took it and may
// be moved to another thread or a continuation (one user at a time). The
// process-level lock stays cached after a thread's commit (R6) until the store
// recalls it for another process (R7), so requests on sessions this process
// owns need one round trip (the fenced commit), or none for a read-only one.
//
// One background I/O thread owns the sockets: it answers recalls, sends
// heartbeats, resends unanswered requests (B4), reconnects with backoff, and
// reclaims locks after a store restart (B7). Threads learn of trouble through
// the Status codes below: LockLost, Timeout, Rejected (see LockErrorOf).
//
// Several latchkeyd nodes (B8): `stores[i]` must be the node started with
// `--node-id i`; a session lives on node StoreForSession(session, n) (the
// same hash the simulator and model checker use); Connect checks every node's
// id and lease.
//
// Thread-safety: Client and its methods may be used from any number of
// threads at once; a Lock from one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.h"
#include "net/status.h"

namespace latchkey::net {

struct ClientOptions {
  std::vector<std::string> stores;  // "host:port" of node 0, 1, ...
  std::uint64_t process_id = 0;     // this process's identity (B9)
  // Must grow across restarts of the same process id (B4); 0: the wall clock
  // in microseconds at Connect.
  std::uint64_t incarnation = 0;
  std::string secret;            // the master secret, or...
  std::string identity_key_hex;  // ...only this process's key (net/auth.h), 64 hex digits
  std::string tls_ca_file;       // set: connect with TLS and verify the servers against it
  std::string tls_server_name;   // the name their certificates must carry; default: the host
  std::chrono::milliseconds connect_timeout{5000};
  // R6/R8: how long the process keeps a session's lock with no thread using
  // it (until then, or until recalled, requests on it need no lock round
  // trip); nullopt: until recalled; 0: release after every request. Keep it
  // finite in long-running servers: latchkeyd caps the sessions a process
  // may hold (--max-sessions-per-process) and refuses Acquires past it.
  std::optional<std::chrono::microseconds> idle_release = std::chrono::seconds(60);
  std::chrono::microseconds retry{100'000};  // resend an unanswered request (B4)
  // R8: give a session's lock back as soon as no thread here uses it when
  // it had to be taken from another process (which will likely want it
  // back, and then needs no recall); other locks follow idle_release.
  bool release_when_contended = true;
};

// What a failed call means to the thread that made it.
enum class LockError : std::uint8_t {
  kNone,
  kLockLost,        // the lock went away under the thread; its writes are discarded
  kUnknownOutcome,  // lost after the commit was sent: it may or may not have applied
  kTimeout,         // the wait ran past its deadline
  kBusy,            // refused for now (try-lock busy, queue full, store restarting): retry later
  kRejected,        // refused: a latchkeyd limit, a bad portion, an attribute outside the
                    // portion, the lock no longer held: retrying the same will not help
  kUnavailable,     // the client is closed
};
std::string_view LockErrorName(LockError error);
// The class of a Status returned by this library (its code is a core::Reason).
LockError LockErrorOf(const Status& status);

struct ClientStats {
  std::uint64_t acquires = 0;  // process-level lock requests sent
  std::uint64_t grants = 0;    // process-level grants
  std::uint64_t recalls = 0;   // recalls answered
  std::uint64_t commits = 0;   // commits acknowledged
  std::uint64_t reconnects = 0;
  std::uint64_t server_errors = 0;  // Error frames received
};

class Client;

// A thread-level lock on a portion of a session (R9), held or not.
class Lock {
 public:
  Lock() = default;
  Lock(Lock&& other) noexcept;
  Lock& operator=(Lock&& other) noexcept;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  ~Lock();  // rolls back if still held

  bool held() const { return held_; }
  explicit operator bool() const { return held_; }
  // Why the lock is not held: after a failed Acquire, a lost lock or a
  // failed Commit, the reason (see LockErrorOf); ok after a Commit or
  // Rollback that succeeded.
  const Status& status() const { return status_; }
  core::SessionId session() const { return session_; }

  // The attribute as of the lock (plus this lock's own writes): nullopt if
  // it does not exist. An error if the attribute is outside the portion or
  // the lock was lost.
  Result<std::optional<std::string>> Get(const std::string& attribute);
  // Buffered until Commit; exclusive portions only.
  Status Set(const std::string& attribute, std::string value);
  Status Erase(const std::string& attribute);
  Status Clear();  // B6: drop every attribute (needs the whole session)
  // Sends the writes (one fenced round trip) and waits for the store's
  // acknowledgement; the thread-level lock ends either way.
  Status Commit();
  Status Rollback();

  struct Shared;  // the client's internals, opaque here

 private:
  friend class Client;
  Lock(std::shared_ptr<Shared> shared, core::ThreadId thread, core::SessionId session)
      : shared_(std::move(shared)),
        thread_(thread),
        session_(session),
        held_(true),
        status_(Status::Ok()) {}
  Status Finish(bool commit);

  std::shared_ptr<Shared> shared_;
  core::ThreadId thread_ = 0;
  core::SessionId session_ = 0;
  bool held_ = false;
  Status status_ = Status::Error("no lock was taken", 1002);
};

class Client {
 public:
  // Connects to and authenticates with every store node; fails with a
  // message naming the node if one does not answer in time.
  static Result<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  // Gives back the process-level locks it holds and closes the connections;
  // Locks still alive fail with kUnavailable from then on. Destroy a Client
  // only once no thread is inside one of its methods (stop the request
  // threads first); Locks may outlive it.
  ~Client();

  // Waits up to `timeout` for `portion` of `session` (R9, B5).
  Lock Acquire(core::SessionId session, const core::Portion& portion,
               std::chrono::microseconds timeout);
  // Never waits for another process (B5): Rejected(busy) instead.
  Lock TryAcquire(core::SessionId session, const core::Portion& portion);

  ClientStats stats() const;
  std::uint64_t process_id() const;
  std::uint64_t incarnation() const;

 private:
  explicit Client(std::shared_ptr<Lock::Shared> shared) : shared_(std::move(shared)) {}
  Lock Ask(core::SessionId session, const core::Portion& portion, core::Time timeout_us,
           bool try_only);
  std::shared_ptr<Lock::Shared> shared_;
};

}  // namespace latchkey::net
