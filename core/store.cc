#include "core/store.h"

#include <algorithm>
#include <utility>

#include "core/assert.h"
#include "core/mutants.h"

namespace latchkey::core {

namespace {

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

void ApplyWrites(AttributeMap& attributes, bool clear_first, const WriteSet& writes) {
  if (clear_first) attributes.clear();
  for (const AttributeWrite& w : writes) {
    if (w.erase) {
      attributes.erase(w.name);
    } else {
      attributes.insert_or_assign(w.name, w.value);
    }
  }
}

}  // namespace

Store::Store(const StoreConfig& config) : config_(config) {
  LK_ASSERT(config_.lease_us > 0);
  LK_ASSERT(config_.recall_retry_us > 0);
}

Effects Store::Start(Time now) {
  Effects fx;
  fx.persist.push_back(StoreStartedRecord{state_.epoch});
  fx.next_deadline = NextDeadline();
  (void)now;
  return fx;
}

Store Store::Recover(const StoreConfig& config, const std::vector<Record>& log, Time now,
                     Effects* effects) {
  Store store(config);
  StoreState& st = store.state_;
  std::uint64_t last_epoch = 0;
  for (const Record& record : log) {
    std::visit(Overloaded{
                   [&](const StoreStartedRecord& r) { last_epoch = std::max(last_epoch, r.epoch); },
                   [&](const GrantRecord& r) {
                     SessionState& s = st.sessions[r.session];
                     Tenure t;
                     t.holder = r.holder;
                     t.token = r.token;
                     t.request_id = r.request_id;
                     t.granted_at = now;
                     t.reclaimed = false;
                     s.tenure = t;
                     st.last_token = std::max(st.last_token, r.token);
                   },
                   [&](const TenureEndRecord& r) {
                     auto it = st.sessions.find(r.session);
                     if (it != st.sessions.end() && it->second.tenure &&
                         it->second.tenure->token == r.token)
                       it->second.tenure.reset();
                   },
                   [&](const CommitRecord& r) {
                     SessionState& s = st.sessions[r.session];
                     ApplyWrites(s.attributes, r.clear_first, r.writes);
                     s.version = {r.token, r.seq};
                     if (s.tenure && s.tenure->token == r.token) s.tenure->last_seq = r.seq;
                   },
                   [&](const SessionDroppedRecord& r) {
                     auto it = st.sessions.find(r.session);
                     if (it == st.sessions.end()) return;
                     it->second.attributes.clear();
                     it->second.version = {};
                     // B6: only an invalidation drops a session under a
                     // holder; that tenure is revoked, commits or not.
                     if (it->second.tenure) it->second.tenure->revoked = Reason::kInvalidated;
                   },
               },
               record);
  }
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kTokenResetOnRecover)) st.last_token = 0;  // planted bug: tokens restart
#endif
  st.epoch = last_epoch + 1;
  st.grace_until = AddTime(now, config.EffectiveGrace());
  // B7: every persisted holder keeps its tenure until the grace period ends,
  // unless it reclaims; its lease is unknown, so it lasts as long as the grace.
  for (auto& [id, s] : st.sessions) {
    s.last_used = now;
    if (!s.tenure) continue;
    if (s.tenure->revoked != Reason::kNone ||
        (s.tenure->last_seq != 0 && s.version.token != s.tenure->token)) {
      // B6: the session was invalidated under this holder, who had not given
      // the token back: it stays revoked (no reclaim, its commits refused)
      // and blocks grants until the holder gives it back or the grace period
      // ends. (The second test reads logs compacted before the drop record
      // was kept with the tenure.) A tenure invalidated before its first
      // commit is revoked too: its holder's late commit must not land in the
      // emptied session (found by the RapidCheck configuration property).
      s.tenure->revoked = Reason::kInvalidated;
      s.tenure->recalled = true;
      s.tenure->recall_retry_at = AddTime(now, config.recall_retry_us);
    }
    // B4: the holder's request is known again, so a repeat of the Acquire
    // it answered (say, resent across the restart) gets the same grant.
    s.last_request[s.tenure->holder.id] = {s.tenure->holder.incarnation, s.tenure->request_id,
                                           true};
    st.in_grace = true;
    ProcessEntry& p = st.processes[s.tenure->holder.id];
    p.incarnation = std::max(p.incarnation, s.tenure->holder.incarnation);
    p.lease_until = st.grace_until;
    p.held.insert(id);
  }
  std::vector<SessionId> ids;
  for (const auto& [id, s] : st.sessions) ids.push_back(id);
  for (SessionId id : ids) store.Settle(now, id);
  Effects fx;
  fx.persist.push_back(StoreStartedRecord{st.epoch});
  fx.next_deadline = store.NextDeadline();
  if (effects != nullptr) *effects = std::move(fx);
  return store;
}

Effects Store::OnTick(Time now) {
  Effects fx;
  OnTick(now, fx);
  return fx;
}

void Store::OnTick(Time now, Effects& fx) {
  fx.Clear();
  RunDue(now, fx);
  fx.next_deadline = NextDeadline();
}

Effects Store::OnMessage(Time now, const Envelope& in) {
  Effects fx;
  OnMessage(now, in, fx);
  return fx;
}

void Store::OnMessage(Time now, const Envelope& in, Effects& fx) {
  fx.Clear();
  RunDue(now, fx);
  if (in.from.kind == NodeKind::kAdmin) {
    OnAdmin(now, in.from, in.message, fx);
    fx.next_deadline = NextDeadline();
    return;
  }
  if (in.from.kind != NodeKind::kProcess) {
    fx.next_deadline = NextDeadline();
    return;  // stores do not talk to each other
  }
  ProcessRef from{in.from.id, in.from.incarnation};
  ProcessEntry* process = Admit(now, from, fx);
  if (process == nullptr) {
    fx.next_deadline = NextDeadline();
    return;  // B4: a predecessor's message, ignored
  }
  std::visit(Overloaded{
                 [&](const Acquire& m) { OnAcquire(now, from, m, fx); },
                 [&](const Release& m) { OnRelease(from, m, fx, now); },
                 [&](const Commit& m) { OnCommit(now, from, m, fx); },
                 [&](const Heartbeat& m) {
                   RenewLease(now, *process);
                   Send(from, HeartbeatAck{m.seq}, fx);
                 },
                 [&](const Reclaim& m) { OnReclaim(now, from, m, fx); },
                 [&](const Cancel& m) { OnCancel(now, from, m, fx); },
                 [&](const auto&) {},  // store-to-agent kinds and admin kinds from a process
             },
             in.message);
  fx.next_deadline = NextDeadline();
}

ProcessEntry* Store::Admit(Time now, ProcessRef from, Effects& fx) {
  auto [it, inserted] = state_.processes.try_emplace(from.id);
  ProcessEntry& p = it->second;
  if (inserted) {
    ProcessesChanged();
    p.incarnation = from.incarnation;
    return &p;
  }
  if (from.incarnation < p.incarnation) return nullptr;
  if (from.incarnation > p.incarnation) {
    // B4: the process restarted; everything its predecessor held or waited
    // for is over.
    ForgetProcess(now, from.id, Reason::kProcessRestarted, fx);
    ProcessesChanged();
    p.incarnation = from.incarnation;
    p.lease_until = 0;
  }
  return &p;
}

void Store::RenewLease(Time now, ProcessEntry& process) {
  ProcessesChanged();
  process.lease_until = std::max(process.lease_until, AddTime(now, config_.lease_us));
}

void Store::RunDue(Time now, Effects& fx) {
  // B1: expired leases first, in process-id order. Every expired process
  // leaves the queues before any lock moves, so none is granted a lock only
  // to lose it in the same step.
  std::vector<std::uint64_t> expired;
  if (earliest_lease_ <= now) {
    for (const auto& [id, p] : state_.processes) {
      if (p.active() && p.lease_until <= now) expired.push_back(id);
    }
  }
  earliest_lease_ = 0;  // the state changes from here on
  for (std::uint64_t id : expired) {
    ProcessEntry& p = state_.processes.at(id);
    ProcessesChanged();
    FlatSet<SessionId> queued = std::move(p.queued);
    p.queued.clear();
    for (SessionId sid : queued) {
      DropQueued(sid, state_.sessions.at(sid), id);
      Settle(now, sid);
    }
  }
  for (std::uint64_t id : expired) {
    ++stats_.lease_expiries;
    ForgetProcess(now, id, Reason::kLeaseExpired, fx);
  }
  // B7: the grace period is over; unreclaimed tenures end.
  if (state_.in_grace && state_.grace_until <= now) {
    state_.in_grace = false;
    std::vector<SessionId> ids;
    for (const auto& [id, s] : state_.sessions) {
      if (s.tenure && !s.tenure->reclaimed) ids.push_back(id);
    }
    for (SessionId id : ids) {
      SessionState& s = state_.sessions.at(id);
      Revoke(now, id, s, Reason::kLeaseExpired, fx);
      Settle(now, id);
    }
  }
  // Session timers: recall retries (R7) and idle expiry (B6).
  while (!state_.timers.empty() && state_.timers.begin()->first <= now) {
    SessionId id = state_.timers.begin()->second;
    SessionState& s = state_.sessions.at(id);
    if (s.tenure && s.tenure->revoked != Reason::kNone && s.tenure->recall_retry_at <= now) {
      SendRevocation(now, id, s, /*recall=*/true, fx);  // until the token is given back
    } else if (s.tenure && s.tenure->recalled && s.tenure->recall_retry_at <= now) {
      if (s.queue.empty()) {
        s.tenure->recall_retry_at = kNever;  // nobody waits any more (cancel, expiry)
      } else {
        SendRecall(now, id, s, fx);  // R7: repeated until answered
      }
    } else if (!s.tenure && s.queue.empty() && config_.session_idle_us != kNever &&
               AddTime(s.last_used, config_.session_idle_us) <= now) {
      if (!s.attributes.empty()) fx.persist.push_back(SessionDroppedRecord{id});
      s.attributes.clear();
      s.version = {};
      s.last_request.clear();
    }
    Settle(now, id);
    auto it = state_.sessions.find(id);
    // Settle must move the timer past `now` or erase the session.
    LK_ASSERT(it == state_.sessions.end() || it->second.timer > now);
  }
}

void Store::OnAcquire(Time now, ProcessRef from, const Acquire& m, Effects& fx) {
  ProcessEntry& p = state_.processes.at(from.id);
  RenewLease(now, p);
  SessionState& s = SessionOf(m.session);
  s.last_used = now;
  RequestMark& mark = s.last_request[from.id];
  if (mark.incarnation == from.incarnation && m.request_id <= mark.request_id) {
    // B4: a repeat or a stale copy. Answer repeats; ignore older requests.
    if (s.tenure && s.tenure->holder == from && s.tenure->request_id == m.request_id) {
      Granted g{m.session, s.tenure->token, m.request_id, s.version, false, {}};
      if (m.cached != s.version) {
        g.has_snapshot = true;
        g.snapshot = s.attributes;
      }
      Send(from, std::move(g), fx);
      Settle(now, m.session);
      return;
    }
    auto queued = std::find_if(s.queue.begin(), s.queue.end(), [&](const Waiter& w) {
      return w.process == from && w.request_id == m.request_id;
    });
    if (queued != s.queue.end()) {
      Send(from,
           Queued{m.session, m.request_id, static_cast<std::uint32_t>(queued - s.queue.begin())},
           fx);
      Settle(now, m.session);
      return;
    }
    if (m.request_id == mark.request_id && mark.finished && m.try_only &&
        !(s.tenure && s.tenure->holder == from)) {
      Send(from, Busy{m.session, m.request_id}, fx);  // its Busy may have been lost
      Settle(now, m.session);
      return;
    }
    if (m.request_id < mark.request_id || mark.finished) {
      Settle(now, m.session);
      return;  // an older request, or one already answered for good
    }
    // Still open but no longer buffered: its process's lease ran out while it
    // waited, and the process asks again. Buffer it afresh.
  }
  mark = {from.incarnation, m.request_id, false};
  if (s.tenure && s.tenure->holder == from) {
    // The holder asks anew, so it has given up its tenure (it stopped trusting
    // its lease while its release was still on the way).
    EndTenure(now, m.session, s, fx);
    GrantNext(now, m.session, s, fx);
  }
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kGrantWhileHeld) && s.tenure && s.tenure->holder != from) {
    EndTenure(now, m.session, s, fx);  // planted bug: the holder is not told
  }
#endif
  if (!s.tenure && s.queue.empty()) {
    Grant(now, m.session, s, from, m.request_id, m.cached, fx);  // R3
    Settle(now, m.session);
    return;
  }
  if (m.try_only) {
    mark.finished = true;
    Send(from, Busy{m.session, m.request_id}, fx);  // B5
    Settle(now, m.session);
    return;
  }
  // R4: buffer it. A process already queued keeps its place.
  auto queued = std::find_if(s.queue.begin(), s.queue.end(),
                             [&](const Waiter& w) { return w.process.id == from.id; });
  if (queued != s.queue.end()) {
    queued->request_id = m.request_id;
    queued->cached = m.cached;
    Send(from,
         Queued{m.session, m.request_id, static_cast<std::uint32_t>(queued - s.queue.begin())}, fx);
  } else if (config_.max_queue != 0 && s.queue.size() >= config_.max_queue) {
    Reject(from, m.session, kNoToken, m.request_id, MessageKind::kAcquire, Reason::kQueueFull, fx);
  } else {
    s.queue.push_back(Waiter{from, m.request_id, now, m.cached});
    p.queued.insert(m.session);
    ProcessesChanged();
    ++stats_.queued;
    Send(from, Queued{m.session, m.request_id, static_cast<std::uint32_t>(s.queue.size() - 1)}, fx);
  }
  if (s.tenure && !s.tenure->recalled) SendRecall(now, m.session, s, fx);  // R7
  GrantNext(now, m.session, s, fx);
  Settle(now, m.session);
}

void Store::OnRelease(ProcessRef from, const Release& m, Effects& fx, Time now) {
  auto it = FindSession(m.session);
  if (it == state_.sessions.end() || !it->second.tenure || it->second.tenure->token != m.token) {
    // A finished (or never granted) tenure: acknowledge, change nothing.
    Send(from, ReleaseAck{m.session, m.token}, fx);
    return;
  }
  SessionState& s = it->second;
  if (s.tenure->holder != from) {
    // B9: only the holder may release its lock.
    Reject(from, m.session, m.token, 0, MessageKind::kRelease, Reason::kNotHolder, fx);
    return;
  }
  EndTenure(now, m.session, s, fx);  // R8
  Send(from, ReleaseAck{m.session, m.token}, fx);
  GrantNext(now, m.session, s, fx);  // R5
  Settle(now, m.session);
}

void Store::OnCommit(Time now, ProcessRef from, const Commit& m, Effects& fx) {
  auto it = FindSession(m.session);
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kCommitAcceptsStale) && m.seq != 0 &&
      (it == state_.sessions.end() || !it->second.tenure || it->second.tenure->token != m.token)) {
    // Planted bug: a stale token's writes are applied and acknowledged.
    SessionState& s = state_.sessions[m.session];
    ApplyWrites(s.attributes, m.clear_first, m.writes);
    fx.persist.push_back(CommitRecord{m.session, m.token, m.seq, m.clear_first, m.writes});
    Send(from, CommitAck{m.session, m.token, m.seq}, fx);
    Settle(now, m.session);
    return;
  }
#endif
  if (it == state_.sessions.end() || !it->second.tenure || it->second.tenure->token != m.token) {
    Reject(from, m.session, m.token, m.seq, MessageKind::kCommit, Reason::kStaleToken, fx);  // R1
    return;
  }
  SessionState& s = it->second;
  Tenure& t = *s.tenure;
  if (t.holder != from) {
    Reject(from, m.session, m.token, m.seq, MessageKind::kCommit, Reason::kNotHolder, fx);  // B9
    return;
  }
  if (m.seq == 0) {
    // Sequence numbers start at 1; a zero is malformed, never a repeat.
    Reject(from, m.session, m.token, m.seq, MessageKind::kCommit, Reason::kNotPending, fx);
    return;
  }
  if (m.seq <= t.last_seq) {
#ifdef LATCHKEY_MUTANTS
    if (LK_MUTANT(kDuplicateCommitApplied) && t.token == m.token) {
      // Planted bug: a duplicate is applied (and persisted) a second time.
      ApplyWrites(s.attributes, m.clear_first, m.writes);
      fx.persist.push_back(CommitRecord{m.session, m.token, m.seq, m.clear_first, m.writes});
    }
#endif
    Send(from, CommitAck{m.session, m.token, m.seq}, fx);  // B4: applied before
    return;
  }
  if (t.revoked != Reason::kNone) {
    // Force-released or invalidated: the token is dead, though the session
    // waits for its holder to give it back.
    Reject(from, m.session, m.token, m.seq, MessageKind::kCommit, Reason::kStaleToken, fx);
    return;
  }
  if (m.seq != t.last_seq + 1) {
    Reject(from, m.session, m.token, m.seq, MessageKind::kCommit, Reason::kNotPending, fx);
    return;
  }
  LK_ASSERT(t.token == m.token);
  ApplyWrites(s.attributes, m.clear_first, m.writes);
  t.last_seq = m.seq;
  t.reclaimed = true;  // B7: a current token from its holder proves the tenure
  s.version = {m.token, m.seq};
  s.last_used = now;
  ++stats_.commits;
#ifdef LATCHKEY_MUTANTS
  if (!LK_MUTANT(kAckWithoutPersist))  // planted bug: acknowledged, not durable
#endif
    fx.persist.push_back(CommitRecord{m.session, m.token, m.seq, m.clear_first, m.writes});  // B3
  Send(from, CommitAck{m.session, m.token, m.seq}, fx);
  Settle(now, it);  // found above; nothing since added or erased a session
}

void Store::OnReclaim(Time now, ProcessRef from, const Reclaim& m, Effects& fx) {
  RenewLease(now, state_.processes.at(from.id));
  auto it = FindSession(m.session);
  if (it == state_.sessions.end() || !it->second.tenure || it->second.tenure->token != m.token ||
      it->second.tenure->holder != from || it->second.tenure->revoked != Reason::kNone) {
    Reject(from, m.session, m.token, 0, MessageKind::kReclaim, Reason::kStaleToken, fx);
    return;
  }
  it->second.tenure->reclaimed = true;  // B7
  Send(from, ReclaimAck{m.session, m.token}, fx);
}

void Store::OnCancel(Time now, ProcessRef from, const Cancel& m, Effects& fx) {
  auto it = FindSession(m.session);
  if (it == state_.sessions.end()) return;
  SessionState& s = it->second;
  auto w = std::find_if(s.queue.begin(), s.queue.end(), [&](const Waiter& x) {
    return x.process == from && x.request_id == m.request_id;
  });
  if (w == s.queue.end()) return;  // granted already, or never buffered
  s.queue.erase(w);
  state_.processes.at(from.id).queued.erase(m.session);
  ProcessesChanged();
  s.last_request[from.id].finished = true;
  Send(from, CancelAck{m.session, m.request_id}, fx);
  Settle(now, m.session);
}

void Store::OnAdmin(Time now, const Address& from, const Message& m, Effects& fx) {
  (void)from;
  // The holder of a force-released or invalidated session may go on believing
  // it holds the lock until it hears of it: the session goes to the next in
  // line only once the holder gives the token back or its lease runs out.
  if (const auto* force = std::get_if<ForceRelease>(&m)) {
    auto it = state_.sessions.find(force->session);
    if (it == state_.sessions.end() || !it->second.tenure) return;
    StartRevocation(now, force->session, it->second, Reason::kForceReleased, fx);
    Settle(now, force->session);
  } else if (const auto* inv = std::get_if<AdminInvalidate>(&m)) {
    auto it = state_.sessions.find(inv->session);
    if (it == state_.sessions.end()) return;
    SessionState& s = it->second;
    if (s.tenure) StartRevocation(now, inv->session, s, Reason::kInvalidated, fx);
    // Persisted also for a tenure with nothing to drop: after a restart the
    // record tells Recover that the tenure was revoked.
    if (s.tenure || !s.attributes.empty() || s.version != DataVersion{}) {
      fx.persist.push_back(SessionDroppedRecord{inv->session});
    }
    s.attributes.clear();
    s.version = {};
    GrantNext(now, inv->session, s, fx);
    Settle(now, inv->session);
  }
}

void Store::Grant(Time now, SessionId id, SessionState& s, ProcessRef to, std::uint64_t request_id,
                  const DataVersion& cached, Effects& fx) {
  LK_ASSERT(!s.tenure);
  ProcessEntry& p = state_.processes.at(to.id);
  LK_ASSERT(p.incarnation == to.incarnation);
  Tenure t;
  t.holder = to;
  t.token = ++state_.last_token;  // B2: one counter per store, only grows
  t.request_id = request_id;
  t.granted_at = now;
  s.tenure = t;
  s.last_used = now;
  p.held.insert(id);
  ProcessesChanged();
  s.last_request[to.id] = {to.incarnation, request_id, true};
  ++stats_.grants;
  fx.persist.push_back(GrantRecord{id, t.token, to, request_id});  // B3/B7: before the grant leaves
  Granted g{id, t.token, request_id, s.version, false, {}};
  if (cached != s.version) {
    g.has_snapshot = true;
    g.snapshot = s.attributes;
  }
  Send(to, std::move(g), fx);
  // More requests wait behind the new holder: a caching holder is otherwise
  // never asked, so recall it at once.
  if (!s.queue.empty()) SendRecall(now, id, s, fx);
}

void Store::EndTenure(Time now, SessionId id, SessionState& s, Effects& fx) {
  LK_ASSERT(s.tenure);
  fx.persist.push_back(TenureEndRecord{id, s.tenure->token});
  auto p = state_.processes.find(s.tenure->holder.id);
  LK_ASSERT(p != state_.processes.end());
  p->second.held.erase(id);
  ProcessesChanged();
  s.tenure.reset();
  s.last_used = now;
}

void Store::Revoke(Time now, SessionId id, SessionState& s, Reason reason, Effects& fx) {
  LK_ASSERT(s.tenure);
  Send(s.tenure->holder, Revoked{id, s.tenure->token, reason}, fx);
  // The holder may never have seen its grant (lost in a partition) and may
  // still be resending that request: take it again rather than ignore it.
  // A late copy after all is answered with a grant the agent gives back.
  RequestMark& mark = s.last_request[s.tenure->holder.id];
  if (reason == Reason::kLeaseExpired && mark.incarnation == s.tenure->holder.incarnation &&
      mark.request_id == s.tenure->request_id) {
    mark.finished = false;
  }
#ifdef LATCHKEY_MUTANTS
  // Planted bug: the next grant reuses the expired tenure's token.
  if (LK_MUTANT(kTokenNotBumpedAfterExpiry) && reason == Reason::kLeaseExpired &&
      state_.last_token == s.tenure->token)
    --state_.last_token;
#endif
  EndTenure(now, id, s, fx);
  GrantNext(now, id, s, fx);
}

void Store::GrantNext(Time now, SessionId id, SessionState& s, Effects& fx) {
  if (s.tenure || s.queue.empty()) return;
  Waiter head = s.queue.front();
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kLifoQueue)) {  // planted bug: the newest buffered request first
    head = s.queue.back();
    s.queue.pop_back();
  } else
#endif
    s.queue.pop_front();
  state_.processes.at(head.process.id).queued.erase(id);
  ProcessesChanged();
  Grant(now, id, s, head.process, head.request_id, head.cached, fx);  // R5
}

void Store::SendRecall(Time now, SessionId id, SessionState& s, Effects& fx) {
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kStoreNeverRecalls)) return;  // planted bug: holders are never asked
#endif
  LK_ASSERT(s.tenure);
  s.tenure->recalled = true;
  s.tenure->recall_retry_at = AddTime(now, config_.recall_retry_us);
  ++stats_.recalls;
  Send(s.tenure->holder, Recall{id, s.tenure->token}, fx);
}

void Store::StartRevocation(Time now, SessionId id, SessionState& s, Reason reason, Effects& fx) {
  LK_ASSERT(s.tenure);
  if (s.tenure->revoked != Reason::kNone) return;  // already on its way out
  s.tenure->revoked = reason;
  // Recall at once only if someone waits for the session; otherwise the
  // holder is asked for the token back on the first retry.
  SendRevocation(now, id, s, /*recall=*/!s.queue.empty(), fx);
}

void Store::SendRevocation(Time now, SessionId id, SessionState& s, bool recall, Effects& fx) {
  LK_ASSERT(s.tenure && s.tenure->revoked != Reason::kNone);
  s.tenure->recalled = true;
  s.tenure->recall_retry_at = AddTime(now, config_.recall_retry_us);
  // Revoked makes a holder that still uses the token drop it; the Recall
  // makes one that has dropped it already (or drops it on the Revoked) send
  // the Release that ends the tenure here: an agent answers a recall of a
  // token it does not hold with a Release of it.
  Send(s.tenure->holder, Revoked{id, s.tenure->token, s.tenure->revoked}, fx);
  if (recall) Send(s.tenure->holder, Recall{id, s.tenure->token}, fx);
}

void Store::DropQueued(SessionId id, SessionState& s, std::uint64_t process_id) {
  s.queue.erase(std::remove_if(s.queue.begin(), s.queue.end(),
                               [&](const Waiter& w) { return w.process.id == process_id; }),
                s.queue.end());
  (void)id;
}

void Store::ForgetProcess(Time now, std::uint64_t process_id, Reason reason, Effects& fx) {
  ProcessEntry& p = state_.processes.at(process_id);
  ProcessesChanged();
  FlatSet<SessionId> queued = std::move(p.queued);
  p.queued.clear();
  for (SessionId id : queued) {
    DropQueued(id, state_.sessions.at(id), process_id);
    Settle(now, id);
  }
  FlatSet<SessionId> held = p.held;
  for (SessionId id : held) {
    SessionState& s = state_.sessions.at(id);
    Revoke(now, id, s, reason, fx);  // B1: its locks go to the next in line
    Settle(now, id);
  }
  LK_ASSERT(p.held.empty());
}

void Store::Reject(ProcessRef to, SessionId session, Token token, std::uint64_t seq,
                   MessageKind what, Reason reason, Effects& fx) {
  ++stats_.rejects;
  Send(to, Rejected{session, token, seq, static_cast<std::uint8_t>(what), reason}, fx);
}

// The message is moved into the envelope once (braces: see ProcessAgent::Send).
template <class M>
void Store::Send(ProcessRef to, M&& m, Effects& fx) {
  fx.send.push_back(Envelope{address(), ProcessAddress(to), std::forward<M>(m)});
}

void Store::Settle(Time now, SessionId id) {
  auto it = FindSession(id);
  if (it == state_.sessions.end()) return;
  Settle(now, it);
}

void Store::Settle(Time now, std::map<SessionId, SessionState>::iterator it) {
  (void)now;
  const SessionId id = it->first;
  SessionState& s = it->second;
  bool idle = !s.tenure && s.queue.empty();
  if (idle && s.attributes.empty() && s.last_request.empty()) {
    // B6: an empty, unheld session is the same as one never created. One
    // with request marks stays until its idle expiry, so that late copies
    // of old Acquires are still recognised (B4).
    if (s.timer != kNever) state_.timers.erase({s.timer, id});
    sessions_cache_.Forget(id);
    state_.sessions.erase(it);
    return;
  }
  Time timer = kNever;
  if (s.tenure && s.tenure->recalled && (!s.queue.empty() || s.tenure->revoked != Reason::kNone)) {
    timer = s.tenure->recall_retry_at;
  }
  if (idle) timer = std::min(timer, AddTime(s.last_used, config_.session_idle_us));
  if (timer == s.timer) return;  // most inputs leave it: spare the set a node
  if (s.timer != kNever) state_.timers.erase({s.timer, id});
  s.timer = timer;
  if (s.timer != kNever) state_.timers.insert({s.timer, id});
}

Time Store::ActiveLease() const {
  Time lease = kNever;
  for (const auto& [id, p] : state_.processes) {
    if (p.active()) lease = std::min(lease, p.lease_until);
  }
  return lease;
}

Time Store::NextDeadline() const {
  if (!active_lease_known_) {
    active_lease_ = ActiveLease();
    active_lease_known_ = true;
  }
  const Time lease = active_lease_;
  earliest_lease_ = lease;
  Time next = state_.timers.empty() ? kNever : state_.timers.begin()->first;
  next = std::min(next, lease);
  if (state_.in_grace) next = std::min(next, state_.grace_until);
  return next;
}

void Store::CheckInvariants() const {
  // The remembered earliest lease is still the processes' (nothing changed
  // them without saying so).
  LK_ASSERT(!active_lease_known_ || active_lease_ == ActiveLease());
  std::size_t timed = 0;
  for (const auto& [id, s] : state_.sessions) {
    if (s.tenure) {
      auto p = state_.processes.find(s.tenure->holder.id);
      LK_ASSERT(p != state_.processes.end());
      LK_ASSERT(p->second.held.count(id) == 1);
      LK_ASSERT(s.tenure->token <= state_.last_token);
      LK_ASSERT(s.tenure->token != kNoToken);
      if (s.tenure->revoked != Reason::kNone) {
        LK_ASSERT(s.tenure->revoked == Reason::kForceReleased ||
                  s.tenure->revoked == Reason::kInvalidated);
        LK_ASSERT(s.tenure->recalled && s.tenure->recall_retry_at != kNever);
        LK_ASSERT(s.timer != kNever && s.timer <= s.tenure->recall_retry_at);
      }
    }
    std::set<std::uint64_t> seen;
    for (const Waiter& w : s.queue) {
      LK_ASSERT(seen.insert(w.process.id).second);
      LK_ASSERT(!s.tenure || s.tenure->holder.id != w.process.id);
      auto p = state_.processes.find(w.process.id);
      LK_ASSERT(p != state_.processes.end());
      LK_ASSERT(p->second.queued.count(id) == 1);
    }
    LK_ASSERT(s.tenure || !s.queue.empty() || !s.attributes.empty() || !s.last_request.empty());
    LK_ASSERT(s.version.token <= state_.last_token);
    if (s.timer != kNever) {
      LK_ASSERT(state_.timers.count({s.timer, id}) == 1);
      ++timed;
    }
  }
  LK_ASSERT(timed == state_.timers.size());
  for (const auto& [pid, p] : state_.processes) {
    for (SessionId id : p.held) {
      auto s = state_.sessions.find(id);
      LK_ASSERT(s != state_.sessions.end() && s->second.tenure);
      LK_ASSERT(s->second.tenure->holder.id == pid);
    }
    for (SessionId id : p.queued) LK_ASSERT(state_.sessions.count(id) == 1);
  }
}

}  // namespace latchkey::core
