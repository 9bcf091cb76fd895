#include "core/agent.h"

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

}  // namespace

Time AgentConfig::TrustSpan() const {
  // Both clocks may drift by drift_ppm in opposite directions over the lease.
  Time drift =
      lease_us / 1'000'000 * 2 * drift_ppm + (lease_us % 1'000'000) * 2 * drift_ppm / 1'000'000;
  Time allowance = drift + expiry_margin_us;
  return lease_us > allowance ? lease_us - allowance : 0;
}

std::string_view LockStateName(LockState state) {
  switch (state) {
    case LockState::kUnlocked:
      return "unlocked";
    case LockState::kRequested:
      return "requested";
    case LockState::kHeld:
      return "held";
    case LockState::kReleasing:
      return "releasing";
  }
  return "unknown";
}

ProcessAgent::ProcessAgent(const AgentConfig& config) : config_(config) {
  LK_ASSERT(config_.store_count > 0);
  LK_ASSERT(config_.TrustSpan() > 0);
  LK_ASSERT(config_.retry_us > 0);
  state_.stores.resize(config_.store_count);
}

Address ProcessAgent::StoreOf(SessionId session) const {
  std::uint32_t store = HomeOf(session);
  return StoreAddress(store, state_.stores[store].epoch);
}

// The message is moved into the envelope once. (Braces, not emplace_back's
// parentheses: clang 14, which builds the fuzz targets, has no parenthesized
// aggregate initialization.)
template <class M>
void ProcessAgent::Send(SessionId session, M&& m, Effects& fx) {
  fx.send.push_back(Envelope{address(), StoreOf(session), std::forward<M>(m)});
}

AgentSession* ProcessAgent::FindSlow(SessionId id, SessionCache::Entry& entry) const {
  auto it = state_.sessions.find(id);
  if (it == state_.sessions.end()) return nullptr;
  // The map's nodes never move and an agent never erases a session: the
  // pointer stays good for as long as this agent's state_ does.
  entry = {id, const_cast<AgentSession*>(&it->second)};
  return entry.session;
}

AgentSession& ProcessAgent::InsertSlow(SessionId id, SessionCache::Entry& entry) {
  entry = {id, &state_.sessions.try_emplace(id).first->second};
  return *entry.session;
}

bool ProcessAgent::Trusts(Time now, SessionId session) const {
  const AgentSession* s = FindSession(session);
  return s != nullptr && Trusts(now, session, *s);
}

bool ProcessAgent::Trusts(Time now, SessionId id, const AgentSession& s) const {
  if (s.state != LockState::kHeld) return false;
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kAgentTrustsForever)) return true;  // planted bug: no self-expiry
#endif
  if (s.reclaiming && now >= s.reclaim_trust_until) return false;
  return now < state_.stores[HomeOf(id)].trusted_until;
}

// ---- inputs ----------------------------------------------------------------

Effects ProcessAgent::OnTick(Time now) {
  Effects fx;
  OnTick(now, fx);
  return fx;
}

void ProcessAgent::OnTick(Time now, Effects& fx) {
  fx.Clear();
  RunDue(now, fx);
  fx.next_deadline = NextDeadline();
}

Effects ProcessAgent::OnMessage(Time now, const Envelope& in) {
  Effects fx;
  OnMessage(now, in, fx);
  return fx;
}

void ProcessAgent::OnMessage(Time now, const Envelope& in, Effects& fx) {
  fx.Clear();
  RunDue(now, fx);
  bool for_me = in.from.kind == NodeKind::kStore && in.from.id < config_.store_count &&
                in.to.kind == NodeKind::kProcess && in.to.id == config_.self.id &&
                in.to.incarnation == config_.self.incarnation;
  // B4: a message for a predecessor incarnation (or misrouted) is ignored.
  if (for_me && AdmitEpoch(now, static_cast<std::uint32_t>(in.from.id), in.from.incarnation, fx)) {
    std::visit(
        Overloaded{
            [&](const Granted& m) { OnGranted(now, m, fx); },
            [&](const Queued& m) { OnQueued(now, m); }, [&](const Busy& m) { OnBusy(now, m, fx); },
            [&](const Recall& m) { OnRecall(now, m, fx); },
            [&](const ReleaseAck& m) { OnReleaseAck(now, m, fx); },
            [&](const CommitAck& m) { OnCommitAck(now, m, fx); },
            [&](const HeartbeatAck& m) {
              StoreLink& link = state_.stores[in.from.id];
              if (link.heartbeat_outstanding && m.seq == link.heartbeat_seq) {
                link.heartbeat_outstanding = false;
                Trust(static_cast<std::uint32_t>(in.from.id), link.heartbeat_sent_at);
              }
            },
            [&](const ReclaimAck& m) { OnReclaimAck(now, m); },
            [&](const Revoked& m) { OnRevoked(now, m, fx); },
            [&](const Rejected& m) { OnRejected(now, m, fx); }, [&](const CancelAck&) {},
            [&](const auto&) {},  // agent-to-store kinds
        },
        in.message);
  }
  fx.next_deadline = NextDeadline();
}

Effects ProcessAgent::OnThreadAsk(Time now, ThreadId thread, SessionId session,
                                  const Portion& portion, Time deadline, bool try_only) {
  Effects fx;
  OnThreadAsk(now, thread, session, portion, deadline, try_only, fx);
  return fx;
}

void ProcessAgent::OnThreadAsk(Time now, ThreadId thread, SessionId session, const Portion& portion,
                               Time deadline, bool try_only, Effects& fx) {
  fx.Clear();
  RunDue(now, fx);
  AgentSession& s = SessionOf(session);
  auto fail = [&](Reason reason) {
    fx.wake.push_back({thread, session, ThreadEventKind::kFailed, reason});
    Settle(session, s);
    fx.next_deadline = NextDeadline();
  };
  if (!portion.whole && portion.attributes.empty()) return fail(Reason::kBadPortion);
  // Sorted and unique: strictly increasing, one comparison per neighbour.
  if (std::adjacent_find(portion.attributes.begin(), portion.attributes.end(),
                         [](const std::string& a, const std::string& b) {
                           return a.compare(b) >= 0;
                         }) != portion.attributes.end()) {
    return fail(Reason::kBadPortion);
  }
  bool known = std::any_of(s.holders.begin(), s.holders.end(),
                           [&](const ThreadHold& h) { return h.thread == thread; }) ||
               std::any_of(s.waiters.begin(), s.waiters.end(),
                           [&](const ThreadWait& w) { return w.thread == thread; });
  if (known) return fail(Reason::kAlreadyWaiting);
  if (try_only) {
    // B5: a try-lock may wait for the store's answer, but never for another
    // process or for a conflicting thread.
    bool local_busy =
        s.state == LockState::kHeld &&
        (s.recalled || !Trusts(now, session, s) ||
         std::any_of(s.holders.begin(), s.holders.end(),
                     [&](const ThreadHold& h) { return h.portion.ConflictsWith(portion); }) ||
         std::any_of(s.waiters.begin(), s.waiters.end(),
                     [&](const ThreadWait& w) { return w.portion.ConflictsWith(portion); }));
    bool remote_busy = s.state == LockState::kReleasing ||
                       (s.state == LockState::kHeld && s.pipelined != PipelinedRelease::kNone) ||
                       (s.state == LockState::kRequested && !s.try_request);
    if (local_busy || remote_busy) return fail(Reason::kBusy);
  }
  s.idle_release_at = kNever;
  s.waiters.push_back(ThreadWait{thread, portion, deadline, try_only, false});
  if (s.state == LockState::kUnlocked) RequestLock(now, session, s, fx);
  Progress(now, session, s, fx);
  Settle(session, s);
  fx.next_deadline = NextDeadline();
}

Effects ProcessAgent::OnThreadCancel(Time now, ThreadId thread, SessionId session) {
  Effects fx;
  OnThreadCancel(now, thread, session, fx);
  return fx;
}

void ProcessAgent::OnThreadCancel(Time now, ThreadId thread, SessionId session, Effects& fx) {
  fx.Clear();
  RunDue(now, fx);
  if (AgentSession* found = FindSession(session); found != nullptr) {
    AgentSession& s = *found;
    auto w = std::find_if(s.waiters.begin(), s.waiters.end(),
                          [&](const ThreadWait& x) { return x.thread == thread; });
    if (w != s.waiters.end()) {
      s.waiters.erase(w);
      fx.wake.push_back({thread, session, ThreadEventKind::kFailed, Reason::kCancelled});
      if (s.waiters.empty() && s.state == LockState::kRequested) {
        // Nobody wants the lock any more: withdraw the buffered request; a
        // grant that crosses the Cancel is released.
        Send(session, Cancel{session, s.request_id}, fx);
        SetState(session, s, LockState::kUnlocked);
        s.retry_at = kNever;
      }
      Progress(now, session, s, fx);
      Settle(session, s);
    }
  }
  fx.next_deadline = NextDeadline();
}

Effects ProcessAgent::OnThreadFinish(Time now, ThreadId thread, SessionId session, bool commit) {
  Effects fx;
  OnThreadFinish(now, thread, session, commit, fx);
  return fx;
}

void ProcessAgent::OnThreadFinish(Time now, ThreadId thread, SessionId session, bool commit,
                                  Effects& fx) {
  fx.Clear();
  RunDue(now, fx);
  // FindHold's look-up, kept: the session is needed below.
  AgentSession* found = FindSession(session);
  ThreadHold* hold = nullptr;
  if (found != nullptr) {
    for (ThreadHold& h : found->holders) {
      if (h.thread == thread) {
        hold = &h;
        break;
      }
    }
  }
  if (hold == nullptr || hold->committing) {
    // The lease may have run out under the thread just now: RunDue told it
    // (lock_lost), and one answer per finish is all a thread gets.
    const bool told = std::any_of(fx.wake.begin(), fx.wake.end(), [&](const ThreadEvent& w) {
      return w.thread == thread && w.session == session;
    });
    if (!told) fx.wake.push_back({thread, session, ThreadEventKind::kFailed, Reason::kNotLocked});
    fx.next_deadline = NextDeadline();
    return;
  }
  AgentSession& s = *found;
  if (!commit || (hold->writes.empty() && !hold->clear_first)) {
    fx.wake.push_back({thread, session,
                       commit ? ThreadEventKind::kCommitted : ThreadEventKind::kRolledBack,
                       Reason::kNone});
    s.holders.erase(s.holders.begin() + (hold - s.holders.data()));
    Progress(now, session, s, fx);
  } else {
    hold->committing = true;
    s.commits.push_back(
        PendingCommit{thread, s.next_seq++, hold->clear_first, std::move(hold->writes), false});
    hold->writes.clear();
    if (s.commits.size() == 1) {
      SendHeadCommit(now, session, s, fx);
      // R8, release_when_contended: the lock goes back once this commit is
      // done unless another thread comes, so the Release leaves with the
      // Commit (one write each way; the next holder waits one round trip
      // less). Threads that come meanwhile wait for the next tenure.
      if (s.contended && s.holders.size() == 1 && s.waiters.empty() && !s.reclaiming) {
        s.pipelined = PipelinedRelease::kSent;
        Send(session, Release{session, s.token}, fx);
      }
    }
  }
  Settle(session, s);
  fx.next_deadline = NextDeadline();
}

// ---- thread reads and writes -------------------------------------------------

ThreadHold* ProcessAgent::FindHold(SessionId session, ThreadId thread) {
  AgentSession* s = FindSession(session);
  if (s == nullptr) return nullptr;
  for (ThreadHold& h : s->holders) {
    if (h.thread == thread) return &h;
  }
  return nullptr;
}

const ThreadHold* ProcessAgent::FindHold(SessionId session, ThreadId thread) const {
  return const_cast<ProcessAgent*>(this)->FindHold(session, thread);
}

ReadResult ProcessAgent::Read(ThreadId thread, SessionId session,
                              const std::string& attribute) const {
  // FindHold's look-up, kept: the session's cache is read below.
  const AgentSession* found = FindSession(session);
  if (found == nullptr) return {Reason::kNotLocked, std::nullopt};
  const ThreadHold* hold = nullptr;
  for (const ThreadHold& h : found->holders) {
    if (h.thread == thread) {
      hold = &h;
      break;
    }
  }
  if (hold == nullptr) return {Reason::kNotLocked, std::nullopt};
  if (!hold->portion.Contains(attribute)) return {Reason::kNotInPortion, std::nullopt};
  // Read your own writes first, newest last.
  for (auto w = hold->writes.rbegin(); w != hold->writes.rend(); ++w) {
    if (w->name != attribute) continue;
    if (w->erase) return {Reason::kNone, std::nullopt};
    return {Reason::kNone, w->value};
  }
  if (hold->clear_first) return {Reason::kNone, std::nullopt};
  const AttributeMap& cache = found->cache;
  auto it = cache.find(attribute);
  if (it == cache.end()) return {Reason::kNone, std::nullopt};
  return {Reason::kNone, it->second};
}

Reason ProcessAgent::Write(ThreadId thread, SessionId session, const std::string& attribute,
                           std::string value) {
  ThreadHold* hold = FindHold(session, thread);
  if (hold == nullptr || hold->committing) return Reason::kNotLocked;
  if (!hold->portion.Writable(attribute)) return Reason::kNotInPortion;
  hold->writes.push_back(AttributeWrite{attribute, std::move(value), false});
  return Reason::kNone;
}

Reason ProcessAgent::ForUpdate(ThreadId thread, SessionId session, const std::string& attribute,
                               ThreadHold*& hold, const std::string*& current) {
  AgentSession* found = FindSession(session);
  if (found == nullptr) return Reason::kNotLocked;
  for (ThreadHold& h : found->holders) {
    if (h.thread == thread) {
      hold = &h;
      break;
    }
  }
  if (hold == nullptr || hold->committing) return Reason::kNotLocked;
  if (!hold->portion.Writable(attribute)) return Reason::kNotInPortion;
  // As Read: the thread's own writes first, newest last, then the cache.
  for (auto w = hold->writes.rbegin(); w != hold->writes.rend(); ++w) {
    if (w->name != attribute) continue;
    current = w->erase ? nullptr : &w->value;
    return Reason::kNone;
  }
  if (hold->clear_first) return Reason::kNone;
  const AttributeMap& cache = found->cache;
  auto it = cache.find(attribute);
  if (it != cache.end()) current = &it->second;
  return Reason::kNone;
}

Reason ProcessAgent::Erase(ThreadId thread, SessionId session, const std::string& attribute) {
  ThreadHold* hold = FindHold(session, thread);
  if (hold == nullptr || hold->committing) return Reason::kNotLocked;
  if (!hold->portion.Writable(attribute)) return Reason::kNotInPortion;
  hold->writes.push_back(AttributeWrite{attribute, {}, true});
  return Reason::kNone;
}

Reason ProcessAgent::Clear(ThreadId thread, SessionId session) {
  ThreadHold* hold = FindHold(session, thread);
  if (hold == nullptr || hold->committing) return Reason::kNotLocked;
  if (!hold->portion.whole || hold->portion.mode != Mode::kExclusive) return Reason::kNotInPortion;
  hold->clear_first = true;
  hold->writes.clear();
  return Reason::kNone;
}

// ---- store messages ----------------------------------------------------------

bool ProcessAgent::AdmitEpoch(Time now, std::uint32_t store, std::uint64_t epoch, Effects& fx) {
  StoreLink& link = state_.stores[store];
  if (epoch < link.epoch) return false;  // from an earlier life of the store
  if (link.epoch == 0) {
    link.epoch = epoch;
  } else if (epoch > link.epoch) {
    link.epoch = epoch;
    StoreRestarted(now, store, fx);
  }
  return true;
}

void ProcessAgent::StoreRestarted(Time now, std::uint32_t store, Effects& fx) {
  // B7: the store lost its queues and leases. Reclaim what we hold, ask again
  // for what we wait for, and repeat releases.
  state_.stores[store].heartbeat_outstanding = false;
  for (auto& [id, s] : state_.sessions) {
    if (HomeOf(id) != store) continue;
    switch (s.state) {
      case LockState::kUnlocked:
        break;
      case LockState::kRequested:
        s.queued = false;
        Send(id, Acquire{id, s.request_id, s.cache_version, s.try_request}, fx);
        break;
      case LockState::kHeld:
        if (s.pipelined != PipelinedRelease::kNone) {
          // The tenure was being given back behind its last commit, and the
          // restart may have lost either: that thread cannot know whether
          // its write applied. Release again in case the store kept it.
          const Token token = s.token;
          LoseLock(now, id, s, fx);
          Send(id, Release{id, token}, fx);
          break;
        }
        s.reclaiming = true;
        s.reclaim_sent_at = now;
        s.reclaim_trust_until = state_.stores[store].trusted_until;
        Send(id, Reclaim{id, s.token}, fx);
        if (!s.commits.empty()) {
          // Its first copy may have applied before the restart: a refusal
          // of this one would prove nothing.
          s.commits.front().resent = true;
          SendHeadCommit(now, id, s, fx);
        }
        break;
      case LockState::kReleasing:
        Send(id, Release{id, s.token}, fx);
        break;
    }
    s.retry_at = AddTime(now, config_.retry_us);
    Settle(id, s);
  }
}

void ProcessAgent::OnGranted(Time now, const Granted& m, Effects& fx) {
  AgentSession& s = SessionOf(m.session);
  if (s.state == LockState::kHeld && s.token == m.token) return;  // a repeat
  if (s.state == LockState::kHeld && m.request_id == s.request_id && m.token > s.token) {
    // The store granted our request again with a newer token, so it ended
    // the tenure we hold: stop trusting it before anyone else is granted.
    Send(m.session, Release{m.session, m.token}, fx);
    LoseLock(now, m.session, s, fx);
    Settle(m.session, s);
    return;
  }
  if (s.state != LockState::kRequested || m.request_id != s.request_id) {
    // A grant nobody waits for any more (cancelled, or a stale duplicate).
    Send(m.session, Release{m.session, m.token}, fx);
    Settle(m.session, s);
    return;
  }
  std::uint32_t store = HomeOf(m.session);
  // B1: the request renewed our lease when the store got it, at the earliest
  // when we sent it. If a renewal answered since was sent after a time with
  // no trust at all, ending later than this request's own lease could last,
  // the store may have expired the lease in between and revoked this grant
  // (delayed in a clogged link, say, while a later heartbeat's answer got
  // here first).
  const bool gap_since =
      state_.stores[store].gap_closed_at > AddTime(s.request_sent_at, config_.TrustSpan());
  if (gap_since || s.request_lapses != state_.stores[store].lapses || m.token <= s.revoked_seen) {
    // Granted under a lease that may have run out since (our trust lapsed
    // after the request was sent), or already revoked: never use it.
    Send(m.session, Release{m.session, m.token}, fx);
    SetState(m.session, s, LockState::kUnlocked);
    RequestLock(now, m.session, s, fx);
    Settle(m.session, s);
    return;
  }
  Trust(store, s.request_sent_at);  // B1: the store renewed the lease on receipt
  if (now >= state_.stores[store].trusted_until) {
    // The lease may already be over by our clock: do not use this grant.
    Send(m.session, Release{m.session, m.token}, fx);
    SetState(m.session, s, LockState::kUnlocked);
    if (!s.waiters.empty()) RequestLock(now, m.session, s, fx);
    Settle(m.session, s);
    return;
  }
  ++stats_.grants;
  SetState(m.session, s, LockState::kHeld);
  s.token = m.token;
  s.next_seq = 1;
  s.retry_at = kNever;
  s.reclaiming = false;
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kAgentIgnoresSnapshot) && m.has_snapshot && s.cache_version != DataVersion{}) {
    // Planted bug: a stale cache is kept although the store sent a fresh copy.
  } else
#endif
      if (m.has_snapshot) {
    s.cache = m.snapshot;
    s.cache_version = m.version;
  } else if (s.cache_version != m.version) {
    // The store skipped the snapshot for a cache we do not have: never use a
    // cache that may be stale. Give the grant back and ask for a full copy.
    s.cache.clear();
    s.cache_version = {};
    Send(m.session, Release{m.session, m.token}, fx);
    SetState(m.session, s, LockState::kUnlocked);
    s.token = kNoToken;
    RequestLock(now, m.session, s, fx);
    Settle(m.session, s);
    return;
  }
  // Progress: the threads already waiting are served in this tenure even if
  // a recall came with (or before) the grant.
  for (ThreadWait& w : s.waiters) w.entitled = true;
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kNoProgressRule)) {
    for (ThreadWait& w : s.waiters) w.entitled = false;  // planted bug: no Progress rule
  }
#endif
  s.recalled = s.recall_seen >= m.token;
  s.recall_seen = kNoToken;
  s.contended = config_.release_when_contended && s.queued;
  if (s.recalled) ++stats_.recalls;
  Progress(now, m.session, s, fx);
  Settle(m.session, s);
}

void ProcessAgent::OnQueued(Time now, const Queued& m) {
  (void)now;
  AgentSession* found = FindSession(m.session);
  if (found == nullptr) return;
  AgentSession& s = *found;
  if (s.state != LockState::kRequested || m.request_id != s.request_id) return;
  s.queued = true;
  Trust(HomeOf(m.session), s.request_sent_at);
}

void ProcessAgent::OnBusy(Time now, const Busy& m, Effects& fx) {
  AgentSession* found = FindSession(m.session);
  if (found == nullptr) return;
  AgentSession& s = *found;
  if (s.state != LockState::kRequested || m.request_id != s.request_id) return;
  Trust(HomeOf(m.session), s.request_sent_at);
  // B5: the try-lock found the session held elsewhere.
  for (auto w = s.waiters.begin(); w != s.waiters.end();) {
    if (w->try_only) {
      fx.wake.push_back({w->thread, m.session, ThreadEventKind::kFailed, Reason::kBusy});
      w = s.waiters.erase(w);
    } else {
      ++w;
    }
  }
  SetState(m.session, s, LockState::kUnlocked);
  if (!s.waiters.empty()) RequestLock(now, m.session, s, fx);
  Settle(m.session, s);
}

void ProcessAgent::OnRecall(Time now, const Recall& m, Effects& fx) {
  AgentSession& s = SessionOf(m.session);
  switch (s.state) {
    case LockState::kHeld:
#ifdef LATCHKEY_MUTANTS
      if (LK_MUTANT(kAgentIgnoresRecall)) break;  // planted bug: recalls are ignored
#endif
      if (m.token == s.token) {
        if (!s.recalled) ++stats_.recalls;
        s.recalled = true;  // R7
        Progress(now, m.session, s, fx);
      } else if (m.token > s.token) {
        s.recall_seen = std::max(s.recall_seen, m.token);
      }
      break;
    case LockState::kRequested:
      // The grant may still be on its way: remember the recall for it.
      s.recall_seen = std::max(s.recall_seen, m.token);
      break;
    case LockState::kReleasing:
    case LockState::kUnlocked:
      // Not a tenure we hold or wait for: give it back (a lost release of an
      // unwanted grant would otherwise leave it held).
      if (s.state == LockState::kUnlocked || m.token != s.token) {
        Send(m.session, Release{m.session, m.token}, fx);
      }
      break;
  }
  Settle(m.session, s);
}

void ProcessAgent::OnReleaseAck(Time now, const ReleaseAck& m, Effects& fx) {
  AgentSession* found = FindSession(m.session);
  if (found == nullptr) return;
  AgentSession& s = *found;
  if (s.state == LockState::kHeld && s.pipelined == PipelinedRelease::kSent && s.token == m.token) {
    s.pipelined = PipelinedRelease::kAcked;  // finished when the commit's ack comes
    return;
  }
  if (s.state != LockState::kReleasing || s.token != m.token) return;
  FinishRelease(now, m.session, s, fx);
  Settle(m.session, s);
}

void ProcessAgent::FinishRelease(Time now, SessionId id, AgentSession& s, Effects& fx) {
  SetState(id, s, LockState::kUnlocked);
  s.token = kNoToken;
  s.retry_at = kNever;
  // Threads that arrived meanwhile ask again, at the back of the queue.
  if (!s.waiters.empty()) RequestLock(now, id, s, fx);
}

void ProcessAgent::OnCommitAck(Time now, const CommitAck& m, Effects& fx) {
  AgentSession* found = FindSession(m.session);
  if (found == nullptr) return;
  AgentSession& s = *found;
  if (s.state != LockState::kHeld || s.token != m.token || s.commits.empty() ||
      s.commits.front().seq != m.seq) {
    return;  // a duplicate ack
  }
  PendingCommit done = std::move(s.commits.front());
  s.commits.pop_front();
  if (done.clear_first) s.cache.clear();
  for (const AttributeWrite& w : done.writes) {
    if (w.erase) {
      s.cache.erase(w.name);
    } else {
      s.cache.insert_or_assign(w.name, w.value);
    }
  }
  s.cache_version = {m.token, m.seq};
  ++stats_.commits;
  auto hold = std::find_if(s.holders.begin(), s.holders.end(),
                           [&](const ThreadHold& h) { return h.thread == done.thread; });
  LK_ASSERT(hold != s.holders.end());
  LK_ASSERT(hold->committing);
  s.holders.erase(hold);
  fx.wake.push_back({done.thread, m.session, ThreadEventKind::kCommitted, Reason::kNone});
  s.retry_at = kNever;
  if (s.pipelined != PipelinedRelease::kNone && s.commits.empty() && s.holders.empty()) {
    const bool acked = s.pipelined == PipelinedRelease::kAcked;
    BeginRelease(now, m.session, s);  // its Release is on the way already
    if (acked) FinishRelease(now, m.session, s, fx);
    Settle(m.session, s);
    return;
  }
  if (!s.commits.empty()) SendHeadCommit(now, m.session, s, fx);
  Progress(now, m.session, s, fx);
  Settle(m.session, s);
}

void ProcessAgent::OnReclaimAck(Time now, const ReclaimAck& m) {
  (void)now;
  AgentSession* found = FindSession(m.session);
  if (found == nullptr) return;
  AgentSession& s = *found;
  if (s.state != LockState::kHeld || s.token != m.token || !s.reclaiming) return;
  s.reclaiming = false;
  Trust(HomeOf(m.session), s.reclaim_sent_at);
  if (s.commits.empty()) s.retry_at = kNever;
  Settle(m.session, s);
}

void ProcessAgent::OnRevoked(Time now, const Revoked& m, Effects& fx) {
  AgentSession* found = FindSession(m.session);
  if (found == nullptr) return;
  AgentSession& s = *found;
  if (s.state == LockState::kRequested) {
    s.revoked_seen = std::max(s.revoked_seen, m.token);  // its grant may still come
    return;
  }
  if (s.token != m.token) return;
  if (s.state == LockState::kHeld) {
    LoseLock(now, m.session, s, fx);
  } else if (s.state == LockState::kReleasing) {
    SetState(m.session, s, LockState::kUnlocked);
    s.token = kNoToken;
    s.retry_at = kNever;
    if (!s.waiters.empty()) RequestLock(now, m.session, s, fx);
  }
  Settle(m.session, s);
}

void ProcessAgent::OnRejected(Time now, const Rejected& m, Effects& fx) {
  AgentSession* found = FindSession(m.session);
  if (found == nullptr) return;
  AgentSession& s = *found;
  switch (static_cast<MessageKind>(m.what)) {
    case MessageKind::kCommit:
    case MessageKind::kReclaim:
      // R1: the store no longer takes our token; the tenure is over.
      if (s.state == LockState::kHeld && s.token == m.token) {
        // After a pipelined Release the refusal proves nothing: it may be a
        // duplicate of a commit that applied before the release.
        bool head_refused = static_cast<MessageKind>(m.what) == MessageKind::kCommit &&
                            !s.commits.empty() && s.commits.front().seq == m.seq &&
                            s.pipelined == PipelinedRelease::kNone;
        LoseLock(now, m.session, s, fx, head_refused);
      }
      break;
    case MessageKind::kAcquire:
      if (s.state == LockState::kRequested && m.seq == s.request_id) {
        for (const ThreadWait& w : s.waiters) {
          fx.wake.push_back({w.thread, m.session, ThreadEventKind::kFailed, m.reason});
        }
        s.waiters.clear();
        SetState(m.session, s, LockState::kUnlocked);
        s.retry_at = kNever;
      }
      break;
    default:
      break;
  }
  Settle(m.session, s);
}

// ---- time ------------------------------------------------------------------

void ProcessAgent::RunDue(Time now, Effects& fx) {
  if (now < due_) return;  // nothing due before the last input's deadline
  for (std::uint32_t store = 0; store < state_.stores.size(); ++store) {
    StoreLink& link = state_.stores[store];
    if (link.engaged > 0 && link.trusted_until <= now && !link.lapsed) {
      // B1: our lease may have run out at the store, which then revoked what
      // it granted us and dropped what we had buffered. Grants for requests
      // sent before now are not to be trusted: ask again with new requests.
      link.lapsed = true;
      ++link.lapses;
      for (auto& [id, s] : state_.sessions) {
        if (HomeOf(id) != store || s.state != LockState::kRequested) continue;
        SetState(id, s, LockState::kUnlocked);
        RequestLock(now, id, s, fx);
        Settle(id, s);
      }
    }
    bool expire = link.held > 0 && link.trusted_until <= now;
#ifdef LATCHKEY_MUTANTS
    if (LK_MUTANT(kAgentTrustsForever)) expire = false;  // planted bug: no self-expiry
#endif
    if (expire) ExpireLease(now, store, fx);
    if (link.engaged > 0 && link.next_heartbeat_at <= now) {
      // B1: one heartbeat per process and store, not one per lock.
      link.heartbeat_seq += 1;
      link.heartbeat_sent_at = now;
      link.heartbeat_outstanding = true;
      link.next_heartbeat_at = AddTime(now, config_.EffectiveHeartbeat());
      fx.send.push_back(
          Envelope{address(), StoreAddress(store, link.epoch), Heartbeat{link.heartbeat_seq}});
    }
  }
  while (!state_.timers.empty() && state_.timers.begin()->first <= now) {
    SessionId id = state_.timers.begin()->second;
    AgentSession* found = FindSession(id);
    LK_ASSERT(found != nullptr);
    AgentSession& s = *found;
    OnTimer(now, id, s, fx);
    Settle(id, s);
    LK_ASSERT(s.timer > now);
  }
}

void ProcessAgent::ExpireLease(Time now, std::uint32_t store, Effects& fx) {
  // B1: by our own clock the lease may be over; stop trusting every lock from
  // this store before the store gives it to someone else.
  ++stats_.lease_expiries;
  for (auto& [id, s] : state_.sessions) {
    if (HomeOf(id) != store || s.state != LockState::kHeld) continue;
    Send(id, Release{id, s.token}, fx);  // best effort; the store may still count us
    LoseLock(now, id, s, fx);
    Settle(id, s);
  }
}

void ProcessAgent::OnTimer(Time now, SessionId id, AgentSession& s, Effects& fx) {
  if (s.state == LockState::kHeld && s.reclaiming && s.reclaim_trust_until <= now) {
    // B7: the reclaim went unanswered for as long as the old lease allowed.
    ++stats_.lease_expiries;
    Send(id, Release{id, s.token}, fx);
    LoseLock(now, id, s, fx);
  }
  // B5: waits past their deadline fail.
  bool removed = false;
  for (auto w = s.waiters.begin(); w != s.waiters.end();) {
    if (w->deadline <= now) {
      fx.wake.push_back({w->thread, id, ThreadEventKind::kFailed, Reason::kTimeout});
      w = s.waiters.erase(w);
      removed = true;
    } else {
      ++w;
    }
  }
  if (removed && s.waiters.empty() && s.state == LockState::kRequested) {
    // Withdraw the buffered request; a grant that crosses it is released.
    Send(id, Cancel{id, s.request_id}, fx);
    SetState(id, s, LockState::kUnlocked);
    s.retry_at = kNever;
  }
  if (s.retry_at <= now) {
    // B4: resend what is unanswered; the store recognises repeats.
    ++stats_.retries;
    s.retry_at = AddTime(now, config_.retry_us);
    switch (s.state) {
      case LockState::kRequested:
        Send(id, Acquire{id, s.request_id, s.cache_version, s.try_request}, fx);
        break;
      case LockState::kReleasing:
        Send(id, Release{id, s.token}, fx);
        break;
      case LockState::kHeld:
        if (s.reclaiming) Send(id, Reclaim{id, s.token}, fx);
        if (!s.commits.empty()) {
          s.commits.front().resent = true;
          SendHeadCommit(now, id, s, fx);
        }
        if (!s.reclaiming && s.commits.empty()) s.retry_at = kNever;
        break;
      case LockState::kUnlocked:
        s.retry_at = kNever;
        break;
    }
  }
  if (s.idle_release_at <= now) {
    MaybeRelease(now, id, s, fx);  // R8: unused for idle_release: give it back
    if (s.idle_release_at <= now) s.idle_release_at = kNever;
  }
  if (removed) Progress(now, id, s, fx);
}

// ---- helpers -------------------------------------------------------------------

void ProcessAgent::SetState(SessionId id, AgentSession& s, LockState next) {
  StoreLink& link = state_.stores[HomeOf(id)];
  bool was_engaged = s.state != LockState::kUnlocked;
  bool now_engaged = next != LockState::kUnlocked;
  if (was_engaged && !now_engaged) --link.engaged;
  if (!was_engaged && now_engaged) {
    if (link.engaged++ == 0) {
      // Heartbeats restart with the link: the request itself renews the lease.
      link.next_heartbeat_at = kNever;
    }
  }
  if (s.state == LockState::kHeld) --link.held;
  if (next == LockState::kHeld) ++link.held;
  if (next != LockState::kHeld) {
    s.pipelined = PipelinedRelease::kNone;
    s.recalled = false;
    s.contended = false;
    s.reclaiming = false;
    s.idle_release_at = kNever;
  }
  if ((next == LockState::kHeld) != (s.state == LockState::kHeld)) {
    ++stats_.held_changes;
    stats_.last_held_change = id;
  }
  s.state = next;
}

void ProcessAgent::Trust(std::uint32_t store, Time sent_at) {
  StoreLink& link = state_.stores[store];
  Time until = AddTime(sent_at, config_.TrustSpan());
  if (sent_at > link.trusted_until) link.gap_closed_at = std::max(link.gap_closed_at, sent_at);
  if (until > link.trusted_until) {
    link.trusted_until = until;
    link.lapsed = false;
  }
}

void ProcessAgent::RequestLock(Time now, SessionId id, AgentSession& s, Effects& fx) {
  LK_ASSERT(s.state == LockState::kUnlocked);
  LK_ASSERT(!s.waiters.empty());
  ++stats_.acquires;
  s.request_id = ++state_.last_request_id;
  s.try_request = std::all_of(s.waiters.begin(), s.waiters.end(),
                              [](const ThreadWait& w) { return w.try_only; });
  s.queued = false;
  s.request_sent_at = now;
  // Asking with no lease left: whatever the store had of ours is gone, and
  // this request starts a new lease; that is not a lapse after it.
  if (state_.stores[HomeOf(id)].trusted_until <= now) state_.stores[HomeOf(id)].lapsed = true;
  s.request_lapses = state_.stores[HomeOf(id)].lapses;
  s.revoked_seen = kNoToken;
  s.retry_at = AddTime(now, config_.retry_us);
  SetState(id, s, LockState::kRequested);
  StoreLink& link = state_.stores[HomeOf(id)];
  if (link.next_heartbeat_at == kNever) {
    link.next_heartbeat_at = AddTime(now, config_.EffectiveHeartbeat());
  }
  Send(id, Acquire{id, s.request_id, s.cache_version, s.try_request}, fx);  // R2
}

void ProcessAgent::ReleaseLock(Time now, SessionId id, AgentSession& s, Effects& fx) {
  BeginRelease(now, id, s);
  Send(id, Release{id, s.token}, fx);
}

void ProcessAgent::BeginRelease(Time now, SessionId id, AgentSession& s) {
  LK_ASSERT(s.state == LockState::kHeld);
  LK_ASSERT(s.holders.empty() && s.commits.empty());
  ++stats_.releases;
  for (ThreadWait& w : s.waiters) w.entitled = false;
  SetState(id, s, LockState::kReleasing);  // ends a pipelined release
  s.retry_at = AddTime(now, config_.retry_us);
}

void ProcessAgent::LoseLock(Time now, SessionId id, AgentSession& s, Effects& fx,
                            bool head_refused) {
  LK_ASSERT(s.state == LockState::kHeld);
  // B5: every thread whose lock went away is told. Only the head commit was
  // ever sent: unless the store refused its only copy, it may have applied.
  for (const ThreadHold& h : s.holders) {
    Reason reason = Reason::kLockLost;
    if (!s.commits.empty() && s.commits.front().thread == h.thread &&
        !(head_refused && !s.commits.front().resent)) {
      reason = Reason::kCommitOutcomeUnknown;
    }
#ifdef LATCHKEY_MUTANTS
    // Planted bug: the thread is told its commit did not apply, though it may have.
    if (LK_MUTANT(kAgentClaimsCommitLost)) reason = Reason::kLockLost;
#endif
    fx.wake.push_back({h.thread, id, ThreadEventKind::kFailed, reason});
  }
  s.holders.clear();
  s.commits.clear();
  s.token = kNoToken;
  s.retry_at = kNever;
  s.recall_seen = kNoToken;
  for (ThreadWait& w : s.waiters) w.entitled = false;
  SetState(id, s, LockState::kUnlocked);
  if (!s.waiters.empty()) RequestLock(now, id, s, fx);
}

void ProcessAgent::SendHeadCommit(Time now, SessionId id, AgentSession& s, Effects& fx) {
  LK_ASSERT(!s.commits.empty());
  const PendingCommit& c = s.commits.front();
  s.retry_at = AddTime(now, config_.retry_us);
  Send(id, Commit{id, s.token, c.seq, c.clear_first, c.writes}, fx);  // R1: carries the token
}

void ProcessAgent::Progress(Time now, SessionId id, AgentSession& s, Effects& fx) {
  Serve(now, id, s, fx);
  MaybeRelease(now, id, s, fx);
}

void ProcessAgent::Serve(Time now, SessionId id, AgentSession& s, Effects& fx) {
  if (s.state != LockState::kHeld || s.pipelined != PipelinedRelease::kNone ||
      !Trusts(now, id, s)) {
    return;
  }
  // FIFO without overtaking a conflicting earlier waiter, so no thread starves;
  // a request for several attributes is granted all at once or not at all.
  for (std::size_t i = 0; i < s.waiters.size();) {
    ThreadWait& w = s.waiters[i];
    if (s.recalled && !w.entitled) break;  // R7: no new thread locks once recalled
    bool blocked = std::any_of(s.holders.begin(), s.holders.end(), [&](const ThreadHold& h) {
      return h.portion.ConflictsWith(w.portion);
    });
    for (std::size_t j = 0; j < i && !blocked; ++j) {
      blocked = s.waiters[j].portion.ConflictsWith(w.portion);
    }
#ifdef LATCHKEY_MUTANTS
    if (LK_MUTANT(kAgentConfusesModes)) {
      // Planted bug: only two exclusive portions conflict; readers and a
      // writer of the same attribute go together.
      auto both_exclusive = [&](const Portion& a) {
        return a.mode == Mode::kExclusive && w.portion.mode == Mode::kExclusive &&
               a.Overlaps(w.portion);
      };
      blocked = std::any_of(s.holders.begin(), s.holders.end(),
                            [&](const ThreadHold& h) { return both_exclusive(h.portion); });
      for (std::size_t j = 0; j < i && !blocked; ++j)
        blocked = both_exclusive(s.waiters[j].portion);
    }
    if (LK_MUTANT(kAgentGrantsConflicting)) blocked = false;  // planted bug: no R9 check
    if (LK_MUTANT(kAgentThreadLifo)) {
      // Planted bug: a later waiter that conflicts goes first.
      blocked = std::any_of(s.holders.begin(), s.holders.end(), [&](const ThreadHold& h) {
        return h.portion.ConflictsWith(w.portion);
      });
      for (std::size_t j = i + 1; j < s.waiters.size() && !blocked; ++j) {
        blocked = !(s.recalled && !s.waiters[j].entitled) &&
                  s.waiters[j].portion.ConflictsWith(w.portion) &&
                  !std::any_of(s.holders.begin(), s.holders.end(), [&](const ThreadHold& h) {
                    return h.portion.ConflictsWith(s.waiters[j].portion);
                  });
      }
    }
#endif
    if (blocked) {
      ++i;
      continue;
    }
    // The waiter is erased below: its portion moves, not copies.
    s.holders.push_back(ThreadHold{w.thread, std::move(w.portion), false, {}, false});
    fx.wake.push_back({w.thread, id, ThreadEventKind::kGranted, Reason::kNone});  // R9
    if (i == 0) {
      s.waiters.pop_front();  // the usual case, without deque::erase's moves
    } else {
      s.waiters.erase(s.waiters.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  // B5: a try-lock that could not be granted now would wait for a thread (or
  // for the next tenure): refuse it instead.
  for (auto w = s.waiters.begin(); w != s.waiters.end();) {
    if (w->try_only) {
      fx.wake.push_back({w->thread, id, ThreadEventKind::kFailed, Reason::kBusy});
      w = s.waiters.erase(w);
    } else {
      ++w;
    }
  }
}

void ProcessAgent::MaybeRelease(Time now, SessionId id, AgentSession& s, Effects& fx) {
#ifdef LATCHKEY_MUTANTS
  if (LK_MUTANT(kAgentReleasesWhileHolding) && s.state == LockState::kHeld && s.recalled &&
      !s.holders.empty()) {
    // Planted bug: the lock goes back to the store while threads still hold
    // portions and go on using them.
    Send(id, Release{id, s.token}, fx);
    return;
  }
#endif
  if (s.state != LockState::kHeld || !s.holders.empty() || !s.commits.empty()) return;
  if (s.recalled) {
    bool entitled_left = std::any_of(s.waiters.begin(), s.waiters.end(),
                                     [](const ThreadWait& w) { return w.entitled; });
    if (!entitled_left) ReleaseLock(now, id, s, fx);  // R7
    return;
  }
  if (!s.waiters.empty()) return;
  // R6: keep the lock cached; R8: give it back after idle_release without
  // use, or at once if another process had it just before us.
  if (config_.idle_release_us == 0 || s.contended) {
    ReleaseLock(now, id, s, fx);
  } else if (s.idle_release_at == kNever) {
    s.idle_release_at = AddTime(now, config_.idle_release_us);
  } else if (s.idle_release_at <= now) {
    ReleaseLock(now, id, s, fx);
  }
}

void ProcessAgent::Settle(SessionId id, AgentSession& s) {
  Time t = std::min(s.retry_at, s.idle_release_at);
  if (s.state == LockState::kHeld && s.reclaiming) t = std::min(t, s.reclaim_trust_until);
  for (const ThreadWait& w : s.waiters) t = std::min(t, w.deadline);
  if (t == s.timer) return;  // unchanged: spare the set a node
  if (s.timer != kNever) state_.timers.erase({s.timer, id});
  s.timer = t;
  if (t != kNever) state_.timers.insert({t, id});
}

Time ProcessAgent::NextDeadline() const {
  Time next = state_.timers.empty() ? kNever : state_.timers.begin()->first;
  for (const StoreLink& link : state_.stores) {
    if (link.engaged > 0) next = std::min(next, link.next_heartbeat_at);
    if (link.engaged > 0 && !link.lapsed) next = std::min(next, link.trusted_until);
    bool expires = link.held > 0;
#ifdef LATCHKEY_MUTANTS
    if (LK_MUTANT(kAgentTrustsForever)) expires = false;  // planted bug: no self-expiry
#endif
    if (expires) next = std::min(next, link.trusted_until);
  }
  due_ = next;
  return next;
}

void ProcessAgent::CheckInvariants() const {
  std::vector<StoreLink> counted(state_.stores.size());
  std::size_t timed = 0;
  for (const auto& [id, s] : state_.sessions) {
    StoreLink& c = counted[HomeOf(id)];
    if (s.state != LockState::kUnlocked) ++c.engaged;
    if (s.state == LockState::kHeld) ++c.held;
    if (s.state != LockState::kHeld) {
      LK_ASSERT(s.holders.empty());
      LK_ASSERT(s.commits.empty());
    }
    for (std::size_t i = 0; i < s.holders.size(); ++i) {
      for (std::size_t j = i + 1; j < s.holders.size(); ++j) {
        LK_ASSERT(!s.holders[i].portion.ConflictsWith(s.holders[j].portion));  // R9
        LK_ASSERT(s.holders[i].thread != s.holders[j].thread);
      }
    }
    bool prefix = true;
    std::set<ThreadId> threads;
    for (const ThreadHold& h : s.holders) threads.insert(h.thread);
    for (const ThreadWait& w : s.waiters) {
      LK_ASSERT(threads.insert(w.thread).second);
      if (!w.entitled) prefix = false;
      LK_ASSERT(!w.entitled || prefix);
    }
    for (const PendingCommit& c : s.commits) {
      auto h = std::find_if(s.holders.begin(), s.holders.end(),
                            [&](const ThreadHold& x) { return x.thread == c.thread; });
      LK_ASSERT(h != s.holders.end() && h->committing);
    }
    if (s.timer != kNever) {
      LK_ASSERT(state_.timers.count({s.timer, id}) == 1);
      ++timed;
    }
  }
  LK_ASSERT(timed == state_.timers.size());
  for (std::size_t i = 0; i < counted.size(); ++i) {
    LK_ASSERT(counted[i].engaged == state_.stores[i].engaged);
    LK_ASSERT(counted[i].held == state_.stores[i].held);
  }
}

}  // namespace latchkey::core
