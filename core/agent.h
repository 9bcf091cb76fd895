// ProcessAgent: the state machine inside one application-server process. It
// holds process-level locks from the store nodes (R6-R8, B1, B5) and hands out
// thread-level locks on portions of a session to the process's request
// threads (R9).
//
// Sans-IO: inputs are store messages, thread calls and the time; outputs are
// Effects (messages to send, threads to wake). Request threads never touch the
// state directly: a driver turns their calls into On* inputs and their waits
// into `wake` events.
//
// Thread-safety: none; one driver thread or strand owns an agent.
//
// Invariants (CheckInvariants):
//   - thread holders of one session never hold conflicting portions (R9);
//   - a session has thread holders or pending commits only while Held;
//   - a thread is either a holder or a waiter of a session, never both, and
//     appears at most once;
//   - entitled waiters (those present when the tenure was granted) form a
//     prefix of the waiting queue;
//   - each store link's counts match the sessions homed on it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/effects.h"
#include "core/messages.h"
#include "core/types.h"

namespace latchkey::core {

struct AgentConfig {
  ProcessRef self{1, 1};
  std::uint32_t store_count = 1;   // B8: sessions are spread over this many store nodes
  Time lease_us = 2'000'000;       // B1: the stores' lease length
  std::uint32_t drift_ppm = 1000;  // bound on clock-rate difference to the stores
  Time expiry_margin_us = 20'000;  // extra safety before the lease end
  Time heartbeat_us = 0;           // 0 means lease_us / 4
  Time retry_us = 100'000;         // resend an unanswered request this often (B4)
  Time idle_release_us = kNever;   // R6/R8: 0 = release after every request
  // R8: a lock the store had to take from another process (the Acquire was
  // Queued) is given back as soon as this process has no thread using or
  // waiting for it, instead of being cached until recalled: the other
  // process will most likely want it back, and then needs no recall. When
  // the last thread commits, its Release is sent right behind the Commit.
  bool release_when_contended = false;
  bool operator==(const AgentConfig&) const = default;

  Time EffectiveHeartbeat() const { return heartbeat_us != 0 ? heartbeat_us : lease_us / 4; }
  // How long after sending a lease-renewing message the agent may trust its
  // lease: the lease less twice the drift over it, less the margin.
  Time TrustSpan() const;
};

enum class LockState : std::uint8_t { kUnlocked, kRequested, kHeld, kReleasing };
std::string_view LockStateName(LockState state);

struct ThreadHold {
  ThreadId thread = 0;
  Portion portion;
  bool clear_first = false;            // B6: the commit drops every attribute first
  std::vector<AttributeWrite> writes;  // buffered until the commit
  bool committing = false;
  bool operator==(const ThreadHold&) const = default;
};

struct ThreadWait {
  ThreadId thread = 0;
  Portion portion;
  Time deadline = kNever;  // B5: fail with kTimeout after this
  bool try_only = false;   // B5: never wait for another process
  bool entitled = false;   // waiting when the tenure was granted: served even if recalled
  bool operator==(const ThreadWait&) const = default;
};

struct PendingCommit {
  ThreadId thread = 0;
  std::uint64_t seq = 0;
  bool clear_first = false;
  WriteSet writes;      // shared with the Commit messages that carry them
  bool resent = false;  // sent more than once: its outcome may be unknown
  bool operator==(const PendingCommit&) const = default;
};

// A Release sent right behind the last holder's Commit (release_when_contended):
// the tenure ends with that commit, whose acknowledgement is still awaited.
enum class PipelinedRelease : std::uint8_t {
  kNone,
  kSent,
  kAcked,  // the ReleaseAck overtook the CommitAck
};

struct AgentSession {
  LockState state = LockState::kUnlocked;
  std::uint64_t request_id = 0;  // the outstanding Acquire (kRequested)
  bool try_request = false;
  bool queued = false;               // the store said Queued
  Time request_sent_at = 0;          // first send of the outstanding Acquire
  std::uint64_t request_lapses = 0;  // the link's lapse count when it was sent
  Token revoked_seen = kNoToken;     // a Revoked that overtook its grant
  Token token = kNoToken;            // kHeld / kReleasing
  bool recalled = false;             // R7: finish the entitled threads, then release
  bool contended = false;            // release_when_contended: this tenure was Queued first
  PipelinedRelease pipelined = PipelinedRelease::kNone;  // release_when_contended
  Token recall_seen = kNoToken;                          // a recall that overtook its grant
  bool reclaiming = false;                               // B7: a Reclaim is unanswered
  Time reclaim_sent_at = 0;
  // B7: while reclaiming, the lock is trusted only as long as the leases of
  // the store's previous life allowed; acks from the new life do not extend it.
  Time reclaim_trust_until = 0;
  AttributeMap cache;  // authoritative while held
  DataVersion cache_version;
  std::vector<ThreadHold> holders;
  std::deque<ThreadWait> waiters;
  std::deque<PendingCommit> commits;  // one in flight at a time, in seq order
  std::uint64_t next_seq = 1;
  Time retry_at = kNever;
  Time idle_release_at = kNever;
  Time timer = kNever;
  bool operator==(const AgentSession&) const = default;
};

struct StoreLink {
  std::uint64_t epoch = 0;  // 0 until the store first answers
  Time trusted_until = 0;   // B1: self-expiry point, by this process's clock
  std::uint64_t heartbeat_seq = 0;
  Time heartbeat_sent_at = 0;
  bool heartbeat_outstanding = false;
  Time next_heartbeat_at = kNever;
  // Times the trust ran out while engaged: the store may have expired the
  // lease, revoking grants and dropping buffered requests made before (B1).
  std::uint64_t lapses = 0;
  bool lapsed = false;
  // The send time of the latest renewal answered after a time with no trust
  // at all: the store may have expired the lease just before it (B1).
  Time gap_closed_at = 0;
  std::uint32_t engaged = 0;  // sessions homed here that are not Unlocked
  std::uint32_t held = 0;     // sessions homed here that are Held
  bool operator==(const StoreLink&) const = default;
};

struct AgentState {
  std::uint64_t last_request_id = 0;
  std::map<SessionId, AgentSession> sessions;
  std::vector<StoreLink> stores;
  SessionTimers timers;
  bool operator==(const AgentState&) const = default;
};

struct ReadResult {
  Reason reason = Reason::kNone;     // kNone: `value` is the answer
  std::optional<std::string> value;  // nullopt: the attribute does not exist
  bool operator==(const ReadResult&) const = default;
};

struct AgentStats {
  std::uint64_t acquires = 0;
  std::uint64_t grants = 0;
  std::uint64_t releases = 0;
  std::uint64_t recalls = 0;
  std::uint64_t lease_expiries = 0;
  std::uint64_t commits = 0;
  std::uint64_t retries = 0;
  // Sessions that became Held or stopped being Held: an observer that
  // follows which sessions are held need not look while this stays put.
  std::uint64_t held_changes = 0;
  SessionId last_held_change = 0;  // the session of the latest such change
  bool operator==(const AgentStats&) const = default;
};

class ProcessAgent {
 public:
  explicit ProcessAgent(const AgentConfig& config);

  Effects OnMessage(Time now, const Envelope& in);
  Effects OnTick(Time now);

  // R9: a thread asks for a portion of a session. It is woken with kGranted,
  // or kFailed (kTimeout after `deadline`, kBusy for a try-lock that would
  // have to wait for another process, kBadPortion, kAlreadyWaiting).
  Effects OnThreadAsk(Time now, ThreadId thread, SessionId session, const Portion& portion,
                      Time deadline = kNever, bool try_only = false);
  // Withdraws a waiting ask; the thread is woken with kFailed(kCancelled).
  Effects OnThreadCancel(Time now, ThreadId thread, SessionId session);
  // Ends the thread's request: with `commit`, its writes go to the store and
  // it is woken with kCommitted once acknowledged; otherwise kRolledBack.
  Effects OnThreadFinish(Time now, ThreadId thread, SessionId session, bool commit);

  // Each input also exists in a form that writes into `out`: its contents
  // are replaced and its buffers reused, so a driver keeping one Effects
  // does not allocate for them on every input.
  void OnMessage(Time now, const Envelope& in, Effects& out);
  void OnTick(Time now, Effects& out);
  void OnThreadAsk(Time now, ThreadId thread, SessionId session, const Portion& portion,
                   Time deadline, bool try_only, Effects& out);
  void OnThreadCancel(Time now, ThreadId thread, SessionId session, Effects& out);
  void OnThreadFinish(Time now, ThreadId thread, SessionId session, bool commit, Effects& out);

  // Reads and writes of a thread that holds a portion. They touch only the
  // cache and the thread's buffered writes, so they have no Effects.
  ReadResult Read(ThreadId thread, SessionId session, const std::string& attribute) const;
  Reason Write(ThreadId thread, SessionId session, const std::string& attribute, std::string value);
  Reason Erase(ThreadId thread, SessionId session, const std::string& attribute);
  // A Read and a Write of one attribute with one look-up (a counter's
  // increment): `update` gets the value Read would give (nullptr: the
  // attribute does not exist) and returns the value to write, buffered as
  // Write buffers it. Refused as Write refuses, and then `update` is not called.
  template <class F>
  Reason Update(ThreadId thread, SessionId session, const std::string& attribute, F&& update) {
    ThreadHold* hold = nullptr;
    const std::string* current = nullptr;
    const Reason reason = ForUpdate(thread, session, attribute, hold, current);
    if (reason != Reason::kNone) return reason;
    hold->writes.push_back(AttributeWrite{attribute, update(current), false});
    return Reason::kNone;
  }
  // B6: logout; needs the whole session, exclusive.
  Reason Clear(ThreadId thread, SessionId session);

  // Whether this process currently trusts its lock on `session` (held, and
  // its lease not past the self-expiry point by its own clock).
  bool Trusts(Time now, SessionId session) const;
  // The same for a session found in state().sessions: spares the look-up.
  bool Trusts(Time now, SessionId id, const AgentSession& s) const;

  const AgentState& state() const { return state_; }
  const AgentConfig& config() const { return config_; }
  const AgentStats& stats() const { return stats_; }
  Address address() const { return ProcessAddress(config_.self); }

  void CheckInvariants() const;
  bool operator==(const ProcessAgent& other) const { return state_ == other.state_; }

 private:
  std::uint32_t HomeOf(SessionId session) const {
    return StoreForSession(session, config_.store_count);
  }
  Address StoreOf(SessionId session) const;
  template <class M>
  void Send(SessionId session, M&& m, Effects& fx);
  void RunDue(Time now, Effects& fx);
  void OnTimer(Time now, SessionId id, AgentSession& s, Effects& fx);
  bool AdmitEpoch(Time now, std::uint32_t store, std::uint64_t epoch, Effects& fx);
  void StoreRestarted(Time now, std::uint32_t store, Effects& fx);
  void ExpireLease(Time now, std::uint32_t store, Effects& fx);

  void OnGranted(Time now, const Granted& m, Effects& fx);
  void OnQueued(Time now, const Queued& m);
  void OnBusy(Time now, const Busy& m, Effects& fx);
  void OnRecall(Time now, const Recall& m, Effects& fx);
  void OnReleaseAck(Time now, const ReleaseAck& m, Effects& fx);
  void OnCommitAck(Time now, const CommitAck& m, Effects& fx);
  void OnReclaimAck(Time now, const ReclaimAck& m);
  void OnRevoked(Time now, const Revoked& m, Effects& fx);
  void OnRejected(Time now, const Rejected& m, Effects& fx);

  void SetState(SessionId id, AgentSession& s, LockState next);
  void Trust(std::uint32_t store, Time sent_at);
  void RequestLock(Time now, SessionId id, AgentSession& s, Effects& fx);
  void ReleaseLock(Time now, SessionId id, AgentSession& s, Effects& fx);
  // kHeld -> kReleasing, without sending the Release (see ReleaseLock).
  void BeginRelease(Time now, SessionId id, AgentSession& s);
  // kReleasing -> kUnlocked once the store acknowledged the Release.
  void FinishRelease(Time now, SessionId id, AgentSession& s, Effects& fx);
  // The tenure is over: holders fail (kCommitOutcomeUnknown for the thread
  // whose commit was sent, unless `head_refused`: the store refused the only
  // copy, so it did not apply).
  void LoseLock(Time now, SessionId id, AgentSession& s, Effects& fx, bool head_refused = false);
  void SendHeadCommit(Time now, SessionId id, AgentSession& s, Effects& fx);
  // Grants waiting threads what can be granted, then releases if the tenure
  // is no longer needed. Call after anything that may unblock a session.
  void Progress(Time now, SessionId id, AgentSession& s, Effects& fx);
  void Serve(Time now, SessionId id, AgentSession& s, Effects& fx);
  void MaybeRelease(Time now, SessionId id, AgentSession& s, Effects& fx);
  void Settle(SessionId id, AgentSession& s);
  Time NextDeadline() const;
  ThreadHold* FindHold(SessionId session, ThreadId thread);
  // Update's checks and read: the thread's hold, and the attribute's value.
  Reason ForUpdate(ThreadId thread, SessionId session, const std::string& attribute,
                   ThreadHold*& hold, const std::string*& current);
  const ThreadHold* FindHold(SessionId session, ThreadId thread) const;

  // The last sessions looked up, by a hash of the id: a look-up of one of
  // them spares the map's walk (about five per thread request). Derived from
  // state_, so not part of it: == ignores it, and a copy (or an assignment)
  // starts empty, since its pointers are into the original's map.
  struct SessionCache {
    struct Entry {
      SessionId id = 0;
      AgentSession* session = nullptr;  // null: empty
    };
    // 64 slots, and ids below 64 a slot each (the simulator's sessions are
    // 0..n-1; its standard workload has 64): with 32 slots and a hash of
    // the id, two sessions of one process often shared a slot and took
    // turns missing. Higher ids add a hash of their high bits, so that ids
    // 64 apart do not all share one slot.
    static constexpr std::size_t kSlots = 64;
    SessionCache() = default;
    SessionCache(const SessionCache&) {}
    SessionCache& operator=(const SessionCache&) {
      for (Entry& e : entries) e = Entry{};
      return *this;
    }
    Entry& For(SessionId id) {
      return entries[(id + ((id >> 6) * 0x9E3779B97F4A7C15ULL >> 58)) & (kSlots - 1)];
    }
    Entry entries[kSlots];
  };
  // The session, or null if the agent never saw it.
  AgentSession* FindSession(SessionId id) const {
    SessionCache::Entry& entry = sessions_cache_.For(id);
    if (entry.session != nullptr && entry.id == id) return entry.session;
    return FindSlow(id, entry);
  }
  // The session, created if new (as std::map's []).
  AgentSession& SessionOf(SessionId id) {
    SessionCache::Entry& entry = sessions_cache_.For(id);
    if (entry.session != nullptr && entry.id == id) return *entry.session;
    return InsertSlow(id, entry);
  }
  AgentSession* FindSlow(SessionId id, SessionCache::Entry& entry) const;
  AgentSession& InsertSlow(SessionId id, SessionCache::Entry& entry);

  AgentConfig config_;
  AgentState state_;
  AgentStats stats_;
  // The deadline the last input returned (NextDeadline, which ends every
  // input): before it RunDue, which starts the next, has nothing to do, since
  // every condition it tests is one of NextDeadline's terms. Derived from
  // state_, so not part of it (== ignores it). 0: not known (look).
  mutable Time due_ = 0;
  mutable SessionCache sessions_cache_;
};

}  // namespace latchkey::core
