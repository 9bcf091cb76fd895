// Store: the state machine of one store node, holding many sessions.
//
// Sans-IO: each call takes one input (a message or the time) and returns the
// Effects the driver must apply, in order. No clocks, threads or I/O; the
// same object runs under the simulator and inside latchkeyd.
//
// Thread-safety: none; a driver owns a Store from one thread or strand.
//
// Invariants (checked with LK_ASSERT after every input in CheckInvariants):
//   - a session's holder, if any, is a known process whose `held` set names
//     that session; every queued request's process lists it as `queued`;
//   - a process is queued at most once per session, and never queued for a
//     session it holds;
//   - every token ever issued is <= last_token; tokens only grow (B2);
//   - a session with no tenure, an empty queue, no data and no request
//     marks does not exist;
//   - `timers` holds exactly one entry per session whose timer is set;
//   - a revoking tenure (ended by an administrator, see Tenure::revoked) has
//     its revocation retry armed, so its session's timer is set.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "core/effects.h"
#include "core/messages.h"
#include "core/types.h"

namespace latchkey::core {

struct StoreConfig {
  std::uint64_t node_id = 0;
  Time lease_us = 2'000'000;       // B1: a process's lease, renewed by heartbeats
  Time recall_retry_us = 250'000;  // R7: resend a recall this often while unanswered
  Time session_idle_us = kNever;   // B6: drop a session unused this long
  Time grace_us = 0;               // B7: 0 means lease_us + lease_us / 4
  std::uint32_t max_queue = 0;     // buffered requests per session; 0 = unbounded
  bool operator==(const StoreConfig&) const = default;

  Time EffectiveGrace() const { return grace_us != 0 ? grace_us : lease_us + lease_us / 4; }
};

// One holder's tenure of one session.
struct Tenure {
  ProcessRef holder;
  Token token = kNoToken;
  std::uint64_t request_id = 0;  // the Acquire it answers (B4: answer repeats)
  Time granted_at = 0;
  std::uint64_t last_seq = 0;  // last commit applied in this tenure
  bool recalled = false;       // R7: once per tenure, then on a timer
  Time recall_retry_at = kNever;
  bool reclaimed = true;  // B7: false from recovery until reclaimed
  // kForceReleased or kInvalidated: an administrator ended the tenure. Its
  // token is dead (commits refused, no reclaim), but the session goes to
  // nobody else until the holder gives the token back (a Release, or a new
  // Acquire) or its lease runs out at the store, as for a crashed holder (B1):
  // until then the holder may not know yet and still believe it holds the lock.
  // Revoked and a Recall (which an agent that dropped the token answers with
  // a Release) are resent on the recall timer meanwhile.
  Reason revoked = Reason::kNone;
  bool operator==(const Tenure&) const = default;
};

// R4: a buffered request.
struct Waiter {
  ProcessRef process;
  std::uint64_t request_id = 0;
  Time buffered_at = 0;
  DataVersion cached;
  bool operator==(const Waiter&) const = default;
};

// B4: the newest Acquire seen from a process for a session.
struct RequestMark {
  std::uint64_t incarnation = 0;
  std::uint64_t request_id = 0;
  // Granted, cancelled or refused (Busy). A request still open (buffered, or dropped from
  // the queue when its process's lease ran out) is taken again when resent.
  bool finished = false;
  bool operator==(const RequestMark&) const = default;
};

struct SessionState {
  AttributeMap attributes;
  DataVersion version;
  std::optional<Tenure> tenure;
  std::deque<Waiter> queue;
  std::map<std::uint64_t, RequestMark> last_request;  // by process id
  Time last_used = 0;
  Time timer = kNever;  // min of the recall retry and the idle expiry
  bool operator==(const SessionState&) const = default;
};

struct ProcessEntry {
  std::uint64_t incarnation = 0;
  Time lease_until = 0;
  FlatSet<SessionId> held;
  FlatSet<SessionId> queued;
  bool operator==(const ProcessEntry&) const = default;
  bool active() const { return !held.empty() || !queued.empty(); }
};

struct StoreState {
  std::uint64_t epoch = 1;  // bumped by every recovery
  Token last_token = kNoToken;
  Time grace_until = 0;  // B7: unreclaimed tenures block grants until then
  bool in_grace = false;
  std::map<SessionId, SessionState> sessions;
  std::map<std::uint64_t, ProcessEntry> processes;
  SessionTimers timers;
  bool operator==(const StoreState&) const = default;
};

// Counters for observability (B10); not part of the protocol state.
struct StoreStats {
  std::uint64_t grants = 0;
  std::uint64_t queued = 0;
  std::uint64_t recalls = 0;
  std::uint64_t lease_expiries = 0;
  std::uint64_t rejects = 0;
  std::uint64_t commits = 0;
  bool operator==(const StoreStats&) const = default;
};

class Store {
 public:
  explicit Store(const StoreConfig& config);

  // Fresh store, epoch 1. Its first Effects (from Start) persist the epoch.
  Effects Start(Time now);
  // B7: rebuild from the records earlier lives persisted, in log order. The
  // new life has a higher epoch and a grace period for reclaims.
  static Store Recover(const StoreConfig& config, const std::vector<Record>& log, Time now,
                       Effects* effects);

  Effects OnMessage(Time now, const Envelope& in);
  Effects OnTick(Time now);
  // The same, into `out`: its contents are replaced, its buffers reused.
  void OnMessage(Time now, const Envelope& in, Effects& out);
  void OnTick(Time now, Effects& out);

  const StoreState& state() const { return state_; }
  const StoreConfig& config() const { return config_; }
  const StoreStats& stats() const { return stats_; }
  // Counts the changes to process entries (a lease, a held or queued set): an
  // observer that follows the leases need not look while it stays put. Not
  // part of the state (a recovered store counts afresh).
  std::uint64_t process_changes() const { return process_changes_; }
  Address address() const { return StoreAddress(config_.node_id, state_.epoch); }

  // Asserts the invariants listed above; the tests call it after every step.
  void CheckInvariants() const;

  bool operator==(const Store& other) const { return state_ == other.state_; }

 private:
  void RunDue(Time now, Effects& fx);
  void OnAcquire(Time now, ProcessRef from, const Acquire& m, Effects& fx);
  void OnRelease(ProcessRef from, const Release& m, Effects& fx, Time now);
  void OnCommit(Time now, ProcessRef from, const Commit& m, Effects& fx);
  void OnReclaim(Time now, ProcessRef from, const Reclaim& m, Effects& fx);
  void OnCancel(Time now, ProcessRef from, const Cancel& m, Effects& fx);
  void OnAdmin(Time now, const Address& from, const Message& m, Effects& fx);

  // Returns the process entry for `from`, handling incarnations (B4): nullptr
  // if the message comes from a predecessor and must be ignored.
  ProcessEntry* Admit(Time now, ProcessRef from, Effects& fx);
  void RenewLease(Time now, ProcessEntry& process);
  void Grant(Time now, SessionId id, SessionState& s, ProcessRef to, std::uint64_t request_id,
             const DataVersion& cached, Effects& fx);
  void EndTenure(Time now, SessionId id, SessionState& s, Effects& fx);
  void Revoke(Time now, SessionId id, SessionState& s, Reason reason, Effects& fx);
  void GrantNext(Time now, SessionId id, SessionState& s, Effects& fx);
  void SendRecall(Time now, SessionId id, SessionState& s, Effects& fx);
  // Admin force release or invalidation of a held session: the tenure starts
  // revoking (see Tenure::revoked); SendRevocation (re)tells its holder.
  void StartRevocation(Time now, SessionId id, SessionState& s, Reason reason, Effects& fx);
  void SendRevocation(Time now, SessionId id, SessionState& s, bool recall, Effects& fx);
  void DropQueued(SessionId id, SessionState& s, std::uint64_t process_id);
  void ForgetProcess(Time now, std::uint64_t process_id, Reason reason, Effects& fx);
  void Reject(ProcessRef to, SessionId session, Token token, std::uint64_t seq, MessageKind what,
              Reason reason, Effects& fx);
  template <class M>
  void Send(ProcessRef to, M&& m, Effects& fx);
  // Recomputes the session's timer and erases it if it is empty and idle.
  void Settle(Time now, SessionId id);
  // The same, for a session the caller has found already.
  void Settle(Time now, std::map<SessionId, SessionState>::iterator it);
  Time NextDeadline() const;

  StoreConfig config_;
  StoreState state_;
  StoreStats stats_;
  // The earliest lease of an active process as of the last NextDeadline,
  // which ends every input: RunDue, which starts the next, looks for expired
  // leases only if one may be due. 0: not known (look).
  mutable Time earliest_lease_ = 0;
  // That lease as NextDeadline last found it, while no process entry's
  // lease, held or queued set has changed since (most inputs, commits among
  // them, change none): NextDeadline walks the processes only when stale.
  mutable Time active_lease_ = kNever;
  mutable bool active_lease_known_ = false;
  std::uint64_t process_changes_ = 0;
  void ProcessesChanged() {
    active_lease_known_ = false;
    ++process_changes_;
  }
  Time ActiveLease() const;  // walks the processes

  // The last sessions looked up, by a hash of the id: a look-up of one of
  // them spares the map's walk (about five per commit or acquire). A map
  // iterator stays good until its session is erased, and Settle, which
  // erases sessions, forgets the erased one here. Derived from state_, so
  // not part of it: == ignores it, and a copy (or an assignment) starts
  // empty, since its iterators are into the original's map.
  using SessionIt = std::map<SessionId, SessionState>::iterator;
  struct SessionCache {
    struct Entry {
      SessionId id = 0;
      bool valid = false;
      SessionIt it;
    };
    // 64 slots, and ids below 64 a slot each (the simulator's sessions are
    // 0..n-1; its standard workload has 64): with 32 slots and a hash of
    // the id, sessions shared slots and took turns missing. Higher ids add
    // a hash of their high bits, so that ids 64 apart do not all share one
    // slot.
    static constexpr std::size_t kSlots = 64;
    SessionCache() = default;
    SessionCache(const SessionCache&) {}
    SessionCache& operator=(const SessionCache&) {
      for (Entry& e : entries) e.valid = false;
      return *this;
    }
    Entry& For(SessionId id) {
      return entries[(id + ((id >> 6) * 0x9E3779B97F4A7C15ULL >> 58)) & (kSlots - 1)];
    }
    void Forget(SessionId id) {
      Entry& e = For(id);
      if (e.id == id) e.valid = false;
    }
    Entry entries[kSlots];
  };
  // state_.sessions.find(id), through the cache.
  SessionIt FindSession(SessionId id) {
    SessionCache::Entry& e = sessions_cache_.For(id);
    if (e.valid && e.id == id) return e.it;
    auto it = state_.sessions.find(id);
    if (it != state_.sessions.end()) e = {id, true, it};
    return it;
  }
  // state_.sessions[id], through the cache.
  SessionState& SessionOf(SessionId id) {
    SessionCache::Entry& e = sessions_cache_.For(id);
    if (e.valid && e.id == id) return e.it->second;
    e = {id, true, state_.sessions.try_emplace(id).first};
    return e.it->second;
  }
  SessionCache sessions_cache_;
};

}  // namespace latchkey::core
