// Checker: the property checker of DESIGN.md, a read-only observer of the
// simulator. After every event it asserts the safety invariants; over the
// finished run it checks the history (no lost update, serializability) and
// liveness (every request pending after the last fault ends within a bound,
// no deadlock).
//
// It never mutates the world. It keeps its own history: per session the
// tokens granted, the current tenure, the buffered requests, and the commits
// made durable. A violation stops the run (Failed()) and carries everything
// needed to understand and replay it.
//
// Thread-safety: none; one checker per simulator.
//
// It keeps no copy of the events it saw: the simulator is deterministic, so
// a violation's report gets the events leading to it by running the same
// seed again up to the violating event (violations are rare; copying every
// event of every run was most of the checker's cost).
//
// Invariants (of the checker itself): at most one violation is recorded, the
// first; its report lists at most `recent_events` events.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "checker/history.h"
#include "sim/simulator.h"

namespace latchkey::checker {

// The invariants, named as in DESIGN.md.
enum class Invariant : std::uint8_t {
  kProcessExclusion,
  kThreadExclusion,
  kTokenValidity,
  kLocksInsideToken,
  kQueueOrder,
  kNoLostUpdate,
  kSerializability,
  kLiveness,
  kNoDeadlock,
  kBoundedBypass,
};
inline constexpr int kInvariantCount = 10;
std::string_view InvariantName(Invariant invariant);

struct Violation {
  Invariant invariant = Invariant::kLiveness;
  core::Time time = 0;
  std::string message;
  std::vector<std::string> recent;  // the last events before it, one JSON line each
  std::string state;                // the whole-world state of the sessions involved
  std::uint64_t seed = 0;
  nlohmann::json config;

  std::string name() const { return std::string(InvariantName(invariant)); }
  // Everything above, for a person: ends with the line that replays the run.
  std::string Report() const;
};

struct CheckerOptions {
  std::size_t recent_events = 50;
  // Each invariant can be switched off, so that a test can show that one
  // particular check fails on a planted bug even if another would fire first.
  bool enabled[kInvariantCount] = {true, true, true, true, true, true, true, true, true, true};
  // The checker keeps some facts instead of looking them up after every
  // event (a store's leases, the threads owed a turn). With this on it looks
  // them up anyway and asserts they equal what it kept (the tests set it).
  bool verify_caches = false;
  // No lost update is checked at the end of the run (the counters) and on
  // the step (a thread told LockLost whose commit is durable). Off: only at
  // the end, so that a test can show that check failing by itself.
  bool lost_commits_on_step = true;
};

class Checker : public sim::Observer {
 public:
  explicit Checker(CheckerOptions options = {});

  void AfterEvent(const sim::Simulator& sim, const sim::TraceEvent& event) override;
  bool Failed() const override { return violation_.has_value(); }

  // The checks over the finished run: call once after Simulator::Run().
  void Finish(const sim::Simulator& sim);

  const std::optional<Violation>& violation() const { return violation_; }

  // Liveness: how long a request pending after the last fault may take, from
  // the lease, grace period, recall and retry timers, round-trip time and the
  // longest possible queue.
  static core::Time LivenessBound(const sim::SimConfig& config);
  // When the world has recovered from the faults (the bound counts from here).
  static core::Time RecoveredAt(const sim::Simulator& sim);

  // The committed requests of the counter workload, from the stores' logs.
  static History CounterHistory(const sim::Simulator& sim);

 private:
  // The checker's view of a session's current tenure.
  struct TenureView {
    core::Token token = core::kNoToken;
    core::ProcessRef holder;
    bool active = false;
  };
  struct QueueEntry {
    core::ProcessRef process;
    std::uint64_t request_id = 0;
  };

  bool On(Invariant i) const { return options_.enabled[static_cast<int>(i)]; }
  void Fail(const sim::Simulator& sim, Invariant invariant, std::string message,
            const std::vector<core::SessionId>& sessions);
  // The last `recent_events` events of the run up to now, one JSON line
  // each, from a second run of the same seed.
  std::vector<std::string> RecentEvents(const sim::Simulator& sim, bool* diverged) const;
  bool DriftBeyondHappened(const sim::Simulator& sim) const;

  // A store node started or recovered (its queues and process entries are new).
  [[gnu::noinline]] void StoreRestarted(const sim::Simulator& sim, std::uint32_t node);
  // Sizes the per-thread and per-process tables to the simulator's world.
  [[gnu::noinline]] void Size(const sim::Simulator& sim);
  void CheckStoreEvent(const sim::Simulator& sim, const sim::TraceEvent& event);
  void CheckAgentEvent(const sim::Simulator& sim, const sim::TraceEvent& event);
  // The checks of one kGranted wake; false: stop looking at this event (a
  // check failed, whether or not its invariant is on).
  [[gnu::noinline]] bool CheckGrant(const sim::Simulator& sim, const sim::TraceEvent& e,
                                    std::uint32_t p, const core::ThreadEvent& w);
  bool FailStop(const sim::Simulator& sim, Invariant invariant, std::string message,
                const std::vector<core::SessionId>& sessions);
  void CheckLiveness(const sim::Simulator& sim, bool at_end);
  void CheckProgressRule(const sim::Simulator& sim, const sim::TraceEvent& event,
                         std::uint32_t process);
  // The waits-for graph of a stuck thread's session, and whether it shows a
  // deadlock (a cycle, or a chain ending at a holder that will never move).
  std::string WaitsFor(const sim::Simulator& sim, std::uint32_t thread, bool* deadlock) const;
  std::string SessionDump(const sim::Simulator& sim, core::SessionId session) const;

  CheckerOptions options_;
  std::optional<Violation> violation_;
  // Everything the checker follows per session, in one place so that a
  // record or message costs one look-up.
  struct SessionView {
    core::Token max_token = core::kNoToken;  // the highest token granted
    TenureView tenure;
    bool tenure_seen = false;       // whether a record or message showed its tenure
    std::vector<QueueEntry> queue;  // the store's buffered requests, in order
    // The commits made durable, (token, seq), sorted (a store makes them
    // durable in that order, so an insertion is an append).
    std::vector<std::pair<core::Token, std::uint64_t>> durable;
    // Process exclusion: the processes whose agent may have a thread holding
    // a portion of the session, one bit per process index. An agent adds a
    // holder only together with a kGranted wake (ProcessAgent::Serve), so a
    // bit is set at every such wake; it is cleared when a look finds no
    // holder there. A set bit is only a hint to look.
    std::vector<std::uint64_t> holding;
    std::uint64_t touched_in = 0;  // the last store event that touched it (Touch)
  };
  // The views by session id: a vector for the small ids simulated worlds use
  // (a look-up on every record, message and grant), a hash map for the rest.
  // A view never looked at is a default one, which means "nothing seen".
  class SessionViews {
   public:
    [[gnu::always_inline]] SessionView& Get(core::SessionId id) {
      if (id < dense_size_) [[likely]]
        return dense_[id];
      return GetSlow(id);
    }
    [[gnu::noinline]] SessionView& GetSlow(core::SessionId id) {
      if (id < kDense) {
        dense_.resize(id + 1);
        dense_size_ = dense_.size();
        return dense_[id];
      }
      return sparse_[id];
    }
    const SessionView* Find(core::SessionId id) const {
      if (id < kDense) return id < dense_.size() ? &dense_[id] : nullptr;
      auto it = sparse_.find(id);
      return it == sparse_.end() ? nullptr : &it->second;
    }
    template <class Fn>
    void ForEach(Fn&& fn) {
      for (std::size_t id = 0; id < dense_.size(); ++id) fn(core::SessionId{id}, dense_[id]);
      for (auto& [id, view] : sparse_) fn(id, view);
    }

   private:
    static constexpr core::SessionId kDense = 4096;
    std::vector<SessionView> dense_;
    std::size_t dense_size_ = 0;  // dense_.size()
    std::unordered_map<core::SessionId, SessionView> sparse_;
  };
  SessionView& View(core::SessionId session) { return sessions_.Get(session); }
  SessionViews sessions_;
  // Per store node: each process's lease end as last seen. A process whose
  // lease ran out by the store's clock left every queue (B1), even if it is
  // buffered again at the back within the same event.
  struct LeaseSnapshot {
    std::vector<std::pair<std::uint64_t, core::Time>> leases;  // (process id, lease end)
    core::Time earliest = core::kNever;                        // the least of them
    // Taken when the store (this epoch) had counted `changes` process changes.
    bool valid = false;
    std::uint64_t epoch = 0, changes = 0;
  };
  std::vector<LeaseSnapshot> lease_seen_;
  std::vector<std::pair<std::uint64_t, core::Time>> lease_scratch_;
  // CheckStoreEvent's scratch: the sessions the event touched, each once
  // (a view is marked with the store event that touched it last).
  std::vector<core::SessionId> touched_;
  std::uint64_t store_events_ = 0;
  void Touch(core::SessionId session, SessionView& view) {
    if (view.touched_in == store_events_) return;
    view.touched_in = store_events_;
    touched_.push_back(session);
  }
  std::vector<QueueEntry> next_queue_;  // CheckStoreEvent's scratch
  // Per session: the counts when it was last dropped (invalidated or idle).
  // The Progress rule (R7): per process and session, the lock state last
  // seen, and the threads waiting when the process was granted the session.
  struct LockSeen {
    core::ProcessRef agent;     // the incarnation these were seen in
    std::uint64_t changes = 0;  // its AgentStats::held_changes then
    bool valid = false;
    std::map<core::SessionId, core::LockState> states;
  };
  std::vector<LockSeen> lock_seen_;            // by process index
  std::vector<std::uint8_t> entitled_;         // by thread index
  const sim::Simulator* sized_for_ = nullptr;  // Size was called for it
  const sim::SimThread* sized_threads_ = nullptr;
  std::vector<std::uint32_t> owed_;  // by process index: its threads entitled
  struct DropMark {
    std::uint64_t acknowledged = 0, unknown = 0;
    std::uint64_t committing = 0;  // counter commits in flight: applied before or after
  };
  std::map<core::SessionId, DropMark> drops_;
  // B5 on the step: the last Commit each thread's agent sent for it (by
  // thread index). A thread then told LockLost, which says its commit
  // certainly did not apply, must not find it durable, then or later.
  struct SentCommit {
    core::ProcessRef agent;  // the incarnation that sent it
    core::SessionId session = 0;
    core::Token token = core::kNoToken;
    std::uint64_t seq = 0;
    bool valid = false;
  };
  std::vector<SentCommit> sent_commits_;
  // B1 from the messages alone, not from the agent's own Trusts(): per
  // process and store, an upper bound on the lease the agent may trust (the
  // latest copy of every lease-renewing message the store answered: an
  // Acquire answered Granted, Queued or Busy, the current Heartbeat, a
  // Reclaim; plus the trust span), and how often an event of the process
  // came at or after that bound (a lapse: the agent must then give up every
  // tenure it holds there). A thread may be granted a session only before
  // the bound, and only under a tenure granted since the last lapse. A
  // process's clock only moves forward, so a lapse since the last renewal
  // shows at the next event that renews or grants: only those look.
  struct LeaseRenewals {
    core::ProcessRef agent;  // the incarnation these are of
    core::Time span = 0;     // its trust span
    struct Link {
      bool renewed = false;
      core::Time renewed_from = 0;  // the latest answered send
      std::uint64_t lapses = 0;
      std::uint64_t heartbeat_seq = 0;
      core::Time heartbeat_sent_at = 0;
    };
    std::vector<Link> links;  // by store
    // The agent answers only a session's current request and reclaim, and
    // holds one tenure of it: one of each per session, by session id.
    struct Session {
      std::uint64_t request_id = 0;  // the last Acquire's (0: none; agents count from 1)
      core::Time acquire_sent_at = 0;
      core::Token reclaimed = core::kNoToken;  // the last Reclaim's token
      core::Time reclaim_sent_at = 0;
      core::Token granted = core::kNoToken;  // the last Granted of a current request
      std::uint64_t granted_lapses = 0;      // its link's lapses then
    };
    // By id: a vector for the small ids simulated worlds mostly use, a hash
    // map beyond (every session must count, or the bound would fall below
    // the agent's).
    std::vector<Session> dense;
    std::unordered_map<core::SessionId, Session> sparse;
    static constexpr core::SessionId kDense = 4096;
    Session& Of(core::SessionId id) {
      if (id >= kDense) return sparse[id];
      if (id >= dense.size()) dense.resize(id + 1);
      return dense[id];
    }
  };
  std::vector<LeaseRenewals> renewals_;  // by process index
  // Notes the event's lease-renewing answers and sends, and checks its
  // grants against them; false when a check failed.
  bool CheckLeaseRenewals(const sim::Simulator& sim, const sim::TraceEvent& e, std::uint32_t p);
  // The commits of threads told LockLost, (session, token, seq).
  std::set<std::tuple<core::SessionId, core::Token, std::uint64_t>> declared_lost_;
  // Notes the Commits an agent event sent and checks its LockLost wakes;
  // false when a check failed.
  bool CheckLostCommits(const sim::Simulator& sim, const sim::TraceEvent& e, std::uint32_t p);
  core::Time next_liveness_check_ = 0;
};

}  // namespace latchkey::checker
