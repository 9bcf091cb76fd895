#include "checker/checker.h"

#include <algorithm>
#include <bit>
#include <sstream>

#include "core/assert.h"
#include "sim/trace.h"

namespace latchkey::checker {

namespace {

constexpr const char* kInvariantNames[kInvariantCount] = {
    "process_exclusion", "thread_exclusion", "token_validity",  "locks_inside_token",
    "queue_order",       "no_lost_update",   "serializability", "liveness",
    "no_deadlock",       "bounded_bypass"};

std::string RefName(const core::ProcessRef& p) {
  return "p" + std::to_string(p.id) + "#" + std::to_string(p.incarnation);
}

using sim::ParseCounter;

bool Pending(const sim::SimThread& t) {
  return t.phase == sim::ThreadPhase::kWaiting || t.phase == sim::ThreadPhase::kHolding ||
         t.phase == sim::ThreadPhase::kCommitting;
}

std::string_view PhaseName(sim::ThreadPhase phase) {
  switch (phase) {
    case sim::ThreadPhase::kIdle:
      return "idle";
    case sim::ThreadPhase::kWaiting:
      return "waiting";
    case sim::ThreadPhase::kHolding:
      return "holding";
    case sim::ThreadPhase::kCommitting:
      return "committing";
    case sim::ThreadPhase::kDone:
      return "done";
  }
  return "unknown";
}

}  // namespace

std::string_view InvariantName(Invariant invariant) {
  auto i = static_cast<int>(invariant);
  return i < kInvariantCount ? kInvariantNames[i] : "unknown";
}

std::string Violation::Report() const {
  std::ostringstream out;
  out << "VIOLATION " << name() << " at t=" << time << " us\n  " << message << "\n";
  out << "last " << recent.size() << " events:\n";
  for (const std::string& line : recent) out << "  " << line << "\n";
  out << "state of the sessions involved:\n" << state;
  out << "config: " << config.dump() << "\n";
  out << "seed: " << seed << "\n";
  out << "reproduce: latchkey sim --check --seed " << seed
      << " --config <the config above, saved as JSON>\n";
  return out.str();
}

Checker::Checker(CheckerOptions options) : options_(options) {}

// ---- bookkeeping ---------------------------------------------------------------

std::vector<std::string> Checker::RecentEvents(const sim::Simulator& sim, bool* diverged) const {
  // Runs the same seed again, recording only the last events up to this one.
  class Recorder : public sim::Observer {
   public:
    Recorder(std::uint64_t first, std::uint64_t last) : first_(first), last_(last) {}
    void AfterEvent(const sim::Simulator& s, const sim::TraceEvent& e) override {
      if (++seen_ < first_) return;
      nlohmann::json line{{"t", e.time},
                          {"ev", std::string(sim::EventKindName(e.kind))},
                          {"node", s.NodeName(e.node)}};
      if (!e.note.empty()) line["what"] = e.note;
      if (e.thread >= 0) line["thread"] = e.thread;
      if (e.input != nullptr) line["in"] = sim::EnvelopeToJson(*e.input);
      if (e.effects != nullptr) line["out"] = sim::EffectsToJson(*e.effects);
      lines.push_back(line.dump());
    }
    bool Failed() const override { return seen_ >= last_; }
    std::vector<std::string> lines;

   private:
    std::uint64_t first_, last_, seen_ = 0;
  };
  const std::uint64_t last = sim.events();
  const std::uint64_t count = options_.recent_events;
  *diverged = false;
  if (count == 0 || last == 0) return {};
  Recorder recorder(last > count ? last - count + 1 : 1, last);
  sim::Simulator again(sim.config(), sim.seed());
  again.AddObserver(&recorder);
  while (again.Step()) {
  }
  // Never expected (determinism is tested), but then these are not the events.
  *diverged = again.events() != last || again.trace_hash() != sim.trace_hash();
  return std::move(recorder.lines);
}

bool Checker::DriftBeyondHappened(const sim::Simulator& sim) const {
  for (const sim::ScheduledFault& f : sim.faults()) {
    if (f.kind == sim::FaultKind::kDriftBeyond && f.at_us <= sim.now()) return true;
  }
  return false;
}

void Checker::Fail(const sim::Simulator& sim, Invariant invariant, std::string message,
                   const std::vector<core::SessionId>& sessions) {
  if (violation_ || !On(invariant)) return;
  Violation v;
  v.invariant = invariant;
  v.time = sim.now();
  v.message = std::move(message);
  bool diverged = false;
  v.recent = RecentEvents(sim, &diverged);
  std::set<core::SessionId> unique(sessions.begin(), sessions.end());
  for (core::SessionId s : unique) v.state += SessionDump(sim, s);
  if (diverged) {
    v.state +=
        "note: a second run of this seed did not reproduce the run up to here, so the "
        "events listed may not be this run's (the simulator was not deterministic)\n";
  }
  v.seed = sim.seed();
  v.config = sim::ConfigToJson(sim.config());
  violation_ = std::move(v);
}

std::string Checker::SessionDump(const sim::Simulator& sim, core::SessionId session) const {
  std::ostringstream out;
  out << "session " << session << ":\n";
  std::uint32_t home = core::StoreForSession(session, sim.config().stores);
  const sim::StoreNode& store = sim.stores()[home];
  out << "  store s" << home << (store.up ? "" : " (down)") << " epoch "
      << store.store.state().epoch << " last_token " << store.store.state().last_token
      << (store.store.state().in_grace ? " in grace" : "") << "\n";
  auto it = store.store.state().sessions.find(session);
  if (it == store.store.state().sessions.end()) {
    out << "    no state\n";
  } else {
    const core::SessionState& s = it->second;
    out << "    version " << s.version.token << "." << s.version.seq;
    if (s.tenure) {
      out << ", holder " << RefName(s.tenure->holder) << " token " << s.tenure->token
          << " last_seq " << s.tenure->last_seq << (s.tenure->recalled ? " recalled" : "")
          << (s.tenure->reclaimed ? "" : " unreclaimed");
    } else {
      out << ", no holder";
    }
    out << ", queue [";
    for (const core::Waiter& w : s.queue) out << " " << RefName(w.process) << "/r" << w.request_id;
    out << " ], attributes {";
    for (const auto& [k, v] : s.attributes) out << " " << k << "=" << v;
    out << " }\n";
  }
  const SessionView* tv = sessions_.Find(session);
  if (tv != nullptr && tv->tenure_seen) {
    const TenureView& view = tv->tenure;
    out << "    checker: tenure token " << view.token << " of " << RefName(view.holder)
        << (view.active ? " active" : " ended") << "\n";
  }
  for (std::size_t p = 0; p < sim.processes().size(); ++p) {
    const sim::ProcessNode& n = sim.processes()[p];
    auto a = n.agent.state().sessions.find(session);
    if (a == n.agent.state().sessions.end()) continue;
    const core::AgentSession& s = a->second;
    core::Time local = n.clock.Local(sim.now());
    out << "  " << sim.NodeName(sim.config().stores + static_cast<std::uint32_t>(p)) << " ("
        << RefName(n.agent.config().self) << (n.up ? "" : ", down")
        << "): " << core::LockStateName(s.state) << " token " << s.token
        << (s.recalled ? " recalled" : "") << (s.queued ? " queued" : "")
        << (n.agent.Trusts(local, session) ? " trusted" : " untrusted") << " (local " << local
        << ", trusted until " << n.agent.state().stores[home].trusted_until << ")\n";
    for (const core::ThreadHold& h : s.holders) {
      out << "    holder t" << h.thread << " " << sim::PortionToJson(h.portion).dump()
          << (h.committing ? " committing" : "") << "\n";
    }
    for (const core::ThreadWait& w : s.waiters) {
      out << "    waiter t" << w.thread << " " << sim::PortionToJson(w.portion).dump()
          << (w.entitled ? " entitled" : "") << "\n";
    }
    for (const core::PendingCommit& c : s.commits) {
      out << "    commit seq " << c.seq << " of t" << c.thread << (c.resent ? " resent" : "")
          << "\n";
    }
  }
  for (std::size_t i = 0; i < sim.threads().size(); ++i) {
    const sim::SimThread& t = sim.threads()[i];
    if (t.session != session || !Pending(t)) continue;
    out << "  thread " << i << " (p" << t.process + 1 << ".t" << t.id << ") " << PhaseName(t.phase)
        << " since t=" << t.asked_at << "\n";
  }
  return out.str();
}

// ---- after every event -------------------------------------------------------------

void Checker::Size(const sim::Simulator& sim) {
  sized_for_ = &sim;
  sized_threads_ = sim.threads().data();
  const std::uint32_t tpp = sim.config().threads_per_process;
  entitled_.resize(sim.threads().size(), 0);
  sent_commits_.resize(sim.threads().size());
  renewals_.resize(sim.processes().size());
  if (lock_seen_.size() < sim.processes().size()) lock_seen_.resize(sim.processes().size());
  owed_.assign(std::max(owed_.size(), sim.processes().size()), 0);
  for (std::size_t t = 0; t < entitled_.size() && tpp != 0; ++t) owed_[t / tpp] += entitled_[t];
}

void Checker::StoreRestarted(const sim::Simulator& sim, std::uint32_t node) {
  const std::uint32_t S = sim.config().stores;
  // B7: a restarted store lost its queues.
  sessions_.ForEach([&](core::SessionId session, SessionView& view) {
    if (core::StoreForSession(session, S) == node) view.queue.clear();
  });
  // Its process entries are new: take the lease snapshot again.
  if (node < lease_seen_.size()) lease_seen_[node].valid = false;
}

void Checker::AfterEvent(const sim::Simulator& sim, const sim::TraceEvent& event) {
  if (violation_) return;
  // The simulator's threads and processes are fixed when it is built.
  if (sized_for_ != &sim || sized_threads_ != sim.threads().data()) [[unlikely]] {
    Size(sim);
  }
  const std::uint32_t S = sim.config().stores;
  if (event.node < S &&
      (event.kind == sim::EventKind::kRecover || event.kind == sim::EventKind::kStart)) {
    StoreRestarted(sim, event.node);
  }
  if (event.effects != nullptr) {
    bool store_event = event.node < S && event.kind != sim::EventKind::kThreadStart &&
                       event.kind != sim::EventKind::kThreadFinish;
    if (store_event) {
      CheckStoreEvent(sim, event);
    } else {
      CheckAgentEvent(sim, event);
    }
  }
  if (!violation_ && sim.quiet() && sim.now() >= next_liveness_check_) {
    next_liveness_check_ = sim.now() + 10'000;
    CheckLiveness(sim, false);
  }
}

void Checker::CheckStoreEvent(const sim::Simulator& sim, const sim::TraceEvent& e) {
  {
    // B1: requests of processes whose lease ran out were withdrawn before
    // this event's input was handled.
    if (lease_seen_.size() <= e.node) lease_seen_.resize(e.node + 1);
    LeaseSnapshot& seen = lease_seen_[e.node];
    // Nothing to withdraw unless the earliest lease seen is due.
    const core::Time store_now =
        seen.leases.empty() ? 0 : sim.stores()[e.node].clock.Local(sim.now());
    if (!seen.leases.empty() && seen.earliest <= store_now) {
      for (const auto& lease : seen.leases) {
        if (lease.second > store_now) continue;
        // A plain copy: clang 14 does not let a lambda capture a structured binding.
        const std::uint64_t pid = lease.first;
        sessions_.ForEach([&](core::SessionId session, SessionView& view) {
          if (core::StoreForSession(session, sim.config().stores) != e.node) return;
          std::erase_if(view.queue, [&](const QueueEntry& x) { return x.process.id == pid; });
        });
      }
    }
    // The snapshot for the next event: the store counts the changes to its
    // process entries, so it is taken again only after one (a commit, two
    // thirds of a store's inputs here, changes none).
    const core::Store& store = sim.stores()[e.node].store;
    const bool current =
        seen.valid && seen.epoch == store.state().epoch && seen.changes == store.process_changes();
    if (!current || options_.verify_caches) {
      std::vector<std::pair<std::uint64_t, core::Time>>& fresh = lease_scratch_;
      fresh.clear();
      core::Time earliest = core::kNever;
      for (const auto& [pid, p] : store.state().processes) {
        if (!p.active()) continue;
        fresh.emplace_back(pid, p.lease_until);
        earliest = std::min(earliest, p.lease_until);
      }
      // With verify_caches: the kept snapshot is the one a walk takes.
      if (current) LK_ASSERT(fresh == seen.leases && earliest == seen.earliest);
      seen.leases.swap(fresh);
      seen.earliest = earliest;
      seen.valid = true;
      seen.epoch = store.state().epoch;
      seen.changes = store.process_changes();
    }
  }
  ++store_events_;
  const core::Effects& fx = *e.effects;
  const core::StoreState& state = sim.stores()[e.node].store.state();
  touched_.clear();
  std::optional<core::ProcessRef> sender;
  if (e.input != nullptr && e.input->from.kind == core::NodeKind::kProcess) {
    sender = core::ProcessRef{e.input->from.id, e.input->from.incarnation};
  }
  for (const core::Record& record : fx.persist) {
    if (const auto* d = std::get_if<core::SessionDroppedRecord>(&record)) {
      // B6: invalidated or expired when idle; its counter starts again.
      DropMark& mark = drops_[d->session];
      mark.acknowledged = sim.acknowledged_by_session().at(d->session);
      mark.unknown = sim.unknown_by_session().at(d->session);
      mark.committing = 0;
      for (const sim::SimThread& t : sim.threads()) {
        if (t.phase == sim::ThreadPhase::kCommitting && t.writes_counter && t.session == d->session)
          ++mark.committing;
      }
    }
    if (const auto* g = std::get_if<core::GrantRecord>(&record)) {
      SessionView& session = View(g->session);
      Touch(g->session, session);
      core::Token& max = session.max_token;
      if (g->token <= max) {
        return Fail(sim, Invariant::kTokenValidity,
                    "store s" + std::to_string(e.node) + " granted session " +
                        std::to_string(g->session) + " with token " + std::to_string(g->token) +
                        ", not above token " + std::to_string(max) + " granted before (B2)",
                    {g->session});
      }
      max = g->token;
      session.tenure = TenureView{g->token, g->holder, true};
      session.tenure_seen = true;
      // R4/R5: the grantee must be the head of the buffered requests.
      std::vector<QueueEntry>& q = session.queue;
      // Requests withdrawn meanwhile (cancelled, expired, predecessors) are
      // not in the store's queue any more and do not count.
      auto live = state.sessions.find(g->session);
      std::erase_if(q, [&](const QueueEntry& entry) {
        if (entry.process == g->holder) return false;
        if (live == state.sessions.end()) return true;
        return std::none_of(live->second.queue.begin(), live->second.queue.end(),
                            [&](const core::Waiter& w) { return w.process == entry.process; });
      });
      if (!q.empty()) {
        if (!(q.front().process == g->holder)) {
          return Fail(sim, Invariant::kQueueOrder,
                      "session " + std::to_string(g->session) + " granted to " +
                          RefName(g->holder) + " (request " + std::to_string(g->request_id) +
                          ") while " + RefName(q.front().process) + " was buffered before it",
                      {g->session});
        }
        if (g->request_id != q.front().request_id) {
          return Fail(sim, Invariant::kQueueOrder,
                      "session " + std::to_string(g->session) + " granted request " +
                          std::to_string(g->request_id) + " of " + RefName(g->holder) +
                          " but its buffered request is " + std::to_string(q.front().request_id),
                      {g->session});
        }
        q.erase(q.begin());
      }
    } else if (const auto* t = std::get_if<core::TenureEndRecord>(&record)) {
      SessionView& session = View(t->session);
      Touch(t->session, session);
      session.tenure_seen = true;
      TenureView& view = session.tenure;
      if (view.token == t->token) view.active = false;
    } else if (const auto* c = std::get_if<core::CommitRecord>(&record)) {
      SessionView& session = View(c->session);
      Touch(c->session, session);
      session.tenure_seen = true;
      const TenureView& view = session.tenure;
      if (!view.active || view.token != c->token) {
        return Fail(sim, Invariant::kTokenValidity,
                    "store s" + std::to_string(e.node) + " accepted a commit to session " +
                        std::to_string(c->session) + " with token " + std::to_string(c->token) +
                        " but the current tenure is token " + std::to_string(view.token) +
                        (view.active ? "" : " (ended)") + " (R1)",
                    {c->session});
      }
      if (!sender || !(*sender == view.holder)) {
        return Fail(sim, Invariant::kTokenValidity,
                    "store s" + std::to_string(e.node) + " accepted a commit to session " +
                        std::to_string(c->session) + " from " +
                        (sender ? RefName(*sender) : std::string("nobody")) +
                        ", not from the holder " + RefName(view.holder) + " (R1, B9)",
                    {c->session});
      }
      const std::pair<core::Token, std::uint64_t> key{c->token, c->seq};
      if (!declared_lost_.empty() && On(Invariant::kNoLostUpdate) &&
          declared_lost_.count({c->session, c->token, c->seq}) != 0) {
        return Fail(sim, Invariant::kNoLostUpdate,
                    "store s" + std::to_string(e.node) + " made durable commit token " +
                        std::to_string(c->token) + " seq " + std::to_string(c->seq) +
                        " of session " + std::to_string(c->session) +
                        ", whose thread was told its lock was lost, so that it did not apply "
                        "(B5)",
                    {c->session});
      }
      if (session.durable.empty() || session.durable.back() < key) {
        session.durable.push_back(key);
      } else {
        auto at = std::lower_bound(session.durable.begin(), session.durable.end(), key);
        if (*at != key) session.durable.insert(at, key);
      }
    }
  }
  for (const core::Envelope& out : fx.send) {
    core::ProcessRef to{out.to.id, out.to.incarnation};
    if (const auto* g = std::get_if<core::Granted>(&out.message)) {
      SessionView& session = View(g->session);
      Touch(g->session, session);
      session.tenure_seen = true;
      const TenureView& view = session.tenure;
      if (!view.active || view.token != g->token || !(view.holder == to)) {
        return Fail(sim, Invariant::kTokenValidity,
                    "store s" + std::to_string(e.node) + " sent " + RefName(to) + " token " +
                        std::to_string(g->token) + " for session " + std::to_string(g->session) +
                        ", which is not the current tenure (token " + std::to_string(view.token) +
                        " of " + RefName(view.holder) + ")",
                    {g->session});
      }
    } else if (const auto* a = std::get_if<core::CommitAck>(&out.message)) {
      SessionView& session = View(a->session);
      Touch(a->session, session);
      // Usually the commit made durable last.
      const std::pair<core::Token, std::uint64_t> key{a->token, a->seq};
      if ((session.durable.empty() || session.durable.back() != key) &&
          !std::binary_search(session.durable.begin(), session.durable.end(), key)) {
        return Fail(sim, Invariant::kNoLostUpdate,
                    "store s" + std::to_string(e.node) + " acknowledged commit token " +
                        std::to_string(a->token) + " seq " + std::to_string(a->seq) +
                        " of session " + std::to_string(a->session) +
                        " that it never made durable (B3)",
                    {a->session});
      }
      session.tenure_seen = true;
      const TenureView& view = session.tenure;
      if (!view.active || view.token != a->token || !(view.holder == to)) {
        return Fail(sim, Invariant::kTokenValidity,
                    "store s" + std::to_string(e.node) + " acknowledged a commit with token " +
                        std::to_string(a->token) + " of session " + std::to_string(a->session) +
                        " to " + RefName(to) + ", not the current tenure (token " +
                        std::to_string(view.token) + ")",
                    {a->session});
      }
    } else if (const auto* q = std::get_if<core::Queued>(&out.message)) {
      Touch(q->session, View(q->session));
    }
  }
  if (e.input != nullptr) {
    std::visit(
        [&](const auto& m) {
          if constexpr (requires { m.session; }) Touch(m.session, View(m.session));
        },
        e.input->message);
  }
  // Follow the store's buffered requests: new ones join at the back (the
  // store must grant them in this order); a process that asks again while
  // buffered keeps its place with its new request id. (Each session once, in
  // any order: the sessions are independent.)
  for (core::SessionId session : touched_) {
    std::vector<QueueEntry>& q = View(session).queue;
    auto live = state.sessions.find(session);
    // Nothing buffered on either side: nothing to follow.
    if (q.empty() && (live == state.sessions.end() || live->second.queue.empty())) continue;
    std::vector<QueueEntry>& next = next_queue_;
    next.clear();
    if (live != state.sessions.end()) {
      for (const QueueEntry& entry : q) {
        for (const core::Waiter& w : live->second.queue) {
          if (w.process == entry.process) next.push_back({w.process, w.request_id});
        }
      }
      for (const core::Waiter& w : live->second.queue) {
        bool known = std::any_of(next.begin(), next.end(),
                                 [&](const QueueEntry& x) { return x.process == w.process; });
        if (!known) next.push_back({w.process, w.request_id});
      }
    }
    q.swap(next);  // the old buffer is the next event's scratch
  }
}

void Checker::CheckAgentEvent(const sim::Simulator& sim, const sim::TraceEvent& e) {
  const std::uint32_t S = sim.config().stores;
  if (e.node < S) return;
  const std::uint32_t p = e.node - S;
  const sim::ProcessNode& self = sim.processes()[p];
  if (On(Invariant::kLiveness)) {
    // The Progress rule has nothing to do while none of the process's threads
    // is owed a turn and no session became held or stopped being held.
    const LockSeen& seen = lock_seen_[p];
    if (owed_[p] != 0 || options_.verify_caches || !seen.valid ||
        seen.changes != self.agent.stats().held_changes ||
        !(seen.agent == self.agent.config().self)) {
      CheckProgressRule(sim, e, p);
      if (violation_) return;
    }
  }
  for (const core::ThreadEvent& w : e.effects->wake) {
    if (w.kind == core::ThreadEventKind::kGranted && !CheckGrant(sim, e, p, w)) return;
  }
  if (On(Invariant::kLocksInsideToken) && !CheckLeaseRenewals(sim, e, p)) return;
  if (On(Invariant::kNoLostUpdate) && options_.lost_commits_on_step) CheckLostCommits(sim, e, p);
}

bool Checker::CheckLeaseRenewals(const sim::Simulator& sim, const sim::TraceEvent& e,
                                 std::uint32_t p) {
  const sim::ProcessNode& self = sim.processes()[p];
  // Only an answer to this incarnation: request ids and heartbeat seqs
  // start again in a new one.
  const bool answer = e.kind == sim::EventKind::kDeliver && e.input != nullptr &&
                      e.input->from.kind == core::NodeKind::kStore &&
                      e.input->to.incarnation == self.agent.config().self.incarnation &&
                      (std::holds_alternative<core::Granted>(e.input->message) ||
                       std::holds_alternative<core::Queued>(e.input->message) ||
                       std::holds_alternative<core::Busy>(e.input->message) ||
                       std::holds_alternative<core::HeartbeatAck>(e.input->message) ||
                       std::holds_alternative<core::ReclaimAck>(e.input->message));
  const bool grants = std::any_of(
      e.effects->wake.begin(), e.effects->wake.end(),
      [](const core::ThreadEvent& w) { return w.kind == core::ThreadEventKind::kGranted; });
  const bool renewing_send =
      std::any_of(e.effects->send.begin(), e.effects->send.end(), [](const core::Envelope& out) {
        return std::holds_alternative<core::Acquire>(out.message) ||
               std::holds_alternative<core::Heartbeat>(out.message) ||
               std::holds_alternative<core::Reclaim>(out.message);
      });
  if (!answer && !grants && !renewing_send) return true;  // most events: a commit and its ack
  const std::uint32_t S = sim.config().stores;
  LeaseRenewals& r = renewals_[p];
  if (!(r.agent == self.agent.config().self)) [[unlikely]] {  // a new incarnation starts afresh
    r = LeaseRenewals{};
    r.agent = self.agent.config().self;
    r.span = self.agent.config().TrustSpan();
    r.links.resize(S);
  }
  const core::Time now = self.clock.Local(sim.now());
  const core::Time span = r.span;
  // The agent runs its timers before it handles the event's input: past the
  // bound, it gives up what it holds.
  for (LeaseRenewals::Link& link : r.links) {
    if (link.renewed && now >= core::AddTime(link.renewed_from, span)) ++link.lapses;
  }
  auto link_of = [&](core::SessionId session) -> LeaseRenewals::Link& {
    return r.links[core::StoreForSession(session, S)];
  };
  // An upper bound: every answer counts, from its latest copy.
  auto renew = [&](LeaseRenewals::Link& link, core::Time sent_at) {
    if (!link.renewed || sent_at > link.renewed_from) link.renewed_from = sent_at;
    link.renewed = true;
  };
  // The answer this event delivers, if it renews the lease.
  if (answer) {
    const core::Message& m = e.input->message;
    auto acquire = [&](core::SessionId session,
                       std::uint64_t request_id) -> LeaseRenewals::Session* {
      LeaseRenewals::Session* s = &r.Of(session);
      if (s->request_id == 0 || s->request_id != request_id) return nullptr;
      renew(link_of(session), s->acquire_sent_at);
      return s;
    };
    if (const auto* g = std::get_if<core::Granted>(&m)) {
      // A repeated Granted of the tenure already noted keeps its lapses.
      LeaseRenewals::Session* s = acquire(g->session, g->request_id);
      if (s != nullptr && s->granted != g->token) {
        s->granted = g->token;
        s->granted_lapses = link_of(g->session).lapses;
      }
    } else if (const auto* q = std::get_if<core::Queued>(&m)) {
      acquire(q->session, q->request_id);
    } else if (const auto* b = std::get_if<core::Busy>(&m)) {
      acquire(b->session, b->request_id);
    } else if (const auto* h = std::get_if<core::HeartbeatAck>(&m)) {
      const auto store = static_cast<std::uint32_t>(e.input->from.id);
      if (store < r.links.size() && h->seq != 0 && h->seq == r.links[store].heartbeat_seq) {
        renew(r.links[store], r.links[store].heartbeat_sent_at);
      }
    } else if (const auto* a = std::get_if<core::ReclaimAck>(&m)) {
      const LeaseRenewals::Session& s = r.Of(a->session);
      if (s.reclaimed == a->token && a->token != core::kNoToken) {
        renew(link_of(a->session), s.reclaim_sent_at);
      }
    }
  }
  for (const core::ThreadEvent& w : e.effects->wake) {
    if (w.kind != core::ThreadEventKind::kGranted) continue;
    const LeaseRenewals::Link& link = link_of(w.session);
    std::string wrong;
    if (!link.renewed) {
      wrong = "the store never answered a lease-renewing message of it";
    } else if (now >= core::AddTime(link.renewed_from, span)) {
      wrong = "the store last answered a lease-renewing message it sent at " +
              std::to_string(link.renewed_from) + ": its lease is trusted only until " +
              std::to_string(core::AddTime(link.renewed_from, span));
    } else if (const LeaseRenewals::Session& s = r.Of(w.session);
               s.granted != core::kNoToken && s.granted_lapses != link.lapses) {
      // Only a tenure the agent still holds under that token.
      auto held = self.agent.state().sessions.find(w.session);
      if (held != self.agent.state().sessions.end() && held->second.token == s.granted) {
        wrong = "its lease ran out after its tenure (token " + std::to_string(s.granted) +
                ") was granted, so that tenure was over";
      }
    }
    if (wrong.empty()) continue;
    return FailStop(sim, Invariant::kLocksInsideToken,
                    sim.NodeName(e.node) + ".t" + std::to_string(w.thread) +
                        " was granted session " + std::to_string(w.session) +
                        " at its local time " + std::to_string(now) + ", but " + wrong + " (B1)",
                    {w.session});
  }
  // What this event sent that an answer would renew the lease from.
  for (const core::Envelope& out : e.effects->send) {
    if (const auto* a = std::get_if<core::Acquire>(&out.message)) {
      LeaseRenewals::Session& s = r.Of(a->session);
      s.request_id = a->request_id;
      s.acquire_sent_at = now;
    } else if (const auto* h = std::get_if<core::Heartbeat>(&out.message)) {
      const auto store = static_cast<std::uint32_t>(out.to.id);
      if (store < r.links.size()) {
        r.links[store].heartbeat_seq = h->seq;
        r.links[store].heartbeat_sent_at = now;
      }
    } else if (const auto* c = std::get_if<core::Reclaim>(&out.message)) {
      LeaseRenewals::Session& s = r.Of(c->session);
      s.reclaimed = c->token;
      s.reclaim_sent_at = now;
    }
  }
  return true;
}

bool Checker::CheckLostCommits(const sim::Simulator& sim, const sim::TraceEvent& e,
                               std::uint32_t p) {
  const sim::ProcessNode& self = sim.processes()[p];
  const std::uint32_t tpp = sim.config().threads_per_process;
  // Only the agent knows which thread a Commit is for: its pending commit
  // with the same seq (the head one; a retransmission notes it again).
  for (const core::Envelope& out : e.effects->send) {
    const auto* c = std::get_if<core::Commit>(&out.message);
    if (c == nullptr) continue;
    auto it = self.agent.state().sessions.find(c->session);
    if (it == self.agent.state().sessions.end()) continue;
    for (const core::PendingCommit& pending : it->second.commits) {
      if (pending.seq != c->seq) continue;
      sent_commits_[p * tpp + pending.thread] = {self.agent.config().self, c->session, c->token,
                                                 c->seq, true};
      break;
    }
  }
  for (const core::ThreadEvent& w : e.effects->wake) {
    if (w.kind == core::ThreadEventKind::kGranted) continue;
    SentCommit& sent = sent_commits_[p * tpp + w.thread];
    // Any answer ends the request whose commit was noted.
    if (!sent.valid || sent.session != w.session) continue;
    sent.valid = false;
    if (w.kind != core::ThreadEventKind::kFailed || w.reason != core::Reason::kLockLost ||
        !(sent.agent == self.agent.config().self)) {
      continue;
    }
    SessionView& session = View(w.session);
    const std::pair<core::Token, std::uint64_t> key{sent.token, sent.seq};
    if (std::binary_search(session.durable.begin(), session.durable.end(), key)) {
      return FailStop(sim, Invariant::kNoLostUpdate,
                      sim.NodeName(e.node) + ".t" + std::to_string(w.thread) +
                          " was told its lock was lost, so its commit did not apply, but the "
                          "store has made it durable (session " +
                          std::to_string(w.session) + ", token " + std::to_string(sent.token) +
                          ", seq " + std::to_string(sent.seq) + "): its outcome was unknown (B5)",
                      {w.session});
    }
    declared_lost_.insert({w.session, sent.token, sent.seq});
  }
  return true;
}

bool Checker::FailStop(const sim::Simulator& sim, Invariant invariant, std::string message,
                       const std::vector<core::SessionId>& sessions) {
  Fail(sim, invariant, std::move(message), sessions);
  return false;
}

bool Checker::CheckGrant(const sim::Simulator& sim, const sim::TraceEvent& e, std::uint32_t p,
                         const core::ThreadEvent& w) {
  const std::uint32_t S = sim.config().stores;
  const sim::ProcessNode& self = sim.processes()[p];
  const std::uint32_t tpp = sim.config().threads_per_process;
  SessionView& session = View(w.session);
  if (session.holding.size() * 64 < sim.processes().size()) {
    session.holding.resize((sim.processes().size() + 63) / 64, 0);
  }
  session.holding[p / 64] |= std::uint64_t{1} << (p % 64);
  auto it = self.agent.state().sessions.find(w.session);
  if (it == self.agent.state().sessions.end()) return true;
  const core::AgentSession& s = it->second;
  const core::ThreadHold* mine = nullptr;
  for (const core::ThreadHold& h : s.holders) {
    if (h.thread == w.thread) mine = &h;
  }
  if (mine == nullptr) return true;
  // Built only for a report.
  auto who = [&] { return sim.NodeName(e.node) + ".t" + std::to_string(w.thread); };
  // R9: no two threads of a process hold conflicting portions.
  for (const core::ThreadHold& h : s.holders) {
    if (h.thread != w.thread && h.portion.ConflictsWith(mine->portion)) {
      return FailStop(sim, Invariant::kThreadExclusion,
                      who() + " was granted " + sim::PortionToJson(mine->portion).dump() +
                          " of session " + std::to_string(w.session) + " while t" +
                          std::to_string(h.thread) + " holds " +
                          sim::PortionToJson(h.portion).dump(),
                      {w.session});
    }
  }
  const bool drift_beyond = DriftBeyondHappened(sim);
  const bool trusted =
      !drift_beyond && self.agent.Trusts(self.clock.Local(sim.now()), w.session, s);
  // Process-level exclusion: no other process runs a conflicting critical
  // section of this session while both believe their locks valid.
  if (trusted) {
    // Only the processes that may hold a portion (in process order).
    for (std::size_t word = 0; word < session.holding.size(); ++word) {
      for (std::uint64_t bits = session.holding[word]; bits != 0; bits &= bits - 1) {
        const std::size_t q = word * 64 + static_cast<std::size_t>(std::countr_zero(bits));
        const sim::ProcessNode& other = sim.processes()[q];
        if (q == p || !other.up) continue;
        auto o = other.agent.state().sessions.find(w.session);
        // No thread there holds a portion: nothing can conflict (and no
        // need to ask whether it trusts its lock).
        if (o == other.agent.state().sessions.end() || o->second.holders.empty()) {
          session.holding[word] &= ~(std::uint64_t{1} << (q % 64));
          continue;
        }
        if (!other.agent.Trusts(other.clock.Local(sim.now()), w.session, o->second)) continue;
        // A thread committing under a pipelined Release has left its
        // critical section: it reads and writes nothing more, its commit is
        // fenced by its token, and the store may have ended the tenure
        // behind that commit (the explorer does not count committing
        // threads at all).
        const bool released = o->second.pipelined != core::PipelinedRelease::kNone;
        for (const core::ThreadHold& h : o->second.holders) {
          if (!(released && h.committing) && h.portion.ConflictsWith(mine->portion)) {
            return FailStop(
                sim, Invariant::kProcessExclusion,
                who() + " entered " + sim::PortionToJson(mine->portion).dump() + " of session " +
                    std::to_string(w.session) + " (token " + std::to_string(s.token) + ") while " +
                    sim.NodeName(S + static_cast<std::uint32_t>(q)) + ".t" +
                    std::to_string(h.thread) + " holds " + sim::PortionToJson(h.portion).dump() +
                    " (token " + std::to_string(o->second.token) + "), both trusted",
                {w.session});
          }
        }
      }
    }
  }
  // Thread locks only inside a valid process-level token: the current
  // tenure, held by this process, trusted by it.
  if (!drift_beyond) {
    const TenureView* view = session.tenure_seen ? &session.tenure : nullptr;
    bool current = view != nullptr && view->active && view->token == s.token &&
                   view->holder == self.agent.config().self;
    if (s.state != core::LockState::kHeld || !current || !trusted) {
      return FailStop(
          sim, Invariant::kLocksInsideToken,
          who() + " was granted a portion of session " + std::to_string(w.session) +
              " under token " + std::to_string(s.token) + " (" +
              std::string(core::LockStateName(s.state)) + "), but the current tenure is " +
              (view == nullptr ? std::string("none")
                               : "token " + std::to_string(view->token) + " of " +
                                     RefName(view->holder) + (view->active ? "" : " (ended)")),
          {w.session});
    }
  }
  // Bounded bypass: inside a process a waiting thread is overtaken by no
  // conflicting request that asked after it.
  const sim::SimThread& granted = sim.threads()[p * tpp + w.thread];
  for (const core::ThreadWait& waiting : s.waiters) {
    const sim::SimThread& t = sim.threads()[p * tpp + waiting.thread];
    if (t.ask_order < granted.ask_order && waiting.portion.ConflictsWith(mine->portion)) {
      return FailStop(sim, Invariant::kBoundedBypass,
                      who() + " (asked at t=" + std::to_string(granted.asked_at) + ") overtook t" +
                          std::to_string(waiting.thread) +
                          " (asked at t=" + std::to_string(t.asked_at) +
                          ") on a conflicting portion of session " + std::to_string(w.session),
                      {w.session});
    }
  }
  return true;
}

// The Progress rule (R7): the thread requests waiting when a process is
// granted a session are served before it gives the session up on purpose
// (a recall or idleness), even if a recall came with or before the grant.
// Without it two processes can pass a lock back and forth with no request
// completing; random runs rarely keep that up long enough to break the
// liveness bound, so the rule itself is checked, as the explorer does.
void Checker::CheckProgressRule(const sim::Simulator& sim, const sim::TraceEvent& e,
                                std::uint32_t p) {
  const std::uint32_t tpp = sim.config().threads_per_process;
  const sim::ProcessNode& self = sim.processes()[p];
  if (options_.verify_caches) {
    std::uint32_t count = 0;
    for (std::uint32_t t = p * tpp; t < (p + 1) * tpp; ++t) count += entitled_[t] != 0;
    LK_ASSERT(count == owed_[p]);
  }
  // How many of this process's threads are entitled: while none is, a
  // thread-by-thread look finds nothing to clear and no release to object to.
  std::uint32_t& owed = owed_[p];
  auto entitle = [&](std::uint32_t t) {
    owed += entitled_[t] == 0;
    entitled_[t] = 1;
  };
  auto clear = [&](std::uint32_t t) {
    owed -= entitled_[t] != 0;
    entitled_[t] = 0;
  };
  // A thread that is not waiting is owed nothing.
  if (owed != 0) {
    for (std::uint32_t t = p * tpp; t < (p + 1) * tpp; ++t) {
      if (entitled_[t] != 0 && sim.threads()[t].phase != sim::ThreadPhase::kWaiting) clear(t);
    }
  }
  LockSeen& seen_here = lock_seen_[p];
  // Only whether a session is held matters here, and that changes only with
  // the agent's count of such changes (or a restart): while the count stays
  // put every session is held or not as last seen, so there is no new grant.
  const std::uint64_t changes = self.agent.stats().held_changes;
  auto note_state = [&](core::SessionId id, core::LockState state, core::LockState& seen) {
    if (seen != core::LockState::kHeld && state == core::LockState::kHeld) {
      for (std::uint32_t t = p * tpp; t < (p + 1) * tpp; ++t) {
        const sim::SimThread& thread = sim.threads()[t];
        if (thread.phase == sim::ThreadPhase::kWaiting && thread.session == id) entitle(t);
      }
    }
    seen = state;
  };
  const bool same_agent = seen_here.valid && seen_here.agent == self.agent.config().self;
  const auto& sessions = self.agent.state().sessions;
  if (same_agent && changes == seen_here.changes + 1) {
    // Exactly one session changed: the agent names it.
    seen_here.changes = changes;
    const core::SessionId id = self.agent.stats().last_held_change;
    auto it = sessions.find(id);
    note_state(id, it == sessions.end() ? core::LockState::kUnlocked : it->second.state,
               seen_here.states[id]);
  } else if (!same_agent || changes != seen_here.changes) {
    seen_here.valid = true;
    seen_here.agent = self.agent.config().self;
    seen_here.changes = changes;
    // Both maps are ordered by session: walk them side by side.
    auto old = seen_here.states.begin();
    for (const auto& [id, s] : sessions) {
      for (; old != seen_here.states.end() && old->first < id; ++old) {
        old->second = core::LockState::kUnlocked;  // gone from the agent (a restart)
      }
      if (old == seen_here.states.end() || old->first != id) {
        old = seen_here.states.emplace_hint(old, id, core::LockState::kUnlocked);
      }
      note_state(id, s.state, old->second);
      ++old;
    }
    for (; old != seen_here.states.end(); ++old) old->second = core::LockState::kUnlocked;
  }
  if (owed == 0) return;
  // The simulator applies this event's wakes after its observers: a thread
  // answered here (granted, failed) is owed nothing more.
  for (const core::ThreadEvent& w : e.effects->wake) clear(p * tpp + w.thread);
  if (owed == 0) return;
  for (const core::Envelope& out : e.effects->send) {
    const auto* release = std::get_if<core::Release>(&out.message);
    if (release == nullptr) continue;
    auto it = self.agent.state().sessions.find(release->session);
    if (it == self.agent.state().sessions.end() || it->second.state != core::LockState::kReleasing)
      continue;  // a lost lock, not one given up: its waiters ask again
    for (std::uint32_t t = p * tpp; t < (p + 1) * tpp; ++t) {
      if (!entitled_[t] || sim.threads()[t].session != release->session) continue;
      return Fail(sim, Invariant::kLiveness,
                  sim.NodeName(e.node) + " released session " + std::to_string(release->session) +
                      " while " + sim.NodeName(e.node) + ".t" + std::to_string(t % tpp) +
                      ", waiting since before the grant, was never served (the Progress rule, "
                      "R7): requests can starve",
                  {release->session});
    }
  }
}

// ---- liveness ------------------------------------------------------------------------

core::Time Checker::LivenessBound(const sim::SimConfig& c) {
  // Faults are over: no loss, reordering, clogs or pauses; a message takes at
  // most latency_max. A tenure serves at most threads_per_process requests
  // (each: hold, commit round trip) and then passes the lock on (release,
  // grant); a request waits behind at most every other process's tenure and
  // its own process's threads, plus a timer's worth of slack.
  const core::Time one_way = c.network.latency_max_us;
  const core::Time rtt = 2 * one_way;
  const core::Time service = c.workload.hold_us + 2 * rtt;
  const core::Time tenure = c.threads_per_process * service + 2 * rtt;
  const core::Time queue = c.processes() + 1;
  return 2 * (queue * tenure + c.retry_us + c.recall_retry_us + 4 * rtt);
}

core::Time Checker::RecoveredAt(const sim::Simulator& sim) {
  const sim::SimConfig& c = sim.config();
  core::Time last = c.fault_phase_us;
  for (const sim::ScheduledFault& f : sim.faults()) {
    last = std::max(last, f.at_us + f.duration_us);
  }
  // Stale holders' leases run out, a restarted store's grace period ends,
  // and the agents' retries find the store again.
  const core::Time grace = c.lease_us + c.lease_us / 4;
  return last + c.lease_us + grace + c.retry_us + c.recall_retry_us;
}

void Checker::CheckLiveness(const sim::Simulator& sim, bool at_end) {
  (void)at_end;
  if (!On(Invariant::kLiveness) && !On(Invariant::kNoDeadlock)) return;
  const core::Time bound = LivenessBound(sim.config());
  const core::Time recovered = RecoveredAt(sim);
  for (std::size_t i = 0; i < sim.threads().size(); ++i) {
    const sim::SimThread& t = sim.threads()[i];
    if (!Pending(t)) continue;
    core::Time since = std::max(t.asked_at, recovered);
    if (sim.now() <= since + bound) continue;
    bool deadlock = false;
    std::string graph = WaitsFor(sim, static_cast<std::uint32_t>(i), &deadlock);
    std::string message = "thread " + std::to_string(i) + " (p" + std::to_string(t.process + 1) +
                          ".t" + std::to_string(t.id) + ", session " + std::to_string(t.session) +
                          ") is " + std::string(PhaseName(t.phase)) +
                          " since t=" + std::to_string(t.asked_at) + ", past the bound of " +
                          std::to_string(bound) + " us counted from t=" + std::to_string(since) +
                          "\nwaits-for graph:\n" + graph;
    Invariant which = deadlock ? Invariant::kNoDeadlock : Invariant::kLiveness;
    if (!On(which)) which = deadlock ? Invariant::kLiveness : Invariant::kNoDeadlock;
    return Fail(sim, which, message, {t.session});
  }
}

std::string Checker::WaitsFor(const sim::Simulator& sim, std::uint32_t thread,
                              bool* deadlock) const {
  // Nodes: threads "pN.tK", process locks "pN/sX", the store "sY/sX". A
  // chain is followed until it repeats (a cycle) or reaches a node that will
  // never move by itself (a holder with no threads that was recalled).
  std::ostringstream out;
  const std::uint32_t S = sim.config().stores;
  const std::uint32_t tpp = sim.config().threads_per_process;
  std::set<std::string> visited;
  std::uint32_t current = thread;
  *deadlock = false;
  for (int step = 0; step < 64; ++step) {
    const sim::SimThread& t = sim.threads()[current];
    std::string tname = "p" + std::to_string(t.process + 1) + ".t" + std::to_string(t.id);
    if (!visited.insert(tname).second) {
      out << "  cycle back to " << tname << "\n";
      *deadlock = true;
      return out.str();
    }
    const sim::ProcessNode& n = sim.processes()[t.process];
    auto a = n.agent.state().sessions.find(t.session);
    std::string lock = "p" + std::to_string(t.process + 1) + "/s" + std::to_string(t.session);
    if (a == n.agent.state().sessions.end()) {
      out << "  " << tname << " (" << PhaseName(t.phase) << ") -> " << lock
          << ": the agent has no state for it\n";
      return out.str();
    }
    const core::AgentSession& s = a->second;
    bool holds = std::any_of(s.holders.begin(), s.holders.end(),
                             [&](const core::ThreadHold& h) { return h.thread == t.id; });
    if (holds) {
      out << "  " << tname << " holds its portion (" << PhaseName(t.phase) << "), "
          << s.commits.size() << " commits pending -> store\n";
      return out.str();
    }
    // Waiting: for a conflicting thread of its own process, or for the lock.
    for (const core::ThreadHold& h : s.holders) {
      for (const core::ThreadWait& w : s.waiters) {
        if (w.thread == t.id && h.portion.ConflictsWith(w.portion)) {
          out << "  " << tname << " -> p" << t.process + 1 << ".t" << h.thread
              << " (conflicting holder)\n";
          current = t.process * tpp + h.thread;
          goto next;
        }
      }
    }
    {
      out << "  " << tname << " -> " << lock << " (" << core::LockStateName(s.state)
          << (s.recalled ? ", recalled" : "") << (s.queued ? ", queued" : "") << ")\n";
      std::uint32_t home = core::StoreForSession(t.session, S);
      const core::StoreState& st = sim.stores()[home].store.state();
      auto ss = st.sessions.find(t.session);
      std::string store = "s" + std::to_string(home) + "/s" + std::to_string(t.session);
      if (s.state == core::LockState::kHeld) {
        out << "  " << lock << " held, not serving: "
            << (s.recalled ? "recalled, thread not entitled" : "untrusted or blocked") << "\n";
        return out.str();
      }
      if (ss == st.sessions.end() || !ss->second.tenure) {
        bool queued =
            ss != st.sessions.end() &&
            std::any_of(ss->second.queue.begin(), ss->second.queue.end(),
                        [&](const core::Waiter& w) { return w.process.id == t.process + 1; });
        out << "  " << lock << " -> " << store << ": no holder, "
            << (queued ? "request buffered" : "request unknown to the store") << "\n";
        return out.str();
      }
      const core::Tenure& tenure = *ss->second.tenure;
      out << "  " << lock << " -> " << store << " held by " << RefName(tenure.holder) << " token "
          << tenure.token << (tenure.recalled ? " (recalled)" : "") << ", queue length "
          << ss->second.queue.size() << "\n";
      if (tenure.holder.id == 0 || tenure.holder.id > sim.processes().size()) return out.str();
      const sim::ProcessNode& h = sim.processes()[tenure.holder.id - 1];
      auto hs = h.agent.state().sessions.find(t.session);
      std::string hname = "p" + std::to_string(tenure.holder.id) + "/s" + std::to_string(t.session);
      if (!visited.insert(hname).second) {
        out << "  cycle back to " << hname << "\n";
        *deadlock = true;
        return out.str();
      }
      if (hs == h.agent.state().sessions.end() || hs->second.holders.empty()) {
        bool stuck = hs != h.agent.state().sessions.end() &&
                     hs->second.state == core::LockState::kHeld && hs->second.commits.empty() &&
                     tenure.recalled;
        out << "  " << hname << ": "
            << (hs == h.agent.state().sessions.end()
                    ? std::string("no agent state")
                    : std::string(core::LockStateName(hs->second.state)))
            << ", no thread holds it" << (stuck ? ": recalled but never released (stuck)" : "")
            << "\n";
        *deadlock = stuck;
        return out.str();
      }
      const core::ThreadHold& first = hs->second.holders.front();
      out << "  " << hname << " -> p" << tenure.holder.id << ".t" << first.thread
          << " (thread holder)\n";
      current = static_cast<std::uint32_t>((tenure.holder.id - 1) * tpp + first.thread);
    }
  next:;
  }
  return out.str();
}

// ---- the finished run -------------------------------------------------------------

History Checker::CounterHistory(const sim::Simulator& sim) {
  // The counter workload: a request that writes a0 = v read a0 = v - 1.
  // A session dropped by an invalidation (B6) starts a new life from an
  // empty counter: each life is its own register, keyed by life << 40 | id.
  History h;
  std::size_t records = 0;
  for (const sim::StoreNode& n : sim.stores()) records += n.log.size();
  h.ops.reserve(records);
  h.accesses.reserve(2 * records);
  for (const sim::StoreNode& n : sim.stores()) {
    std::map<core::SessionId, std::uint64_t> life;
    for (const core::Record& r : n.log) {
      if (const auto* d = std::get_if<core::SessionDroppedRecord>(&r)) {
        ++life[d->session];
        continue;
      }
      const auto* c = std::get_if<core::CommitRecord>(&r);
      if (c == nullptr) continue;
      const auto lived = life.find(c->session);
      const core::SessionId key = c->session | ((lived == life.end() ? 0 : lived->second) << 40);
      for (const core::AttributeWrite& w : c->writes) {
        if (w.name != "a0" || w.erase) continue;
        std::uint64_t v = ParseCounter(w.value);
        h.Add(key, c->token, c->seq, {Access{0, false, v - 1}, Access{0, true, v}});
      }
    }
  }
  return h;
}

void Checker::Finish(const sim::Simulator& sim) {
  if (violation_) return;
  // Serializability of each session's committed requests, token-witnessed.
  HistoryResult serial = CheckSerializable(CounterHistory(sim));
  if (!serial.ok) {
    Fail(sim, Invariant::kSerializability, serial.message, {});
    if (violation_) return;
  }
  // No lost update: each session's counter, as the stores would recover it,
  // holds every acknowledged increment and at most the unknown ones besides.
  const sim::SimConfig& c = sim.config();
  std::vector<std::uint64_t> in_flight(c.workload.sessions, 0);
  for (const sim::SimThread& t : sim.threads()) {
    if (t.phase == sim::ThreadPhase::kCommitting && t.writes_counter) ++in_flight[t.session];
  }
  std::vector<std::uint64_t> value(c.workload.sessions, 0);
  // The summary recovered the stores already (the same computation, kept).
  for (const core::Store& recovered : sim.RecoveredStores()) {
    for (const auto& [id, s] : recovered.state().sessions) {
      auto a0 = s.attributes.find("a0");
      if (a0 != s.attributes.end() && id < value.size()) value[id] = ParseCounter(a0->second);
    }
  }
  const auto& acked = sim.acknowledged_by_session();
  const auto& unknown = sim.unknown_by_session();
  for (std::size_t s = 0; s < value.size() && s < acked.size(); ++s) {
    // After the session was dropped (B6) count from then; commits in flight at that
    // moment may have landed on either side of it.
    std::uint64_t acked_since = acked[s], unknown_since = unknown[s], either_side = 0;
    if (auto it = drops_.find(s); it != drops_.end()) {
      acked_since -= it->second.acknowledged;
      unknown_since -= it->second.unknown;
      either_side = it->second.committing;
    }
    const std::uint64_t lowest = acked_since > either_side ? acked_since - either_side : 0;
    if (value[s] < lowest || value[s] > acked_since + unknown_since + in_flight[s]) {
      Fail(sim, Invariant::kNoLostUpdate,
           "session " + std::to_string(s) + ": counter " + std::to_string(value[s]) +
               " after recovery, but " + std::to_string(acked_since) +
               " increments were acknowledged and " +
               std::to_string(unknown_since + in_flight[s] + either_side) +
               " had an unknown outcome" +
               (either_side + (acked_since != acked[s]) != 0 ? " since its invalidation" : ""),
           {s});
      if (violation_) return;
    }
  }
  CheckLiveness(sim, true);
}

}  // namespace latchkey::checker
