#include "net/client.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/agent.h"
#include "net/auth.h"
#include "net/clock.h"
#include "net/codec.h"

namespace latchkey::net {

namespace {

// Status codes of the library's own (beyond core::Reason's values).
constexpr int kClosedCode = 1000;         // kUnavailable
constexpr int kServerRefusedCode = 1001;  // a latchkeyd limit refused the request: kRejected
constexpr int kNotHeldCode = 1002;        // the Lock is not (or no longer) held: kRejected

Status Failure(core::Reason reason, std::string_view what) {
  return Status::Error(std::string(what) + ": " + std::string(core::ReasonName(reason)),
                       static_cast<int>(reason));
}
Status Closed() { return Status::Error("the client is closed", kClosedCode); }

bool ParseHex(std::string_view hex, Mac* out) {
  if (hex.size() != out->size() * 2) return false;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < out->size(); ++i) {
    int hi = digit(hex[2 * i]), lo = digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

}  // namespace

std::string_view LockErrorName(LockError error) {
  switch (error) {
    case LockError::kNone:
      return "none";
    case LockError::kLockLost:
      return "lock_lost";
    case LockError::kUnknownOutcome:
      return "unknown_outcome";
    case LockError::kTimeout:
      return "timeout";
    case LockError::kBusy:
      return "busy";
    case LockError::kRejected:
      return "rejected";
    case LockError::kUnavailable:
      return "unavailable";
  }
  return "?";
}

LockError LockErrorOf(const Status& status) {
  if (status.ok()) return LockError::kNone;
  if (status.code() == kClosedCode) return LockError::kUnavailable;
  if (status.code() == kServerRefusedCode || status.code() == kNotHeldCode) {
    return LockError::kRejected;
  }
  switch (static_cast<core::Reason>(status.code())) {
    case core::Reason::kLockLost:
    case core::Reason::kLeaseExpired:
    case core::Reason::kForceReleased:
    case core::Reason::kInvalidated:
    case core::Reason::kProcessRestarted:
      return LockError::kLockLost;
    case core::Reason::kCommitOutcomeUnknown:
      return LockError::kUnknownOutcome;
    case core::Reason::kTimeout:
      return LockError::kTimeout;
    case core::Reason::kBusy:
    case core::Reason::kQueueFull:
    case core::Reason::kGracePeriod:
      return LockError::kBusy;
    default:
      return LockError::kRejected;
  }
}

struct StoreConnection;

// Everything a Client and its Locks share. The I/O thread owns the sockets
// and the timer; `mu` guards the agent and the threads' wake-up slots, so a
// request thread calls the agent directly and the I/O thread does the same
// for messages and ticks: one agent, driven by one input at a time.
struct Lock::Shared : std::enable_shared_from_this<Lock::Shared> {
  explicit Shared(const ClientOptions& o) : options(o) {}

  ClientOptions options;
  Mac key{};
  std::uint64_t incarnation = 0;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::unique_ptr<asio::ssl::context> tls;
  std::vector<std::shared_ptr<StoreConnection>> stores;
  asio::steady_timer timer{io};
  std::thread io_thread;

  // Guarded by mu.
  std::mutex mu;
  std::optional<core::ProcessAgent> agent;  // built once every node's lease is known
  // A thread's wake-up: the thread sleeps on a futex of its own without
  // mu, and is woken after its waker has let mu go (UnlockWakeAndFlush).
  // A condition variable on mu woke threads into a mutex their waker still
  // held, and glibc marks a mutex retaken after a condition wait as
  // contended, so every later unlock was a futex call; std::atomic::wait
  // spins on sched_yield first, a third of the client's time with more
  // request threads than cores.
  struct Slot {
    static constexpr std::uint32_t kClear = 0, kSignalled = 1, kSleeping = 2;
    std::optional<core::ThreadEvent> event;        // guarded by mu
    std::atomic<std::uint32_t> signalled{kClear};  // set (after event) by the waker, outside mu
    void Signal() {
      if (signalled.exchange(kSignalled, std::memory_order_release) == kSleeping) {
        syscall(SYS_futex, &signalled, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
      }
    }
    // Waits until the event is there or the client closes; returns with
    // `lock` (on mu) held. A signal may be stale (its event already taken),
    // so the event itself is what ends the wait.
    void Await(std::unique_lock<std::mutex>& lock, const bool& closed) {
      while (!event && !closed) {
        signalled.store(kClear, std::memory_order_relaxed);  // under mu, no event: none is owed
        lock.unlock();
        for (;;) {
          std::uint32_t seen = signalled.load(std::memory_order_acquire);
          if (seen == kSignalled) break;
          if (seen == kClear && !signalled.compare_exchange_weak(seen, kSleeping)) continue;
          syscall(SYS_futex, &signalled, FUTEX_WAIT_PRIVATE, kSleeping, nullptr, nullptr, 0);
        }
        lock.lock();
      }
    }
  };
  // Shared: a waker keeps the slot alive until it has signalled it, even if
  // its thread has already taken the event and erased the slot.
  std::map<core::ThreadId, std::shared_ptr<Slot>> slots;
  std::vector<std::shared_ptr<Slot>> woken;  // events set, not yet notified
  core::ThreadId next_thread = 1;
  core::Time armed =
      core::kNever;  // when the I/O thread's timer fires (at or before the agent's deadline)
  bool closed = false;
  ClientStats stats;
  std::condition_variable connected_cv;  // Connect waits on it
  std::size_t ready = 0;                 // nodes that answered Welcome at least once
  std::string fatal;                     // why Connect cannot succeed (a misconfiguration), if so
  std::set<core::SessionId> awaiting_release;  // while shutting down
  // Why latchkeyd refused a thread's request (a limit), for its status.
  std::map<core::ThreadId, std::string> refusals;

  void ApplyLocked(core::Effects fx);
  // Lets mu go, then wakes the threads ApplyLocked gave events and writes
  // what it queued.
  void UnlockWakeAndFlush(std::unique_lock<std::mutex>& lock);
  // The messages of one read, under one acquisition of mu.
  void Deliver(std::uint32_t store, std::uint64_t epoch, std::vector<core::Message>& messages);
  void Arm(core::Time deadline);
  // Writes what ApplyLocked queued; call without mu.
  void FlushAll();
  // latchkeyd refused a request with a non-fatal Error frame (a limit).
  void Refused(std::uint32_t store, std::uint64_t epoch, const ErrorFrame& error);
  // The status for a thread's failure event (the server's words, if any).
  Status FailureFor(const core::ThreadEvent& event, std::string_view what);
  void Shutdown();
};

// One store node's connection. Owned by the I/O thread: every member is
// touched only there (through handlers), except `index`.
struct StoreConnection : std::enable_shared_from_this<StoreConnection> {
  StoreConnection(Lock::Shared* owner, std::uint32_t index, std::string host, std::string port)
      : owner(owner),
        index(index),
        host(std::move(host)),
        port(std::move(port)),
        resolver(owner->io),
        retry_timer(owner->io) {}

  Lock::Shared* owner;
  const std::uint32_t index;
  const std::string host, port;
  asio::ip::tcp::resolver resolver;
  asio::steady_timer retry_timer;
  std::unique_ptr<asio::ip::tcp::socket> plain;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> tls;
  // Handlers of an earlier socket see a different value. Atomic: Flush reads
  // it from request threads.
  std::atomic<std::uint64_t> attempt{0};
  FrameDecoder decoder{64u << 20};
  std::vector<core::Message> batch;  // I/O thread: decoded, not yet delivered
  std::array<char, 64 * 1024> buffer;
  // Sending, from any thread (guarded by send_mu). Frames are appended in
  // the agent's order (under the client's mu) and written after mu is let
  // go, by whichever thread comes first (Flush): on a plain socket the
  // request thread writes them itself, which spares a wake-up of the I/O
  // thread per request and keeps the system call out of mu; frames appended
  // meanwhile by other threads leave in the same write. With TLS, or a full
  // socket buffer, the I/O thread writes them.
  std::mutex send_mu;
  std::condition_variable flush_done;
  bool flushing = false;    // a thread is in ::send with bytes taken from `pending`
  bool ready = false;       // authenticated: messages may flow
  int direct_fd = -1;       // the plain socket while ready; -1: queue everything
  std::string pending;      // bytes for the I/O thread to write
  bool io_writing = false;  // the I/O thread writes (or is about to)
  std::string in_flight;    // I/O thread only: the bytes of its current write
  bool stopped = false;
  std::uint64_t epoch = 0;
  std::uint64_t lease_us = 0;
  int backoff_ms = 50;
  std::string last_error = "not connected yet";

  asio::ip::tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }

  void Start() {
    if (stopped) return;
    std::uint64_t my = ++attempt;
    decoder = FrameDecoder(64u << 20);
    batch.clear();
    {
      std::lock_guard lock(send_mu);
      pending.clear();
      io_writing = false;
    }
    if (owner->tls) {
      tls = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(owner->io, *owner->tls);
      std::string name =
          owner->options.tls_server_name.empty() ? host : owner->options.tls_server_name;
      tls->set_verify_mode(asio::ssl::verify_peer);
      tls->set_verify_callback(asio::ssl::host_name_verification(name));
      SSL_set_tlsext_host_name(tls->native_handle(), name.c_str());
      plain.reset();
    } else {
      plain = std::make_unique<asio::ip::tcp::socket>(owner->io);
      tls.reset();
    }
    auto self = shared_from_this();
    resolver.async_resolve(host, port, [self, my](const asio::error_code& ec, auto endpoints) {
      if (my != self->attempt) return;
      if (ec) return self->Fail("resolve " + self->host + ": " + ec.message());
      asio::async_connect(self->socket(), endpoints,
                          [self, my](const asio::error_code& e, const asio::ip::tcp::endpoint&) {
                            if (my != self->attempt) return;
                            if (e) return self->Fail("connect: " + e.message());
                            asio::error_code ignored;
                            self->socket().set_option(asio::ip::tcp::no_delay(true), ignored);
                            if (!self->tls) return self->Read(my);
                            self->tls->async_handshake(
                                asio::ssl::stream_base::client,
                                [self, my](const asio::error_code& h) {
                                  if (my != self->attempt) return;
                                  if (h) {
                                    return self->Fail("TLS handshake: " + h.message());
                                  }
                                  self->Read(my);
                                });
                          });
    });
  }

  void Read(std::uint64_t my) {
    auto self = shared_from_this();
    auto handler = [self, my](const asio::error_code& ec, std::size_t n) {
      if (my != self->attempt) return;
      if (ec) return self->Fail(ec == asio::error::eof ? "closed by the server" : ec.message());
      self->decoder.Feed(std::string_view(self->buffer.data(), n));
      for (;;) {
        auto next = self->decoder.Next();
        if (!next.ok()) {
          self->DeliverBatch();  // what came before the bad frame is sound
          return self->Fail("bad frame from the server: " + next.status().message());
        }
        if (!next.value()) break;
        self->OnFrame(std::move(*next.value()));
        if (my != self->attempt) return;
      }
      self->DeliverBatch();
      self->Read(my);
    };
    if (tls) {
      tls->async_read_some(asio::buffer(buffer), handler);
    } else {
      plain->async_read_some(asio::buffer(buffer), handler);
    }
  }

  // Protocol messages are handed to the agent a read's worth at a time.
  void DeliverBatch() {
    if (batch.empty()) return;
    owner->Deliver(index, epoch, batch);
    batch.clear();
  }

  void OnFrame(Frame frame) {
    if (auto* message = std::get_if<core::Message>(&frame)) {
      batch.push_back(std::move(*message));
      return;
    }
    DeliverBatch();  // keeps the order of messages and other frames
    if (auto* challenge = std::get_if<ChallengeFrame>(&frame)) {
      Mac mac = AuthAnswer(owner->key, challenge->nonce, Role::kProcess, owner->options.process_id,
                           owner->incarnation);
      Enqueue(EncodeFrame(
          Frame(HelloFrame{Role::kProcess, owner->options.process_id, owner->incarnation, mac})));
      return;
    }
    if (auto* welcome = std::get_if<WelcomeFrame>(&frame)) {
      if (welcome->node_id != index) {
        stopped = true;  // a misconfigured node list: retrying cannot help
        return Fail("the server at " + host + ":" + port + " is node " +
                    std::to_string(welcome->node_id) + ", but it is listed as node " +
                    std::to_string(index));
      }
      if (welcome->lease_us == 0) {
        stopped = true;
        return Fail("the server at " + host + ":" + port + " announced a zero lease");
      }
      bool first = epoch == 0;
      if (!first && welcome->lease_us < lease_us) {
        // The agent trusts its locks for the lease it was built with: a
        // shorter one would let it trust them past the store's expiry.
        stopped = true;
        return Fail("the server at " + host + ":" + port + " came back with a shorter lease (" +
                    std::to_string(welcome->lease_us) + " us instead of " +
                    std::to_string(lease_us) + "); restart this process to use it");
      }
      {
        std::lock_guard lock(send_mu);
        ready = true;
        direct_fd = tls ? -1 : plain->native_handle();
      }
      epoch = welcome->epoch;
      if (first) lease_us = welcome->lease_us;
      backoff_ms = 50;
      std::lock_guard lock(owner->mu);
      if (first) {
        ++owner->ready;
        owner->connected_cv.notify_all();
      } else {
        ++owner->stats.reconnects;
      }
      return;
    }
    if (auto* error = std::get_if<ErrorFrame>(&frame)) {
      {
        std::lock_guard lock(owner->mu);
        ++owner->stats.server_errors;
      }
      // A refused login before the first welcome is a misconfiguration.
      if (error->fatal && epoch == 0 && error->code == ErrorCode::kAuthFailed) stopped = true;
      if (error->fatal) {
        Fail("server error " + std::string(ErrorCodeName(error->code)) + ": " + error->text);
      } else {
        owner->Refused(index, epoch, *error);
      }
      return;
    }
  }

  // Queues a protocol message if connected (the agent resends what is
  // lost); Flush sends it. Any thread, in the agent's order.
  void Append(const core::Message& m) {
    std::string bytes = EncodeFrame(Frame(m));
    std::lock_guard lock(send_mu);
    if (ready) pending += bytes;
  }

  // Writes what is queued: on a plain socket from this thread, one writer
  // at a time; otherwise by the I/O thread. Any thread, without the client's mu.
  void Flush() {
    std::unique_lock lock(send_mu);
    while (ready && !flushing && !io_writing && !pending.empty()) {
      if (direct_fd < 0) {
        io_writing = true;
        asio::post(owner->io,
                   [self = shared_from_this(), my = attempt.load()] { self->WriteQueued(my); });
        return;
      }
      int fd = direct_fd;
      std::string bytes;
      bytes.swap(pending);
      flushing = true;
      lock.unlock();
      ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      int error = n < 0 ? errno : 0;
      lock.lock();
      flushing = false;
      flush_done.notify_all();
      if (n == static_cast<ssize_t>(bytes.size())) continue;         // more may have come meanwhile
      if (n < 0 && error != EAGAIN && error != EWOULDBLOCK) return;  // the reader sees the error
      // A full socket buffer: the I/O thread writes the rest when it can.
      pending.insert(0, bytes, n > 0 ? static_cast<std::size_t>(n) : 0, std::string::npos);
      if (!ready) {
        pending.clear();
        return;
      }
      io_writing = true;
      asio::post(owner->io,
                 [self = shared_from_this(), my = attempt.load()] { self->WriteQueued(my); });
      return;
    }
  }

  // Before authentication (the Hello) or from the I/O thread: always queued.
  void Enqueue(std::string bytes) {
    std::lock_guard lock(send_mu);
    QueueLocked(std::move(bytes));
  }

  void QueueLocked(std::string bytes) {
    pending += bytes;
    if (io_writing) return;
    io_writing = true;
    asio::post(owner->io,
               [self = shared_from_this(), my = attempt.load()] { self->WriteQueued(my); });
  }

  // I/O thread: writes what is queued, until nothing is.
  void WriteQueued(std::uint64_t my) {
    if (my != attempt) return;
    {
      std::lock_guard lock(send_mu);
      if (pending.empty()) {
        io_writing = false;
        return;
      }
      in_flight.clear();
      in_flight.swap(pending);
    }
    auto self = shared_from_this();
    auto handler = [self, my](const asio::error_code& ec, std::size_t) {
      if (my != self->attempt) return;
      if (ec) return self->Fail("write: " + ec.message());
      self->WriteQueued(my);
    };
    if (tls) {
      asio::async_write(*tls, asio::buffer(in_flight), handler);
    } else {
      asio::async_write(*plain, asio::buffer(in_flight), handler);
    }
  }

  bool Connected() {
    std::lock_guard lock(send_mu);
    return ready;
  }

  bool Draining() {
    std::lock_guard lock(send_mu);
    return ready && (io_writing || flushing || !pending.empty());
  }

  void Close() {
    ++attempt;
    {
      std::unique_lock lock(send_mu);
      // A thread may be writing to the socket: the descriptor must not be
      // closed (and perhaps reused) under it.
      flush_done.wait(lock, [&] { return !flushing; });
      ready = false;
      direct_fd = -1;
      pending.clear();
      io_writing = false;
    }
    asio::error_code ignored;
    if (plain || tls) {
      socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      socket().close(ignored);
    }
    resolver.cancel();
    retry_timer.cancel();
  }

  // Drops the connection and tries again after a backoff (50 ms doubling to
  // 1 s); the agent resends whatever was in flight.
  void Fail(const std::string& why) {
    last_error = why;
    Close();
    if (stopped) {
      std::lock_guard lock(owner->mu);
      if (owner->fatal.empty()) {
        owner->fatal = "node " + std::to_string(index) + " (" + host + ":" + port + "): " + why;
      }
      owner->connected_cv.notify_all();
      return;
    }
    retry_timer.expires_after(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min(backoff_ms * 2, 1000);
    auto self = shared_from_this();
    retry_timer.async_wait([self](const asio::error_code& ec) {
      if (!ec && !self->stopped) self->Start();
    });
  }
};

void Lock::Shared::ApplyLocked(core::Effects fx) {
  // In order, from this thread (see StoreConnection::Send); mu keeps the
  // order between threads.
  for (const core::Envelope& e : fx.send) {
    if (e.to.id < stores.size()) stores[e.to.id]->Append(e.message);
  }
  for (const core::ThreadEvent& w : fx.wake) {
    auto it = slots.find(w.thread);
    if (it == slots.end()) continue;
    it->second->event = w;
    woken.push_back(it->second);
  }
  // The timer is re-armed only for an earlier deadline: a later one (the
  // usual case: a retry timer pushed back by an answer) is served by an
  // early tick, which costs less than waking the I/O thread on every request.
  if (fx.next_deadline < armed) {
    armed = fx.next_deadline;
    // Posted under mu, so the I/O thread arms in the order `armed` was set
    // and the timer ends at the latest value. `this`, not a shared_ptr: a
    // handler left in io at shutdown must not keep Shared (and io) alive; the
    // I/O thread is joined before Shared goes away.
    asio::post(io, [this, deadline = armed] { Arm(deadline); });
  }
}

void Lock::Shared::Arm(core::Time deadline) {
  if (deadline == core::kNever) {
    timer.cancel();
    return;
  }
  timer.expires_at(SteadyTimeOf(deadline));
  timer.async_wait([this](const asio::error_code& ec) {
    if (ec) return;  // re-armed or cancelled
    // A tick is harmless early, so it always runs: the agent then asks
    // for its next deadline, which re-arms the timer.
    std::unique_lock lock(mu);
    if (closed || !agent) return;
    armed = core::kNever;
    ApplyLocked(agent->OnTick(MonotonicMicros()));
    UnlockWakeAndFlush(lock);
  });
}

void Lock::Shared::UnlockWakeAndFlush(std::unique_lock<std::mutex>& lock) {
  std::vector<std::shared_ptr<Slot>> wake;
  wake.swap(woken);
  lock.unlock();
  for (const auto& slot : wake) slot->Signal();
  FlushAll();
}

void Lock::Shared::Deliver(std::uint32_t store, std::uint64_t epoch,
                           std::vector<core::Message>& messages) {
  std::unique_lock lock(mu);
  if (!agent) return;
  if (closed) {
    // Shutting down: only the acknowledgements of the final releases matter.
    for (const core::Message& message : messages) {
      if (const auto* ack = std::get_if<core::ReleaseAck>(&message)) {
        awaiting_release.erase(ack->session);
      }
    }
    return;
  }
  core::Time now = MonotonicMicros();
  for (core::Message& message : messages) {
    core::Envelope env{core::StoreAddress(store, epoch), agent->address(), std::move(message)};
    ApplyLocked(agent->OnMessage(now, env));
  }
  UnlockWakeAndFlush(lock);
}

void Lock::Shared::FlushAll() {
  for (auto& c : stores) c->Flush();
}

// Left alone, the agent would resend a refused request forever. The refusal
// is handed to it as the store's Rejected of that request, so the waiting or
// committing thread fails at once (a refused commit did not apply) and the
// agent gives the session up; the thread's status carries the server's text.
void Lock::Shared::Refused(std::uint32_t store, std::uint64_t epoch, const ErrorFrame& error) {
  std::unique_lock lock(mu);
  if (closed || !agent) return;
  {
    auto it = agent->state().sessions.find(error.session);
    if (it == agent->state().sessions.end()) return;
    const core::AgentSession& s = it->second;
    std::string text = std::string(ErrorCodeName(error.code)) + ": " + error.text;
    core::Message refusal;
    if (error.what == static_cast<std::uint8_t>(core::MessageKind::kCommit) &&
        s.state == core::LockState::kHeld && !s.commits.empty()) {
      refusals[s.commits.front().thread] = text;
      refusal = core::Rejected{error.session, s.token, s.commits.front().seq, error.what,
                               core::Reason::kNotHolder};
    } else if (error.what == static_cast<std::uint8_t>(core::MessageKind::kAcquire) &&
               s.state == core::LockState::kRequested) {
      for (const core::ThreadWait& w : s.waiters) refusals[w.thread] = text;
      refusal = core::Rejected{error.session, core::kNoToken, s.request_id, error.what,
                               core::Reason::kQueueFull};
    } else {
      return;
    }
    core::Envelope env{core::StoreAddress(store, epoch), agent->address(), std::move(refusal)};
    ApplyLocked(agent->OnMessage(MonotonicMicros(), env));
  }
  UnlockWakeAndFlush(lock);
}

Status Lock::Shared::FailureFor(const core::ThreadEvent& event, std::string_view what) {
  auto it = refusals.find(event.thread);
  if (it == refusals.end()) return Failure(event.reason, what);
  Status s =
      Status::Error(std::string(what) + " refused by latchkeyd: " + it->second, kServerRefusedCode);
  refusals.erase(it);
  return s;
}

void Lock::Shared::Shutdown() {
  std::vector<std::pair<std::uint32_t, core::Message>> releases;
  std::vector<std::shared_ptr<Slot>> waiting;
  {
    std::lock_guard lock(mu);
    if (closed) return;
    closed = true;
    for (auto& [id, slot] : slots) waiting.push_back(slot);
    if (agent) {
      // Give back what this process holds, so others need not wait for the lease.
      for (const auto& [session, s] : agent->state().sessions) {
        std::uint32_t store = core::StoreForSession(session, agent->config().store_count);
        if (s.state == core::LockState::kHeld || s.state == core::LockState::kReleasing) {
          releases.emplace_back(store, core::Release{session, s.token});
          if (stores[store]->Connected()) awaiting_release.insert(session);
        } else if (s.state == core::LockState::kRequested) {
          // Withdrawn, so a late grant does not sit unused until the lease ends.
          releases.emplace_back(store, core::Cancel{session, s.request_id});
        }
      }
    }
  }
  for (const auto& slot : waiting) slot->Signal();  // they see `closed`
  auto self = shared_from_this();
  asio::post(io, [self, releases = std::move(releases)] {
    for (const auto& [store, m] : releases) {
      if (store < self->stores.size()) self->stores[store]->Append(m);
    }
    self->FlushAll();
    // Wait (bounded) until the store has acknowledged every release, so none
    // is lost to a close with unread data (a reset), then stop.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1000);
    auto drain = std::make_shared<std::function<void()>>();
    auto wait = std::make_shared<asio::steady_timer>(self->io);
    *drain = [self, deadline, drain, wait] {
      bool busy = std::any_of(self->stores.begin(), self->stores.end(),
                              [](const auto& c) { return c->Draining(); });
      {
        std::lock_guard lock(self->mu);
        busy = busy || !self->awaiting_release.empty();
      }
      if (busy && std::chrono::steady_clock::now() < deadline) {
        wait->expires_after(std::chrono::milliseconds(2));
        wait->async_wait([drain](const asio::error_code&) { (*drain)(); });
        return;
      }
      for (auto& c : self->stores) {
        c->stopped = true;
        c->Close();
      }
      self->timer.cancel();
      self->work.reset();
      self->io.stop();
      *drain = nullptr;  // breaks the self-reference
    };
    (*drain)();
  });
  if (io_thread.joinable()) io_thread.join();
}

// ---- Lock ------------------------------------------------------------------

Lock::Lock(Lock&& other) noexcept
    : shared_(std::move(other.shared_)),
      thread_(other.thread_),
      session_(other.session_),
      held_(other.held_),
      status_(std::move(other.status_)) {
  other.held_ = false;
}

Lock& Lock::operator=(Lock&& other) noexcept {
  if (this != &other) {
    if (held_) Rollback();
    shared_ = std::move(other.shared_);
    thread_ = other.thread_;
    session_ = other.session_;
    held_ = other.held_;
    status_ = std::move(other.status_);
    other.held_ = false;
  }
  return *this;
}

Lock::~Lock() {
  if (held_) Rollback();
}

namespace {

// A holder's asynchronous news (the lock was lost under it), if any.
std::optional<Status> HolderNews(Lock::Shared& s, core::ThreadId thread) {
  auto it = s.slots.find(thread);
  if (it == s.slots.end() || !it->second->event) return std::nullopt;
  return Failure(it->second->event->reason, "lock lost");
}

}  // namespace

Result<std::optional<std::string>> Lock::Get(const std::string& attribute) {
  if (!held_) return status_;
  std::lock_guard lock(shared_->mu);
  if (shared_->closed) return Closed();
  if (auto news = HolderNews(*shared_, thread_)) return *news;
  core::ReadResult r = shared_->agent->Read(thread_, session_, attribute);
  if (r.reason != core::Reason::kNone) return Failure(r.reason, "get " + attribute);
  return r.value;
}

Status Lock::Set(const std::string& attribute, std::string value) {
  if (!held_) return status_;
  std::lock_guard lock(shared_->mu);
  if (shared_->closed) return Closed();
  if (auto news = HolderNews(*shared_, thread_)) return *news;
  core::Reason r = shared_->agent->Write(thread_, session_, attribute, std::move(value));
  return r == core::Reason::kNone ? Status::Ok() : Failure(r, "set " + attribute);
}

Status Lock::Erase(const std::string& attribute) {
  if (!held_) return status_;
  std::lock_guard lock(shared_->mu);
  if (shared_->closed) return Closed();
  if (auto news = HolderNews(*shared_, thread_)) return *news;
  core::Reason r = shared_->agent->Erase(thread_, session_, attribute);
  return r == core::Reason::kNone ? Status::Ok() : Failure(r, "erase " + attribute);
}

Status Lock::Clear() {
  if (!held_) return status_;
  std::lock_guard lock(shared_->mu);
  if (shared_->closed) return Closed();
  if (auto news = HolderNews(*shared_, thread_)) return *news;
  core::Reason r = shared_->agent->Clear(thread_, session_);
  return r == core::Reason::kNone ? Status::Ok() : Failure(r, "clear");
}

Status Lock::Commit() { return Finish(true); }
Status Lock::Rollback() { return Finish(false); }

Status Lock::Finish(bool commit) {
  if (!held_) return Status::Error("the lock is not held", kNotHeldCode);
  held_ = false;
  Shared& s = *shared_;
  std::unique_lock lock(s.mu);
  auto it = s.slots.find(thread_);
  if (s.closed) {
    if (it != s.slots.end()) s.slots.erase(it);
    return status_ = Closed();
  }
  std::shared_ptr<Shared::Slot> slot = it->second;
  if (slot->event) {
    // The lock was lost before the thread finished: nothing was sent.
    status_ = s.FailureFor(*slot->event, commit ? "commit" : "rollback");
    s.slots.erase(it);
    return status_;
  }
  s.ApplyLocked(s.agent->OnThreadFinish(MonotonicMicros(), thread_, session_, commit));
  s.UnlockWakeAndFlush(lock);
  lock.lock();
  slot->Await(lock, s.closed);
  if (!slot->event) {
    // Closed while a commit was on its way: it may still apply.
    status_ =
        commit ? Failure(core::Reason::kCommitOutcomeUnknown, "commit (client closed)") : Closed();
  } else if (slot->event->kind == core::ThreadEventKind::kFailed) {
    status_ = s.FailureFor(*slot->event, commit ? "commit" : "rollback");
  } else {
    status_ = Status::Ok();  // done; held() is false from now on
  }
  bool ok = slot->event && slot->event->kind != core::ThreadEventKind::kFailed;
  s.slots.erase(thread_);
  return ok ? Status::Ok() : status_;
}

// ---- Client ----------------------------------------------------------------

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.stores.empty()) return Status::Error("no store nodes given");
  if (options.process_id == 0) return Status::Error("process id 0 is reserved; give a nonzero id");
  auto shared = std::make_shared<Lock::Shared>(options);
  if (!options.identity_key_hex.empty()) {
    if (!ParseHex(options.identity_key_hex, &shared->key)) {
      return Status::Error("the identity key must be 64 hex digits");
    }
  } else if (!options.secret.empty()) {
    shared->key = IdentityKey(options.secret, Role::kProcess, options.process_id);
  } else {
    return Status::Error("no secret or identity key given");
  }
  shared->incarnation =
      options.incarnation != 0
          ? options.incarnation
          : static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
  if (!options.tls_ca_file.empty()) {
    shared->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    asio::error_code ec;
    shared->tls->load_verify_file(options.tls_ca_file, ec);
    if (ec) return Status::Error("cannot load TLS CA " + options.tls_ca_file + ": " + ec.message());
  }
  for (std::size_t i = 0; i < options.stores.size(); ++i) {
    const std::string& hp = options.stores[i];
    auto colon = hp.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == hp.size()) {
      return Status::Error("store " + std::to_string(i) + ": expected host:port, got '" + hp + "'");
    }
    shared->stores.push_back(std::make_shared<StoreConnection>(
        shared.get(), static_cast<std::uint32_t>(i), hp.substr(0, colon), hp.substr(colon + 1)));
  }
  shared->io_thread = std::thread([s = shared.get()] {
    pthread_setname_np(pthread_self(), "latchkey-io");  // for top -H, perf and debuggers
    s->io.run();
  });
  asio::post(shared->io, [s = shared.get()] {
    for (auto& c : s->stores) c->Start();
  });

  std::unique_lock lock(shared->mu);
  bool all = shared->connected_cv.wait_for(lock, options.connect_timeout, [&] {
    return shared->ready == shared->stores.size() || !shared->fatal.empty();
  });
  if (!shared->fatal.empty()) {
    std::string why = shared->fatal;
    lock.unlock();
    shared->Shutdown();
    return Status::Error("cannot use the store nodes: " + why);
  }
  if (!all) {
    lock.unlock();
    // Ask the I/O thread which nodes are missing, and why.
    std::promise<std::string> why;
    asio::post(shared->io, [s = shared.get(), &why] {
      std::string text;
      for (auto& c : s->stores) {
        if (c->epoch != 0) continue;
        text += (text.empty() ? "" : "; ") + std::string("node ") + std::to_string(c->index) +
                " (" + c->host + ":" + c->port + "): " + c->last_error;
      }
      why.set_value(text);
    });
    std::string text = why.get_future().get();
    shared->Shutdown();
    return Status::Error("could not reach every store node within " +
                         std::to_string(options.connect_timeout.count()) + " ms: " + text);
  }
  lock.unlock();
  // Every node's lease must agree: the agent trusts one lease length.
  std::promise<std::vector<std::uint64_t>> leases;
  asio::post(shared->io, [s = shared.get(), &leases] {
    std::vector<std::uint64_t> out;
    for (auto& c : s->stores) out.push_back(c->lease_us);
    leases.set_value(out);
  });
  std::vector<std::uint64_t> lease = leases.get_future().get();
  if (std::any_of(lease.begin(), lease.end(), [&](auto l) { return l != lease[0]; })) {
    shared->Shutdown();
    return Status::Error("the store nodes disagree on the lease length");
  }
  core::AgentConfig config;
  config.self = {options.process_id, shared->incarnation};
  config.store_count = static_cast<std::uint32_t>(options.stores.size());
  config.lease_us = lease[0];
  config.retry_us = static_cast<core::Time>(options.retry.count());
  if (options.idle_release)
    config.idle_release_us = static_cast<core::Time>(options.idle_release->count());
  config.release_when_contended = options.release_when_contended;
  lock.lock();
  shared->agent.emplace(config);
  return std::unique_ptr<Client>(new Client(std::move(shared)));
}

Client::~Client() { shared_->Shutdown(); }

Lock Client::Acquire(core::SessionId session, const core::Portion& portion,
                     std::chrono::microseconds timeout) {
  return Ask(session, portion, static_cast<core::Time>(std::max<std::int64_t>(0, timeout.count())),
             false);
}

Lock Client::TryAcquire(core::SessionId session, const core::Portion& portion) {
  return Ask(session, portion, core::kNever, true);
}

Lock Client::Ask(core::SessionId session, const core::Portion& portion, core::Time timeout_us,
                 bool try_only) {
  std::shared_ptr<Lock::Shared> keep = shared_;  // see ~Client
  Lock::Shared& s = *keep;
  Lock failed;
  failed.session_ = session;
  std::unique_lock lock(s.mu);
  if (s.closed) {
    failed.status_ = Closed();
    return failed;
  }
  core::ThreadId thread = s.next_thread++;
  auto slot = std::make_shared<Lock::Shared::Slot>();
  s.slots.emplace(thread, slot);
  core::Time now = MonotonicMicros();
  core::Time deadline = timeout_us == core::kNever ? core::kNever : now + timeout_us;
  s.ApplyLocked(s.agent->OnThreadAsk(now, thread, session, portion, deadline, try_only));
  if (slot->event && slot->event->kind == core::ThreadEventKind::kGranted) {
    // Granted at once (the process holds the session): mu need not be taken again.
    slot->event.reset();
    s.UnlockWakeAndFlush(lock);
    return Lock(std::move(keep), thread, session);
  }
  s.UnlockWakeAndFlush(lock);
  lock.lock();
  slot->Await(lock, s.closed);
  if (!slot->event) {
    s.slots.erase(thread);
    failed.status_ = Closed();
    return failed;
  }
  core::ThreadEvent event = *slot->event;
  slot->event.reset();
  if (event.kind == core::ThreadEventKind::kGranted) return Lock(std::move(keep), thread, session);
  s.slots.erase(thread);
  failed.status_ = s.FailureFor(event, "acquire session " + std::to_string(session));
  return failed;
}

ClientStats Client::stats() const {
  std::lock_guard lock(shared_->mu);
  ClientStats out = shared_->stats;
  if (shared_->agent) {
    const core::AgentStats& a = shared_->agent->stats();
    out.acquires = a.acquires;
    out.grants = a.grants;
    out.recalls = a.recalls;
    out.commits = a.commits;
  }
  return out;
}

std::uint64_t Client::process_id() const { return shared_->options.process_id; }
std::uint64_t Client::incarnation() const { return shared_->incarnation; }

}  // namespace latchkey::net
