// Simulator: runs the unchanged core under a seeded, deterministic
// discrete-event simulation of store nodes, application servers, processes,
// request threads, a faulty network, crashes, clock drift and pauses.
//
// One event queue ordered by (time, sequence number); the sequence number is
// the order in which events were scheduled, so ties break by scheduling
// order. Popping an event calls the core, applies its Effects (persist, then
// send through the network model, then wake threads), hashes the event into
// the trace hash, writes it to the trace if one is set, and hands the whole
// world to every observer. Nothing else moves time.
//
// Node numbering: stores are nodes 0..S-1, processes are nodes S..S+P-1.
// Process node i has address id i-S+1 and belongs to server (i-S) / per_server.
//
// Thread-safety: none; one simulator per thread.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include "core/agent.h"
#include "core/store.h"
#include "sim/config.h"
#include "sim/prng.h"

namespace latchkey::sim {

// A node's local clock: local(t) = t + offset + t * drift_ppm / 1e6.
struct Clock {
  std::int64_t offset_us = 0;
  std::int32_t drift_ppm = 0;
  Time Local(Time t) const;
  // The earliest true time at which the local clock reads at least `local`.
  Time TrueAt(Time local) const;
  // Changes the drift at true time `t` without a jump in local time.
  void SetDrift(Time t, std::int32_t drift);
};

enum class EventKind : std::uint8_t {
  kStart,         // a store node starts (time 0)
  kDeliver,       // arg: message slot
  kTick,          // arg: the node's tick generation
  kThreadStart,   // node: thread index; arg: thread epoch
  kThreadFinish,  // node: thread index; arg: thread epoch
  kFault,         // arg: index into faults()
  kRecover,       // node: the crashed node
  kHeal,          // arg: partition id
  kFaultCheck,    // random fault draw, during the fault phase
  kQuiet,         // the fault phase ends
};
std::string_view EventKindName(EventKind kind);

struct Event {
  Time time = 0;
  std::uint64_t seq = 0;
  EventKind kind = EventKind::kTick;
  std::uint32_t node = 0;
  std::uint64_t arg = 0;
  // By (time, seq), as one 128-bit comparison: no branch for the heap to mispredict.
  bool operator>(const Event& o) const {
    return (static_cast<unsigned __int128>(time) << 64 | seq) >
           (static_cast<unsigned __int128>(o.time) << 64 | o.seq);
  }
};

struct StoreNode {
  core::Store store;
  // What it persisted: survives crashes. (The records of the event being
  // observed are in it once its observers have seen it, like its messages.)
  std::vector<core::Record> log;
  bool up = true;
  Clock clock;
  Time paused_until = 0;
  std::uint64_t tick_generation = 0;
  Time tick_at = core::kNever;
  Time deadline_local = core::kNever;
};

struct ProcessNode {
  core::ProcessAgent agent;
  std::uint32_t server = 0;
  bool up = true;
  Clock clock;
  Time paused_until = 0;
  std::uint64_t tick_generation = 0;
  Time tick_at = core::kNever;
  Time deadline_local = core::kNever;
};

enum class ThreadPhase : std::uint8_t { kIdle, kWaiting, kHolding, kCommitting, kDone };

struct SimThread {
  std::uint32_t process = 0;  // process index (0-based)
  core::ThreadId id = 0;      // thread id within its process
  Prng rng{0};
  std::uint32_t remaining = 0;
  ThreadPhase phase = ThreadPhase::kIdle;
  std::uint64_t epoch = 0;  // bumped when its process crashes
  core::SessionId session = 0;
  core::Portion portion;
  bool writes_counter = false;
  Time asked_at = 0;
  std::uint64_t ask_order = 0;  // asks so far, over all threads: orders asks at the same instant
};

struct Partition {
  std::uint64_t id = 0;
  std::uint32_t variant = 0;  // 0 halves, 1 one-way from target, 2 isolate target
  std::uint32_t target = 0;
  std::vector<std::uint8_t> side;
};

// What an observer sees of one event, besides the world.
struct TraceEvent {
  Time time = 0;
  EventKind kind = EventKind::kTick;
  std::uint32_t node = 0;
  const core::Envelope* input = nullptr;   // kDeliver
  const core::Effects* effects = nullptr;  // when a core ran
  std::string note;                        // thread calls and faults, in words
  std::int32_t thread = -1;                // thread index, for thread calls
  // kDeliver: the input's number among all sends (1-based; the copies of a
  // duplicated message share it). The trace hash takes this one word for the
  // input, whose words it took when the send was hashed. 0: not sent (an
  // administrator's message), hashed word by word.
  std::uint64_t sent = 0;
};

class Simulator;

// The counter workload's value of attribute a0 (decimal; "" is 0).
std::uint64_t ParseCounter(std::string_view value);

// Read-only observer of every event (the checker is one).
class Observer {
 public:
  virtual ~Observer() = default;
  virtual void AfterEvent(const Simulator& sim, const TraceEvent& event) = 0;
  // An observer that found a violation stops the run.
  virtual bool Failed() const { return false; }
};

struct SimSummary {
  std::uint64_t seed = 0;
  std::uint64_t requests_completed = 0;
  std::map<std::string, std::uint64_t> failed_by_reason;
  std::uint64_t requests_cut_by_crash = 0;
  std::uint64_t unfinished_threads = 0;  // threads with requests left at the end
  std::uint64_t grants = 0, recalls = 0, lease_expiries = 0, agent_lease_expiries = 0;
  std::uint64_t queued = 0, store_rejects = 0, commits = 0;  // store side
  std::uint64_t releases = 0;                                // agent side
  Time wait_p50_us = 0, wait_p99_us = 0;
  std::uint64_t faults[kFaultKinds] = {};
  std::uint64_t messages_sent = 0, messages_lost = 0, messages_duplicated = 0;
  std::uint64_t events = 0;
  Time simulated_us = 0;
  std::uint64_t acknowledged_increments = 0;
  std::uint64_t counter_total = 0;       // sum of the counters in the stores at the end
  std::uint64_t unknown_increments = 0;  // outcome unknown (crash or resent commit)
  std::uint64_t trace_hash = 0;
  bool stopped_by_observer = false;
};

class Simulator {
 public:
  Simulator(const SimConfig& config, std::uint64_t seed);

  // Writes one JSON object per event to `out` (nullptr: no trace).
  void SetTrace(std::ostream* out) { trace_ = out; }
  void AddObserver(Observer* observer) { observers_.push_back(observer); }

  // Runs to the end: every thread done, or the end of the quiet phase, or an
  // observer reports a failure.
  SimSummary Run();
  // One event; false when the run is over.
  bool Step();
  SimSummary Summary() const;

  // ---- the world, read-only, for observers --------------------------------
  const SimConfig& config() const { return config_; }
  std::uint64_t seed() const { return seed_; }
  Time now() const { return now_; }
  bool quiet() const { return quiet_; }
  const std::vector<StoreNode>& stores() const { return stores_; }
  const std::vector<ProcessNode>& processes() const { return processes_; }
  const std::vector<SimThread>& threads() const { return threads_; }
  const std::vector<Partition>& partitions() const { return partitions_; }
  const std::vector<ScheduledFault>& faults() const { return faults_; }
  // Messages in flight, with their delivery times. (Those sent by the event
  // being observed are in flight once its observers have seen it.)
  template <class Fn>
  void ForEachInFlight(Fn&& fn) const {
    for (std::size_t slot = 0; slot < delivery_at_.size(); ++slot) {
      if (delivery_at_[slot] != core::kNever) fn(messages_[slot], delivery_at_[slot]);
    }
  }
  // Every event so far, hashed (see Finish): deterministic, the same with
  // tracing on or off.
  std::uint64_t trace_hash() const;
  // Each store rebuilt from what it persisted, as of now (the durable truth:
  // the summary's counters and the checker's no-lost-update check). Computed
  // once per end state and kept, so that the two do not recover twice.
  const std::vector<core::Store>& RecoveredStores() const;
  // Events so far (the one being observed included).
  std::uint64_t events() const { return events_; }
  // Per session: counter increments acknowledged to their threads, and those
  // whose outcome the thread could not know (crash, resent commit).
  const std::vector<std::uint64_t>& acknowledged_by_session() const { return acknowledged_; }
  const std::vector<std::uint64_t>& unknown_by_session() const { return unknown_; }
  // The fault rates and network knobs in force (after swarm drew them).
  const std::uint32_t* effective_fault_ppm() const { return fault_ppm_; }
  const NetworkConfig& effective_network() const { return network_; }
  std::string NodeName(std::uint32_t node) const;
  // A scripted run whose next step could not be taken (no such message in
  // flight, a thread not in the phase the step needs): the run stops there
  // and this names the step and why. "" otherwise.
  const std::string& script_error() const { return script_error_; }
  // Steps of the script taken so far.
  std::size_t script_steps_taken() const { return script_pos_; }

 private:
  std::uint32_t StoreCount() const { return config_.stores; }
  std::uint32_t NodeOf(const core::Address& a) const;
  Clock& ClockOf(std::uint32_t node);
  Time& PausedUntil(std::uint32_t node);
  bool IsUp(std::uint32_t node) const;

  void Push(Time at, EventKind kind, std::uint32_t node, std::uint64_t arg);
  void Dispatch(const Event& ev);
  // Both leave fx.send moved from: its messages are in flight after.
  void ApplyStoreEffects(std::uint32_t node, core::Effects& fx, TraceEvent& te);
  void ApplyAgentEffects(std::uint32_t node, core::Effects& fx, TraceEvent& te);
  void ScheduleTick(std::uint32_t node, Time deadline_local);
  // Sends fx.send; the trace notes which of them the network lost at once.
  void SendAll(std::uint32_t from_node, const core::Effects& fx);
  // Decides the fate of fx.send[index] (the network's draws happen here);
  // false: lost.
  bool SendMessage(std::uint32_t from_node, const core::Effects& fx, std::uint32_t index);
  // Puts the messages SendAll let through in their slots, moved out of
  // fx.send: after the event was hashed, traced and observed, so that they
  // need not be copied.
  void Launch(core::Effects& fx);
  std::uint64_t NewSlot();  // a free message slot (messages_ may grow)
  bool Blocked(std::uint32_t from, std::uint32_t to) const;
  void Finish(TraceEvent& te);

  void StartRequest(SimThread& t);
  // Asks for t.session and t.portion (t.writes_counter: whether it writes a0).
  void AskNow(SimThread& t);
  void OnWake(std::uint32_t node, const core::ThreadEvent& w);
  void NextRequest(SimThread& t);

  // Scripted runs: one step of the script (possibly several events), and
  // the switch to a free run once it is done.
  void TakeScriptStep(const ScriptStep& step);
  void EndScript();
  std::size_t HeldMessage(const nlohmann::json& message) const;  // index in held_, or npos

  void InjectFault(const ScheduledFault& f);
  void DrawRandomFaults();
  void CrashProcess(std::uint32_t process_index, Time downtime);
  void CrashStore(std::uint32_t store_index, Time downtime);
  void EnterQuiet();

  SimConfig config_;
  std::uint64_t seed_;
  Prng net_rng_, fault_rng_, clock_rng_;
  std::uint32_t fault_ppm_[kRandomFaultKinds] = {};
  NetworkConfig network_;  // the live network knobs (swarm may change them)

  // Every event but the nodes' ticks, by (time, seq). Events are never
  // scheduled before now and mostly within a few milliseconds of it, so a
  // calendar of one slot per microsecond over a window of kWindow from the
  // last event taken holds them; a two-level bitmap finds the next slot in a
  // few instructions. A slot holds its first event (by seq) in place, and
  // any others of the same time in a list by seq: times are nearly all
  // distinct, so an event mostly goes in and out with no list at all.
  // Events beyond the window wait in a binary heap and move into the
  // calendar as it advances. A binary heap of every event (~130 here) took
  // about 7 levels of compares per pop; the order is the same, since
  // (time, seq) is a total order.
  class EventQueue {
   public:
    EventQueue();
    bool empty() const { return count_ == 0 && far_.empty(); }
    void push(const Event& e);  // inlined into Simulator::Push and Step
    // The first event; the queue must not be empty.
    const Event& top() const { return count_ == 0 ? far_.top() : first_event_[first_]; }
    void pop();

   private:
    static constexpr std::uint32_t kWindow = 4096;  // microseconds, a power of two
    static constexpr std::uint32_t kNil = UINT32_MAX;
    struct Node {
      Event event;
      std::uint32_t next = kNil;
    };
    std::uint32_t FirstSlot() const;  // of the earliest event, found; count_ > 0
    void Insert(const Event& e);      // into its slot; e.time - base_ < kWindow
    void Advance();                   // moves far events now within the window
    void Rebase(const Event& e);      // push's rare case: e is before base_
    void InsertMore(const Event& e);  // Insert's rare case: its slot is taken
    Time base_ = 0;            // the last time taken: every slot is in [base_, base_ + kWindow)
    std::uint32_t count_ = 0;  // events in slots
    std::uint32_t first_ = 0;  // the earliest one's slot, when count_ > 0
    std::vector<Event> first_event_;   // per occupied slot: its event with the lowest seq
    std::vector<std::uint32_t> more_;  // per slot: its other events, by seq (nodes_), or kNil
    std::vector<Node> nodes_;
    std::uint32_t free_ = kNil;
    std::uint64_t words_[kWindow / 64] = {};  // slot occupied
    std::uint64_t summary_ = 0;               // word non-zero
    std::priority_queue<Event, std::vector<Event>, std::greater<Event>> far_;
  };
  EventQueue queue_;
  // Each node's pending tick, if any: a heap of nodes indexed by node, so a
  // tick that is moved replaces the node's previous one instead of leaving a
  // superseded tick behind in queue_ (most ticks are moved before they are
  // due). The two are merged by (time, seq): the order of events is the same.
  class TickQueue {
   public:
    struct Slot {
      Time time = 0;
      std::uint64_t seq = 0;
      std::uint64_t generation = 0;
    };
    void Resize(std::uint32_t nodes) { slots_.resize(nodes), pos_.assign(nodes, kNone); }
    bool empty() const { return heap_.empty(); }
    bool Has(std::uint32_t node) const { return pos_[node] != kNone; }
    const Slot& Get(std::uint32_t node) const { return slots_[node]; }
    std::uint32_t TopNode() const { return heap_.front(); }
    // Inserts the node's tick, or replaces it.
    void Set(std::uint32_t node, const Slot& slot);
    void PopTop();

   private:
    static constexpr std::uint32_t kNone = UINT32_MAX;
    bool Before(std::uint32_t a, std::uint32_t b) const {
      const Slot& x = slots_[a];
      const Slot& y = slots_[b];
      return x.time != y.time ? x.time < y.time : x.seq < y.seq;
    }
    void Place(std::uint32_t i, std::uint32_t node) {
      heap_[i] = node;
      pos_[node] = i;
    }
    void SiftUp(std::uint32_t i);
    void SiftDown(std::uint32_t i);
    std::vector<Slot> slots_;
    std::vector<std::uint32_t> heap_, pos_;
  };
  TickQueue ticks_;
  // A replaced tick was, before TickQueue, left in the queue and popped and
  // dropped at its time. Dropping it moved now_ to its time: only visible when
  // a run then ends with an empty queue or by its time limit (now_ is the end
  // time). ghost_until_ is the latest such time within end_us(), and now_ is
  // brought up to it at such an end. A paused node also delays its superseded
  // ticks (a dropped tick is pushed back to the pause's end), so in worlds
  // with pauses replaced ticks still go into queue_ (ghosts_queued_) and are
  // popped and dropped there as before.
  Time ghost_until_ = 0;
  bool ghosts_queued_ = false;
  std::uint64_t next_seq_ = 0;
  Time now_ = 0;
  bool quiet_ = false;
  bool done_ = false;

  std::vector<StoreNode> stores_;
  std::vector<ProcessNode> processes_;
  std::vector<SimThread> threads_;
  std::vector<std::vector<core::SessionId>> home_sessions_, other_sessions_;
  std::vector<std::vector<std::uint64_t>> home_cdf_, other_cdf_;  // Zipf, fixed point
  std::vector<std::string> attribute_names_;                      // "a0", "a1", ...
  std::vector<std::uint32_t> attribute_rank_;                     // of each name in sorted order
  std::vector<std::uint32_t> taken_, picked_;                     // StartRequest's scratch

  // The effects of the input being handled: one buffer for every core call,
  // so that its vectors are not allocated per event. Nothing calls the core
  // again before an event's effects are applied.
  core::Effects fx_;

  // Per node, the last deadline converted to true time and the clock it was
  // read on: most inputs leave a node's deadline where it was.
  struct TrueAtCache {
    Time local = core::kNever;
    Clock clock;
    Time true_at = core::kNever;
  };
  std::vector<TrueAtCache> true_at_cache_;

  // While a script runs, messages wait in their slots (in send order here)
  // until a step delivers, loses or copies them; ticks happen only when a
  // step advances time; threads move only when a step says so.
  bool scripted_ = false;
  std::size_t script_pos_ = 0;
  std::vector<std::uint64_t> held_;
  std::string script_error_;

  std::vector<core::Envelope> messages_;  // message slots
  std::vector<std::uint64_t> free_slots_;
  std::vector<Time> delivery_at_;           // per message slot; kNever = free
  std::vector<std::uint64_t> sent_number_;  // per message slot: TraceEvent::sent
  struct Launching {
    std::uint64_t slot;
    Time at;
    std::uint32_t index;  // in fx.send
  };
  std::vector<Launching> launching_;  // of the event being handled
  std::uint32_t threads_done_ = 0;
  std::uint64_t asks_ = 0;
  std::vector<Partition> partitions_;
  std::uint64_t next_partition_id_ = 1;
  std::map<std::pair<std::uint32_t, std::uint32_t>, Time> clogged_until_;
  std::vector<ScheduledFault> faults_;

  std::ostream* trace_ = nullptr;
  std::vector<std::uint32_t> lost_sends_;  // of the event being traced
  std::vector<Observer*> observers_;
  // RecoveredStores' result, and the (events, time, records logged) it is for.
  mutable std::vector<core::Store> recovered_;
  mutable std::uint64_t recovered_events_ = 0, recovered_records_ = 0;
  mutable Time recovered_now_ = 0;
  mutable bool recovered_valid_ = false;
  // The trace hash's two lanes (trace_hash() mixes them).
  std::uint64_t hash_a_ = 0x6C61746368ULL;  // "latch"
  std::uint64_t hash_b_ = 0x6B6579ULL;      // "key"
  bool observer_failed_ = false;

  // Statistics.
  std::uint64_t completed_ = 0, cut_by_crash_ = 0, events_ = 0;
  std::map<std::string, std::uint64_t> failed_;
  // Every grant's wait. Summary takes two order statistics in place
  // (nth_element reorders, which changes no order statistic), instead of
  // copying them first.
  mutable std::vector<Time> waits_;
  std::uint64_t fault_counts_[kFaultKinds] = {};
  std::uint64_t sent_ = 0, lost_ = 0, duplicated_ = 0;
  std::vector<std::uint64_t> acknowledged_, unknown_;  // per session
  core::StoreStats retired_store_stats_;               // stats of crashed store lives
  // Per store, each session's counter a0 as a store rebuilt from its log
  // would hold it (core::Store::Recover), followed as records are logged:
  // the summary's counter total without a walk over the logs, whose
  // records and write sets are long out of the cache by then.
  class DurableCounters {
   public:
    // One logged record.
    void Apply(const core::Record& r);
    std::uint64_t Total() const;

   private:
    // Pointers into the write sets of the log's commit records, which the
    // log keeps: the value, or null (no a0).
    const std::string*& For(core::SessionId id);
    std::vector<const std::string*> by_id_;                 // sessions 0..4095
    std::map<core::SessionId, const std::string*> others_;  // any other id
  };
  std::vector<DurableCounters> durable_counters_;  // per store
  std::uint64_t retired_agent_expiries_ = 0, retired_agent_releases_ = 0;
};

}  // namespace latchkey::sim
