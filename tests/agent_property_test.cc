// RapidCheck stateful property: one ProcessAgent against a model of its
// thread-level locks (R6-R9, B1, B5), with the test playing the store.
//
// The model holds, per session, the process-level lock state the store sees
// (unlocked / requested / held(token) / releasing), the recall state, the FIFO
// of waiting thread asks (with the "entitled" mark of the Progress rule) and
// the thread holders with their pending commits; plus the fake store's side:
// token counter and committed attributes. It predicts every thread wake of
// every step, the protocol messages that must leave (new Acquires, Releases,
// Commits, Cancels), and the agent's state.
//
// Commands: thread Ask (portions of {a,b,c}, shared or exclusive, with or
// without a deadline, try-lock), Write (+ Read check), Finish (commit or
// rollback), Cancel; store Granted, Queued, Busy, Recall (current, stale or a
// recall that overtakes its grant), CommitAck, ReleaseAck, Revoked/Rejected,
// a duplicate of the last store message; small time steps (heartbeats are
// answered at once), a lease lapse (no answer for longer than the agent's
// trust span) and time steps with heartbeats unanswered. The model keeps the
// link's trust as the agent does (B1): when it was last renewed, whether it
// lapsed, and when it next sends a heartbeat; so it predicts the requests
// made again after a lapse, including one that comes in small steps after an
// idle spell with no heartbeats.
//
// Checked after every step: wakes equal the model's (as a multiset) and none
// is duplicated; independent of the model, a per-thread tracker built only
// from wakes sees no thread granted twice or woken out of turn and no two
// conflicting holders, and no thread granted once the store has answered
// nothing sent within the trust span (B1, from the messages alone); the
// must-send messages left, and anything else sent is
// a retransmission of something outstanding or a heartbeat; a recalled agent
// whose holders and entitled waiters are done has released; held locks are
// trusted; the agent's state equals the model's; CheckInvariants().
//
// Each property runs kCases random command sequences of up to kMaxCommands
// commands; when RC_PARAMS is set it rules instead. A failure shows the shrunk
// command sequence, what differed, and the RC_PARAMS that reproduces it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/agent.h"
#include "core/effects.h"
#include "core/messages.h"
#include "core/mutants.h"
#include "core/types.h"
#include "tests/harness.h"
#include "tests/rc_support.h"

namespace {

namespace core = latchkey::core;
using core::AttributeMap;
using core::AttributeWrite;
using core::DataVersion;
using core::Effects;
using core::Envelope;
using core::kNever;
using core::kNoToken;
using core::LockState;
using core::Message;
using core::MessageKind;
using core::Mode;
using core::Portion;
using core::Reason;
using core::SessionId;
using core::ThreadEvent;
using core::ThreadEventKind;
using core::ThreadId;
using core::Time;
using core::Token;

constexpr core::ProcessRef kSelf{1, 1};
constexpr ThreadId kThreads = 4;  // thread ids 1..4
constexpr Time kLease = 2'000'000;
constexpr Time kRetry = 100'000;
// Shorter than a heartbeat period (lease/4) plus margin, so an engaged link's
// heartbeats keep its trust; an unengaged link's trust may still run out over
// many small steps, and the model tracks that (trusted_until).
constexpr Time kMaxSmallStep = 400'000;
constexpr Time kLapse = 2'500'000;  // > the trust span: every held lock is lost

core::AgentConfig Config(bool release_after_each, bool release_when_contended) {
  core::AgentConfig c;
  c.self = kSelf;
  c.store_count = 1;
  c.lease_us = kLease;
  c.retry_us = kRetry;
  c.idle_release_us = release_after_each ? 0 : kNever;
  c.release_when_contended = release_when_contended;
  return c;
}

// B1: how long a renewal of the lease is trusted (the lease less drift and
// margin), and how often an engaged link sends a heartbeat. Neither depends
// on the release flags, so one Config serves every test here.
const Time kTrustSpan = Config(false, false).TrustSpan();
const Time kHeartbeat = Config(false, false).EffectiveHeartbeat();

// ---- printing ----------------------------------------------------------------

const char* KindName(ThreadEventKind kind) {
  switch (kind) {
    case ThreadEventKind::kGranted:
      return "granted";
    case ThreadEventKind::kCommitted:
      return "committed";
    case ThreadEventKind::kRolledBack:
      return "rolled_back";
    case ThreadEventKind::kFailed:
      return "failed";
  }
  return "?";
}

std::string ShowWake(const ThreadEvent& w) {
  std::string s = "s" + std::to_string(w.session) + " thread " + std::to_string(w.thread) + ":" +
                  KindName(w.kind);
  if (w.reason != Reason::kNone) s += "/" + std::string(core::ReasonName(w.reason));
  return s;
}

std::string ShowPortion(const Portion& p) {
  std::string s = p.mode == Mode::kShared ? "shared{" : "excl{";
  if (p.whole) {
    s += "*";
  } else {
    for (std::size_t i = 0; i < p.attributes.size(); ++i) s += (i ? "," : "") + p.attributes[i];
  }
  return s + "}";
}

std::string ShowWrites(const std::vector<AttributeWrite>& ws) {
  std::string s = "[";
  for (const AttributeWrite& w : ws)
    s += w.erase ? "-" + w.name + ";" : w.name + "=" + w.value + ";";
  return s + "]";
}

// A key naming a protocol message from the agent; "" for heartbeats.
std::string KeyOf(const Message& m) {
  if (const auto* a = std::get_if<core::Acquire>(&m)) {
    return "Acquire s" + std::to_string(a->session) + " req" + std::to_string(a->request_id) +
           (a->try_only ? " try" : "");
  }
  if (const auto* r = std::get_if<core::Release>(&m)) {
    return "Release s" + std::to_string(r->session) + " t" + std::to_string(r->token);
  }
  if (const auto* c = std::get_if<core::Commit>(&m)) {
    return "Commit s" + std::to_string(c->session) + " t" + std::to_string(c->token) + " seq" +
           std::to_string(c->seq) + (c->clear_first ? " clear" : "") + " " +
           ShowWrites(c->writes.list());
  }
  if (const auto* c = std::get_if<core::Cancel>(&m)) {
    return "Cancel s" + std::to_string(c->session) + " req" + std::to_string(c->request_id);
  }
  if (std::holds_alternative<core::Heartbeat>(m)) return "";
  return "unexpected " + std::string(core::MessageKindName(core::KindOf(m)));
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += "    " + l + "\n";
  return out.empty() ? "    (none)\n" : out;
}

// ---- the model -----------------------------------------------------------------

struct MWait {
  ThreadId thread = 0;
  Portion portion;
  Time deadline = kNever;
  bool try_only = false;
  bool entitled = false;
};

struct MHold {
  ThreadId thread = 0;
  Portion portion;
  bool committing = false;
  std::vector<AttributeWrite> writes;
};

struct MCommit {
  ThreadId thread = 0;
  std::uint64_t seq = 0;
  std::vector<AttributeWrite> writes;
  bool resent = false;  // the retry timer fired while it was unacknowledged
};

struct MSession {
  LockState state = LockState::kUnlocked;
  std::uint64_t request_id = 0;
  bool try_request = false;
  Time request_sent_at = 0;
  std::uint64_t request_lapses = 0;  // the link's lapse count when it was sent
  Token token = kNoToken;
  bool recalled = false;
  bool queued = false;     // the store said Queued for the outstanding request
  bool contended = false;  // release_when_contended: this tenure was Queued for
  // release_when_contended: 1 = a Release left right behind the last
  // holder's Commit, 2 = and its ReleaseAck came before the CommitAck.
  int pipelined = 0;
  Token recall_seen = kNoToken;
  Token revoked_seen = kNoToken;  // a Revoked that overtook its grant
  std::deque<MWait> waiters;
  std::vector<MHold> holders;
  std::deque<MCommit> commits;
  std::uint64_t next_seq = 1;
  Time commit_retry_at = kNever;

  // The fake store's side of the session.
  AttributeMap store_attributes;
  DataVersion store_version;
  std::optional<Message> last_delivered;
};

struct AgentInput {
  enum class Kind { kNothing, kAsk, kWrite, kFinish, kCancel, kDeliver, kAdvance };
  Kind kind = Kind::kNothing;
  ThreadId thread = 0;
  SessionId session = 1;
  Portion portion;
  Time deadline = kNever;
  bool try_only = false;
  bool commit = false;
  std::string attribute;
  std::string value;
  Message message;
  bool store_applies_head_commit = false;  // kDeliver of a CommitAck
  bool redelivery = false;
  Time dt = 0;
  bool heartbeats_unanswered = false;  // kAdvance: the store is silent meanwhile
};

// What one step must produce.
struct Expected {
  std::vector<ThreadEvent> wakes;
  std::vector<std::string> sends;                  // keys of messages that must leave
  Reason write_reason = Reason::kNone;             // kWrite: Write's answer
  std::optional<std::optional<std::string>> read;  // kWrite: Read's answer, if kNone
  Reason read_reason = Reason::kNone;
};

struct AgentModel {
  bool release_after_each = false;  // idle_release_us == 0
  bool release_when_contended = false;
  // A deliberately wrong model: a recall stops every thread grant, even to the
  // threads that were waiting when the tenure was granted (drops the Progress
  // rule). Used only to show the comparison detects a divergence.
  bool mutant_no_entitlement = false;
  // Also check B5 strictly: a try-lock never waits for a conflicting thread
  // (it once did, when both were asked before the grant).
  bool strict_try_lock = true;
  // Off only to show that the model-free checks catch a planted agent bug
  // by themselves (tests built with LATCHKEY_MUTANTS); the agent's own
  // CheckInvariants(), which aborts, is then skipped too.
  bool compare_with_model = true;

  Time now = 0;
  std::uint64_t last_request_id = 0;

  // B1: the link to the store, as the agent keeps it. The trust runs out in
  // a LapseCmd or SilenceCmd, or when the link goes unused (no session
  // engaged, so no heartbeats): a request made late in an idle spell can see
  // the trust run out before the first heartbeat renews it, and is made again.
  Time trusted_until = 0;
  bool lapsed = false;
  std::uint64_t lapses = 0;
  Time gap_closed_at = 0;
  Time next_heartbeat_at = kNever;
  int engaged = 0;  // sessions not Unlocked
  int held = 0;     // sessions Held
  Token store_last_token = kNoToken;
  std::map<SessionId, MSession> sessions{{1, {}}, {2, {}}};

  Expected x;  // of the current step

  void Wake(ThreadId t, SessionId sid, ThreadEventKind kind, Reason reason = Reason::kNone) {
    x.wakes.push_back(ThreadEvent{t, sid, kind, reason});
  }
  void Send(const Message& m) { x.sends.push_back(KeyOf(m)); }

  static bool AnyHolderConflicts(const MSession& s, const Portion& p) {
    return std::any_of(s.holders.begin(), s.holders.end(),
                       [&](const MHold& h) { return h.portion.ConflictsWith(p); });
  }

  void SetState(MSession& s, LockState next) {
    bool was_engaged = s.state != LockState::kUnlocked;
    bool now_engaged = next != LockState::kUnlocked;
    if (was_engaged && !now_engaged) --engaged;
    if (!was_engaged && now_engaged && engaged++ == 0) next_heartbeat_at = kNever;
    held += (next == LockState::kHeld) - (s.state == LockState::kHeld);
    s.state = next;
  }

  // The store renewed the lease when it got something sent at `sent_at`.
  void Trust(Time sent_at) {
    Time until = core::AddTime(sent_at, kTrustSpan);
    if (sent_at > trusted_until) gap_closed_at = std::max(gap_closed_at, sent_at);
    if (until > trusted_until) {
      trusted_until = until;
      lapsed = false;
    }
  }

  void RequestLock(SessionId sid, MSession& s) {
    s.request_id = ++last_request_id;
    s.try_request =
        std::all_of(s.waiters.begin(), s.waiters.end(), [](const MWait& w) { return w.try_only; });
    if (trusted_until <= now) lapsed = true;  // a new lease starts with this request
    s.request_lapses = lapses;
    s.request_sent_at = now;
    SetState(s, LockState::kRequested);
    if (next_heartbeat_at == kNever) next_heartbeat_at = core::AddTime(now, kHeartbeat);
    s.recalled = false;
    s.queued = false;
    s.revoked_seen = kNoToken;
    Send(core::Acquire{sid, s.request_id, {}, s.try_request});  // R2
  }

  void ReleaseLock(SessionId sid, MSession& s) {
    for (MWait& w : s.waiters) w.entitled = false;
    SetState(s, LockState::kReleasing);
    s.recalled = false;
    Send(core::Release{sid, s.token});
  }

  // B5: every thread whose lock went away is told; waiters ask again. Only
  // the head commit was ever sent: its thread cannot know whether it applied,
  // unless the store refused its only copy (`head_refused`, never resent).
  void LoseLock(SessionId sid, MSession& s, bool head_refused = false) {
    for (const MHold& h : s.holders) {
      Reason r = Reason::kLockLost;
      if (!s.commits.empty() && s.commits.front().thread == h.thread &&
          !(head_refused && !s.commits.front().resent)) {
        r = Reason::kCommitOutcomeUnknown;
      }
      Wake(h.thread, sid, ThreadEventKind::kFailed, r);
    }
    s.holders.clear();
    s.commits.clear();
    s.token = kNoToken;
    s.recall_seen = kNoToken;
    s.recalled = false;
    s.pipelined = 0;
    for (MWait& w : s.waiters) w.entitled = false;
    SetState(s, LockState::kUnlocked);
    if (!s.waiters.empty()) RequestLock(sid, s);
  }

  // R9: FIFO, a waiter never overtakes an earlier conflicting one; after a
  // recall only the entitled waiters (waiting at the grant) are served.
  void Serve(SessionId sid, MSession& s) {
    // No thread joins a tenure that is being given back.
    if (s.state != LockState::kHeld || s.pipelined != 0) return;
    for (std::size_t i = 0; i < s.waiters.size();) {
      const MWait& w = s.waiters[i];
      if (s.recalled && (mutant_no_entitlement || !w.entitled)) break;
      bool blocked = AnyHolderConflicts(s, w.portion);
      for (std::size_t j = 0; j < i && !blocked; ++j) {
        blocked = s.waiters[j].portion.ConflictsWith(w.portion);
      }
      if (blocked) {
        ++i;
        continue;
      }
      s.holders.push_back(MHold{w.thread, w.portion, false, {}});
      Wake(w.thread, sid, ThreadEventKind::kGranted);
      s.waiters.erase(s.waiters.begin() + static_cast<std::ptrdiff_t>(i));
    }
    // B5: a try-lock that cannot be granted now is refused, never left waiting.
    for (auto w = s.waiters.begin(); w != s.waiters.end();) {
      if (w->try_only) {
        Wake(w->thread, sid, ThreadEventKind::kFailed, Reason::kBusy);
        w = s.waiters.erase(w);
      } else {
        ++w;
      }
    }
  }

  // R7: a recalled lock goes back once holders and entitled waiters are done;
  // R6: otherwise it is kept (or, with idle_release 0, returned when unused).
  void MaybeRelease(SessionId sid, MSession& s) {
    if (s.state != LockState::kHeld || !s.holders.empty() || !s.commits.empty()) return;
    if (s.recalled) {
      bool entitled = mutant_no_entitlement
                          ? false
                          : std::any_of(s.waiters.begin(), s.waiters.end(),
                                        [](const MWait& w) { return w.entitled; });
      if (!entitled) ReleaseLock(sid, s);
      return;
    }
    // R8: with release_when_contended, a lock that was Queued for goes back
    // as soon as nobody here wants it.
    if (s.waiters.empty() && (release_after_each || s.contended)) ReleaseLock(sid, s);
  }

  void Progress(SessionId sid, MSession& s) {
    Serve(sid, s);
    MaybeRelease(sid, s);
  }

  void SendHeadCommit(SessionId sid, MSession& s) {
    const MCommit& c = s.commits.front();
    s.commit_retry_at = core::AddTime(now, kRetry);
    Send(core::Commit{sid, s.token, c.seq, false, c.writes});
  }

  void RunDue(bool heartbeat_answered = true) {
    if (engaged > 0 && trusted_until <= now && !lapsed) {
      // B1: the store may have expired the lease and dropped what we asked
      // before: every outstanding request is made again, with a new id.
      lapsed = true;
      ++lapses;
      for (auto& [sid, s] : sessions) {
        if (s.state != LockState::kRequested) continue;
        SetState(s, LockState::kUnlocked);
        RequestLock(sid, s);
      }
    }
    if (held > 0 && trusted_until <= now) {
      // B1: the agent stops trusting every lock before the store revokes it.
      for (auto& [sid, s] : sessions) {
        if (s.state != LockState::kHeld) continue;
        Send(core::Release{sid, s.token});
        LoseLock(sid, s);
      }
    }
    if (engaged > 0 && next_heartbeat_at <= now) {
      // One heartbeat; the test answers it at once (unless the store is
      // silent), which renews the lease.
      next_heartbeat_at = core::AddTime(now, kHeartbeat);
      if (heartbeat_answered) Trust(now);
    }
    for (auto& [sid, s] : sessions) {
      bool removed = false;
      for (auto w = s.waiters.begin(); w != s.waiters.end();) {
        if (w->deadline <= now) {  // B5
          Wake(w->thread, sid, ThreadEventKind::kFailed, Reason::kTimeout);
          w = s.waiters.erase(w);
          removed = true;
        } else {
          ++w;
        }
      }
      if (removed && s.waiters.empty() && s.state == LockState::kRequested) {
        Send(core::Cancel{sid, s.request_id});
        SetState(s, LockState::kUnlocked);
      }
      if (s.state == LockState::kHeld && !s.commits.empty() && s.commit_retry_at <= now) {
        s.commits.front().resent = true;  // B4: resent; its outcome may become unknown
        s.commit_retry_at = core::AddTime(now, kRetry);
      }
      if (removed) Progress(sid, s);
    }
  }

  void OnGranted(SessionId sid, MSession& s, const core::Granted& m) {
    if (s.state == LockState::kHeld && s.token == m.token) return;  // a repeat
    if (s.state == LockState::kHeld && m.request_id == s.request_id && m.token > s.token) {
      // Granted again with a newer token: the store ended the held tenure.
      Send(core::Release{sid, m.token});
      LoseLock(sid, s);
      return;
    }
    if (s.state != LockState::kRequested || m.request_id != s.request_id) {
      Send(core::Release{sid, m.token});  // nobody waits for it
      return;
    }
    // B1: granted under a lease that may have run out since it was asked
    // for, or already revoked: give it back, ask again.
    if (gap_closed_at > core::AddTime(s.request_sent_at, kTrustSpan) ||
        s.request_lapses != lapses || m.token <= s.revoked_seen) {
      Send(core::Release{sid, m.token});
      SetState(s, LockState::kUnlocked);
      RequestLock(sid, s);
      return;
    }
    Trust(s.request_sent_at);
    if (now >= trusted_until) {  // the lease may be over by our clock already
      Send(core::Release{sid, m.token});
      SetState(s, LockState::kUnlocked);
      if (!s.waiters.empty()) RequestLock(sid, s);
      return;
    }
    SetState(s, LockState::kHeld);
    s.token = m.token;
    s.next_seq = 1;
    for (MWait& w : s.waiters) w.entitled = true;  // Progress rule
    s.recalled = s.recall_seen >= m.token;
    s.recall_seen = kNoToken;
    s.contended = release_when_contended && s.queued;
    s.pipelined = 0;
    Progress(sid, s);
  }

  void OnRecall(SessionId sid, MSession& s, const core::Recall& m) {
    switch (s.state) {
      case LockState::kHeld:
        if (m.token == s.token) {
          s.recalled = true;
          Progress(sid, s);
        } else if (m.token > s.token) {
          s.recall_seen = std::max(s.recall_seen, m.token);
        }
        break;
      case LockState::kRequested:  // the grant may still be on its way
        s.recall_seen = std::max(s.recall_seen, m.token);
        break;
      case LockState::kReleasing:
      case LockState::kUnlocked:
        if (s.state == LockState::kUnlocked || m.token != s.token) {
          Send(core::Release{sid, m.token});
        }
        break;
    }
  }

  void OnDeliver(SessionId sid, MSession& s, const Message& msg) {
    if (const auto* g = std::get_if<core::Granted>(&msg)) {
      store_last_token = std::max(store_last_token, g->token);
      OnGranted(sid, s, *g);
    } else if (const auto* q = std::get_if<core::Queued>(&msg)) {
      // Buffered by the store: nothing changes for the threads, but the
      // tenure that follows was taken from another process.
      if (s.state == LockState::kRequested && q->request_id == s.request_id) {
        s.queued = true;
        Trust(s.request_sent_at);
      }
    } else if (const auto* b = std::get_if<core::Busy>(&msg)) {
      if (s.state != LockState::kRequested || b->request_id != s.request_id) return;
      Trust(s.request_sent_at);
      for (auto w = s.waiters.begin(); w != s.waiters.end();) {
        if (w->try_only) {
          Wake(w->thread, sid, ThreadEventKind::kFailed, Reason::kBusy);
          w = s.waiters.erase(w);
        } else {
          ++w;
        }
      }
      SetState(s, LockState::kUnlocked);
      if (!s.waiters.empty()) RequestLock(sid, s);
    } else if (const auto* r = std::get_if<core::Recall>(&msg)) {
      OnRecall(sid, s, *r);
    } else if (const auto* ra = std::get_if<core::ReleaseAck>(&msg)) {
      if (s.state == LockState::kHeld && s.pipelined == 1 && s.token == ra->token) {
        s.pipelined = 2;  // the tenure ends when the commit's answer comes
        return;
      }
      if (s.state != LockState::kReleasing || s.token != ra->token) return;
      SetState(s, LockState::kUnlocked);
      s.token = kNoToken;
      if (!s.waiters.empty()) RequestLock(sid, s);
    } else if (const auto* ca = std::get_if<core::CommitAck>(&msg)) {
      if (s.state != LockState::kHeld || s.token != ca->token || s.commits.empty() ||
          s.commits.front().seq != ca->seq) {
        return;
      }
      MCommit done = s.commits.front();
      s.commits.pop_front();
      auto h = std::find_if(s.holders.begin(), s.holders.end(),
                            [&](const MHold& x) { return x.thread == done.thread; });
      s.holders.erase(h);
      Wake(done.thread, sid, ThreadEventKind::kCommitted);
      s.commit_retry_at = kNever;
      if (s.pipelined != 0 && s.commits.empty() && s.holders.empty()) {
        // R8: the Release that left with this commit ends the tenure.
        for (MWait& w : s.waiters) w.entitled = false;
        s.recalled = false;
        if (s.pipelined == 2) {
          SetState(s, LockState::kUnlocked);
          s.token = kNoToken;
          if (!s.waiters.empty()) RequestLock(sid, s);
        } else {
          SetState(s, LockState::kReleasing);
        }
        s.pipelined = 0;
        return;
      }
      if (!s.commits.empty()) SendHeadCommit(sid, s);
      Progress(sid, s);
    } else if (const auto* rv = std::get_if<core::Revoked>(&msg)) {
      if (s.state == LockState::kRequested) {  // its grant may still come: never use it
        s.revoked_seen = std::max(s.revoked_seen, rv->token);
        return;
      }
      if (s.token != rv->token) return;
      if (s.state == LockState::kHeld) {
        LoseLock(sid, s);
      } else if (s.state == LockState::kReleasing) {
        SetState(s, LockState::kUnlocked);
        s.token = kNoToken;
        if (!s.waiters.empty()) RequestLock(sid, s);
      }
    } else if (const auto* rj = std::get_if<core::Rejected>(&msg)) {
      if (static_cast<MessageKind>(rj->what) == MessageKind::kCommit &&
          s.state == LockState::kHeld && s.token == rj->token) {
        // R1: the store no longer takes our token. After a pipelined Release
        // the refusal may answer a duplicate of a commit that applied.
        LoseLock(sid, s,
                 !s.commits.empty() && s.commits.front().seq == rj->seq && s.pipelined == 0);
      }
    }
  }

  // A thread's buffered write: only in an exclusive portion it holds.
  static Reason Write(MSession& s, const AgentInput& in) {
    auto h = std::find_if(s.holders.begin(), s.holders.end(),
                          [&](const MHold& y) { return y.thread == in.thread; });
    if (h == s.holders.end() || h->committing) return Reason::kNotLocked;
    if (!h->portion.Writable(in.attribute)) return Reason::kNotInPortion;
    h->writes.push_back(AttributeWrite{in.attribute, in.value, false});
    return Reason::kNone;
  }

  Expected Step(const AgentInput& in) {
    x = Expected{};
    if (in.kind == AgentInput::Kind::kNothing) return x;
    MSession& s = sessions[in.session];
    switch (in.kind) {
      case AgentInput::Kind::kNothing:
        break;
      case AgentInput::Kind::kAdvance:
        now += in.dt;
        RunDue(!in.heartbeats_unanswered);
        break;
      case AgentInput::Kind::kWrite: {
        x.write_reason = Write(s, in);
        auto h = std::find_if(s.holders.begin(), s.holders.end(),
                              [&](const MHold& y) { return y.thread == in.thread; });
        // Read after the write: own writes first (a committing thread's
        // writes moved into its commit), then the cache, which while held
        // equals what the store committed.
        if (h == s.holders.end()) {
          x.read_reason = Reason::kNotLocked;
        } else if (!h->portion.Contains(in.attribute)) {
          x.read_reason = Reason::kNotInPortion;
        } else {
          std::optional<std::string> v;
          auto c = s.store_attributes.find(in.attribute);
          if (c != s.store_attributes.end()) v = c->second;
          for (const AttributeWrite& w : h->writes) {
            if (w.name == in.attribute) v = w.value;
          }
          x.read = v;
        }
        break;
      }
      case AgentInput::Kind::kAsk: {
        RunDue();
        bool known = std::any_of(s.holders.begin(), s.holders.end(),
                                 [&](const MHold& h) { return h.thread == in.thread; }) ||
                     std::any_of(s.waiters.begin(), s.waiters.end(),
                                 [&](const MWait& w) { return w.thread == in.thread; });
        if (known) {
          Wake(in.thread, in.session, ThreadEventKind::kFailed, Reason::kAlreadyWaiting);
          break;
        }
        if (in.try_only) {  // B5: never wait for another process or thread
          bool local_busy = s.state == LockState::kHeld &&
                            (s.recalled || AnyHolderConflicts(s, in.portion) ||
                             std::any_of(s.waiters.begin(), s.waiters.end(), [&](const MWait& w) {
                               return w.portion.ConflictsWith(in.portion);
                             }));
          bool remote_busy = s.state == LockState::kReleasing ||
                             (s.state == LockState::kHeld && s.pipelined != 0) ||
                             (s.state == LockState::kRequested && !s.try_request);
          if (local_busy || remote_busy) {
            Wake(in.thread, in.session, ThreadEventKind::kFailed, Reason::kBusy);
            break;
          }
        }
        s.waiters.push_back(MWait{in.thread, in.portion, in.deadline, in.try_only, false});
        if (s.state == LockState::kUnlocked) RequestLock(in.session, s);
        Progress(in.session, s);
        break;
      }
      case AgentInput::Kind::kFinish: {
        if (!in.attribute.empty()) x.write_reason = Write(s, in);
        RunDue();
        auto h = std::find_if(s.holders.begin(), s.holders.end(),
                              [&](const MHold& y) { return y.thread == in.thread; });
        if (h == s.holders.end() || h->committing) {
          Wake(in.thread, in.session, ThreadEventKind::kFailed, Reason::kNotLocked);
          break;
        }
        if (!in.commit || h->writes.empty()) {
          Wake(in.thread, in.session,
               in.commit ? ThreadEventKind::kCommitted : ThreadEventKind::kRolledBack);
          s.holders.erase(h);
          Progress(in.session, s);
          break;
        }
        h->committing = true;
        s.commits.push_back(MCommit{in.thread, s.next_seq++, h->writes, false});
        h->writes.clear();
        if (s.commits.size() == 1) {
          SendHeadCommit(in.session, s);  // R1
          // R8: the last thread of a contended tenure commits: the Release
          // leaves right behind the Commit.
          if (s.contended && s.holders.size() == 1 && s.waiters.empty()) {
            s.pipelined = 1;
            Send(core::Release{in.session, s.token});
          }
        }
        break;
      }
      case AgentInput::Kind::kCancel: {
        RunDue();
        auto w = std::find_if(s.waiters.begin(), s.waiters.end(),
                              [&](const MWait& y) { return y.thread == in.thread; });
        if (w != s.waiters.end()) {
          s.waiters.erase(w);
          Wake(in.thread, in.session, ThreadEventKind::kFailed, Reason::kCancelled);
          if (s.waiters.empty() && s.state == LockState::kRequested) {
            Send(core::Cancel{in.session, s.request_id});  // nobody wants it any more
            SetState(s, LockState::kUnlocked);
          }
          Progress(in.session, s);
        }
        break;
      }
      case AgentInput::Kind::kDeliver: {
        RunDue();
        if (in.store_applies_head_commit) {
          // The store applies the commit before it acknowledges it.
          for (const AttributeWrite& w : s.commits.front().writes) {
            s.store_attributes[w.name] = w.value;
          }
          s.store_version = {s.token, s.commits.front().seq};
        }
        if (!in.redelivery) s.last_delivered = in.message;
        OnDeliver(in.session, s, in.message);
        break;
      }
    }
    return x;
  }
};

// ---- the system under test -------------------------------------------------------

struct Track {
  enum class Status { kIdle, kWaiting, kHolding };
  Status status = Status::kIdle;
  Portion portion;
};

struct AgentSut {
  core::ProcessAgent agent;
  Time now = 0;
  std::map<std::pair<ThreadId, SessionId>, Track> tracks;  // built only from wakes

  // B1, checked without the model: when the agent sent each message whose
  // answer renews its lease (no Reclaim here: the test's store never restarts),
  // and the latest send time the store has answered.
  // A thread may be granted only before that time plus the trust span.
  std::map<std::pair<SessionId, std::uint64_t>, Time> acquire_sent;  // by request id
  std::map<std::uint64_t, Time> heartbeat_sent;                      // by seq
  std::optional<Time> renewed_at;

  AgentSut(bool release_after_each, bool release_when_contended)
      : agent(Config(release_after_each, release_when_contended)) {}

  Effects Deliver(Message m) {
    NoteAnswer(m);
    Effects fx = agent.OnMessage(now, latchkey::testing::FromStore(kSelf, std::move(m)));
    NoteSendsAndCheckGrants(fx);
    return fx;
  }

  void Renewed(Time sent_at) { renewed_at = std::max(renewed_at.value_or(sent_at), sent_at); }

  void NoteAnswer(const Message& m) {
    auto acquire = [&](SessionId sid, std::uint64_t request_id) {
      auto it = acquire_sent.find({sid, request_id});
      if (it != acquire_sent.end()) Renewed(it->second);
    };
    if (const auto* g = std::get_if<core::Granted>(&m)) acquire(g->session, g->request_id);
    if (const auto* q = std::get_if<core::Queued>(&m)) acquire(q->session, q->request_id);
    if (const auto* b = std::get_if<core::Busy>(&m)) acquire(b->session, b->request_id);
    if (const auto* h = std::get_if<core::HeartbeatAck>(&m)) {
      auto it = heartbeat_sent.find(h->seq);
      if (it != heartbeat_sent.end()) Renewed(it->second);
    }
  }

  void NoteSendsAndCheckGrants(const Effects& fx) {
    for (const Envelope& e : fx.send) {
      if (const auto* a = std::get_if<core::Acquire>(&e.message)) {
        acquire_sent[{a->session, a->request_id}] = now;
      } else if (const auto* h = std::get_if<core::Heartbeat>(&e.message)) {
        heartbeat_sent[h->seq] = now;
      }
    }
    for (const ThreadEvent& w : fx.wake) {
      if (w.kind != ThreadEventKind::kGranted) continue;
      if (!renewed_at || now >= core::AddTime(*renewed_at, kTrustSpan)) {
        RC_FAIL("thread " + std::to_string(w.thread) + " granted session " +
                std::to_string(w.session) + " at " + std::to_string(now) +
                (renewed_at ? ", but the store last answered a message sent at " +
                                  std::to_string(*renewed_at) + ": trusted only until " +
                                  std::to_string(core::AddTime(*renewed_at, kTrustSpan))
                            : ", but the store never answered a message that renews the lease") +
                " (B1)");
      }
    }
  }

  // Applies the input; on kWrite fills the write and read answers.
  Effects Apply(const AgentInput& in, Reason* write_reason, core::ReadResult* read) {
    if (in.kind == AgentInput::Kind::kDeliver) return Deliver(in.message);
    Effects fx = ApplyLocal(in, write_reason, read);
    NoteSendsAndCheckGrants(fx);
    return fx;
  }

  Effects ApplyLocal(const AgentInput& in, Reason* write_reason, core::ReadResult* read) {
    switch (in.kind) {
      case AgentInput::Kind::kNothing:
        return Effects{};
      case AgentInput::Kind::kAdvance:
        now += in.dt;
        return agent.OnTick(now);
      case AgentInput::Kind::kAsk: {
        Track& t = tracks[{in.thread, in.session}];
        if (t.status == Track::Status::kIdle) {
          t.status = Track::Status::kWaiting;
          t.portion = in.portion;
        }
        return agent.OnThreadAsk(now, in.thread, in.session, in.portion, in.deadline, in.try_only);
      }
      case AgentInput::Kind::kWrite:
        *write_reason = agent.Write(in.thread, in.session, in.attribute, in.value);
        *read = agent.Read(in.thread, in.session, in.attribute);
        return Effects{};
      case AgentInput::Kind::kFinish:
        if (!in.attribute.empty()) {
          *write_reason = agent.Write(in.thread, in.session, in.attribute, in.value);
        }
        return agent.OnThreadFinish(now, in.thread, in.session, in.commit);
      case AgentInput::Kind::kCancel:
        return agent.OnThreadCancel(now, in.thread, in.session);
      case AgentInput::Kind::kDeliver:
        break;  // Apply hands deliveries to Deliver
    }
    return Effects{};
  }
};

std::string ShowState(LockState s) { return std::string(core::LockStateName(s)); }

// The store answers every heartbeat at once (so the lease holds in small time
// steps); the answer itself must change nothing.
void AnswerHeartbeats(AgentSut& sut, const Effects& fx, bool check_invariants) {
  for (const Envelope& e : fx.send) {
    if (const auto* h = std::get_if<core::Heartbeat>(&e.message)) {
      Effects ack = sut.Deliver(core::HeartbeatAck{h->seq});
      RC_ASSERT(ack.wake.empty());
      RC_ASSERT(ack.send.empty());
      if (check_invariants) sut.agent.CheckInvariants();
    }
  }
}

// Model-free checks of the wakes: each thread's ask is answered in turn,
// nobody is granted twice, and no two holders (as the threads see it) conflict.
void TrackWakes(AgentSut& sut, const Effects& fx) {
  std::set<std::tuple<ThreadId, SessionId, int, int>> seen;
  for (const ThreadEvent& w : fx.wake) {
    if (!seen.insert({w.thread, w.session, static_cast<int>(w.kind), static_cast<int>(w.reason)})
             .second) {
      RC_FAIL("duplicated wake " + ShowWake(w));
    }
    Track& t = sut.tracks[{w.thread, w.session}];
    using S = Track::Status;
    auto expect = [&](bool ok) {
      if (!ok) RC_FAIL("wake out of turn: " + ShowWake(w));
    };
    switch (w.kind) {
      case ThreadEventKind::kGranted:
        expect(t.status == S::kWaiting);
        for (const auto& [key, other] : sut.tracks) {
          if (key.second == w.session && key.first != w.thread && other.status == S::kHolding &&
              other.portion.ConflictsWith(t.portion)) {
            RC_FAIL("thread " + std::to_string(w.thread) + " granted " + ShowPortion(t.portion) +
                    " while thread " + std::to_string(key.first) + " holds " +
                    ShowPortion(other.portion) + " in session " + std::to_string(w.session));
          }
        }
        t.status = S::kHolding;
        break;
      case ThreadEventKind::kCommitted:
      case ThreadEventKind::kRolledBack:
        expect(t.status == S::kHolding);
        t.status = S::kIdle;
        break;
      case ThreadEventKind::kFailed:
        switch (w.reason) {
          case Reason::kAlreadyWaiting:
            expect(t.status != S::kIdle);
            break;
          case Reason::kNotLocked:
            break;  // answers the Finish call itself
          case Reason::kBusy:
          case Reason::kTimeout:
          case Reason::kCancelled:
            expect(t.status == S::kWaiting);
            t.status = S::kIdle;
            break;
          case Reason::kLockLost:
          case Reason::kCommitOutcomeUnknown:
            expect(t.status == S::kHolding);
            t.status = S::kIdle;
            break;
          default:
            RC_FAIL("unexpected failure " + ShowWake(w));
        }
        break;
    }
  }
}

std::vector<std::string> SortedWakes(std::vector<ThreadEvent> ws) {
  std::vector<std::string> out;
  for (const ThreadEvent& w : ws) out.push_back(ShowWake(w));
  std::sort(out.begin(), out.end());
  return out;
}

void CheckStep(const AgentModel& m0, const AgentModel& m1, const AgentInput& in, const Expected& x,
               const Effects& fx, AgentSut& sut, Reason write_reason,
               const core::ReadResult& read) {
  if (m1.compare_with_model) sut.agent.CheckInvariants();
  RC_ASSERT(sut.now == m1.now);
  if (!in.heartbeats_unanswered) AnswerHeartbeats(sut, fx, m1.compare_with_model);
  TrackWakes(sut, fx);
  if (!m1.compare_with_model) return;

  // Wakes, exactly.
  std::vector<std::string> want = SortedWakes(x.wakes);
  std::vector<std::string> got = SortedWakes(fx.wake);
  if (want != got) {
    RC_FAIL("wakes differ from the model's\n  expected:\n" + Join(want) + "  actual:\n" +
            Join(got));
  }

  RC_ASSERT(write_reason == x.write_reason);
  if (in.kind == AgentInput::Kind::kWrite) {
    RC_ASSERT(read.reason == x.read_reason);
    if (x.read_reason == Reason::kNone) {
      if (read.value != *x.read) {
        RC_FAIL("read of " + in.attribute + " gave " + read.value.value_or("(none)") +
                ", model expects " + x.read->value_or("(none)"));
      }
    }
  }

  // Messages: the must-send ones left; anything else is a heartbeat or a
  // retransmission of something outstanding before or after the step.
  std::multiset<std::string> sent;
  for (const Envelope& e : fx.send) {
    std::string k = KeyOf(e.message);
    if (!k.empty()) sent.insert(k);
  }
  for (const std::string& k : x.sends) {
    auto it = sent.find(k);
    if (it == sent.end()) {
      std::vector<std::string> all(sent.begin(), sent.end());
      RC_FAIL("agent did not send " + k + "; sent:\n" + Join(all));
    }
    sent.erase(it);
  }
  std::set<std::string> outstanding;
  for (const AgentModel* m : {&m0, &m1}) {
    for (const auto& [sid, s] : m->sessions) {
      if (s.state == LockState::kRequested) {
        outstanding.insert(KeyOf(core::Acquire{sid, s.request_id, {}, s.try_request}));
      }
      if (s.state == LockState::kReleasing) outstanding.insert(KeyOf(core::Release{sid, s.token}));
      if (s.state == LockState::kHeld && !s.commits.empty()) {
        const MCommit& c = s.commits.front();
        outstanding.insert(KeyOf(core::Commit{sid, s.token, c.seq, false, c.writes}));
      }
    }
  }
  for (const std::string& k : sent) {
    if (outstanding.count(k) == 0 || sent.count(k) > 1) {
      RC_FAIL("agent sent unexpected " + k);
    }
  }

  // State, against the model.
  const core::AgentState& st = sut.agent.state();
  RC_ASSERT(st.last_request_id == m1.last_request_id);
  for (const auto& [sid, ms] : m1.sessions) {
    auto it = st.sessions.find(sid);
    core::AgentSession empty;
    const core::AgentSession& as = it == st.sessions.end() ? empty : it->second;
    std::string where = "session " + std::to_string(sid) + ": ";
    if (as.state != ms.state) {
      RC_FAIL(where + "state " + ShowState(as.state) + ", model " + ShowState(ms.state));
    }
    if (ms.state == LockState::kRequested) {
      RC_ASSERT(as.request_id == ms.request_id);
      RC_ASSERT(as.try_request == ms.try_request);
    }
    if (ms.state == LockState::kHeld || ms.state == LockState::kReleasing) {
      RC_ASSERT(as.token == ms.token);
    }
    RC_ASSERT(as.recalled == ms.recalled);
    RC_ASSERT(as.recall_seen == ms.recall_seen);
    RC_ASSERT(static_cast<int>(as.pipelined) == ms.pipelined);
    std::string agent_waiters;
    std::string model_waiters;
    for (const core::ThreadWait& w : as.waiters) {
      agent_waiters += std::to_string(w.thread) + ShowPortion(w.portion) + (w.entitled ? "E" : "") +
                       (w.try_only ? "T" : "") + " ";
    }
    for (const MWait& w : ms.waiters) {
      model_waiters += std::to_string(w.thread) + ShowPortion(w.portion) + (w.entitled ? "E" : "") +
                       (w.try_only ? "T" : "") + " ";
    }
    if (agent_waiters != model_waiters) {
      RC_FAIL(where + "waiters [" + agent_waiters + "] model [" + model_waiters + "]");
    }
    std::string agent_holders;
    std::string model_holders;
    for (const core::ThreadHold& h : as.holders) {
      agent_holders += std::to_string(h.thread) + ShowPortion(h.portion) +
                       (h.committing ? "C" : "") + ShowWrites(h.writes) + " ";
    }
    for (const MHold& h : ms.holders) {
      model_holders += std::to_string(h.thread) + ShowPortion(h.portion) +
                       (h.committing ? "C" : "") + ShowWrites(h.writes) + " ";
    }
    if (agent_holders != model_holders) {
      RC_FAIL(where + "holders [" + agent_holders + "] model [" + model_holders + "]");
    }
    RC_ASSERT(as.commits.size() == ms.commits.size());
    for (std::size_t i = 0; i < ms.commits.size(); ++i) {
      RC_ASSERT(as.commits[i].thread == ms.commits[i].thread);
      RC_ASSERT(as.commits[i].seq == ms.commits[i].seq);
      RC_ASSERT(as.commits[i].resent == ms.commits[i].resent);
    }

    // Model-free: R7, a recalled lock whose holders and entitled waiters are
    // done has been released; a held lock is trusted (B1, the lease holds).
    if (as.state == LockState::kHeld) {
      bool entitled = std::any_of(as.waiters.begin(), as.waiters.end(),
                                  [](const core::ThreadWait& w) { return w.entitled; });
      if (as.recalled && as.holders.empty() && as.commits.empty() && !entitled) {
        RC_FAIL(where + "recalled, nothing left to serve, but not released");
      }
      RC_ASSERT(sut.agent.Trusts(sut.now, sid));
      // B5: a try-lock in a held session is granted at once or fails kBusy;
      // it never waits for another thread.
      if (m1.strict_try_lock) {
        for (const core::ThreadWait& w : as.waiters) {
          if (w.try_only) {
            RC_FAIL(where + "try-lock of thread " + std::to_string(w.thread) + " for " +
                    ShowPortion(w.portion) + " waits for a conflicting thread");
          }
        }
      }
    }
  }
}

// ---- running a property -------------------------------------------------------

using latchkey::testing::Describe;
using latchkey::testing::ExpectHolds;
using latchkey::testing::RunProperty;

// ---- commands ----------------------------------------------------------------------

class AgentCommand : public rc::state::Command<AgentModel, AgentSut> {
 public:
  virtual AgentInput Resolve(const AgentModel& m) const = 0;
  virtual std::string Describe() const = 0;

  void apply(AgentModel& m) const override { m.Step(Resolve(m)); }

  void run(const AgentModel& m0, AgentSut& sut) const override {
    AgentInput in = Resolve(m0);
    AgentModel m1 = m0;
    Expected x = m1.Step(in);
    Reason write_reason = Reason::kNone;
    core::ReadResult read;
    Effects fx = sut.Apply(in, &write_reason, &read);
    CheckStep(m0, m1, in, x, fx, sut, write_reason, read);
  }

  void show(std::ostream& os) const override { os << Describe(); }
};

rc::Gen<SessionId> GenSession() { return rc::gen::weightedElement<SessionId>({{3, 1}, {1, 2}}); }
rc::Gen<ThreadId> GenThread() { return rc::gen::inRange<ThreadId>(1, kThreads + 1); }

// Mostly a (session, thread) that holds (or, with `waiting`, waits); else any.
std::pair<SessionId, ThreadId> PickThread(const AgentModel& m, bool waiting) {
  std::vector<std::pair<SessionId, ThreadId>> candidates;
  for (const auto& [sid, s] : m.sessions) {
    if (waiting) {
      for (const MWait& w : s.waiters) candidates.push_back({sid, w.thread});
    } else {
      for (const MHold& h : s.holders) candidates.push_back({sid, h.thread});
    }
  }
  if (candidates.empty()) {
    // Seldom useful now: usually generate another command instead.
    RC_PRE(*rc::gen::weightedElement<bool>({{1, true}, {4, false}}));
  } else if (*rc::gen::weightedElement<bool>({{5, true}, {1, false}})) {
    return *rc::gen::elementOf(candidates);
  }
  return {*GenSession(), *GenThread()};
}

// Mostly a session for which `fits` holds; else any.
template <class Pred>
SessionId PickSession(const AgentModel& m, Pred fits) {
  std::vector<SessionId> candidates;
  for (const auto& [sid, s] : m.sessions) {
    if (fits(s)) candidates.push_back(sid);
  }
  if (!candidates.empty() && *rc::gen::weightedElement<bool>({{4, true}, {1, false}})) {
    return *rc::gen::elementOf(candidates);
  }
  return *GenSession();
}

// Mostly an attribute the thread's portion lets it write; else any.
std::string PickAttribute(const AgentModel& m, SessionId sid, ThreadId thread) {
  for (const MHold& h : m.sessions.at(sid).holders) {
    if (h.thread != thread || h.portion.mode != Mode::kExclusive || h.portion.whole) continue;
    if (*rc::gen::weightedElement<bool>({{4, true}, {1, false}})) {
      return *rc::gen::elementOf(h.portion.attributes);
    }
  }
  return *rc::gen::element<std::string>("a", "b", "c");
}

rc::Gen<Portion> GenPortion() {
  return rc::gen::exec([] {
    Mode mode = *rc::gen::weightedElement<Mode>({{2, Mode::kExclusive}, {1, Mode::kShared}});
    if (*rc::gen::weightedElement<bool>({{1, true}, {7, false}})) return Portion::Whole(mode);
    // Mostly one attribute, so that disjoint holders are common.
    std::vector<std::string> attributes{*rc::gen::element<std::string>("a", "b", "c")};
    if (*rc::gen::weightedElement<bool>({{1, true}, {2, false}})) {
      attributes.push_back(*rc::gen::element<std::string>("a", "b", "c"));
    }
    return Portion::Of(attributes, mode);
  });
}

AgentInput Deliver(SessionId sid, Message m) {
  AgentInput in;
  in.kind = AgentInput::Kind::kDeliver;
  in.session = sid;
  in.message = std::move(m);
  return in;
}

// R9 / B5: a thread asks for a portion.
class AskCmd : public AgentCommand {
 public:
  ThreadId thread = *GenThread();
  SessionId sid = *GenSession();
  Portion portion = *GenPortion();
  Time deadline_in = *rc::gen::weightedOneOf<Time>(
      {{3, rc::gen::just(kNever)}, {1, rc::gen::inRange<Time>(50'000, 700'000)}});
  bool try_only = *rc::gen::weightedElement<bool>({{5, false}, {1, true}});

  AgentInput Resolve(const AgentModel& m) const override {
    AgentInput in;
    in.kind = AgentInput::Kind::kAsk;
    in.thread = thread;
    in.session = sid;
    in.portion = portion;
    in.deadline = deadline_in == kNever ? kNever : m.now + deadline_in;
    in.try_only = try_only;
    return in;
  }
  std::string Describe() const override {
    return "Ask thread " + std::to_string(thread) + " s" + std::to_string(sid) + " " +
           ShowPortion(portion) +
           (deadline_in == kNever ? "" : " deadline +" + std::to_string(deadline_in) + "us") +
           (try_only ? " try" : "");
  }
};

// A holder writes an attribute (then reads it back).
class WriteCmd : public AgentCommand {
 public:
  SessionId sid = 0;
  ThreadId thread = 0;
  std::string attribute;
  std::string value = *rc::gen::element<std::string>("1", "2", "3");

  explicit WriteCmd(const AgentModel& m) {
    std::tie(sid, thread) = PickThread(m, false);
    attribute = PickAttribute(m, sid, thread);
  }
  AgentInput Resolve(const AgentModel&) const override {
    AgentInput in;
    in.kind = AgentInput::Kind::kWrite;
    in.thread = thread;
    in.session = sid;
    in.attribute = attribute;
    in.value = value;
    return in;
  }
  std::string Describe() const override {
    return "Write thread " + std::to_string(thread) + " s" + std::to_string(sid) + " " + attribute +
           "=" + value;
  }
};

// The thread's request ends: commit or roll back.
// The thread's request ends: commit or roll back; often after one last write.
class FinishCmd : public AgentCommand {
 public:
  SessionId sid = 0;
  ThreadId thread = 0;
  bool commit = *rc::gen::weightedElement<bool>({{3, true}, {1, false}});
  std::string attribute;  // empty: no write first
  std::string value = *rc::gen::element<std::string>("4", "5");

  explicit FinishCmd(const AgentModel& m) {
    std::tie(sid, thread) = PickThread(m, false);
    attribute = PickAttribute(m, sid, thread);
    if (*rc::gen::weightedElement<bool>({{1, true}, {1, false}})) attribute.clear();
  }
  AgentInput Resolve(const AgentModel&) const override {
    AgentInput in;
    in.kind = AgentInput::Kind::kFinish;
    in.thread = thread;
    in.session = sid;
    in.commit = commit;
    in.attribute = attribute;
    in.value = value;
    return in;
  }
  std::string Describe() const override {
    return std::string(commit ? "Commit" : "Rollback") + " thread " + std::to_string(thread) +
           " s" + std::to_string(sid) +
           (attribute.empty() ? "" : " after writing " + attribute + "=" + value);
  }
};

// A waiting thread gives up.
class CancelCmd : public AgentCommand {
 public:
  SessionId sid = 0;
  ThreadId thread = 0;

  explicit CancelCmd(const AgentModel& m) { std::tie(sid, thread) = PickThread(m, true); }
  AgentInput Resolve(const AgentModel&) const override {
    AgentInput in;
    in.kind = AgentInput::Kind::kCancel;
    in.thread = thread;
    in.session = sid;
    return in;
  }
  std::string Describe() const override {
    return "Cancel thread " + std::to_string(thread) + " s" + std::to_string(sid);
  }
};

// Store: grants the outstanding request (or, when none, a stale grant).
class GrantCmd : public AgentCommand {
 public:
  SessionId sid = 0;

  explicit GrantCmd(const AgentModel& m)
      : sid(PickSession(m, [](const MSession& s) { return s.state == LockState::kRequested; })) {}

  AgentInput Resolve(const AgentModel& m) const override {
    const MSession& s = m.sessions.at(sid);
    return Deliver(sid, core::Granted{sid, m.store_last_token + 1, s.request_id, s.store_version,
                                      true, s.store_attributes});
  }
  std::string Describe() const override { return "Store grants s" + std::to_string(sid); }
};

// Store: the request is buffered behind another process.
class QueuedCmd : public AgentCommand {
 public:
  SessionId sid = 0;

  explicit QueuedCmd(const AgentModel& m)
      : sid(PickSession(m, [](const MSession& s) { return s.state == LockState::kRequested; })) {}

  AgentInput Resolve(const AgentModel& m) const override {
    return Deliver(sid, core::Queued{sid, m.sessions.at(sid).request_id, 1});
  }
  std::string Describe() const override { return "Store queues s" + std::to_string(sid); }
};

// Store: a try request finds the session held (only sent for a try request).
class BusyCmd : public AgentCommand {
 public:
  SessionId sid = 0;

  explicit BusyCmd(const AgentModel& m)
      : sid(PickSession(m, [](const MSession& s) {
          return s.state == LockState::kRequested && s.try_request;
        })) {}

  AgentInput Resolve(const AgentModel& m) const override {
    const MSession& s = m.sessions.at(sid);
    if (s.state != LockState::kRequested || !s.try_request) return AgentInput{};
    return Deliver(sid, core::Busy{sid, s.request_id});
  }
  std::string Describe() const override { return "Store busy s" + std::to_string(sid); }
};

enum class RecallChoice { kCurrent, kNext, kStale };

// R7: the store asks for the lock back: for the current token, for the token
// it is about to grant (a recall that overtakes its grant), or a stale one.
class RecallCmd : public AgentCommand {
 public:
  SessionId sid = 0;
  RecallChoice which = *rc::gen::weightedElement<RecallChoice>(
      {{4, RecallChoice::kCurrent}, {2, RecallChoice::kNext}, {1, RecallChoice::kStale}});

  explicit RecallCmd(const AgentModel& m)
      : sid(PickSession(m, [](const MSession& s) { return s.state != LockState::kUnlocked; })) {}

  AgentInput Resolve(const AgentModel& m) const override {
    const MSession& s = m.sessions.at(sid);
    Token current = s.token != kNoToken ? s.token : std::max<Token>(m.store_last_token, 1);
    Token t = which == RecallChoice::kCurrent ? current
              : which == RecallChoice::kNext  ? m.store_last_token + 1
                                              : std::max<Token>(current, 2) - 1;
    return Deliver(sid, core::Recall{sid, t});
  }
  std::string Describe() const override {
    const char* names[] = {"current", "next", "stale"};
    return "Store recalls s" + std::to_string(sid) + " token " + names[static_cast<int>(which)];
  }
};

// Store: applies and acknowledges the pending commit.
class AckCommitCmd : public AgentCommand {
 public:
  SessionId sid = 0;

  explicit AckCommitCmd(const AgentModel& m)
      : sid(PickSession(m, [](const MSession& s) { return !s.commits.empty(); })) {}

  AgentInput Resolve(const AgentModel& m) const override {
    const MSession& s = m.sessions.at(sid);
    if (s.state == LockState::kHeld && !s.commits.empty()) {
      AgentInput in = Deliver(sid, core::CommitAck{sid, s.token, s.commits.front().seq});
      in.store_applies_head_commit = true;
      return in;
    }
    // Nothing pending: an ack for no commit the agent sent (a store acks a
    // seq only after applying it, so never a later one), to be ignored. Late
    // duplicates of real acks come from RedeliverCmd.
    return Deliver(sid, core::CommitAck{sid, s.token, 0});
  }
  std::string Describe() const override { return "Store acks commit s" + std::to_string(sid); }
};

// Store: acknowledges the release.
class AckReleaseCmd : public AgentCommand {
 public:
  SessionId sid = 0;

  explicit AckReleaseCmd(const AgentModel& m)
      : sid(PickSession(m, [](const MSession& s) { return Releasing(s); })) {}

  // Also a Release that left behind a commit still unanswered (its ack may
  // overtake the CommitAck).
  static bool Releasing(const MSession& s) {
    return s.state == LockState::kReleasing || (s.state == LockState::kHeld && s.pipelined == 1);
  }

  AgentInput Resolve(const AgentModel& m) const override {
    const MSession& s = m.sessions.at(sid);
    Token t = Releasing(s) ? s.token : std::max<Token>(m.store_last_token, 1);
    return Deliver(sid, core::ReleaseAck{sid, t});
  }
  std::string Describe() const override { return "Store acks release s" + std::to_string(sid); }
};

// Store: the tenure is over (force release), or the pending commit is refused.
class RevokeCmd : public AgentCommand {
 public:
  SessionId sid = 0;
  bool reject_commit = *rc::gen::weightedElement<bool>({{2, false}, {1, true}});

  explicit RevokeCmd(const AgentModel& m)
      : sid(PickSession(m, [](const MSession& s) {
          return s.state == LockState::kHeld || s.state == LockState::kReleasing;
        })) {}

  AgentInput Resolve(const AgentModel& m) const override {
    const MSession& s = m.sessions.at(sid);
    Token t = s.token != kNoToken ? s.token : m.store_last_token + 1;
    if (reject_commit) {
      std::uint64_t seq = !s.commits.empty() ? s.commits.front().seq
                          : s.next_seq > 1   ? s.next_seq - 1
                                             : 1;
      return Deliver(sid,
                     core::Rejected{sid, t, seq, static_cast<std::uint8_t>(MessageKind::kCommit),
                                    Reason::kStaleToken});
    }
    return Deliver(sid, core::Revoked{sid, t, Reason::kForceReleased});
  }
  std::string Describe() const override {
    return std::string(reject_commit ? "Store rejects commit s" : "Store revokes s") +
           std::to_string(sid);
  }
};

// B4: the network duplicates the store's last message for the session.
class RedeliverCmd : public AgentCommand {
 public:
  SessionId sid = 0;

  explicit RedeliverCmd(const AgentModel& m)
      : sid(PickSession(m, [](const MSession& s) { return s.last_delivered.has_value(); })) {}

  AgentInput Resolve(const AgentModel& m) const override {
    const MSession& s = m.sessions.at(sid);
    if (!s.last_delivered) return AgentInput{};
    AgentInput in = Deliver(sid, *s.last_delivered);
    in.redelivery = true;
    return in;
  }
  std::string Describe() const override {
    return "Store message duplicated s" + std::to_string(sid);
  }
};

// Time passes; the store answers heartbeats at once.
class AdvanceCmd : public AgentCommand {
 public:
  Time dt = *rc::gen::inRange<Time>(1, kMaxSmallStep + 1);

  AgentInput Resolve(const AgentModel&) const override {
    AgentInput in;
    in.kind = AgentInput::Kind::kAdvance;
    in.dt = dt;
    return in;
  }
  std::string Describe() const override { return "Advance " + std::to_string(dt) + "us"; }
};

// B1: the agent hears nothing from the store for longer than its trust span:
// held locks are given up and outstanding requests made again.
class LapseCmd : public AgentCommand {
 public:
  AgentInput Resolve(const AgentModel&) const override {
    AgentInput in;
    in.kind = AgentInput::Kind::kAdvance;
    in.dt = kLapse;
    return in;
  }
  std::string Describe() const override { return "Lease lapses"; }
};

// B1: time passes and the store answers no heartbeat meanwhile (its
// answers are lost); a grant that comes later may find the lease over.
class SilenceCmd : public AgentCommand {
 public:
  Time dt = *rc::gen::inRange<Time>(1, kLapse + 1);

  AgentInput Resolve(const AgentModel&) const override {
    AgentInput in;
    in.kind = AgentInput::Kind::kAdvance;
    in.dt = dt;
    in.heartbeats_unanswered = true;
    return in;
  }
  std::string Describe() const override {
    return "Advance " + std::to_string(dt) + "us, heartbeats unanswered";
  }
};

// Cases, and the most commands in one case (RapidCheck's size).
constexpr int kCases = 1000;
constexpr int kMaxCommands = 150;

// Listing a command more than once weights it.
void RunAgentModel(bool release_after_each, bool mutant, bool strict_try_lock = false,
                   bool release_when_contended = false, bool compare_with_model = true) {
  AgentModel model;
  model.compare_with_model = compare_with_model;
  model.release_after_each = release_after_each;
  model.release_when_contended = release_when_contended;
  model.mutant_no_entitlement = mutant;
  model.strict_try_lock = strict_try_lock;
  AgentSut sut(release_after_each, release_when_contended);
  rc::state::check(
      model, sut,
      rc::state::gen::execOneOfWithArgs<
          AskCmd, AskCmd, AskCmd, AskCmd, WriteCmd, WriteCmd, WriteCmd, FinishCmd, FinishCmd,
          FinishCmd, CancelCmd, GrantCmd, GrantCmd, GrantCmd, QueuedCmd, BusyCmd, RecallCmd,
          RecallCmd, AckCommitCmd, AckCommitCmd, AckReleaseCmd, AckReleaseCmd, RevokeCmd,
          RedeliverCmd, AdvanceCmd, AdvanceCmd, LapseCmd, SilenceCmd>());
}

}  // namespace

// Built twice: with the clean core (core_property_test) and with the mutant
// core (agent_property_mutant_test), where only the planted-bug tests run.
#ifndef LATCHKEY_MUTANTS

// The agent's thread locks match the model under random interleavings of
// thread calls, store messages (including stale and duplicated ones) and time;
// with lock caching (idle_release = never) and lock-per-request
// (idle_release = 0), each with and without release_when_contended. Strict try-lock checking is on:
// a try-lock in a held session is granted at once or fails kBusy, never waits for a thread (this
// property found the agent once leaving two conflicting try-locks asked
// before the grant waiting behind each other).
TEST(AgentProperty, MatchesThreadLockModel) {
  ExpectHolds(
      "AgentProperty/MatchesThreadLockModel",
      [] { RunAgentModel(*rc::gen::arbitrary<bool>(), false, true, *rc::gen::arbitrary<bool>()); },
      kCases, kMaxCommands);
}

// The comparison bites: a model without the Progress rule (a recall stops
// even the entitled waiters) must be told apart from the agent.
TEST(AgentProperty, DetectsWrongModel) {
  rc::detail::TestResult result = RunProperty(
      "AgentProperty/DetectsWrongModel", [] { RunAgentModel(false, true); }, kCases, kMaxCommands);
  ASSERT_TRUE(result.is<rc::detail::FailureResult>()) << Describe("", result);
  EXPECT_NE(result.get<rc::detail::FailureResult>().description.find("differ"), std::string::npos)
      << Describe("", result);
}

#else  // LATCHKEY_MUTANTS

namespace {

// With the comparison against the model off, the checks that need no model
// must still fail on an agent with a planted bug, naming what they saw.
void ExpectModelFreeChecksCatch(core::Mutant mutant, const std::string& id,
                                const std::string& expected) {
  core::SetMutant(mutant);
  rc::detail::TestResult result = RunProperty(
      id,
      [] {
        RunAgentModel(*rc::gen::arbitrary<bool>(), false, true, *rc::gen::arbitrary<bool>(),
                      /*compare_with_model=*/false);
      },
      kCases, kMaxCommands);
  core::SetMutant(core::Mutant::kNone);
  ASSERT_TRUE(result.is<rc::detail::FailureResult>())
      << "the model-free checks passed an agent with a planted bug\n"
      << Describe(id, result);
  EXPECT_NE(result.get<rc::detail::FailureResult>().description.find(expected), std::string::npos)
      << Describe(id, result);
  // The shrunk counterexample, for a person.
  std::printf("%s\n", Describe(id, result).c_str());
}

}  // namespace

// B1: an agent that ignores its lease's self-expiry grants threads after the
// store has answered nothing sent within the trust span.
TEST(AgentPropertyMutant, AgentTrustsForeverIsCaughtWithoutTheModel) {
  ExpectModelFreeChecksCatch(core::Mutant::kAgentTrustsForever,
                             "AgentPropertyMutant/AgentTrustsForeverIsCaughtWithoutTheModel",
                             "(B1)");
}

// R7: an agent that grants conflicting portions is caught by the wake tracker.
TEST(AgentPropertyMutant, AgentGrantsConflictingIsCaughtWithoutTheModel) {
  ExpectModelFreeChecksCatch(core::Mutant::kAgentGrantsConflicting,
                             "AgentPropertyMutant/AgentGrantsConflictingIsCaughtWithoutTheModel",
                             "while thread");
}

#endif  // LATCHKEY_MUTANTS
