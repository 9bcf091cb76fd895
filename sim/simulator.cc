#include "sim/simulator.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/assert.h"
#include "core/hash.h"
#include "sim/trace.h"

namespace latchkey::sim {

namespace {

constexpr std::int64_t kMillion = 1'000'000;
constexpr std::uint64_t kZipfScale = 1ULL << 53;

enum class Action : std::uint8_t {
  kNone,
  kStart,
  kAsk,
  kFinish,
  kCrash,
  kRecover,
  kDropDown,
  kDropPartition,
  kFault,
  kHeal,
  kQuiet
};
// Strings, not C strings: an event's note is copied from one (its length
// known) instead of measured and assigned from a char pointer each time.
const std::string kActionNames[] = {"",      "start",   "ask",       "finish",
                                    "crash", "recover", "drop_down", "drop_partition",
                                    "fault", "heal",    "quiet"};

// Room to reserve in a store's log: three records per request of the
// workload (a grant, a commit and a tenure end), at most 2^20 (56 MiB).
std::size_t ExpectedRecords(const SimConfig& config) {
  const std::uint64_t requests =
      std::uint64_t{config.threads()} * config.workload.requests_per_thread;
  return static_cast<std::size_t>(std::min<std::uint64_t>(3 * requests + 16, 1 << 20));
}

}  // namespace

std::string_view EventKindName(EventKind kind) {
  switch (kind) {
    case EventKind::kStart:
      return "start";
    case EventKind::kDeliver:
      return "deliver";
    case EventKind::kTick:
      return "tick";
    case EventKind::kThreadStart:
      return "thread_start";
    case EventKind::kThreadFinish:
      return "thread_finish";
    case EventKind::kFault:
      return "fault";
    case EventKind::kRecover:
      return "recover";
    case EventKind::kHeal:
      return "heal";
    case EventKind::kFaultCheck:
      return "fault_check";
    case EventKind::kQuiet:
      return "quiet";
  }
  return "unknown";
}

std::uint64_t ParseCounter(std::string_view value) {
  std::uint64_t n = 0;
  for (char c : value) {
    if (c < '0' || c > '9') break;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

// ---- clocks ------------------------------------------------------------------

Time Clock::Local(Time t) const {
  // 64-bit arithmetic for the first 2.2 years of simulated time and drifts
  // within +-13% (t * drift fits), 128-bit after: same result, without a
  // 128-bit division per call. Offsets may be negative (a clock behind).
  constexpr std::int64_t kFast = std::int64_t{1} << 46;
  constexpr std::int32_t kFastDrift = 1 << 17;
  if (t < static_cast<Time>(kFast) && offset_us > -kFast && offset_us < kFast &&
      drift_ppm > -kFastDrift && drift_ppm < kFastDrift) {
    std::int64_t drift_part = static_cast<std::int64_t>(t) * drift_ppm / kMillion;
    std::int64_t local = static_cast<std::int64_t>(t) + offset_us + drift_part;
    return local < 0 ? 0 : static_cast<Time>(local);
  }
  __int128 local =
      static_cast<__int128>(t) + offset_us + static_cast<__int128>(t) * drift_ppm / kMillion;
  if (local < 0) return 0;
  if (local >= static_cast<__int128>(core::kNever)) return core::kNever - 1;
  return static_cast<Time>(local);
}

Time Clock::TrueAt(Time local) const {
  if (local == core::kNever) return core::kNever;
  Time t;
  // 64-bit arithmetic while (local - offset) * 1e6 surely fits (the first 50
  // days of simulated time), 128-bit after: the same guess either way.
  constexpr std::int64_t kFast = std::int64_t{1} << 42;
  const std::int64_t divisor = kMillion + drift_ppm;
  if (local < static_cast<Time>(kFast) && offset_us > -kFast && offset_us < kFast && divisor > 0) {
    // |local - offset| < 2^43, so the product stays below 2^63.
    std::int64_t guess = (static_cast<std::int64_t>(local) - offset_us) * kMillion / divisor;
    t = guess < 0 ? 0 : static_cast<Time>(guess);
  } else {
    __int128 guess = (static_cast<__int128>(local) - offset_us) * kMillion / divisor;
    if (guess < 0) guess = 0;
    if (guess >= static_cast<__int128>(core::kNever)) return core::kNever;
    t = static_cast<Time>(guess);
  }
  while (Local(t) < local) ++t;
  while (t > 0 && Local(t - 1) >= local) --t;
  return t;
}

void Clock::SetDrift(Time t, std::int32_t drift) {
  Time before = Local(t);
  drift_ppm = drift;
  offset_us = 0;
  offset_us = static_cast<std::int64_t>(before) - static_cast<std::int64_t>(Local(t));
}

// ---- set-up ------------------------------------------------------------------

Simulator::Simulator(const SimConfig& config, std::uint64_t seed)
    : config_(config),
      seed_(seed),
      net_rng_(Prng::Stream(seed, "network")),
      fault_rng_(Prng::Stream(seed, "faults")),
      clock_rng_(Prng::Stream(seed, "clocks")),
      network_(config.network) {
  LK_ASSERT(ValidateConfig(config_).empty());
  std::copy(std::begin(config_.faults.ppm), std::end(config_.faults.ppm), fault_ppm_);
  if (config_.swarm) {
    // Swarm testing: this seed decides which fault kinds are on, and how often.
    Prng swarm = Prng::Stream(seed, "swarm");
    static constexpr std::uint32_t kRates[] = {200, 1'000, 5'000, 20'000};
    for (std::uint32_t& ppm : fault_ppm_) ppm = swarm.Chance(1, 2) ? kRates[swarm.Below(4)] : 0;
    static constexpr std::uint32_t kNetRates[] = {0, 1'000, 10'000, 50'000};
    network_.loss_ppm = kNetRates[swarm.Below(4)];
    network_.duplicate_ppm = kNetRates[swarm.Below(4)];
    network_.reorder_ppm = kNetRates[swarm.Below(4)];
  }
  const std::uint32_t S = config_.stores;
  const std::uint32_t P = config_.processes();
  ticks_.Resize(S + P);
  ghosts_queued_ = fault_ppm_[static_cast<int>(FaultKind::kPause)] != 0 ||
                   std::any_of(config_.schedule.begin(), config_.schedule.end(),
                               [](const ScheduledFault& f) { return f.kind == FaultKind::kPause; });
  for (std::uint32_t i = 0; i < S; ++i) Push(0, EventKind::kStart, i, 0);  // first of all
  const auto half_bound = static_cast<std::int32_t>(config_.drift_ppm / 2);
  auto draw_drift = [&] {
    return static_cast<std::int32_t>(
               clock_rng_.Range(0, 2 * static_cast<std::uint64_t>(half_bound))) -
           half_bound;
  };
  for (std::uint32_t i = 0; i < S; ++i) {
    core::StoreConfig sc;
    sc.node_id = i;
    sc.lease_us = config_.lease_us;
    sc.recall_retry_us = config_.recall_retry_us;
    sc.session_idle_us = config_.session_idle_us;
    stores_.push_back(StoreNode{core::Store(sc), {}, true, {}, 0, 0, core::kNever, core::kNever});
    stores_.back().clock.drift_ppm = draw_drift();
    // The log only grows. Grown by doubling, it moved every record at each
    // doubling and touched twice the memory it ends with (fresh pages, each
    // a page fault): about a tenth of the run's time. Room for about what
    // the workload will log instead: a request logs about one record (a
    // commit; grants and tenure ends are fewer with lock caching), three at
    // most without retries. Pages reserved but never used are never
    // touched, so only address space is spent on a generous guess.
    stores_.back().log.reserve(ExpectedRecords(config_));
  }
  durable_counters_.resize(S);
  for (std::uint32_t i = 0; i < P; ++i) {
    core::AgentConfig ac;
    ac.self = {i + 1, 1};
    ac.store_count = S;
    ac.lease_us = config_.lease_us;
    ac.drift_ppm = config_.drift_ppm;
    ac.expiry_margin_us = config_.expiry_margin_us;
    ac.retry_us = config_.retry_us;
    ac.idle_release_us = config_.idle_release_us;
    ac.release_when_contended = config_.release_when_contended;
    ac.heartbeat_us = config_.heartbeat_us;
    processes_.push_back(ProcessNode{core::ProcessAgent(ac),
                                     i / config_.processes_per_server,
                                     true,
                                     {},
                                     0,
                                     0,
                                     core::kNever,
                                     core::kNever});
    processes_.back().clock.drift_ppm = draw_drift();
  }
  // Sessions by home process (WORKLOAD.md: home(s) = splitmix64(s) mod P).
  const WorkloadConfig& w = config_.workload;
  home_sessions_.resize(P);
  other_sessions_.resize(P);
  for (core::SessionId s = 0; s < w.sessions; ++s) {
    std::uint32_t home = static_cast<std::uint32_t>(core::Splitmix64(s) % P);
    for (std::uint32_t p = 0; p < P; ++p) {
      (p == home ? home_sessions_ : other_sessions_)[p].push_back(s);
    }
  }
  if (w.zipf) {
    auto cdf = [&](const std::vector<core::SessionId>& set) {
      std::vector<double> weights;
      double total = 0;
      for (core::SessionId s : set) {
        weights.push_back(1.0 / std::pow(static_cast<double>(s + 1), w.zipf_s));
        total += weights.back();
      }
      std::vector<std::uint64_t> out;
      double running = 0;
      for (double x : weights) {
        running += x;
        out.push_back(
            static_cast<std::uint64_t>(running / total * static_cast<double>(kZipfScale)));
      }
      if (!out.empty()) out.back() = kZipfScale;
      return out;
    };
    for (std::uint32_t p = 0; p < P; ++p) {
      home_cdf_.push_back(cdf(home_sessions_[p]));
      other_cdf_.push_back(cdf(other_sessions_[p]));
    }
  }
  for (std::uint32_t a = 0; a < w.attributes; ++a)
    attribute_names_.push_back("a" + std::to_string(a));
  std::vector<std::uint32_t> by_name(w.attributes);
  for (std::uint32_t a = 0; a < w.attributes; ++a) by_name[a] = a;
  std::sort(by_name.begin(), by_name.end(), [&](std::uint32_t a, std::uint32_t b) {
    return attribute_names_[a] < attribute_names_[b];
  });
  attribute_rank_.resize(w.attributes);
  for (std::uint32_t r = 0; r < w.attributes; ++r) attribute_rank_[by_name[r]] = r;
  acknowledged_.assign(w.sessions, 0);
  // A wait per request, about: reserved for the same reason as the logs.
  waits_.reserve(static_cast<std::size_t>(
      std::min<std::uint64_t>(std::uint64_t{config_.threads()} * w.requests_per_thread, 1 << 20)));
  true_at_cache_.resize(S + P);
  unknown_.assign(w.sessions, 0);
  for (std::uint32_t p = 0; p < P; ++p) {
    for (std::uint32_t t = 0; t < config_.threads_per_process; ++t) {
      SimThread thread;
      thread.process = p;
      thread.id = t;
      thread.rng = Prng::Stream(seed, "thread", p * config_.threads_per_process + t);
      thread.remaining = w.requests_per_thread;
      thread.phase = thread.remaining == 0 ? ThreadPhase::kDone : ThreadPhase::kIdle;
      if (thread.phase == ThreadPhase::kDone) ++threads_done_;
      threads_.push_back(thread);
    }
  }
  scripted_ = !config_.script.empty();
  for (std::uint32_t i = 0; i < threads_.size() && !scripted_; ++i) {
    if (threads_[i].phase != ThreadPhase::kDone) {
      Push(threads_[i].rng.Range(0, w.think_us), EventKind::kThreadStart, i, 0);
    }
  }
  faults_ = config_.schedule;
  for (std::size_t i = 0; i < faults_.size(); ++i) {
    Push(faults_[i].at_us, EventKind::kFault, 0, i);
  }
  bool random_faults = std::any_of(std::begin(fault_ppm_), std::end(fault_ppm_),
                                   [](std::uint32_t ppm) { return ppm != 0; });
  if (random_faults && config_.faults.check_every_us < config_.fault_phase_us) {
    Push(config_.faults.check_every_us, EventKind::kFaultCheck, 0, 0);
  }
  Push(config_.fault_phase_us, EventKind::kQuiet, 0, 0);
}

// ---- nodes -------------------------------------------------------------------

std::string Simulator::NodeName(std::uint32_t node) const {
  if (node < StoreCount()) return "s" + std::to_string(node);
  return "p" + std::to_string(node - StoreCount() + 1);
}

std::uint32_t Simulator::NodeOf(const core::Address& a) const {
  if (a.kind == core::NodeKind::kStore) {
    return a.id < StoreCount() ? static_cast<std::uint32_t>(a.id) : UINT32_MAX;
  }
  if (a.kind == core::NodeKind::kProcess && a.id >= 1 && a.id <= processes_.size()) {
    return StoreCount() + static_cast<std::uint32_t>(a.id - 1);
  }
  return UINT32_MAX;
}

Clock& Simulator::ClockOf(std::uint32_t node) {
  return node < StoreCount() ? stores_[node].clock : processes_[node - StoreCount()].clock;
}

Time& Simulator::PausedUntil(std::uint32_t node) {
  return node < StoreCount() ? stores_[node].paused_until
                             : processes_[node - StoreCount()].paused_until;
}

bool Simulator::IsUp(std::uint32_t node) const {
  return node < StoreCount() ? stores_[node].up : processes_[node - StoreCount()].up;
}

Simulator::EventQueue::EventQueue() : first_event_(kWindow), more_(kWindow, kNil) {}

// push, pop and Insert are inlined where they are called, once or twice per
// event: their rare cases (an event before the window, a slot already
// taken, far events coming into the window) are calls of their own.
[[gnu::always_inline]] inline void Simulator::EventQueue::push(const Event& e) {
  if (e.time < base_) [[unlikely]] {
    Rebase(e);
  }
  if (e.time - base_ >= kWindow) {
    far_.push(e);
  } else {
    Insert(e);
  }
}

void Simulator::EventQueue::Rebase(const Event& e) {
  {
    // Not expected (events are never scheduled in the past), but kept
    // correct: the window starts again from the earlier time.
    std::vector<Event> all;
    for (std::uint32_t slot = 0; slot < kWindow; ++slot) {
      if ((words_[slot / 64] >> (slot % 64) & 1) == 0) continue;
      all.push_back(first_event_[slot]);
      for (std::uint32_t n = more_[slot]; n != kNil; n = nodes_[n].next) {
        all.push_back(nodes_[n].event);
      }
      more_[slot] = kNil;
    }
    nodes_.clear();
    free_ = kNil;
    std::fill(std::begin(words_), std::end(words_), 0);
    summary_ = 0;
    count_ = 0;
    base_ = e.time;
    for (const Event& x : all) far_.push(x);
    Advance();
  }
}

[[gnu::always_inline]] inline void Simulator::EventQueue::Insert(const Event& e) {
  const auto slot = static_cast<std::uint32_t>(e.time & (kWindow - 1));
  std::uint64_t& word = words_[slot / 64];
  const std::uint64_t bit = std::uint64_t{1} << (slot % 64);
  if (count_++ == 0 || e.time < first_event_[first_].time) first_ = slot;
  if ((word & bit) == 0) {
    // The usual case: a time nothing else is at.
    first_event_[slot] = e;
    word |= bit;
    summary_ |= std::uint64_t{1} << (slot / 64);
    return;
  }
  InsertMore(e);
}

void Simulator::EventQueue::InsertMore(const Event& e) {
  const auto slot = static_cast<std::uint32_t>(e.time & (kWindow - 1));
  // One slot is one time: order by seq. Mostly the newest; a superseded
  // tick put back (pauses) or an event from the far heap may be older.
  std::uint32_t n;
  if (free_ != kNil) {
    n = free_;
    free_ = nodes_[n].next;
  } else {
    n = static_cast<std::uint32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  Event& first = first_event_[slot];
  if (e.seq < first.seq) {
    // The new one goes first: the old first heads the rest.
    nodes_[n] = Node{first, more_[slot]};
    more_[slot] = n;
    first = e;
    return;
  }
  nodes_[n] = Node{e, kNil};
  std::uint32_t* link = &more_[slot];
  while (*link != kNil && nodes_[*link].event.seq < e.seq) link = &nodes_[*link].next;
  nodes_[n].next = *link;
  *link = n;
}

std::uint32_t Simulator::EventQueue::FirstSlot() const {
  // The first occupied slot from base_'s, going round: slots hold the
  // times [base_, base_ + kWindow), so that is the earliest.
  const auto start = static_cast<std::uint32_t>(base_ & (kWindow - 1));
  const std::uint32_t w = start / 64;
  const std::uint64_t here = words_[w] & (~std::uint64_t{0} << (start % 64));
  if (here != 0) return w * 64 + static_cast<std::uint32_t>(__builtin_ctzll(here));
  // Later words, then from the start round to w (its low bits included).
  std::uint64_t later = w == 63 ? 0 : summary_ & (~std::uint64_t{0} << (w + 1));
  const std::uint32_t word =
      static_cast<std::uint32_t>(__builtin_ctzll(later != 0 ? later : summary_));
  return word * 64 + static_cast<std::uint32_t>(__builtin_ctzll(words_[word]));
}

inline void Simulator::EventQueue::Advance() {
  while (!far_.empty() && far_.top().time - base_ < kWindow) {
    Insert(far_.top());
    far_.pop();
  }
}

[[gnu::always_inline]] inline void Simulator::EventQueue::pop() {
  if (count_ == 0) {
    base_ = far_.top().time;
    far_.pop();
    Advance();
    return;
  }
  const std::uint32_t slot = first_;
  base_ = first_event_[slot].time;
  --count_;
  const std::uint32_t n = more_[slot];
  if (n != kNil) {
    // The next of the same time takes its place: the slot stays first.
    first_event_[slot] = nodes_[n].event;
    more_[slot] = nodes_[n].next;
    nodes_[n].next = free_;
    free_ = n;
  } else {
    std::uint64_t& word = words_[slot / 64];
    word &= ~(std::uint64_t{1} << (slot % 64));
    if (word == 0) summary_ &= ~(std::uint64_t{1} << (slot / 64));
    if (count_ != 0) first_ = FirstSlot();
  }
  Advance();
}

void Simulator::TickQueue::Set(std::uint32_t node, const Slot& slot) {
  if (pos_[node] == kNone) {
    slots_[node] = slot;
    heap_.push_back(node);
    pos_[node] = static_cast<std::uint32_t>(heap_.size() - 1);
    SiftUp(pos_[node]);
    return;
  }
  const bool earlier =
      slot.time != slots_[node].time ? slot.time < slots_[node].time : slot.seq < slots_[node].seq;
  slots_[node] = slot;
  if (earlier) {
    SiftUp(pos_[node]);
  } else {
    SiftDown(pos_[node]);
  }
}

void Simulator::TickQueue::PopTop() {
  pos_[heap_.front()] = kNone;
  const std::uint32_t last = heap_.back();
  heap_.pop_back();
  if (heap_.empty()) return;
  Place(0, last);
  SiftDown(0);
}

void Simulator::TickQueue::SiftUp(std::uint32_t i) {
  const std::uint32_t node = heap_[i];
  while (i > 0) {
    const std::uint32_t parent = (i - 1) / 2;
    if (!Before(node, heap_[parent])) break;
    Place(i, heap_[parent]);
    i = parent;
  }
  Place(i, node);
}

void Simulator::TickQueue::SiftDown(std::uint32_t i) {
  const std::uint32_t node = heap_[i];
  const auto n = static_cast<std::uint32_t>(heap_.size());
  for (;;) {
    std::uint32_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && Before(heap_[child + 1], heap_[child])) ++child;
    if (!Before(heap_[child], node)) break;
    Place(i, heap_[child]);
    i = child;
  }
  Place(i, node);
}

void Simulator::Push(Time at, EventKind kind, std::uint32_t node, std::uint64_t arg) {
  const std::uint64_t seq = next_seq_++;
  if (kind != EventKind::kTick) {
    queue_.push(Event{at, seq, kind, node, arg});
    return;
  }
  if (ticks_.Has(node)) {
    // The node's pending tick is superseded (its generation is behind).
    const TickQueue::Slot& old = ticks_.Get(node);
    if (ghosts_queued_) {
      queue_.push(Event{old.time, old.seq, EventKind::kTick, node, old.generation});
    } else if (old.time <= config_.end_us()) {
      ghost_until_ = std::max(ghost_until_, old.time);
    }
  }
  ticks_.Set(node, {at, seq, arg});
}

// ---- the loop ----------------------------------------------------------------

SimSummary Simulator::Run() {
  while (Step()) {
  }
  return Summary();
}

bool Simulator::Step() {
  if (done_) return false;
  if (scripted_ && (queue_.empty() || queue_.top().time > now_)) {
    // Events due now (store starts, restarts after a scripted crash) go
    // first; then the script's next step.
    if (script_pos_ < config_.script.size()) {
      TakeScriptStep(config_.script[script_pos_++]);
      if (!script_error_.empty()) done_ = true;
      if (threads_done_ == threads_.size() || observer_failed_) done_ = true;
      return !done_;
    }
    EndScript();
  }
  // The next event: the earlier of queue_'s first and the first tick.
  bool tick = false;
  if (!ticks_.empty()) {
    const TickQueue::Slot& first = ticks_.Get(ticks_.TopNode());
    tick = queue_.empty() || first.time < queue_.top().time ||
           (first.time == queue_.top().time && first.seq < queue_.top().seq);
  }
  if (!tick && queue_.empty()) {
    done_ = true;
    now_ = std::max(now_, ghost_until_);  // as if the superseded ticks were popped
    return false;
  }
  Event ev;
  if (tick) {
    const std::uint32_t node = ticks_.TopNode();
    const TickQueue::Slot& first = ticks_.Get(node);
    ev = Event{first.time, first.seq, EventKind::kTick, node, first.generation};
  } else {
    ev = queue_.top();
  }
  if (ev.time > config_.end_us()) {
    done_ = true;
    now_ = std::max(now_, ghost_until_);
    return false;
  }
  if (tick) {
    ticks_.PopTop();
  } else {
    queue_.pop();
  }
  now_ = ev.time;
  // A paused node handles nothing until its pause ends; its events wait.
  std::uint32_t target = UINT32_MAX;
  switch (ev.kind) {
    case EventKind::kDeliver:
      target = ev.node;
      break;
    case EventKind::kTick:
      target = ev.node;
      break;
    case EventKind::kThreadStart:
    case EventKind::kThreadFinish:
      target = StoreCount() + threads_[ev.node].process;
      break;
    default:
      break;
  }
  if (target != UINT32_MAX && PausedUntil(target) > now_) {
    if (ev.kind == EventKind::kTick && !tick) {
      // A superseded tick (ghosts_queued_): it goes back to queue_, not to
      // the node's slot.
      queue_.push(Event{PausedUntil(target), next_seq_++, ev.kind, ev.node, ev.arg});
    } else {
      Push(PausedUntil(target), ev.kind, ev.node, ev.arg);
    }
    return true;
  }
  Dispatch(ev);
  if (threads_done_ == threads_.size() || observer_failed_) done_ = true;
  return !done_;
}

void Simulator::Dispatch(const Event& ev) {
  const std::uint32_t S = StoreCount();
  TraceEvent te{now_, ev.kind, ev.node, nullptr, nullptr, {}};
  switch (ev.kind) {
    case EventKind::kDeliver: {
      // The message is read where it is, in its slot. The slot is free from
      // now on, but a message sent by this event moves into it only in
      // Launch, after the event has been hashed and observed.
      const std::uint64_t slot = ev.arg;
      delivery_at_[slot] = core::kNever;
      free_slots_.push_back(slot);
      te.input = &messages_[slot];
      te.sent = sent_number_[slot];
      if (!IsUp(ev.node)) {
        te.note = kActionNames[static_cast<int>(Action::kDropDown)];
        ++lost_;
        return Finish(te);
      }
      // Only a partition blocks a delivery: without one, no look-up.
      if (!partitions_.empty()) {
        const std::uint32_t from = NodeOf(messages_[slot].from);
        if (from != UINT32_MAX && Blocked(from, ev.node)) {
          te.note = kActionNames[static_cast<int>(Action::kDropPartition)];
          ++lost_;
          return Finish(te);
        }
      }
      Time local = ClockOf(ev.node).Local(now_);
      if (ev.node < S) {
        stores_[ev.node].store.OnMessage(local, messages_[slot], fx_);
      } else {
        processes_[ev.node - S].agent.OnMessage(local, messages_[slot], fx_);
      }
      // Room for every slot its messages may take (two copies each), so
      // that no slot moves while te.input points at one.
      const std::size_t room = messages_.size() + 2 * fx_.send.size();
      if (messages_.capacity() < room) {
        messages_.reserve(std::max(room, 2 * messages_.capacity()));
        te.input = &messages_[slot];
      }
      if (ev.node < S) {
        ApplyStoreEffects(ev.node, fx_, te);
      } else {
        ApplyAgentEffects(ev.node, fx_, te);
      }
      return;
    }
    case EventKind::kTick: {
      if (!IsUp(ev.node)) return;
      Time local = ClockOf(ev.node).Local(now_);
      if (ev.node < S) {
        StoreNode& n = stores_[ev.node];
        if (n.tick_generation != ev.arg) return;  // superseded
        n.tick_at = core::kNever;
        n.store.OnTick(local, fx_);
        ApplyStoreEffects(ev.node, fx_, te);
      } else {
        ProcessNode& n = processes_[ev.node - S];
        if (n.tick_generation != ev.arg) return;
        n.tick_at = core::kNever;
        n.agent.OnTick(local, fx_);
        ApplyAgentEffects(ev.node, fx_, te);
      }
      return;
    }
    case EventKind::kThreadStart: {
      SimThread& t = threads_[ev.node];
      if (t.epoch != ev.arg || !processes_[t.process].up || t.phase != ThreadPhase::kIdle) return;
      return StartRequest(t);
    }
    case EventKind::kThreadFinish: {
      SimThread& t = threads_[ev.node];
      if (t.epoch != ev.arg || !processes_[t.process].up || t.phase != ThreadPhase::kHolding)
        return;
      t.phase = ThreadPhase::kCommitting;
      std::uint32_t node = S + t.process;
      te.node = node;
      te.note = kActionNames[static_cast<int>(Action::kFinish)];
      te.thread = static_cast<std::int32_t>(ev.node);
      Time local = ClockOf(node).Local(now_);
      processes_[t.process].agent.OnThreadFinish(local, t.id, t.session, true, fx_);
      return ApplyAgentEffects(node, fx_, te);
    }
    case EventKind::kStart: {
      te.note = kActionNames[static_cast<int>(Action::kStart)];
      core::Effects fx = stores_[ev.node].store.Start(0);
      return ApplyStoreEffects(ev.node, fx, te);
    }
    case EventKind::kFault:
      return InjectFault(faults_[ev.arg]);
    case EventKind::kRecover: {
      te.note = kActionNames[static_cast<int>(Action::kRecover)];
      Time local = ClockOf(ev.node).Local(now_);
      if (ev.node < S) {
        StoreNode& n = stores_[ev.node];
        core::Effects fx;
        n.store = core::Store::Recover(n.store.config(), n.log, local, &fx);
        n.up = true;
        return ApplyStoreEffects(ev.node, fx, te);
      }
      ProcessNode& n = processes_[ev.node - S];
      core::AgentConfig c = n.agent.config();
      c.self.incarnation += 1;  // B4: a new incarnation, nothing volatile survives
      n.agent = core::ProcessAgent(c);
      n.up = true;
      for (std::uint32_t i = 0; i < threads_.size(); ++i) {
        SimThread& t = threads_[i];
        if (t.process == ev.node - S && t.phase == ThreadPhase::kIdle && !scripted_) {
          Push(now_ + t.rng.Range(0, config_.workload.think_us), EventKind::kThreadStart, i,
               t.epoch);
        }
      }
      return Finish(te);
    }
    case EventKind::kHeal: {
      auto it = std::find_if(partitions_.begin(), partitions_.end(),
                             [&](const Partition& p) { return p.id == ev.arg; });
      if (it == partitions_.end()) return;
      partitions_.erase(it);
      te.note = kActionNames[static_cast<int>(Action::kHeal)];
      return Finish(te);
    }
    case EventKind::kFaultCheck:
      if (quiet_) return;
      DrawRandomFaults();
      if (now_ + config_.faults.check_every_us < config_.fault_phase_us) {
        Push(now_ + config_.faults.check_every_us, EventKind::kFaultCheck, 0, 0);
      }
      return;
    case EventKind::kQuiet:
      EnterQuiet();
      te.note = kActionNames[static_cast<int>(Action::kQuiet)];
      return Finish(te);
  }
}

void Simulator::ApplyStoreEffects(std::uint32_t node, core::Effects& fx, TraceEvent& te) {
  StoreNode& n = stores_[node];
  SendAll(node, fx);
  ScheduleTick(node, fx.next_deadline);
  te.effects = &fx;
  Finish(te);
  // B3: records are durable before any message leaves. The records are moved
  // into the log, and the messages into their slots, once the event has been
  // hashed and observed, so that neither is copied; nothing is delivered
  // before both are in place.
  DurableCounters& counters = durable_counters_[node];
  for (core::Record& r : fx.persist) {
    n.log.push_back(std::move(r));
    counters.Apply(n.log.back());
  }
  Launch(fx);
}

void Simulator::ApplyAgentEffects(std::uint32_t node, core::Effects& fx, TraceEvent& te) {
  SendAll(node, fx);
  ScheduleTick(node, fx.next_deadline);
  te.effects = &fx;
  Finish(te);
  Launch(fx);
  // OnWake never calls the core, so `fx` (usually fx_) stays intact.
  for (const core::ThreadEvent& w : fx.wake) OnWake(node, w);
}

void Simulator::ScheduleTick(std::uint32_t node, Time deadline_local) {
  const std::uint32_t S = StoreCount();
  // The node's fields, found with one test of its kind.
  Time* tick_at_p;
  std::uint64_t* generation_p;
  const Clock* clock_p;
  if (node < S) {
    StoreNode& n = stores_[node];
    n.deadline_local = deadline_local;
    tick_at_p = &n.tick_at, generation_p = &n.tick_generation, clock_p = &n.clock;
  } else {
    ProcessNode& n = processes_[node - S];
    n.deadline_local = deadline_local;
    tick_at_p = &n.tick_at, generation_p = &n.tick_generation, clock_p = &n.clock;
  }
  Time& tick_at = *tick_at_p;
  std::uint64_t& generation = *generation_p;
  if (scripted_) return;  // a script step ticks it
  if (deadline_local == core::kNever) {
    if (tick_at != core::kNever) ++generation;
    tick_at = core::kNever;
    return;
  }
  const Clock& clock = *clock_p;
  TrueAtCache& cache = true_at_cache_[node];
  if (cache.local != deadline_local || cache.clock.offset_us != clock.offset_us ||
      cache.clock.drift_ppm != clock.drift_ppm) {
    cache = {deadline_local, clock, clock.TrueAt(deadline_local)};
  }
  Time at = std::max(cache.true_at, now_);
  if (at == tick_at) return;
  ++generation;
  tick_at = at;
  Push(at, EventKind::kTick, node, generation);
}

namespace {

// The trace hash's word stream: each event's time, kind, node, note,
// thread and its request, input and effects, with small fields packed
// several to a word and short strings (up to 7 bytes: names, counters,
// notes) in one word with their length. A delivered message is one word,
// its number among the sends (TraceEvent::sent): its fields went in when the
// event that sent it was hashed. An address is one word. So an event is
// about 13 words on average instead of about 20. Every event's words go
// into one stream: each word goes through two lanes in turn (xor, multiply
// by an odd constant, rotate: a bijection of the lane), so a word does not
// wait for the previous one; Simulator::trace_hash() mixes both lanes
// fully. Pure integer arithmetic: the same value with tracing on or off, at
// every optimisation level.
class TraceHasher {
 public:
  TraceHasher(std::uint64_t a, std::uint64_t b) : a_(a), b_(b) {}
  void Mix(std::uint64_t word) {
    const std::uint64_t x = (a_ ^ word) * 0xD6E8FEB86659FD93ULL;
    a_ = b_;
    b_ = std::rotl(x, 32);
  }
  std::uint64_t a() const { return a_; }
  std::uint64_t b() const { return b_; }

 private:
  std::uint64_t a_, b_;
};

// A string: up to 7 bytes, one word (its length in bits 56-58, its bytes
// big-endian below); longer, its length, then its bytes eight to a word as
// core::HashValue takes them. `tag` goes into bit 63 of the first word.
void HashString(TraceHasher& h, const std::string& s, std::uint64_t tag = 0) {
  const std::size_t size = s.size();
  if (size >= 8) {
    h.Mix(size | tag);
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    std::size_t left = size;
    for (; left >= 8; left -= 8, p += 8) h.Mix(core::LoadBigEndian(p));
    if (left != 0) {
      h.Mix(core::LoadBigEndian(p + left - 8) & ((std::uint64_t{1} << (8 * left)) - 1));
    }
    return;
  }
  std::uint64_t word = 0;
  if (size != 0) {
    if (s.capacity() >= 7) {
      // data()[0, capacity()] is the string's storage: eight bytes can be
      // read; those past the end are shifted out.
      word =
          core::LoadBigEndian(reinterpret_cast<const unsigned char*>(s.data())) >> (64 - 8 * size);
    } else {
      for (std::size_t i = 0; i < size; ++i) {
        word = (word << 8) | static_cast<unsigned char>(s[i]);
      }
    }
  }
  h.Mix(word | std::uint64_t{size} << 56 | tag);
}

// An address in one word: the id, the incarnation rotated to the top half,
// the kind in the top two bits (xor: ids and incarnations under 2^32, all a
// run has, never overlap).
std::uint64_t AddressWord(const core::Address& a) {
  return a.id ^ std::rotl(a.incarnation, 32) ^ static_cast<std::uint64_t>(a.kind) << 62;
}

// Found by argument-dependent lookup from core/hash.h's templates: for this
// hasher they take the place of the generic overloads.
void HashValue(TraceHasher& h, const core::AttributeWrite& w) {
  HashString(h, w.name);
  HashString(h, w.value, w.erase ? std::uint64_t{1} << 63 : 0);
}
void HashWrites(TraceHasher& h, bool clear_first, const core::WriteSet& writes) {
  h.Mix(static_cast<std::uint64_t>(writes.size()) << 1 | (clear_first ? 1 : 0));
  for (const core::AttributeWrite& w : writes) HashValue(h, w);
}
void HashValue(TraceHasher& h, const core::Acquire& m) {
  core::HashFields(h, m.session, m.request_id, m.cached.token);
  h.Mix(m.cached.seq << 1 | (m.try_only ? 1 : 0));
}
void HashValue(TraceHasher& h, const core::Commit& m) {
  core::HashFields(h, m.session, m.token, m.seq);
  HashWrites(h, m.clear_first, m.writes);
}
void HashValue(TraceHasher& h, const core::Granted& m) {
  core::HashFields(h, m.session, m.token, m.request_id, m.version.token, m.version.seq);
  h.Mix(static_cast<std::uint64_t>(m.snapshot.size()) << 1 | (m.has_snapshot ? 1 : 0));
  for (const auto& [name, value] : m.snapshot) {
    HashString(h, name);
    HashString(h, value);
  }
}
void HashValue(TraceHasher& h, const core::CommitRecord& r) {
  core::HashFields(h, r.session, r.token, r.seq);
  HashWrites(h, r.clear_first, r.writes);
}
void HashValue(TraceHasher& h, const core::GrantRecord& r) {
  core::HashFields(h, r.session, r.token, r.request_id);
  h.Mix(r.holder.id ^ std::rotl(r.holder.incarnation, 32));
}
void HashValue(TraceHasher& h, const core::ThreadEvent& e) {
  h.Mix(static_cast<std::uint64_t>(e.thread) << 32 | static_cast<std::uint64_t>(e.kind) << 8 |
        static_cast<std::uint64_t>(e.reason));
  h.Mix(e.session);
}
void HashValue(TraceHasher& h, const core::Portion& p) {
  h.Mix(static_cast<std::uint64_t>(p.attributes.size()) << 16 |
        static_cast<std::uint64_t>(p.mode) << 8 | (p.whole ? 1 : 0));
  for (const std::string& a : p.attributes) HashString(h, a);
}

// A variant's alternative, by a switch (see core/hash.h); its index goes
// into the word before, so here only the alternative's fields.
template <class... Ts>
void HashAlternative(TraceHasher& h, const std::variant<Ts...>& v) {
  core::VisitBySwitch(v, [&h](const auto& alternative) { HashValue(h, alternative); });
}
// Two words and the message's fields: the sender with the message's kind
// in bits 57-61, then the receiver.
void HashValue(TraceHasher& h, const core::Envelope& e) {
  h.Mix(AddressWord(e.from) ^ static_cast<std::uint64_t>(e.message.index()) << 57);
  h.Mix(AddressWord(e.to));
  HashAlternative(h, e.message);
}
void HashValue(TraceHasher& h, const core::Record& r) {
  h.Mix(r.index());
  HashAlternative(h, r);
}

// One event's words. Flattened: the hash functions of every message, record
// and effect are inlined into this one function, so the per-field and
// per-variant calls go.
[[gnu::flatten]] void HashEvent(TraceHasher& h, const TraceEvent& te, const SimThread* thread) {
  h.Mix(te.time);
  // The thread (32 bits), the node, the kind (bits 56-59) and which parts
  // follow (bits 60-63), in one word.
  const std::uint64_t parts = (thread != nullptr ? 1u : 0u) | (te.input != nullptr ? 2u : 0u) |
                              (te.effects != nullptr ? 4u : 0u) | (!te.note.empty() ? 8u : 0u);
  h.Mix((static_cast<std::uint64_t>(te.node) << 32 ^ static_cast<std::uint64_t>(te.kind) << 56 ^
         parts << 60) |
        static_cast<std::uint32_t>(te.thread));
  if (!te.note.empty()) HashString(h, te.note);
  if (thread != nullptr) {
    h.Mix(thread->session);
    HashValue(h, thread->portion);
  }
  if (te.input != nullptr) {
    if (te.sent != 0) {
      h.Mix(te.sent);
    } else {
      HashValue(h, *te.input);
    }
  }
  if (te.effects != nullptr) {
    const core::Effects& fx = *te.effects;
    h.Mix(static_cast<std::uint64_t>(fx.persist.size()) << 42 |
          static_cast<std::uint64_t>(fx.send.size()) << 21 |
          static_cast<std::uint64_t>(fx.wake.size()));
    for (const core::Record& r : fx.persist) HashValue(h, r);
    for (const core::Envelope& e : fx.send) HashValue(h, e);
    for (const core::ThreadEvent& w : fx.wake) HashValue(h, w);
    h.Mix(fx.next_deadline);
  }
}

}  // namespace

std::uint64_t Simulator::trace_hash() const {
  return core::Splitmix64(core::Splitmix64(hash_a_) ^ hash_b_);
}

void Simulator::Finish(TraceEvent& te) {
  ++events_;
  // The trace hash: every event's words (time, kind, node, note, thread and
  // its request, the input, every effect) go through one TraceHasher, whose
  // two lanes trace_hash() mixes fully. (Each event had a digest of its own,
  // folded into the hash by a splitmix64: two more per event.)
  TraceHasher h(hash_a_, hash_b_);
  HashEvent(h, te, te.thread >= 0 ? &threads_[static_cast<std::size_t>(te.thread)] : nullptr);
  hash_a_ = h.a();
  hash_b_ = h.b();
  if (trace_ != nullptr) {
    nlohmann::json line{
        {"t", te.time}, {"ev", std::string(EventKindName(te.kind))}, {"node", NodeName(te.node)}};
    if (!te.note.empty()) line["what"] = te.note;
    if (te.input != nullptr) line["in"] = EnvelopeToJson(*te.input);
    if (te.effects != nullptr) line["out"] = EffectsToJson(*te.effects);
    // Which of out.send the network lost at once (trace only, not hashed).
    if (!lost_sends_.empty()) line["lost"] = lost_sends_;
    if (te.thread >= 0) {
      const SimThread& t = threads_[static_cast<std::size_t>(te.thread)];
      line["thread"] = NodeName(te.node) + ".t" + std::to_string(t.id);
      line["session"] = t.session;
      line["portion"] = PortionToJson(t.portion);
    }
    *trace_ << line.dump() << '\n';
    lost_sends_.clear();
  }
  for (Observer* o : observers_) {
    o->AfterEvent(*this, te);
    if (o->Failed()) observer_failed_ = true;
  }
}

// ---- network -----------------------------------------------------------------

bool Simulator::Blocked(std::uint32_t from, std::uint32_t to) const {
  for (const Partition& p : partitions_) {
    switch (p.variant) {
      case 0:
        if (p.side[from] != p.side[to]) return true;
        break;
      case 1:
        if (from == p.target && to != p.target) return true;
        break;
      default:
        if ((from == p.target) != (to == p.target)) return true;
        break;
    }
  }
  return false;
}

void Simulator::SendAll(std::uint32_t from, const core::Effects& fx) {
  for (std::size_t i = 0; i < fx.send.size(); ++i) {
    if (!SendMessage(from, fx, static_cast<std::uint32_t>(i)) && trace_ != nullptr) {
      lost_sends_.push_back(static_cast<std::uint32_t>(i));
    }
  }
}

bool Simulator::SendMessage(std::uint32_t from, const core::Effects& fx, std::uint32_t index) {
  const core::Envelope& e = fx.send[index];
  ++sent_;
  std::uint32_t to = NodeOf(e.to);
  if (to == UINT32_MAX || (!partitions_.empty() && Blocked(from, to))) {
    ++lost_;
    return false;
  }
  if (scripted_) {  // it waits in its slot for a script step; nothing is drawn
    const std::uint64_t slot = NewSlot();
    sent_number_[slot] = sent_;
    launching_.push_back({slot, core::kNever - 1, index});
    held_.push_back(slot);
    return true;
  }
  if (!quiet_ && net_rng_.ChancePpm(network_.loss_ppm)) {
    ++lost_;
    return false;
  }
  int copies = 1;
  if (!quiet_ && net_rng_.ChancePpm(network_.duplicate_ppm)) {
    copies = 2;
    ++duplicated_;
  }
  for (int c = 0; c < copies; ++c) {
    Time latency = net_rng_.Range(network_.latency_min_us, network_.latency_max_us);
    if (!quiet_ && net_rng_.ChancePpm(network_.reorder_ppm)) {
      latency += net_rng_.Range(0, network_.reorder_max_us);
    }
    Time at = now_ + latency;
    if (!clogged_until_.empty()) {  // no look-up in a world without clogs
      auto clog = clogged_until_.find({std::min(from, to), std::max(from, to)});
      if (clog != clogged_until_.end() && clog->second > now_) at += clog->second - now_;
    }
    const std::uint64_t slot = NewSlot();
    sent_number_[slot] = sent_;
    launching_.push_back({slot, at, index});  // filled by Launch
    Push(at, EventKind::kDeliver, to, slot);
  }
  return true;
}

std::uint64_t Simulator::NewSlot() {
  if (!free_slots_.empty()) {
    const std::uint64_t slot = free_slots_.back();
    free_slots_.pop_back();
    return slot;
  }
  messages_.emplace_back();
  delivery_at_.push_back(core::kNever);
  sent_number_.push_back(0);
  return messages_.size() - 1;
}

void Simulator::Launch(core::Effects& fx) {
  for (std::size_t k = 0; k < launching_.size(); ++k) {
    const Launching& l = launching_[k];
    // A duplicated message has two slots: copy into the first, move into the last.
    const bool again = k + 1 < launching_.size() && launching_[k + 1].index == l.index;
    if (again) {
      messages_[l.slot] = fx.send[l.index];
    } else {
      messages_[l.slot] = std::move(fx.send[l.index]);
    }
    delivery_at_[l.slot] = l.at;
  }
  launching_.clear();
}

// ---- threads -----------------------------------------------------------------

void Simulator::StartRequest(SimThread& t) {
  const WorkloadConfig& w = config_.workload;
  if (!w.program.empty()) {
    const ProgramRequest& r = w.program[t.id][w.requests_per_thread - t.remaining];
    t.session = r.session;
    t.portion = r.portion;
    t.writes_counter = t.portion.Writable("a0");
    return AskNow(t);
  }
  const std::vector<core::SessionId>& home = home_sessions_[t.process];
  const std::vector<core::SessionId>& other = other_sessions_[t.process];
  bool at_home = other.empty() || (!home.empty() && t.rng.ChancePpm(w.affinity_ppm));
  const std::vector<core::SessionId>& set = at_home ? home : other;
  std::size_t index;
  if (w.zipf) {
    const std::vector<std::uint64_t>& cdf = (at_home ? home_cdf_ : other_cdf_)[t.process];
    std::uint64_t x = t.rng.Below(kZipfScale);
    index = static_cast<std::size_t>(std::upper_bound(cdf.begin(), cdf.end(), x) - cdf.begin());
    index = std::min(index, set.size() - 1);
  } else {
    index = t.rng.Below(set.size());
  }
  t.session = set[index];
  // The portion: the whole session, a shared read of a few attributes, or an
  // exclusive read-modify-write of the counter a0 and a few others.
  // The portion is built in place in t.portion (as Portion::Of would build
  // it: sorted names), reusing its buffer and the pool's.
  const std::uint32_t K = w.attributes;
  std::vector<std::uint32_t>& picked = picked_;
  picked.clear();
  auto pick = [&](std::uint32_t first, std::uint32_t count) {
    // Each draw takes the j-th of the candidates left ([first, K) less the
    // ones taken), in order: first + j, moved past each taken one at or
    // below it (taken_ keeps them sorted). The same picks as taking the
    // j-th out of a list of the candidates left, without building the list.
    std::vector<std::uint32_t>& taken = taken_;
    taken.clear();
    std::size_t left = first < K ? K - first : 0;
    for (std::uint32_t i = 0; i < count && left != 0; ++i, --left) {
      auto c = first + static_cast<std::uint32_t>(t.rng.Below(left));
      std::size_t k = 0;
      for (; k < taken.size() && taken[k] <= c; ++k) ++c;
      taken.insert(taken.begin() + static_cast<std::ptrdiff_t>(k), c);
      picked.push_back(c);
    }
  };
  std::uint32_t most = std::min(w.portion_max, K - 1);
  if (t.rng.ChancePpm(w.whole_ppm)) {
    t.portion.whole = true;
    t.portion.mode = t.rng.ChancePpm(w.shared_ppm) ? core::Mode::kShared : core::Mode::kExclusive;
    t.writes_counter = t.portion.mode == core::Mode::kExclusive;
  } else if (t.rng.ChancePpm(w.shared_ppm)) {
    pick(0, static_cast<std::uint32_t>(t.rng.Range(1, std::max(1u, most))));
    t.portion.whole = false;
    t.portion.mode = core::Mode::kShared;
    t.writes_counter = false;
  } else {
    pick(1, static_cast<std::uint32_t>(t.rng.Range(0, most)));
    picked.push_back(0);  // the counter a0
    t.portion.whole = false;
    t.portion.mode = core::Mode::kExclusive;
    t.writes_counter = true;  // a0 is attribute 0
  }
  // Distinct indices; sorted by name ("a10" < "a2"), as Portion::Of sorts.
  std::sort(picked.begin(), picked.end(), [&](std::uint32_t a, std::uint32_t b) {
    return attribute_rank_[a] < attribute_rank_[b];
  });
  t.portion.attributes.resize(picked.size());
  for (std::size_t i = 0; i < picked.size(); ++i) {
    t.portion.attributes[i] = attribute_names_[picked[i]];
  }
  AskNow(t);
}

void Simulator::AskNow(SimThread& t) {
  const WorkloadConfig& w = config_.workload;
  t.asked_at = now_;
  t.ask_order = ++asks_;
  t.phase = ThreadPhase::kWaiting;
  std::uint32_t node = StoreCount() + t.process;
  Time local = ClockOf(node).Local(now_);
  Time deadline = w.wait_timeout_us == core::kNever ? core::kNever : local + w.wait_timeout_us;
  TraceEvent te{now_,
                EventKind::kThreadStart,
                node,
                nullptr,
                nullptr,
                kActionNames[static_cast<int>(Action::kAsk)],
                static_cast<std::int32_t>(t.process * config_.threads_per_process + t.id)};
  // Drawn only when configured, so that runs without try-locks keep their draws.
  const bool try_only = w.try_ppm != 0 && t.rng.ChancePpm(w.try_ppm);
  processes_[t.process].agent.OnThreadAsk(local, t.id, t.session, t.portion, deadline, try_only,
                                          fx_);
  ApplyAgentEffects(node, fx_, te);
}

void Simulator::OnWake(std::uint32_t node, const core::ThreadEvent& w) {
  std::uint32_t process = node - StoreCount();
  SimThread& t = threads_[process * config_.threads_per_process + w.thread];
  core::ProcessAgent& agent = processes_[process].agent;
  switch (w.kind) {
    case core::ThreadEventKind::kGranted: {
      waits_.push_back(now_ - t.asked_at);
      t.phase = ThreadPhase::kHolding;
      if (t.writes_counter) {
        // Read-modify-write of the counter: a lost update shows in its value.
        // One look-up for the read and the write.
        static const std::string kCounter = "a0";
        core::Reason r = agent.Update(t.id, t.session, kCounter, [](const std::string* value) {
          return std::to_string((value != nullptr ? ParseCounter(*value) : 0) + 1);
        });
        LK_ASSERT(r == core::Reason::kNone);
      }
      if (scripted_) return;  // a script step commits
      Push(now_ + t.rng.Range(0, config_.workload.hold_us), EventKind::kThreadFinish,
           process * config_.threads_per_process + w.thread, t.epoch);
      return;
    }
    case core::ThreadEventKind::kCommitted:
    case core::ThreadEventKind::kRolledBack:
      ++completed_;
      if (t.writes_counter) ++acknowledged_[t.session];
      return NextRequest(t);
    case core::ThreadEventKind::kFailed:
      ++failed_[std::string(core::ReasonName(w.reason))];
      if (t.writes_counter && w.reason == core::Reason::kCommitOutcomeUnknown)
        ++unknown_[t.session];
      return NextRequest(t);
  }
}

void Simulator::NextRequest(SimThread& t) {
  t.phase = ThreadPhase::kIdle;
  if (t.remaining > 0) --t.remaining;
  if (t.remaining == 0) {
    t.phase = ThreadPhase::kDone;
    ++threads_done_;
    return;
  }
  if (scripted_) return;  // a script step asks
  std::uint32_t index = t.process * config_.threads_per_process + t.id;
  Push(now_ + t.rng.Range(0, config_.workload.think_us), EventKind::kThreadStart, index, t.epoch);
}

// ---- scripted runs -------------------------------------------------------------

std::size_t Simulator::HeldMessage(const nlohmann::json& message) const {
  for (std::size_t i = 0; i < held_.size(); ++i) {
    if (EnvelopeToJson(messages_[held_[i]]) == message) return i;
  }
  return std::string::npos;
}

void Simulator::TakeScriptStep(const ScriptStep& step) {
  const std::uint32_t S = StoreCount();
  const std::string where = "script step " + std::to_string(script_pos_ - 1) + " (" +
                            std::string(ScriptKindName(step.kind)) + ")";
  switch (step.kind) {
    case ScriptKind::kDeliver:
    case ScriptKind::kLose:
    case ScriptKind::kDuplicate: {
      const std::size_t i = HeldMessage(step.message);
      if (i == std::string::npos) {
        script_error_ = where + ": no message in flight is " + step.message.dump();
        return;
      }
      const std::uint64_t slot = held_[i];
      if (step.kind == ScriptKind::kDuplicate) {
        ++duplicated_;
        const std::uint64_t copy = NewSlot();
        messages_[copy] = messages_[slot];
        sent_number_[copy] = sent_number_[slot];
        delivery_at_[copy] = core::kNever - 1;
        held_.push_back(copy);
        return;
      }
      held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
      if (step.kind == ScriptKind::kLose) {
        ++lost_;
        delivery_at_[slot] = core::kNever;
        free_slots_.push_back(slot);
        return;
      }
      return Dispatch(Event{now_, 0, EventKind::kDeliver, NodeOf(messages_[slot].to), slot});
    }
    case ScriptKind::kAsk:
    case ScriptKind::kCommit: {
      SimThread& t = threads_[step.target];
      const ThreadPhase needed =
          step.kind == ScriptKind::kAsk ? ThreadPhase::kIdle : ThreadPhase::kHolding;
      if (t.phase != needed || !processes_[t.process].up) {
        script_error_ = where + ": thread p" + std::to_string(t.process + 1) + ".t" +
                        std::to_string(t.id) + " is not " +
                        (needed == ThreadPhase::kIdle ? "idle" : "holding its portion");
        return;
      }
      return Dispatch(
          Event{now_, 0,
                step.kind == ScriptKind::kAsk ? EventKind::kThreadStart : EventKind::kThreadFinish,
                step.target, t.epoch});
    }
    case ScriptKind::kAdvance:
      // Every node due by then ticks, stores first, as the model checker does.
      now_ = std::max(now_, step.to_us);
      for (std::uint32_t node = 0; node < S + processes_.size() && !observer_failed_; ++node) {
        const bool store = node < S;
        const Time due = store ? stores_[node].deadline_local : processes_[node - S].deadline_local;
        if (due > now_ || !IsUp(node)) continue;
        Dispatch(
            Event{now_, 0, EventKind::kTick, node,
                  store ? stores_[node].tick_generation : processes_[node - S].tick_generation});
      }
      return;
    case ScriptKind::kCrash:
    case ScriptKind::kRestartStore: {
      const bool store = step.kind == ScriptKind::kRestartStore;
      const FaultKind kind = store ? FaultKind::kStoreCrash : FaultKind::kProcessCrash;
      ++fault_counts_[static_cast<int>(kind)];
      TraceEvent te{now_,
                    EventKind::kFault,
                    store ? step.target : S + step.target,
                    nullptr,
                    nullptr,
                    std::string(FaultKindName(kind)) + " target=" + std::to_string(step.target) +
                        " duration_us=0 (script)"};
      // Down for no time at all: the restart is the next event.
      if (store) {
        CrashStore(step.target, 0);
      } else {
        CrashProcess(step.target, 0);
      }
      return Finish(te);
    }
  }
}

void Simulator::EndScript() {
  // From here the run is free: what waited for a step gets its time now.
  scripted_ = false;
  const std::uint32_t S = StoreCount();
  for (std::uint32_t node = 0; node < S + processes_.size(); ++node) {
    if (!IsUp(node)) continue;
    const bool store = node < S;
    (store ? stores_[node].tick_at : processes_[node - S].tick_at) = core::kNever;
    ScheduleTick(node, store ? stores_[node].deadline_local : processes_[node - S].deadline_local);
  }
  for (std::uint64_t slot : held_) {
    Time at = now_ + net_rng_.Range(network_.latency_min_us, network_.latency_max_us);
    delivery_at_[slot] = at;
    Push(at, EventKind::kDeliver, NodeOf(messages_[slot].to), slot);
  }
  held_.clear();
  for (std::uint32_t i = 0; i < threads_.size(); ++i) {
    SimThread& t = threads_[i];
    if (!processes_[t.process].up) continue;
    if (t.phase == ThreadPhase::kIdle) {
      Push(now_ + t.rng.Range(0, config_.workload.think_us), EventKind::kThreadStart, i, t.epoch);
    } else if (t.phase == ThreadPhase::kHolding) {
      Push(now_ + t.rng.Range(0, config_.workload.hold_us), EventKind::kThreadFinish, i, t.epoch);
    }
  }
}

// ---- faults ------------------------------------------------------------------

void Simulator::InjectFault(const ScheduledFault& f) {
  ++fault_counts_[static_cast<int>(f.kind)];
  const std::uint32_t S = StoreCount();
  const std::uint32_t nodes = S + static_cast<std::uint32_t>(processes_.size());
  TraceEvent te{now_,
                EventKind::kFault,
                0,
                nullptr,
                nullptr,
                std::string(FaultKindName(f.kind)) + " target=" + std::to_string(f.target) +
                    " duration_us=" + std::to_string(f.duration_us) +
                    " variant=" + std::to_string(f.variant)};
  Time duration = std::max<Time>(f.duration_us, 1);
  switch (f.kind) {
    case FaultKind::kProcessCrash:
      CrashProcess(f.target, duration);
      te.node = S + f.target;
      break;
    case FaultKind::kServerCrash:
      for (std::uint32_t p = 0; p < processes_.size(); ++p) {
        if (processes_[p].server == f.target) CrashProcess(p, duration);
      }
      break;
    case FaultKind::kStoreCrash:
      CrashStore(f.target, duration);
      te.node = f.target;
      break;
    case FaultKind::kPartition: {
      Partition p{next_partition_id_++, f.variant, f.target, std::vector<std::uint8_t>(nodes, 0)};
      if (p.variant == 0) {
        p.side[f.target] = 1;
        for (std::uint32_t n = 0; n < nodes; ++n) {
          if (n != f.target) p.side[n] = fault_rng_.Chance(1, 2) ? 1 : 0;
        }
        bool split =
            std::any_of(p.side.begin(), p.side.end(), [](std::uint8_t s) { return s == 0; });
        if (!split && nodes > 1) p.side[(f.target + 1) % nodes] = 0;
      }
      Push(now_ + duration, EventKind::kHeal, 0, p.id);
      partitions_.push_back(std::move(p));
      te.node = f.target;
      break;
    }
    case FaultKind::kClog: {
      std::uint32_t other = static_cast<std::uint32_t>(fault_rng_.Below(nodes - 1));
      if (other >= f.target) ++other;
      clogged_until_[{std::min(f.target, other), std::max(f.target, other)}] = now_ + duration;
      te.node = f.target;
      break;
    }
    case FaultKind::kPause: {
      Time& until = PausedUntil(S + f.target);
      until = std::max(until, now_ + duration);
      te.node = S + f.target;
      break;
    }
    case FaultKind::kDriftBeyond: {
      // Past the bound the agent's margin no longer covers: the checker is
      // expected to see exclusion break only in such runs.
      std::uint32_t node = S + f.target;
      auto beyond = static_cast<std::int32_t>(config_.drift_ppm * 4 + 20'000);
      ClockOf(node).SetDrift(now_, fault_rng_.Chance(1, 2) ? beyond : -beyond);
      ScheduleTick(node, processes_[f.target].deadline_local);
      te.node = node;
      break;
    }
    case FaultKind::kInvalidate: {
      // B6 logout: the administrator's message reaches the session's store now.
      const core::SessionId session = f.target;
      const std::uint32_t node = core::StoreForSession(session, S);
      te.node = node;
      if (!IsUp(node)) break;  // a store that is down never sees it
      core::Envelope in{core::Address{core::NodeKind::kAdmin, 0, 0},
                        core::Address{core::NodeKind::kStore, node, 0},
                        core::AdminInvalidate{session}};
      te.input = &in;
      stores_[node].store.OnMessage(ClockOf(node).Local(now_), in, fx_);
      return ApplyStoreEffects(node, fx_, te);
    }
  }
  Finish(te);
}

void Simulator::DrawRandomFaults() {
  const std::uint32_t S = StoreCount();
  const auto P = static_cast<std::uint32_t>(processes_.size());
  for (int k = 0; k < kRandomFaultKinds; ++k) {
    if (!fault_rng_.ChancePpm(fault_ppm_[k])) continue;
    ScheduledFault f;
    f.at_us = now_;
    f.kind = static_cast<FaultKind>(k);
    switch (f.kind) {
      case FaultKind::kProcessCrash:
      case FaultKind::kPause:
      case FaultKind::kDriftBeyond:
        f.target = static_cast<std::uint32_t>(fault_rng_.Below(P));
        break;
      case FaultKind::kServerCrash:
        f.target = static_cast<std::uint32_t>(fault_rng_.Below(config_.servers));
        break;
      case FaultKind::kStoreCrash:
        f.target = static_cast<std::uint32_t>(fault_rng_.Below(S));
        break;
      case FaultKind::kPartition:
      case FaultKind::kClog:
        f.target = static_cast<std::uint32_t>(fault_rng_.Below(S + P));
        break;
      case FaultKind::kInvalidate:  // never drawn at random
        break;
    }
    f.duration_us = fault_rng_.Range(1'000, config_.faults.max_duration_us);
    f.variant = static_cast<std::uint32_t>(fault_rng_.Below(3));
    faults_.push_back(f);
    InjectFault(f);
  }
}

void Simulator::CrashProcess(std::uint32_t process, Time downtime) {
  ProcessNode& n = processes_[process];
  if (!n.up) return;
  n.up = false;
  ++n.tick_generation;
  n.tick_at = core::kNever;
  retired_agent_expiries_ += n.agent.stats().lease_expiries;
  retired_agent_releases_ += n.agent.stats().releases;
  for (SimThread& t : threads_) {
    if (t.process != process) continue;
    ++t.epoch;
    if (t.phase == ThreadPhase::kWaiting || t.phase == ThreadPhase::kHolding ||
        t.phase == ThreadPhase::kCommitting) {
      ++cut_by_crash_;
      // A commit in flight may or may not have been applied.
      if (t.phase == ThreadPhase::kCommitting && t.writes_counter) ++unknown_[t.session];
      t.phase = ThreadPhase::kIdle;
      if (t.remaining > 0) --t.remaining;
      if (t.remaining == 0) {
        t.phase = ThreadPhase::kDone;
        ++threads_done_;
      }
    }
  }
  Push(now_ + downtime, EventKind::kRecover, StoreCount() + process, 0);
}

void Simulator::CrashStore(std::uint32_t store, Time downtime) {
  StoreNode& n = stores_[store];
  if (!n.up) return;
  n.up = false;
  ++n.tick_generation;
  n.tick_at = core::kNever;
  const core::StoreStats& s = n.store.stats();
  retired_store_stats_.grants += s.grants;
  retired_store_stats_.recalls += s.recalls;
  retired_store_stats_.lease_expiries += s.lease_expiries;
  retired_store_stats_.queued += s.queued;
  retired_store_stats_.rejects += s.rejects;
  retired_store_stats_.commits += s.commits;
  Push(now_ + downtime, EventKind::kRecover, store, 0);
}

void Simulator::EnterQuiet() {
  quiet_ = true;
  partitions_.clear();
  clogged_until_.clear();
  const auto half_bound = static_cast<std::int32_t>(config_.drift_ppm / 2);
  for (std::uint32_t p = 0; p < processes_.size(); ++p) {
    Clock& c = processes_[p].clock;
    if (c.drift_ppm > half_bound || c.drift_ppm < -half_bound) {
      c.SetDrift(now_, c.drift_ppm > 0 ? half_bound : -half_bound);
      ScheduleTick(StoreCount() + p, processes_[p].deadline_local);
    }
  }
}

// ---- summary -----------------------------------------------------------------

namespace {}  // namespace

const std::string*& Simulator::DurableCounters::For(core::SessionId id) {
  if (id < 4096) {
    if (id >= by_id_.size()) by_id_.resize(id + 1, nullptr);
    return by_id_[id];
  }
  return others_[id];
}

// Recover applies the commit records' writes (after clearing, for
// clear_first) and empties a session at a drop record, in log order; nothing
// else touches a session's attributes. So each session's a0 is what the last
// of these records that set, erased or cleared it left.
void Simulator::DurableCounters::Apply(const core::Record& r) {
  if (const auto* c = std::get_if<core::CommitRecord>(&r)) {
    const std::string*& a0 = For(c->session);
    if (c->clear_first) a0 = nullptr;
    for (const core::AttributeWrite& w : c->writes) {
      if (w.name == "a0") a0 = w.erase ? nullptr : &w.value;
    }
  } else if (const auto* d = std::get_if<core::SessionDroppedRecord>(&r)) {
    For(d->session) = nullptr;
  }
}

std::uint64_t Simulator::DurableCounters::Total() const {
  std::uint64_t total = 0;
  for (const std::string* v : by_id_) total += v != nullptr ? ParseCounter(*v) : 0;
  for (const auto& [id, v] : others_) total += v != nullptr ? ParseCounter(*v) : 0;
  return total;
}

const std::vector<core::Store>& Simulator::RecoveredStores() const {
  std::uint64_t records = 0;
  for (const StoreNode& n : stores_) records += n.log.size();
  if (recovered_valid_ && recovered_events_ == events_ && recovered_now_ == now_ &&
      recovered_records_ == records) {
    return recovered_;
  }
  recovered_.clear();
  for (const StoreNode& n : stores_) {
    recovered_.push_back(core::Store::Recover(n.store.config(), n.log, now_, nullptr));
  }
  recovered_valid_ = true;
  recovered_events_ = events_;
  recovered_now_ = now_;
  recovered_records_ = records;
  return recovered_;
}

SimSummary Simulator::Summary() const {
  SimSummary s;
  s.seed = seed_;
  s.requests_completed = completed_;
  s.failed_by_reason = failed_;
  s.requests_cut_by_crash = cut_by_crash_;
  for (const SimThread& t : threads_) {
    if (t.phase != ThreadPhase::kDone) ++s.unfinished_threads;
  }
  s.grants = retired_store_stats_.grants;
  s.recalls = retired_store_stats_.recalls;
  s.lease_expiries = retired_store_stats_.lease_expiries;
  s.queued = retired_store_stats_.queued;
  s.store_rejects = retired_store_stats_.rejects;
  s.commits = retired_store_stats_.commits;
  for (const StoreNode& n : stores_) {
    if (!n.up) continue;
    s.grants += n.store.stats().grants;
    s.recalls += n.store.stats().recalls;
    s.lease_expiries += n.store.stats().lease_expiries;
    s.queued += n.store.stats().queued;
    s.store_rejects += n.store.stats().rejects;
    s.commits += n.store.stats().commits;
  }
  s.agent_lease_expiries = retired_agent_expiries_;
  s.releases = retired_agent_releases_;
  for (const ProcessNode& n : processes_) {
    if (!n.up) continue;
    s.agent_lease_expiries += n.agent.stats().lease_expiries;
    s.releases += n.agent.stats().releases;
  }
  if (!waits_.empty()) {
    // Two order statistics, not a sort, in place: the same values.
    std::vector<Time>& waits = waits_;
    auto rank = [&](double p) {
      auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(waits.size())));
      auto at = waits.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(k, 1) - 1);
      std::nth_element(waits.begin(), at, waits.end());
      return *at;
    };
    s.wait_p50_us = rank(0.50);
    s.wait_p99_us = rank(0.99);
  }
  std::copy(std::begin(fault_counts_), std::end(fault_counts_), s.faults);
  s.messages_sent = sent_;
  s.messages_lost = lost_;
  s.messages_duplicated = duplicated_;
  s.events = events_;
  s.simulated_us = now_;
  // The durable truth: the counters of each store as rebuilt from what it
  // persisted (RecoveredStores), followed as they logged it.
  for (const DurableCounters& c : durable_counters_) s.counter_total += c.Total();
  for (std::uint64_t n : acknowledged_) s.acknowledged_increments += n;
  for (std::uint64_t n : unknown_) s.unknown_increments += n;
  s.trace_hash = trace_hash();
  s.stopped_by_observer = observer_failed_;
  return s;
}

}  // namespace latchkey::sim
