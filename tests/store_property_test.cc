// RapidCheck stateful property: the Store against a small, exact reference
// model of the protocol (DESIGN.md, "The protocol in one page").
//
// The model follows the protocol description and the choices documented in
// core/store.cc (ordering of expiries, repeats, restarts). Per session: holder
// (process, token, request id, last commit seq, recall state), FIFO queue of
// buffered requests, attribute values and data version, and per process its
// lease. Commands are the inputs of three processes on two sessions: fresh and
// repeated Acquires, Release and Commit with current or stale tokens and
// next/duplicate/skipped seqs, Cancel, Heartbeat, Reclaim, time steps (small,
// and past the lease), and a store crash/restart (Store::Recover from the
// records the store asked to persist, followed by its grace period).
//
// After every command the test compares, exactly:
//   - the messages the store sent (as a multiset) with the model's,
//   - the store's next deadline with the model's,
//   - the store state (holder, token, queue order, attributes, version,
//     recall state, leases of active processes, token counter, grace) with
//     the model's,
// and independently of the model that tokens strictly increase per session
// (across restarts), that every Granted and CommitAck is backed by a record
// persisted no later than in the same step (B3), and Store::CheckInvariants().
//
// Each property runs kCases random command sequences of up to kMaxCommands
// commands; when RC_PARAMS is set it rules instead. A failure shows the shrunk
// command sequence, what differed, and the RC_PARAMS that reproduces it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/effects.h"
#include "core/messages.h"
#include "core/store.h"
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
using core::Message;
using core::MessageKind;
using core::ProcessRef;
using core::Reason;
using core::SessionId;
using core::Time;
using core::Token;

constexpr std::uint64_t kProcesses = 3;  // process ids 1..3, incarnation 1
constexpr SessionId kSessions = 2;       // session ids 1..2
constexpr Time kLease = 1'000'000;
constexpr Time kRecallRetry = 250'000;
constexpr Time kGrace = kLease + kLease / 4;  // StoreConfig::EffectiveGrace with grace_us = 0

core::StoreConfig Config() {
  core::StoreConfig c;
  c.lease_us = kLease;
  c.recall_retry_us = kRecallRetry;
  return c;
}

ProcessRef Proc(std::uint64_t pid) { return ProcessRef{pid, 1}; }

// ---- printing ----------------------------------------------------------------

std::string ShowTime(Time t) { return t == kNever ? "never" : std::to_string(t); }

std::string ShowVersion(const DataVersion& v) {
  return "v" + std::to_string(v.token) + "." + std::to_string(v.seq);
}

std::string ShowAttrs(const AttributeMap& a) {
  std::string out = "{";
  for (const auto& [k, v] : a) out += k + "=" + v + ",";
  return out + "}";
}

std::string ShowWrites(bool clear_first, const std::vector<AttributeWrite>& ws) {
  std::string out = clear_first ? "[clear;" : "[";
  for (const AttributeWrite& w : ws)
    out += w.erase ? "-" + w.name + ";" : w.name + "=" + w.value + ";";
  return out + "]";
}

std::string ShowMessage(const Message& m) {
  std::ostringstream os;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        os << core::MessageKindName(core::KindOf(Message{x})) << "(";
        if constexpr (std::is_same_v<T, core::Acquire>) {
          os << "s" << x.session << " req" << x.request_id << " cached " << ShowVersion(x.cached)
             << (x.try_only ? " try" : "");
        } else if constexpr (std::is_same_v<T, core::Release> || std::is_same_v<T, core::Recall> ||
                             std::is_same_v<T, core::ReleaseAck> ||
                             std::is_same_v<T, core::Reclaim> ||
                             std::is_same_v<T, core::ReclaimAck>) {
          os << "s" << x.session << " t" << x.token;
        } else if constexpr (std::is_same_v<T, core::Commit>) {
          os << "s" << x.session << " t" << x.token << " seq" << x.seq << " "
             << ShowWrites(x.clear_first, x.writes.list());
        } else if constexpr (std::is_same_v<T, core::Heartbeat> ||
                             std::is_same_v<T, core::HeartbeatAck>) {
          os << "seq" << x.seq;
        } else if constexpr (std::is_same_v<T, core::Cancel> || std::is_same_v<T, core::Busy> ||
                             std::is_same_v<T, core::CancelAck>) {
          os << "s" << x.session << " req" << x.request_id;
        } else if constexpr (std::is_same_v<T, core::Granted>) {
          os << "s" << x.session << " t" << x.token << " req" << x.request_id << " "
             << ShowVersion(x.version);
          if (x.has_snapshot) os << " snapshot " << ShowAttrs(x.snapshot);
        } else if constexpr (std::is_same_v<T, core::Queued>) {
          os << "s" << x.session << " req" << x.request_id << " ahead " << x.ahead;
        } else if constexpr (std::is_same_v<T, core::CommitAck>) {
          os << "s" << x.session << " t" << x.token << " seq" << x.seq;
        } else if constexpr (std::is_same_v<T, core::Revoked>) {
          os << "s" << x.session << " t" << x.token << " " << core::ReasonName(x.reason);
        } else if constexpr (std::is_same_v<T, core::Rejected>) {
          os << "s" << x.session << " t" << x.token << " seq" << x.seq << " "
             << core::MessageKindName(static_cast<MessageKind>(x.what)) << " "
             << core::ReasonName(x.reason);
        } else if constexpr (std::is_same_v<T, core::ForceRelease> ||
                             std::is_same_v<T, core::AdminInvalidate>) {
          os << "s" << x.session;
        }
        os << ")";
      },
      m);
  return os.str();
}

std::string ShowEnvelope(const Envelope& e) {
  std::ostringstream os;
  os << "[" << e.from.id << "." << e.from.incarnation << " -> " << e.to.id << "."
     << e.to.incarnation << "] " << ShowMessage(e.message);
  return os.str();
}

std::vector<std::string> Sorted(const std::vector<Envelope>& es) {
  std::vector<std::string> out;
  for (const Envelope& e : es) out.push_back(ShowEnvelope(e));
  std::sort(out.begin(), out.end());
  return out;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += "    " + l + "\n";
  return out.empty() ? "    (none)\n" : out;
}

// ---- the reference model ---------------------------------------------------------

struct MTenure {
  std::uint64_t pid = 0;
  Token token = kNoToken;
  std::uint64_t request_id = 0;
  std::uint64_t last_seq = 0;
  bool recalled = false;
  Time recall_retry_at = kNever;
  bool reclaimed = true;
};

struct MWaiter {
  std::uint64_t pid = 0;
  std::uint64_t request_id = 0;
  DataVersion cached;
};

struct MSession {
  std::optional<MTenure> holder;
  std::deque<MWaiter> queue;
  AttributeMap attributes;
  DataVersion version;
  // Newest Acquire per process (volatile), and whether it was answered for
  // good (granted, cancelled or refused Busy); an open one is taken again
  // when resent after its process's lease dropped it from the queue.
  std::map<std::uint64_t, std::uint64_t> marks;
  std::set<std::uint64_t> finished;
};

// One input to the store.
struct StoreInput {
  enum class Kind { kMessage, kAdvance, kRestart };
  Kind kind = Kind::kMessage;
  std::uint64_t pid = 0;
  Message message;
  Time dt = 0;
};

struct StoreModel {
  // A deliberately wrong model (grants the queue's tail instead of its head),
  // used only to show that the comparison detects a divergence.
  bool mutant_lifo = false;

  Time now = 0;
  std::uint64_t epoch = 1;
  Token last_token = kNoToken;
  bool in_grace = false;
  Time grace_until = 0;
  std::map<SessionId, MSession> sessions;
  std::array<Time, kProcesses + 1> lease_until{};

  // Durable knowledge a restart rebuilds from: the version of the last
  // persisted commit per session.
  std::map<SessionId, DataVersion> durable_version;

  // Client-side bookkeeping used to build commands (not store state).
  std::array<std::uint64_t, kProcesses + 1> last_request_id{};
  std::map<std::pair<std::uint64_t, SessionId>, core::Acquire> last_acquire;
  std::map<SessionId, Token> last_granted;  // newest token ever granted per session

  std::vector<Envelope> out;  // messages predicted by the current step

  // -- helpers mirroring the protocol --
  void Send(std::uint64_t pid, Message m) {
    out.push_back(
        Envelope{core::StoreAddress(0, epoch), core::ProcessAddress(Proc(pid)), std::move(m)});
  }

  bool Active(std::uint64_t pid) const {
    for (const auto& [id, s] : sessions) {
      if (s.holder && s.holder->pid == pid) return true;
      for (const MWaiter& w : s.queue) {
        if (w.pid == pid) return true;
      }
    }
    return false;
  }

  void RenewLease(std::uint64_t pid) {
    lease_until[pid] = std::max(lease_until[pid], core::AddTime(now, kLease));
  }

  // An unheld session with no queue, no attributes and no request marks does
  // not exist (B6); one with marks stays so that late Acquires are recognised.
  void SettleAll() {
    for (auto it = sessions.begin(); it != sessions.end();) {
      const MSession& s = it->second;
      if (!s.holder && s.queue.empty() && s.attributes.empty() && s.marks.empty()) {
        it = sessions.erase(it);
      } else {
        ++it;
      }
    }
  }

  core::Granted MakeGranted(SessionId sid, const MSession& s, Token token, std::uint64_t req,
                            const DataVersion& cached) const {
    core::Granted g{sid, token, req, s.version, false, {}};
    if (cached != s.version) {
      g.has_snapshot = true;
      g.snapshot = s.attributes;
    }
    return g;
  }

  void SendRecall(SessionId sid, MSession& s) {
    s.holder->recalled = true;
    s.holder->recall_retry_at = core::AddTime(now, kRecallRetry);
    Send(s.holder->pid, core::Recall{sid, s.holder->token});
  }

  void Grant(SessionId sid, MSession& s, std::uint64_t pid, std::uint64_t req,
             const DataVersion& cached) {
    MTenure t;
    t.pid = pid;
    t.token = ++last_token;
    t.request_id = req;
    s.holder = t;
    s.marks[pid] = req;
    s.finished.insert(pid);
    last_granted[sid] = t.token;
    Send(pid, MakeGranted(sid, s, t.token, req, cached));
    if (!s.queue.empty()) SendRecall(sid, s);  // more wait behind the new holder
  }

  void GrantNext(SessionId sid, MSession& s) {
    if (s.holder || s.queue.empty()) return;
    MWaiter head;
    if (mutant_lifo) {
      head = s.queue.back();
      s.queue.pop_back();
    } else {
      head = s.queue.front();
      s.queue.pop_front();
    }
    Grant(sid, s, head.pid, head.request_id, head.cached);
  }

  void Revoke(SessionId sid, MSession& s, Reason reason) {
    Send(s.holder->pid, core::Revoked{sid, s.holder->token, reason});
    // The holder may never have seen the grant: a resend of that request is
    // taken again (B1 liveness).
    auto mark = s.marks.find(s.holder->pid);
    if (mark != s.marks.end() && mark->second == s.holder->request_id) {
      s.finished.erase(s.holder->pid);
    }
    s.holder.reset();
    GrantNext(sid, s);
  }

  // B1: expired leases drop every expired process's queued requests first,
  // then revoke their locks, each of which goes to the head of that
  // session's queue (so no expired process is granted in passing).
  void Forget(const std::vector<std::uint64_t>& pids) {
    for (std::uint64_t pid : pids) {
      for (auto& [sid, s] : sessions) {
        s.queue.erase(std::remove_if(s.queue.begin(), s.queue.end(),
                                     [&](const MWaiter& w) { return w.pid == pid; }),
                      s.queue.end());
      }
    }
    for (std::uint64_t pid : pids) {
      for (auto& [sid, s] : sessions) {
        if (s.holder && s.holder->pid == pid) Revoke(sid, s, Reason::kLeaseExpired);
      }
    }
    SettleAll();
  }

  void RunDue() {
    std::vector<std::uint64_t> expired;
    for (std::uint64_t pid = 1; pid <= kProcesses; ++pid) {
      if (Active(pid) && lease_until[pid] <= now) expired.push_back(pid);
    }
    if (!expired.empty()) Forget(expired);
    if (in_grace && grace_until <= now) {
      in_grace = false;
      for (auto& [sid, s] : sessions) {
        if (s.holder && !s.holder->reclaimed) Revoke(sid, s, Reason::kLeaseExpired);
      }
      SettleAll();
    }
    for (auto& [sid, s] : sessions) {  // R7: repeat unanswered recalls while anyone waits
      if (RecallPending(s) && s.holder->recall_retry_at <= now) SendRecall(sid, s);
    }
  }

  void OnAcquire(std::uint64_t pid, const core::Acquire& m) {
    RenewLease(pid);
    MSession& s = sessions[m.session];
    auto mark = s.marks.find(pid);
    if (mark != s.marks.end() && m.request_id <= mark->second) {
      // B4: a repeat is answered again; an older request is ignored.
      if (s.holder && s.holder->pid == pid && s.holder->request_id == m.request_id) {
        Send(pid, MakeGranted(m.session, s, s.holder->token, m.request_id, m.cached));
        return;
      }
      for (std::size_t i = 0; i < s.queue.size(); ++i) {
        if (s.queue[i].pid == pid && s.queue[i].request_id == m.request_id) {
          Send(pid, core::Queued{m.session, m.request_id, static_cast<std::uint32_t>(i)});
          return;
        }
      }
      bool done = s.finished.count(pid) == 1;
      if (m.request_id == mark->second && done && m.try_only) {
        Send(pid, core::Busy{m.session, m.request_id});  // the Busy may have been lost
        return;
      }
      if (m.request_id < mark->second || done) return;
      // Open but dropped from the queue (lease expiry): buffered afresh below.
    }
    s.marks[pid] = m.request_id;
    s.finished.erase(pid);
    if (s.holder && s.holder->pid == pid) {
      // The holder asks anew: it gave up its tenure.
      s.holder.reset();
      GrantNext(m.session, s);
    }
    if (!s.holder && s.queue.empty()) {
      Grant(m.session, s, pid, m.request_id, m.cached);  // R3
      return;
    }
    if (m.try_only) {
      s.finished.insert(pid);
      Send(pid, core::Busy{m.session, m.request_id});  // B5
      return;
    }
    auto queued = std::find_if(s.queue.begin(), s.queue.end(),
                               [&](const MWaiter& w) { return w.pid == pid; });
    if (queued != s.queue.end()) {  // keeps its place
      queued->request_id = m.request_id;
      queued->cached = m.cached;
      Send(pid, core::Queued{m.session, m.request_id,
                             static_cast<std::uint32_t>(queued - s.queue.begin())});
    } else {  // R4
      s.queue.push_back(MWaiter{pid, m.request_id, m.cached});
      Send(pid,
           core::Queued{m.session, m.request_id, static_cast<std::uint32_t>(s.queue.size() - 1)});
    }
    if (s.holder && !s.holder->recalled) SendRecall(m.session, s);  // R7
    GrantNext(m.session, s);
  }

  void OnRelease(std::uint64_t pid, const core::Release& m) {
    auto it = sessions.find(m.session);
    if (it == sessions.end() || !it->second.holder || it->second.holder->token != m.token) {
      Send(pid, core::ReleaseAck{m.session, m.token});  // idempotent
      return;
    }
    MSession& s = it->second;
    if (s.holder->pid != pid) {
      Send(pid,
           core::Rejected{m.session, m.token, 0, static_cast<std::uint8_t>(MessageKind::kRelease),
                          Reason::kNotHolder});
      return;
    }
    s.holder.reset();
    Send(pid, core::ReleaseAck{m.session, m.token});
    GrantNext(m.session, s);  // R5
  }

  void OnCommit(std::uint64_t pid, const core::Commit& m) {
    auto reject = [&](Reason r) {
      Send(pid, core::Rejected{m.session, m.token, m.seq,
                               static_cast<std::uint8_t>(MessageKind::kCommit), r});
    };
    auto it = sessions.find(m.session);
    if (it == sessions.end() || !it->second.holder || it->second.holder->token != m.token) {
      return reject(Reason::kStaleToken);  // R1
    }
    MSession& s = it->second;
    MTenure& t = *s.holder;
    if (t.pid != pid) return reject(Reason::kNotHolder);  // B9
    if (m.seq == 0) return reject(Reason::kNotPending);   // seqs start at 1
    if (m.seq <= t.last_seq) {
      Send(pid, core::CommitAck{m.session, m.token, m.seq});  // B4: applied before
      return;
    }
    if (m.seq != t.last_seq + 1) return reject(Reason::kNotPending);
    if (m.clear_first) s.attributes.clear();
    for (const AttributeWrite& w : m.writes) {
      if (w.erase) {
        s.attributes.erase(w.name);
      } else {
        s.attributes[w.name] = w.value;
      }
    }
    t.last_seq = m.seq;
    t.reclaimed = true;
    s.version = {m.token, m.seq};
    durable_version[m.session] = s.version;
    Send(pid, core::CommitAck{m.session, m.token, m.seq});
  }

  void OnReclaim(std::uint64_t pid, const core::Reclaim& m) {
    RenewLease(pid);
    auto it = sessions.find(m.session);
    if (it == sessions.end() || !it->second.holder || it->second.holder->token != m.token ||
        it->second.holder->pid != pid) {
      Send(pid,
           core::Rejected{m.session, m.token, 0, static_cast<std::uint8_t>(MessageKind::kReclaim),
                          Reason::kStaleToken});
      return;
    }
    it->second.holder->reclaimed = true;
    Send(pid, core::ReclaimAck{m.session, m.token});
  }

  void OnCancel(std::uint64_t pid, const core::Cancel& m) {
    auto it = sessions.find(m.session);
    if (it == sessions.end()) return;
    MSession& s = it->second;
    auto w = std::find_if(s.queue.begin(), s.queue.end(), [&](const MWaiter& x) {
      return x.pid == pid && x.request_id == m.request_id;
    });
    if (w == s.queue.end()) return;
    s.queue.erase(w);
    s.finished.insert(pid);
    Send(pid, core::CancelAck{m.session, m.request_id});
  }

  // B7: volatile state (queues, request marks, recall state, leases) is gone;
  // persisted tenures (with the request each answered) survive unreclaimed
  // until the grace period ends.
  void Restart() {
    ++epoch;
    grace_until = core::AddTime(now, kGrace);
    in_grace = false;
    lease_until.fill(0);
    for (auto& [sid, s] : sessions) {
      s.queue.clear();
      s.marks.clear();
      s.finished.clear();
      auto dv = durable_version.find(sid);
      s.version = dv == durable_version.end() ? DataVersion{} : dv->second;
      if (!s.holder) continue;
      in_grace = true;
      // The grant record names the request it answered, so the holder's
      // mark survives: a repeat of that Acquire is answered, not re-granted.
      s.marks[s.holder->pid] = s.holder->request_id;
      s.finished.insert(s.holder->pid);
      s.holder->recalled = false;
      s.holder->recall_retry_at = kNever;
      s.holder->reclaimed = false;
      lease_until[s.holder->pid] = grace_until;
    }
    SettleAll();
  }

  // Applies one input; returns the messages the store must send.
  std::vector<Envelope> Step(const StoreInput& in) {
    out.clear();
    switch (in.kind) {
      case StoreInput::Kind::kRestart:
        Restart();
        break;
      case StoreInput::Kind::kAdvance:
        now += in.dt;
        RunDue();
        break;
      case StoreInput::Kind::kMessage: {
        RunDue();
        std::uint64_t pid = in.pid;
        std::visit(
            [&](const auto& m) {
              using T = std::decay_t<decltype(m)>;
              if constexpr (std::is_same_v<T, core::Acquire>) {
                last_request_id[pid] = std::max(last_request_id[pid], m.request_id);
                last_acquire[{pid, m.session}] = m;
                OnAcquire(pid, m);
              } else if constexpr (std::is_same_v<T, core::Release>) {
                OnRelease(pid, m);
              } else if constexpr (std::is_same_v<T, core::Commit>) {
                OnCommit(pid, m);
              } else if constexpr (std::is_same_v<T, core::Heartbeat>) {
                RenewLease(pid);
                Send(pid, core::HeartbeatAck{m.seq});
              } else if constexpr (std::is_same_v<T, core::Reclaim>) {
                OnReclaim(pid, m);
              } else if constexpr (std::is_same_v<T, core::Cancel>) {
                OnCancel(pid, m);
              }
            },
            in.message);
        break;
      }
    }
    SettleAll();
    return out;
  }

  static bool RecallPending(const MSession& s) {
    return s.holder && s.holder->recalled && !s.queue.empty();
  }

  Time NextDeadline() const {
    Time next = kNever;
    for (const auto& [sid, s] : sessions) {
      if (RecallPending(s)) next = std::min(next, s.holder->recall_retry_at);
    }
    for (std::uint64_t pid = 1; pid <= kProcesses; ++pid) {
      if (Active(pid)) next = std::min(next, lease_until[pid]);
    }
    if (in_grace) next = std::min(next, grace_until);
    return next;
  }

  // -- choices commands resolve against the model --
  std::uint64_t HolderOr(SessionId sid, std::uint64_t fallback) const {
    auto it = sessions.find(sid);
    if (it != sessions.end() && it->second.holder) return it->second.holder->pid;
    return fallback;
  }
  Token CurrentToken(SessionId sid) const {
    auto it = sessions.find(sid);
    if (it != sessions.end() && it->second.holder) return it->second.holder->token;
    auto g = last_granted.find(sid);
    return g == last_granted.end() ? kNoToken : g->second;
  }
  DataVersion VersionOf(SessionId sid) const {
    auto it = sessions.find(sid);
    return it == sessions.end() ? DataVersion{} : it->second.version;
  }
};

// ---- the system under test -----------------------------------------------------

struct StoreSut {
  core::Store store{Config()};
  std::vector<core::Record> log;
  Time now = 0;
  std::map<SessionId, Token> max_token;                           // B2
  std::set<std::tuple<SessionId, Token, std::uint64_t>> tenures;  // (session, token, holder)

  StoreSut() {
    Effects fx = store.Start(now);
    log.insert(log.end(), fx.persist.begin(), fx.persist.end());
  }

  Effects Apply(const StoreInput& in) {
    Effects fx;
    switch (in.kind) {
      case StoreInput::Kind::kRestart:
        store = core::Store::Recover(Config(), log, now, &fx);
        break;
      case StoreInput::Kind::kAdvance:
        now += in.dt;
        fx = store.OnTick(now);
        break;
      case StoreInput::Kind::kMessage:
        fx = store.OnMessage(
            now, latchkey::testing::FromProcess(Proc(in.pid), in.message, store.state().epoch));
        break;
    }
    log.insert(log.end(), fx.persist.begin(), fx.persist.end());
    return fx;
  }
};

// Compares the store after one step with the model after the same step.
void CheckStep(const StoreModel& m, const std::vector<Envelope>& expected, const Effects& fx,
               StoreSut& sut) {
  sut.store.CheckInvariants();
  RC_ASSERT(sut.now == m.now);

  std::vector<std::string> want = Sorted(expected);
  std::vector<std::string> got = Sorted(fx.send);
  if (want != got) {
    RC_FAIL("messages differ from the model's\n  expected:\n" + Join(want) + "  actual:\n" +
            Join(got));
  }
  if (fx.next_deadline != m.NextDeadline()) {
    RC_FAIL("next_deadline " + ShowTime(fx.next_deadline) + ", model expects " +
            ShowTime(m.NextDeadline()));
  }

  // Independent of the model: B2 fencing and B3 durability before replies.
  for (const Envelope& e : fx.send) {
    if (const auto* g = std::get_if<core::Granted>(&e.message)) {
      auto key = std::make_tuple(g->session, g->token, e.to.id);
      if (sut.tenures.count(key) == 0) {
        Token& max = sut.max_token[g->session];
        if (g->token <= max) {
          RC_FAIL("token " + std::to_string(g->token) + " for session " +
                  std::to_string(g->session) + " does not exceed earlier token " +
                  std::to_string(max));
        }
        max = g->token;
        sut.tenures.insert(key);
      }
      bool persisted = std::any_of(sut.log.begin(), sut.log.end(), [&](const core::Record& r) {
        const auto* gr = std::get_if<core::GrantRecord>(&r);
        return gr != nullptr && gr->session == g->session && gr->token == g->token &&
               gr->holder.id == e.to.id;
      });
      RC_ASSERT(persisted);
    }
    if (const auto* a = std::get_if<core::CommitAck>(&e.message)) {
      bool persisted = std::any_of(sut.log.begin(), sut.log.end(), [&](const core::Record& r) {
        const auto* cr = std::get_if<core::CommitRecord>(&r);
        return cr != nullptr && cr->session == a->session && cr->token == a->token &&
               cr->seq == a->seq;
      });
      RC_ASSERT(persisted);
    }
  }

  // State: the model's sessions are exactly the store's.
  const core::StoreState& st = sut.store.state();
  RC_ASSERT(st.epoch == m.epoch);
  RC_ASSERT(st.last_token == m.last_token);
  RC_ASSERT(st.in_grace == m.in_grace);
  if (m.in_grace) RC_ASSERT(st.grace_until == m.grace_until);
  std::set<SessionId> store_ids;
  std::set<SessionId> model_ids;
  for (const auto& [id, s] : st.sessions) store_ids.insert(id);
  for (const auto& [id, s] : m.sessions) model_ids.insert(id);
  RC_ASSERT(store_ids == model_ids);
  for (const auto& [id, ms] : m.sessions) {
    const core::SessionState& ss = st.sessions.at(id);
    std::ostringstream where;
    where << "session " << id << ": ";
    RC_ASSERT(ss.tenure.has_value() == ms.holder.has_value());
    if (ms.holder) {
      const core::Tenure& t = *ss.tenure;
      const MTenure& mt = *ms.holder;
      if (t.holder != Proc(mt.pid) || t.token != mt.token || t.request_id != mt.request_id ||
          t.last_seq != mt.last_seq || t.recalled != mt.recalled || t.reclaimed != mt.reclaimed ||
          (mt.recalled && t.recall_retry_at != mt.recall_retry_at)) {
        RC_FAIL(where.str() + "tenure differs: store holder " + std::to_string(t.holder.id) + " t" +
                std::to_string(t.token) + " req" + std::to_string(t.request_id) + " seq" +
                std::to_string(t.last_seq) + " recalled " + std::to_string(t.recalled) +
                " reclaimed " + std::to_string(t.reclaimed) + "; model holder " +
                std::to_string(mt.pid) + " t" + std::to_string(mt.token) + " req" +
                std::to_string(mt.request_id) + " seq" + std::to_string(mt.last_seq) +
                " recalled " + std::to_string(mt.recalled) + " reclaimed " +
                std::to_string(mt.reclaimed));
      }
    }
    std::string store_queue;
    std::string model_queue;
    for (const core::Waiter& w : ss.queue) {
      store_queue += std::to_string(w.process.id) + "/" + std::to_string(w.request_id) + "/" +
                     ShowVersion(w.cached) + " ";
    }
    for (const MWaiter& w : ms.queue) {
      model_queue += std::to_string(w.pid) + "/" + std::to_string(w.request_id) + "/" +
                     ShowVersion(w.cached) + " ";
    }
    if (store_queue != model_queue) {
      RC_FAIL(where.str() + "queue [" + store_queue + "] model [" + model_queue + "]");
    }
    if (ss.attributes != ms.attributes) {
      RC_FAIL(where.str() + "attributes " + ShowAttrs(ss.attributes) + " model " +
              ShowAttrs(ms.attributes));
    }
    if (ss.version != ms.version) {
      RC_FAIL(where.str() + "version " + ShowVersion(ss.version) + " model " +
              ShowVersion(ms.version));
    }
  }
  for (std::uint64_t pid = 1; pid <= kProcesses; ++pid) {
    if (!m.Active(pid)) continue;
    auto p = st.processes.find(pid);
    RC_ASSERT(p != st.processes.end());
    RC_ASSERT(p->second.active());
    if (p->second.lease_until != m.lease_until[pid]) {
      RC_FAIL("process " + std::to_string(pid) + " lease until " + ShowTime(p->second.lease_until) +
              ", model " + ShowTime(m.lease_until[pid]));
    }
  }
}

// ---- running a property -------------------------------------------------------

using latchkey::testing::Describe;
using latchkey::testing::ExpectHolds;
using latchkey::testing::RunProperty;

// ---- commands ----------------------------------------------------------------------

class StoreCommand : public rc::state::Command<StoreModel, StoreSut> {
 public:
  virtual StoreInput Resolve(const StoreModel& m) const = 0;
  virtual std::string Describe() const = 0;

  void apply(StoreModel& m) const override { m.Step(Resolve(m)); }

  void run(const StoreModel& m0, StoreSut& sut) const override {
    StoreInput in = Resolve(m0);
    StoreModel m1 = m0;
    std::vector<Envelope> expected = m1.Step(in);
    Effects fx = sut.Apply(in);
    CheckStep(m1, expected, fx, sut);
  }

  void show(std::ostream& os) const override { os << Describe(); }
};

StoreInput FromP(std::uint64_t pid, Message m) {
  StoreInput in;
  in.kind = StoreInput::Kind::kMessage;
  in.pid = pid;
  in.message = std::move(m);
  return in;
}

rc::Gen<std::uint64_t> GenPid() { return rc::gen::inRange<std::uint64_t>(1, kProcesses + 1); }
rc::Gen<SessionId> GenSession() { return rc::gen::inRange<SessionId>(1, kSessions + 1); }
// 0 = "the session's holder" (process 1 if none), else a process id.
rc::Gen<std::uint64_t> GenWho() {
  return rc::gen::weightedOneOf<std::uint64_t>(
      {{2, rc::gen::just<std::uint64_t>(0)}, {1, GenPid()}});
}
std::uint64_t ResolveWho(const StoreModel& m, std::uint64_t who, SessionId sid) {
  return who == 0 ? m.HolderOr(sid, 1) : who;
}
std::string ShowWho(std::uint64_t who) { return who == 0 ? "holder" : "p" + std::to_string(who); }

enum class TokenChoice { kCurrent, kStale, kUnissued };
rc::Gen<TokenChoice> GenTokenChoice() {
  return rc::gen::weightedElement<TokenChoice>(
      {{4, TokenChoice::kCurrent}, {2, TokenChoice::kStale}, {1, TokenChoice::kUnissued}});
}
Token ResolveToken(const StoreModel& m, TokenChoice c, SessionId sid) {
  Token cur = m.CurrentToken(sid);
  switch (c) {
    case TokenChoice::kCurrent:
      return cur;
    case TokenChoice::kStale:
      return cur > 1 ? cur - 1 : kNoToken;
    case TokenChoice::kUnissued:
      return m.last_token + 1;
  }
  return cur;
}
const char* ShowTokenChoice(TokenChoice c) {
  switch (c) {
    case TokenChoice::kCurrent:
      return "current";
    case TokenChoice::kStale:
      return "stale";
    case TokenChoice::kUnissued:
      return "unissued";
  }
  return "?";
}

// R2/R3/R4: a fresh request id from process `pid`.
class AcquireCmd : public StoreCommand {
 public:
  std::uint64_t pid = *GenPid();
  SessionId sid = *GenSession();
  bool try_only = *rc::gen::weightedElement<bool>({{7, false}, {1, true}});
  bool send_cached = *rc::gen::weightedElement<bool>({{3, false}, {1, true}});

  StoreInput Resolve(const StoreModel& m) const override {
    DataVersion cached = send_cached ? m.VersionOf(sid) : DataVersion{};
    return FromP(pid, core::Acquire{sid, m.last_request_id[pid] + 1, cached, try_only});
  }
  std::string Describe() const override {
    return "Acquire p" + std::to_string(pid) + " s" + std::to_string(sid) +
           (try_only ? " try" : "") + (send_cached ? " cached" : "");
  }
};

// B4: the last Acquire of a process for a session, again.
class DuplicateAcquireCmd : public StoreCommand {
 public:
  std::uint64_t pid = 0;
  SessionId sid = 0;

  explicit DuplicateAcquireCmd(const StoreModel& m) {
    RC_PRE(!m.last_acquire.empty());
    std::vector<std::pair<std::uint64_t, SessionId>> keys;
    for (const auto& [k, a] : m.last_acquire) keys.push_back(k);
    auto k = *rc::gen::elementOf(keys);
    pid = k.first;
    sid = k.second;
  }
  void checkPreconditions(const StoreModel& m) const override {
    RC_PRE(m.last_acquire.count({pid, sid}) == 1);
  }
  StoreInput Resolve(const StoreModel& m) const override {
    auto it = m.last_acquire.find({pid, sid});
    return FromP(pid, it == m.last_acquire.end() ? core::Acquire{sid, 1, {}, false} : it->second);
  }
  std::string Describe() const override {
    return "DuplicateAcquire p" + std::to_string(pid) + " s" + std::to_string(sid);
  }
};

// R8/R5: release with the current or a stale token, by the holder or another.
class ReleaseCmd : public StoreCommand {
 public:
  std::uint64_t who = *GenWho();
  SessionId sid = *GenSession();
  TokenChoice token = *GenTokenChoice();

  StoreInput Resolve(const StoreModel& m) const override {
    return FromP(ResolveWho(m, who, sid), core::Release{sid, ResolveToken(m, token, sid)});
  }
  std::string Describe() const override {
    return "Release " + ShowWho(who) + " s" + std::to_string(sid) + " token " +
           ShowTokenChoice(token);
  }
};

enum class SeqChoice { kNext, kDuplicate, kSkip };

// R1/B4: a commit with the current or a stale token and the next, a repeated
// or a skipped seq.
class CommitCmd : public StoreCommand {
 public:
  std::uint64_t who = *GenWho();
  SessionId sid = *GenSession();
  TokenChoice token = *GenTokenChoice();
  SeqChoice seq = *rc::gen::weightedElement<SeqChoice>(
      {{5, SeqChoice::kNext}, {2, SeqChoice::kDuplicate}, {1, SeqChoice::kSkip}});
  bool clear_first = *rc::gen::weightedElement<bool>({{9, false}, {1, true}});
  std::vector<AttributeWrite> writes = *rc::gen::container<std::vector<AttributeWrite>>(
      *rc::gen::inRange<std::size_t>(0, 3),
      rc::gen::build<AttributeWrite>(
          rc::gen::set(&AttributeWrite::name, rc::gen::element<std::string>("x", "y")),
          rc::gen::set(&AttributeWrite::value, rc::gen::element<std::string>("0", "1", "2")),
          rc::gen::set(&AttributeWrite::erase,
                       rc::gen::weightedElement<bool>({{4, false}, {1, true}}))));

  StoreInput Resolve(const StoreModel& m) const override {
    Token t = ResolveToken(m, token, sid);
    std::uint64_t base = 0;
    auto it = m.sessions.find(sid);
    if (it != m.sessions.end() && it->second.holder && it->second.holder->token == t) {
      base = it->second.holder->last_seq;
    }
    std::uint64_t s = seq == SeqChoice::kNext   ? base + 1
                      : seq == SeqChoice::kSkip ? base + 2
                                                : base;
    return FromP(ResolveWho(m, who, sid), core::Commit{sid, t, s, clear_first, writes});
  }
  std::string Describe() const override {
    const char* seqs[] = {"next", "duplicate", "skip"};
    return "Commit " + ShowWho(who) + " s" + std::to_string(sid) + " token " +
           ShowTokenChoice(token) + " seq " + seqs[static_cast<int>(seq)] + " " +
           ShowWrites(clear_first, writes);
  }
};

// Withdraws a buffered request (the last one sent, or an older id).
class CancelCmd : public StoreCommand {
 public:
  std::uint64_t pid = 0;
  SessionId sid = 0;
  bool older = *rc::gen::weightedElement<bool>({{4, false}, {1, true}});

  // Mostly a process that is buffered; any process and session otherwise.
  explicit CancelCmd(const StoreModel& m) {
    std::vector<std::pair<std::uint64_t, SessionId>> queued;
    for (const auto& [id, s] : m.sessions) {
      for (const MWaiter& w : s.queue) queued.push_back({w.pid, id});
    }
    if (!queued.empty() && *rc::gen::weightedElement<bool>({{3, true}, {1, false}})) {
      std::tie(pid, sid) = *rc::gen::elementOf(queued);
    } else {
      pid = *GenPid();
      sid = *GenSession();
    }
  }

  StoreInput Resolve(const StoreModel& m) const override {
    auto it = m.last_acquire.find({pid, sid});
    std::uint64_t req = it == m.last_acquire.end() ? 1 : it->second.request_id;
    if (older && req > 0) --req;
    return FromP(pid, core::Cancel{sid, req});
  }
  std::string Describe() const override {
    return "Cancel p" + std::to_string(pid) + " s" + std::to_string(sid) +
           (older ? " older-request" : "");
  }
};

// B1: renews the process's lease.
class HeartbeatCmd : public StoreCommand {
 public:
  std::uint64_t pid = *GenPid();
  std::uint64_t seq = *rc::gen::inRange<std::uint64_t>(1, 100);

  StoreInput Resolve(const StoreModel&) const override { return FromP(pid, core::Heartbeat{seq}); }
  std::string Describe() const override {
    return "Heartbeat p" + std::to_string(pid) + " seq" + std::to_string(seq);
  }
};

// B7: a holder keeps its tenure over a store restart.
class ReclaimCmd : public StoreCommand {
 public:
  std::uint64_t who = *GenWho();
  SessionId sid = *GenSession();
  TokenChoice token = *GenTokenChoice();

  StoreInput Resolve(const StoreModel& m) const override {
    return FromP(ResolveWho(m, who, sid), core::Reclaim{sid, ResolveToken(m, token, sid)});
  }
  std::string Describe() const override {
    return "Reclaim " + ShowWho(who) + " s" + std::to_string(sid) + " token " +
           ShowTokenChoice(token);
  }
};

// Time passes: mostly small steps; sometimes past a lease or the grace.
class AdvanceCmd : public StoreCommand {
 public:
  Time dt =
      *rc::gen::weightedOneOf<Time>({{4, rc::gen::inRange<Time>(1, 400'000)},
                                     {1, rc::gen::inRange<Time>(kLease, kLease + kLease / 2)}});

  StoreInput Resolve(const StoreModel&) const override {
    StoreInput in;
    in.kind = StoreInput::Kind::kAdvance;
    in.dt = dt;
    return in;
  }
  std::string Describe() const override { return "Advance " + std::to_string(dt) + "us"; }
};

// B7: crash, then Store::Recover from everything persisted so far.
class RestartCmd : public StoreCommand {
 public:
  StoreInput Resolve(const StoreModel&) const override {
    StoreInput in;
    in.kind = StoreInput::Kind::kRestart;
    return in;
  }
  std::string Describe() const override { return "Restart store"; }
};

// Cases, and the most commands in one case (RapidCheck's size).
constexpr int kCases = 1000;
constexpr int kMaxCommands = 150;

// Listing a command more than once weights it.
void RunStoreModel(bool mutant_lifo) {
  StoreModel model;
  model.mutant_lifo = mutant_lifo;
  StoreSut sut;
  rc::state::check(
      model, sut,
      rc::state::gen::execOneOfWithArgs<
          AcquireCmd, AcquireCmd, AcquireCmd, AcquireCmd, DuplicateAcquireCmd, ReleaseCmd,
          ReleaseCmd, ReleaseCmd, CommitCmd, CommitCmd, CancelCmd, HeartbeatCmd, HeartbeatCmd,
          ReclaimCmd, AdvanceCmd, AdvanceCmd, AdvanceCmd, RestartCmd>());
}

}  // namespace

// The store matches the reference model message for message and state for
// state, under random interleavings of every input it takes from processes,
// time and restarts.
TEST(StoreProperty, MatchesReferenceModel) {
  ExpectHolds(
      "StoreProperty/MatchesReferenceModel", [] { RunStoreModel(false); }, kCases, kMaxCommands);
}

// The comparison bites: a model that grants buffered requests LIFO instead of
// FIFO (R4/R5) must be told apart from the store, by the message comparison.
TEST(StoreProperty, DetectsWrongModel) {
  rc::detail::TestResult result = RunProperty(
      "StoreProperty/DetectsWrongModel", [] { RunStoreModel(true); }, kCases, kMaxCommands);
  ASSERT_TRUE(result.is<rc::detail::FailureResult>()) << Describe("", result);
  EXPECT_NE(result.get<rc::detail::FailureResult>().description.find("messages differ"),
            std::string::npos)
      << Describe("", result);
}
