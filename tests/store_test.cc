// Unit tests of the store state machine (core/store.h), driven directly with
// envelopes and a hand-held clock. Each test is named after the requirement
// it shows (see ../shared/DESIGN.md): R1..R11 from the claims, B1..B10 beyond.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/harness.h"

namespace latchkey::testing {
namespace {

using core::Acquire;
using core::AdminInvalidate;
using core::AttributeMap;
using core::AttributeWrite;
using core::Busy;
using core::Cancel;
using core::CancelAck;
using core::Commit;
using core::CommitAck;
using core::CommitRecord;
using core::DataVersion;
using core::ForceRelease;
using core::Granted;
using core::GrantRecord;
using core::Heartbeat;
using core::HeartbeatAck;
using core::MessageKind;
using core::ProcessRef;
using core::Queued;
using core::Reason;
using core::Recall;
using core::Reclaim;
using core::ReclaimAck;
using core::Rejected;
using core::Release;
using core::ReleaseAck;
using core::Revoked;
using core::SessionDroppedRecord;
using core::SessionId;
using core::StoreStartedRecord;
using core::TenureEndRecord;
using core::Token;

constexpr SessionId kS = 7;
constexpr SessionId kS2 = 8;
constexpr SessionId kS3 = 9;
constexpr ProcessRef kP1{1, 1};
constexpr ProcessRef kP2{2, 1};
constexpr ProcessRef kP3{3, 1};

// Small numbers so that lease, recall and grace arithmetic is easy to follow.
// Grace is lease + lease / 4 = 1250.
core::StoreConfig TestConfig() {
  core::StoreConfig c;
  c.lease_us = 1000;
  c.recall_retry_us = 100;
  return c;
}

AttributeWrite Set(std::string name, std::string value) {
  return AttributeWrite{std::move(name), std::move(value), false};
}
AttributeWrite Del(std::string name) { return AttributeWrite{std::move(name), "", true}; }

Acquire Acq(SessionId session, std::uint64_t request_id, DataVersion cached = {},
            bool try_only = false) {
  return Acquire{session, request_id, cached, try_only};
}
Commit Com(SessionId session, Token token, std::uint64_t seq, std::vector<AttributeWrite> writes,
           bool clear_first = false) {
  return Commit{session, token, seq, clear_first, std::move(writes)};
}
Rejected Refusal(SessionId session, Token token, std::uint64_t seq, MessageKind what,
                 Reason reason) {
  return Rejected{session, token, seq, static_cast<std::uint8_t>(what), reason};
}

// Messages of type M that the effects send to process `p`.
template <class M>
std::vector<M> SentTo(const Effects& fx, ProcessRef p) {
  std::vector<M> out;
  for (const Envelope& e : fx.send) {
    if (e.to != core::ProcessAddress(p)) continue;
    if (const M* m = std::get_if<M>(&e.message)) out.push_back(*m);
  }
  return out;
}

// The single element of `v` (a test failure if there is not exactly one).
template <class M>
M Only(const std::vector<M>& v) {
  EXPECT_EQ(v.size(), 1u);
  return v.empty() ? M{} : v.front();
}

// A store driven by hand. Every input's persisted records are appended to
// `log()` (as a driver would make them durable) and the store's invariants
// are checked after every input.
class StoreDriver {
 public:
  explicit StoreDriver(core::StoreConfig config = TestConfig()) : store_(config) {
    Apply(store_.Start(0));
  }

  Effects Send(Time now, ProcessRef from, Message m) {
    return Apply(store_.OnMessage(now, FromProcess(from, std::move(m), store_.state().epoch)));
  }
  Effects Admin(Time now, Message m) {
    Envelope e{core::Address{core::NodeKind::kAdmin, 0, 0}, store_.address(), std::move(m)};
    return Apply(store_.OnMessage(now, e));
  }
  Effects Tick(Time now) { return Apply(store_.OnTick(now)); }
  // B7: crash (all volatile state lost) and recover from the log.
  Effects Restart(Time now) {
    Effects fx;
    store_ = core::Store::Recover(store_.config(), log_, now, &fx);
    return Apply(std::move(fx));
  }

  // Acquires `session` for `p`, expecting an immediate grant; returns its token.
  Token Grant(Time now, ProcessRef p, SessionId session, std::uint64_t request_id) {
    Effects fx = Send(now, p, Acq(session, request_id));
    return Only(SentTo<Granted>(fx, p)).token;
  }

  core::Store& store() { return store_; }
  const core::StoreState& state() const { return store_.state(); }
  const std::vector<core::Record>& log() const { return log_; }
  // Whether the session exists as far as anyone can observe: held, waited
  // for, or holding data. (An empty one may linger with its request marks
  // until idle expiry; that is the same as not existing.)
  bool Has(SessionId id) const {
    auto it = state().sessions.find(id);
    if (it == state().sessions.end()) return false;
    const core::SessionState& s = it->second;
    return s.tenure.has_value() || !s.queue.empty() || !s.attributes.empty();
  }
  const core::SessionState& session(SessionId id) const { return state().sessions.at(id); }
  ProcessRef Holder(SessionId id) const {
    const core::SessionState& s = session(id);
    return s.tenure ? s.tenure->holder : ProcessRef{};
  }
  Token TokenOf(SessionId id) const {
    const core::SessionState& s = session(id);
    return s.tenure ? s.tenure->token : core::kNoToken;
  }
  std::vector<ProcessRef> QueueOf(SessionId id) const {
    std::vector<ProcessRef> out;
    if (!Has(id)) return out;
    for (const core::Waiter& w : session(id).queue) out.push_back(w.process);
    return out;
  }

 private:
  Effects Apply(Effects fx) {
    store_.CheckInvariants();
    log_.insert(log_.end(), fx.persist.begin(), fx.persist.end());
    return fx;
  }

  core::Store store_;
  std::vector<core::Record> log_;
};

// ---- R1: access needs the current token from its holder --------------------

TEST(Store, R1_CommitWithCurrentTokenFromHolderIsApplied) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  Effects fx = d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  EXPECT_EQ(Only(SentTo<CommitAck>(fx, kP1)), (CommitAck{kS, t1, 1}));
  EXPECT_TRUE(SentTo<Rejected>(fx, kP1).empty());
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));
  EXPECT_EQ(d.session(kS).version, (DataVersion{t1, 1}));
}

TEST(Store, R1_CommitWithStaleTokenIsRejected) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  d.Send(20, kP1, Release{kS, t1});
  Token t2 = d.Grant(30, kP2, kS, 1);
  ASSERT_GT(t2, t1);

  // The old holder's late write with its finished tenure's token.
  Effects fx = d.Send(40, kP1, Com(kS, t1, 2, {Set("a", "stale")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)),
            Refusal(kS, t1, 2, MessageKind::kCommit, Reason::kStaleToken));
  EXPECT_TRUE(SentTo<CommitAck>(fx, kP1).empty());
  EXPECT_TRUE(PersistedOf<CommitRecord>(fx).empty());
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));
  EXPECT_EQ(d.session(kS).version, (DataVersion{t1, 1}));
  EXPECT_EQ(d.Holder(kS), kP2);
  EXPECT_EQ(d.TokenOf(kS), t2);
}

TEST(Store, R1_CommitWithoutTokenIsRejected) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));

  // Even the holder itself must show its token.
  Effects fx = d.Send(20, kP1, Com(kS, core::kNoToken, 2, {Set("a", "2")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)),
            Refusal(kS, core::kNoToken, 2, MessageKind::kCommit, Reason::kStaleToken));
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));

  // A session nobody holds (or that never existed) refuses writes as well,
  // and is not created by them.
  fx = d.Send(30, kP2, Com(kS2, core::kNoToken, 1, {Set("x", "1")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP2)),
            Refusal(kS2, core::kNoToken, 1, MessageKind::kCommit, Reason::kStaleToken));
  EXPECT_FALSE(d.Has(kS2));
}

TEST(Store, R1_CommitWithForeignTokenIsRejectedAsNotHolder) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  // P2 presents P1's current token.
  Effects fx = d.Send(10, kP2, Com(kS, t1, 1, {Set("a", "foreign")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP2)),
            Refusal(kS, t1, 1, MessageKind::kCommit, Reason::kNotHolder));
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_TRUE(d.session(kS).attributes.empty());
  EXPECT_EQ(d.session(kS).tenure->last_seq, 0u);
  // The real holder's first commit still goes through as seq 1.
  fx = d.Send(20, kP1, Com(kS, t1, 1, {Set("a", "mine")}));
  EXPECT_EQ(Only(SentTo<CommitAck>(fx, kP1)), (CommitAck{kS, t1, 1}));
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "mine"}}));
}

// ---- R2, R3: grants ------------------------------------------------------------

TEST(Store, R2_GrantAnswersTheRequestWithTokenAndSnapshot) {
  StoreDriver d;
  Effects fx = d.Send(0, kP1, Acq(kS, 4));
  Granted g1 = Only(SentTo<Granted>(fx, kP1));
  EXPECT_EQ(g1.session, kS);
  EXPECT_EQ(g1.request_id, 4u);
  EXPECT_NE(g1.token, core::kNoToken);
  EXPECT_EQ(g1.version, DataVersion{});
  EXPECT_FALSE(g1.has_snapshot);  // the agent's (empty) cache is current
  ASSERT_EQ(fx.send.size(), 1u);
  EXPECT_EQ(fx.send[0].from, d.store().address());
  EXPECT_EQ(fx.send[0].to, core::ProcessAddress(kP1));

  d.Send(10, kP1, Com(kS, g1.token, 1, {Set("a", "1"), Set("b", "2")}));
  d.Send(20, kP1, Release{kS, g1.token});

  // A process with no cache receives the attributes.
  fx = d.Send(30, kP2, Acq(kS, 9));
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_EQ(g2.request_id, 9u);
  EXPECT_GT(g2.token, g1.token);
  EXPECT_EQ(g2.version, (DataVersion{g1.token, 1}));
  EXPECT_TRUE(g2.has_snapshot);
  EXPECT_EQ(g2.snapshot, (AttributeMap{{"a", "1"}, {"b", "2"}}));
  d.Send(40, kP2, Release{kS, g2.token});

  // A process whose cache is current gets the version only.
  fx = d.Send(50, kP3, Acq(kS, 2, DataVersion{g1.token, 1}));
  Granted g3 = Only(SentTo<Granted>(fx, kP3));
  EXPECT_EQ(g3.request_id, 2u);
  EXPECT_EQ(g3.version, (DataVersion{g1.token, 1}));
  EXPECT_FALSE(g3.has_snapshot);
  EXPECT_TRUE(g3.snapshot.empty());

  // A stale cache gets a full snapshot.
  d.Send(60, kP3, Release{kS, g3.token});
  fx = d.Send(70, kP1, Acq(kS, 5, DataVersion{g1.token, 0}));
  Granted g4 = Only(SentTo<Granted>(fx, kP1));
  EXPECT_TRUE(g4.has_snapshot);
  EXPECT_EQ(g4.snapshot, (AttributeMap{{"a", "1"}, {"b", "2"}}));
}

TEST(Store, R3_FreeSessionIsGrantedAtOnce) {
  StoreDriver d;
  EXPECT_FALSE(d.Has(kS));
  Effects fx = d.Send(0, kP1, Acq(kS, 1));
  ASSERT_EQ(fx.send.size(), 1u);
  Granted g = Only(SentTo<Granted>(fx, kP1));
  EXPECT_TRUE(SentTo<Queued>(fx, kP1).empty());
  EXPECT_EQ(d.Holder(kS), kP1);
  EXPECT_EQ(d.TokenOf(kS), g.token);
  EXPECT_TRUE(d.session(kS).queue.empty());

  // Other sessions are independent: free ones are granted at once too, to
  // the same process or to another.
  Token t2 = d.Grant(10, kP1, kS2, 2);
  Token t3 = d.Grant(20, kP2, kS3, 1);
  EXPECT_EQ(d.Holder(kS2), kP1);
  EXPECT_EQ(d.Holder(kS3), kP2);
  EXPECT_NE(t2, g.token);
  EXPECT_NE(t3, t2);
}

// ---- R4, R5: buffering and handing over -----------------------------------------

TEST(Store, R4_BuffersRequestsWhileHeldInFifoOrder) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  Effects fx = d.Send(10, kP2, Acq(kS, 5));
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP2)), (Queued{kS, 5, 0}));
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  fx = d.Send(20, kP3, Acq(kS, 3));
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP3)), (Queued{kS, 3, 1}));
  EXPECT_TRUE(SentTo<Granted>(fx, kP3).empty());

  EXPECT_EQ(d.Holder(kS), kP1);
  EXPECT_EQ(d.TokenOf(kS), t1);
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP2, kP3}));
  EXPECT_EQ(d.session(kS).queue[0].request_id, 5u);
  EXPECT_EQ(d.session(kS).queue[1].request_id, 3u);
  const auto& queued = d.state().processes.at(kP2.id).queued;
  EXPECT_EQ(std::vector<SessionId>(queued.begin(), queued.end()), std::vector<SessionId>{kS});
}

TEST(Store, R4_FullQueueRejectsWithQueueFull) {
  core::StoreConfig config = TestConfig();
  config.max_queue = 1;
  StoreDriver d(config);
  d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 1));
  Effects fx = d.Send(20, kP3, Acq(kS, 6));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP3)),
            Refusal(kS, core::kNoToken, 6, MessageKind::kAcquire, Reason::kQueueFull));
  EXPECT_TRUE(SentTo<Queued>(fx, kP3).empty());
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP2}));
  EXPECT_TRUE(d.state().processes.at(kP3.id).queued.empty());
  // The process already buffered keeps its place when it asks again.
  fx = d.Send(30, kP2, Acq(kS, 2));
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP2)), (Queued{kS, 2, 0}));
  EXPECT_TRUE(SentTo<Rejected>(fx, kP2).empty());
}

TEST(Store, R5_ReleaseGrantsTheHeadOfTheQueue) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 5));
  d.Send(20, kP3, Acq(kS, 3));

  Effects fx = d.Send(30, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<ReleaseAck>(fx, kP1)), (ReleaseAck{kS, t1}));
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_EQ(g2.request_id, 5u);
  EXPECT_GT(g2.token, t1);
  EXPECT_TRUE(SentTo<Granted>(fx, kP3).empty());
  EXPECT_EQ(d.Holder(kS), kP2);
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP3}));

  fx = d.Send(40, kP2, Release{kS, g2.token});
  Granted g3 = Only(SentTo<Granted>(fx, kP3));
  EXPECT_EQ(g3.request_id, 3u);
  EXPECT_GT(g3.token, g2.token);
  EXPECT_EQ(d.Holder(kS), kP3);
  EXPECT_TRUE(d.QueueOf(kS).empty());
}

// ---- R7: recalls -----------------------------------------------------------------

TEST(Store, R7_RecallSentOncePerTenureAndRetriedOnTimer) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  Effects fx = d.Send(10, kP2, Acq(kS, 1));
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1}));
  EXPECT_TRUE(d.session(kS).tenure->recalled);
  EXPECT_EQ(fx.next_deadline, 110u);

  // A second buffered request does not recall again.
  fx = d.Send(20, kP3, Acq(kS, 1));
  EXPECT_TRUE(SentTo<Recall>(fx, kP1).empty());

  // Unanswered, the recall is repeated every recall_retry_us.
  EXPECT_TRUE(SentTo<Recall>(d.Tick(109), kP1).empty());
  fx = d.Tick(110);
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1}));
  EXPECT_EQ(fx.next_deadline, 210u);
  EXPECT_TRUE(SentTo<Recall>(d.Tick(150), kP1).empty());
  EXPECT_EQ(Only(SentTo<Recall>(d.Tick(210), kP1)), (Recall{kS, t1}));
}

TEST(Store, R7_NoRecallWhileNobodyWaits) {
  StoreDriver d;
  d.Grant(0, kP1, kS, 1);
  Effects fx = d.Tick(500);
  EXPECT_TRUE(SentTo<Recall>(fx, kP1).empty());
  EXPECT_FALSE(d.session(kS).tenure->recalled);
  // Only the lease is pending.
  EXPECT_EQ(fx.next_deadline, 1000u);
}

TEST(Store, R7_NewHolderIsRecalledAtOnceWhenOthersStillWait) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 1));
  d.Send(20, kP3, Acq(kS, 1));

  Effects fx = d.Send(30, kP1, Release{kS, t1});
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  // P3 still waits: the caching new holder is asked at once, in the same step.
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP2)), (Recall{kS, g2.token}));
  EXPECT_TRUE(SentTo<Recall>(fx, kP1).empty());

  fx = d.Send(40, kP2, Release{kS, g2.token});
  Granted g3 = Only(SentTo<Granted>(fx, kP3));
  // Nobody waits behind P3: no recall, now or later.
  EXPECT_TRUE(SentTo<Recall>(fx, kP3).empty());
  EXPECT_TRUE(SentTo<Recall>(d.Tick(500), kP3).empty());
  EXPECT_EQ(d.TokenOf(kS), g3.token);
}

TEST(Store, R7_ReleaseRacingARecallGrantsNextAndStopsRecalls) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 1));  // recall #1 to P1
  // P1 releases in answer to recall #1, but the store resends the recall
  // before the release arrives.
  EXPECT_EQ(Only(SentTo<Recall>(d.Tick(110), kP1)), (Recall{kS, t1}));
  Effects fx = d.Send(120, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<ReleaseAck>(fx, kP1)), (ReleaseAck{kS, t1}));
  EXPECT_TRUE(SentTo<Rejected>(fx, kP1).empty());
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_EQ(d.Holder(kS), kP2);

  // No more recalls of the finished tenure, and none of the new one.
  for (Time t = 200; t <= 900; t += 100) {
    Effects tick = d.Tick(t);
    EXPECT_TRUE(SentTo<Recall>(tick, kP1).empty()) << "at " << t;
    EXPECT_TRUE(SentTo<Recall>(tick, kP2).empty()) << "at " << t;
  }
  // P1's answer to the duplicate recall: acknowledged, nothing changes.
  fx = d.Send(910, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<ReleaseAck>(fx, kP1)), (ReleaseAck{kS, t1}));
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_EQ(d.Holder(kS), kP2);
  EXPECT_EQ(d.TokenOf(kS), g2.token);
}

// ---- R8: release -----------------------------------------------------------------

TEST(Store, R8_DuplicateReleaseIsAcknowledgedWithoutChange) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  Effects fx = d.Send(20, kP1, Release{kS, t1});
  EXPECT_EQ(Only(PersistedOf<TenureEndRecord>(fx)), (TenureEndRecord{kS, t1}));
  Token t2 = d.Grant(30, kP2, kS, 1);

  core::StoreState before = d.state();
  fx = d.Send(40, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<ReleaseAck>(fx, kP1)), (ReleaseAck{kS, t1}));
  EXPECT_EQ(fx.send.size(), 1u);
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_EQ(d.Holder(kS), kP2);
  EXPECT_EQ(d.TokenOf(kS), t2);
  EXPECT_EQ(d.session(kS).attributes, before.sessions.at(kS).attributes);
  EXPECT_EQ(d.session(kS).tenure, before.sessions.at(kS).tenure);
}

// ---- R10: named attributes ----------------------------------------------------------

TEST(Store, R10_CommitsWriteAndEraseNamedAttributes) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1"), Set("b", "2"), Set("c", "3")}));
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}, {"b", "2"}, {"c", "3"}}));
  d.Send(20, kP1, Com(kS, t1, 2, {Del("b"), Set("a", "10"), Del("missing")}));
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "10"}, {"c", "3"}}));
  EXPECT_EQ(d.session(kS).version, (DataVersion{t1, 2}));
  // clear_first drops every attribute before the writes.
  d.Send(30, kP1, Com(kS, t1, 3, {Set("d", "4")}, /*clear_first=*/true));
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"d", "4"}}));
  d.Send(40, kP1, Release{kS, t1});

  Effects fx = d.Send(50, kP2, Acq(kS, 1));
  Granted g = Only(SentTo<Granted>(fx, kP2));
  EXPECT_TRUE(g.has_snapshot);
  EXPECT_EQ(g.snapshot, (AttributeMap{{"d", "4"}}));
  EXPECT_EQ(g.version, (DataVersion{t1, 3}));
}

// ---- R11: many processes, one store ------------------------------------------------

TEST(Store, R11_SeveralProcessesShareOneStore) {
  StoreDriver d;
  // Three processes hold three sessions at once, each with its own token.
  Token a = d.Grant(0, kP1, kS, 1);
  Token b = d.Grant(0, kP2, kS2, 1);
  Token c = d.Grant(0, kP3, kS3, 1);
  EXPECT_EQ((std::set<Token>{a, b, c}).size(), 3u);
  d.Send(10, kP1, Com(kS, a, 1, {Set("who", "p1")}));
  d.Send(10, kP2, Com(kS2, b, 1, {Set("who", "p2")}));
  d.Send(10, kP3, Com(kS3, c, 1, {Set("who", "p3")}));
  EXPECT_EQ(d.session(kS).attributes.at("who"), "p1");
  EXPECT_EQ(d.session(kS2).attributes.at("who"), "p2");
  EXPECT_EQ(d.session(kS3).attributes.at("who"), "p3");
  const std::vector<std::tuple<ProcessRef, SessionId, Token>> held{
      {kP1, kS, a}, {kP2, kS2, b}, {kP3, kS3, c}};
  for (const auto& [p, s, t] : held) d.Send(20, p, Release{s, t});

  // All three take turns on one session; each sees the others' writes.
  const SessionId shared = 42;
  const std::vector<ProcessRef> procs{kP1, kP2, kP3};
  Token t = d.Grant(100, kP1, shared, 2);
  d.Send(101, kP2, Acq(shared, 2));
  d.Send(102, kP3, Acq(shared, 2));
  for (std::size_t i = 0; i < procs.size(); ++i) {
    ProcessRef p = procs[i];
    ASSERT_EQ(d.Holder(shared), p);
    EXPECT_EQ(d.session(shared).attributes.size(), i);
    d.Send(200 + i, p, Com(shared, t, 1, {Set("p" + std::to_string(p.id), "x")}));
    Effects fx = d.Send(210 + i, p, Release{shared, t});
    if (i + 1 < procs.size()) t = Only(SentTo<Granted>(fx, procs[i + 1])).token;
  }
  EXPECT_EQ(d.session(shared).attributes, (AttributeMap{{"p1", "x"}, {"p2", "x"}, {"p3", "x"}}));
}

// ---- B1: leases --------------------------------------------------------------------

TEST(Store, B1_HolderThatStopsHeartbeatingLosesItsLocksAtLeaseExpiry) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);   // P1's lease runs to 1000
  Token t3 = d.Grant(0, kP3, kS2, 1);  // P3 holds kS2
  d.Send(0, kP1, Acq(kS2, 2));         // P1 waits for kS2
  d.Send(100, kP2, Acq(kS, 1));        // P2 waits for kS
  d.Send(900, kP2, Heartbeat{1});      // P2 and P3 stay alive
  d.Send(900, kP3, Heartbeat{1});
  EXPECT_EQ(d.QueueOf(kS2), (std::vector<ProcessRef>{kP1}));

  Effects fx = d.Tick(999);
  EXPECT_TRUE(SentTo<Revoked>(fx, kP1).empty());
  EXPECT_EQ(d.Holder(kS), kP1);
  EXPECT_LE(fx.next_deadline, 1000u);

  fx = d.Tick(1000);
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kLeaseExpired}));
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_GT(g2.token, t1);
  EXPECT_EQ(d.Holder(kS), kP2);
  // Durable: the old tenure's end and the new grant.
  EXPECT_EQ(Only(PersistedOf<TenureEndRecord>(fx)), (TenureEndRecord{kS, t1}));
  EXPECT_EQ(Only(PersistedOf<GrantRecord>(fx)), (GrantRecord{kS, g2.token, kP2, g2.request_id}));
  // Its queued request is gone as well.
  EXPECT_TRUE(d.QueueOf(kS2).empty());
  EXPECT_TRUE(d.state().processes.at(kP1.id).held.empty());
  EXPECT_TRUE(d.state().processes.at(kP1.id).queued.empty());

  // So when P3 releases kS2, nobody is granted it.
  fx = d.Send(1100, kP3, Release{kS2, t3});
  EXPECT_TRUE(SentTo<Granted>(fx, kP1).empty());
  EXPECT_FALSE(d.Has(kS2));
}

TEST(Store, B1_HeartbeatRenewsTheLease) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  Effects fx = d.Send(800, kP1, Heartbeat{7});
  EXPECT_EQ(Only(SentTo<HeartbeatAck>(fx, kP1)), (HeartbeatAck{7}));
  EXPECT_EQ(d.state().processes.at(kP1.id).lease_until, 1800u);
  EXPECT_EQ(fx.next_deadline, 1800u);

  EXPECT_TRUE(SentTo<Revoked>(d.Tick(1000), kP1).empty());
  EXPECT_TRUE(SentTo<Revoked>(d.Tick(1799), kP1).empty());
  EXPECT_EQ(d.Holder(kS), kP1);
  // Each heartbeat renews it again.
  d.Send(1000, kP1, Heartbeat{8});
  EXPECT_EQ(d.state().processes.at(kP1.id).lease_until, 2000u);
  EXPECT_TRUE(SentTo<Revoked>(d.Tick(1999), kP1).empty());
  EXPECT_EQ(Only(SentTo<Revoked>(d.Tick(2000), kP1)), (Revoked{kS, t1, Reason::kLeaseExpired}));
  EXPECT_FALSE(d.Has(kS));
}

TEST(Store, B1_WaiterWhoseLeaseExpiresLeavesTheQueue) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(0, kP2, Acq(kS, 1));
  d.Send(900, kP1, Heartbeat{1});  // only the holder stays alive
  d.Tick(1000);
  EXPECT_TRUE(d.QueueOf(kS).empty());
  EXPECT_EQ(d.Holder(kS), kP1);
  Effects fx = d.Send(1100, kP1, Release{kS, t1});
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  EXPECT_FALSE(d.Has(kS));
}

// A waiter cut off long enough to lose its lease is dropped from the queue,
// but its process still waits: when it resends the same request, the store
// must buffer it again (it once ignored it as a stale repeat, so the process
// waited until its threads timed out).
TEST(Store, B1_WaiterDroppedByLeaseExpiryIsBufferedAgainWhenItAsksAgain) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(0, kP2, Acq(kS, 7));
  d.Send(900, kP1, Heartbeat{1});
  d.Tick(1000);  // P2's lease is over: its request leaves the queue
  ASSERT_TRUE(d.QueueOf(kS).empty());
  Effects fx = d.Send(1100, kP2, Acq(kS, 7));  // the agent's retry of the same request
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP2)), (Queued{kS, 7, 0}));
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP2}));
  fx = d.Send(1200, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<Granted>(fx, kP2)).request_id, 7u);
  // Once granted, the same request id is a stale repeat again.
  Token t2 = Only(SentTo<Granted>(fx, kP2)).token;
  d.Send(1300, kP2, Release{kS, t2});
  fx = d.Send(1400, kP2, Acq(kS, 7));
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
}

// B4 + B5: a try-lock refused with Busy is answered Busy again when the
// agent resends it (the first Busy may have been lost), never buffered.
TEST(Store, B5_RepeatedTryLockIsAnsweredBusyAgain) {
  StoreDriver d;
  d.Grant(0, kP1, kS, 1);
  Effects fx = d.Send(10, kP2, Acq(kS, 3, {}, /*try_only=*/true));
  EXPECT_EQ(Only(SentTo<Busy>(fx, kP2)), (Busy{kS, 3}));
  fx = d.Send(20, kP2, Acq(kS, 3, {}, /*try_only=*/true));
  EXPECT_EQ(Only(SentTo<Busy>(fx, kP2)), (Busy{kS, 3}));
  EXPECT_TRUE(d.QueueOf(kS).empty());
}

TEST(Store, B1_StaleTokenAfterLeaseExpiryIsRefused) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  d.Tick(1000);  // lease over
  EXPECT_FALSE(d.session(kS).tenure.has_value());

  // The cut-off holder's late write is refused...
  Effects fx = d.Send(1001, kP1, Com(kS, t1, 2, {Set("a", "late")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)),
            Refusal(kS, t1, 2, MessageKind::kCommit, Reason::kStaleToken));
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));
  // ...also once someone else holds the session.
  Token t2 = d.Grant(1002, kP2, kS, 1);
  fx = d.Send(1003, kP1, Com(kS, t1, 2, {Set("a", "late")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)).reason, Reason::kStaleToken);
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));
  EXPECT_EQ(d.TokenOf(kS), t2);
}

// ---- B2: fencing tokens -----------------------------------------------------------

TEST(Store, B2_TokensIncreaseAcrossExpiryForceReleaseDeletionAndRestart) {
  StoreDriver d;
  std::vector<Token> tokens;
  tokens.push_back(d.Grant(0, kP1, kS, 1));
  d.Send(10, kP2, Acq(kS, 1));
  d.Send(900, kP2, Heartbeat{1});
  // Lease expiry hands the session to P2.
  tokens.push_back(Only(SentTo<Granted>(d.Tick(1000), kP2)).token);
  // Force release hands it to P3 once P2 gives the dead token back.
  d.Send(1100, kP3, Acq(kS, 1));
  EXPECT_TRUE(SentTo<Granted>(d.Admin(1200, ForceRelease{kS}), kP3).empty());
  tokens.push_back(Only(SentTo<Granted>(d.Send(1210, kP2, Release{kS, tokens.back()}), kP3)).token);
  // Invalidation deletes the session once its holder has let go; it is
  // created again on next use.
  d.Admin(1300, AdminInvalidate{kS});
  EXPECT_TRUE(d.Has(kS));
  d.Send(1310, kP3, Release{kS, tokens.back()});
  EXPECT_FALSE(d.Has(kS));
  tokens.push_back(d.Grant(1400, kP1, kS, 2));
  // A release of an empty session deletes it too.
  d.Send(1500, kP1, Release{kS, tokens.back()});
  EXPECT_FALSE(d.Has(kS));
  tokens.push_back(d.Grant(1600, kP2, kS, 2));
  d.Send(1700, kP2, Release{kS, tokens.back()});
  // After a restart the counter continues from the log.
  d.Restart(1800);
  tokens.push_back(d.Grant(1900, kP3, kS, 2));

  for (std::size_t i = 1; i < tokens.size(); ++i) {
    EXPECT_GT(tokens[i], tokens[i - 1]) << "token #" << i;
  }
  EXPECT_EQ(d.state().last_token, tokens.back());
}

TEST(Store, B2_RestartNeverReissuesATokenForAnySession) {
  StoreDriver d;
  Token max_token = 0;
  for (SessionId s = 1; s <= 5; ++s) {
    Token t = d.Grant(s, kP1, s, s);
    max_token = std::max(max_token, t);
    if (s % 2 == 0) d.Send(s, kP1, Release{s, t});
  }
  d.Restart(100);
  EXPECT_EQ(d.state().last_token, max_token);
  // A free session from the log and a brand-new one both get fresh tokens.
  EXPECT_GT(d.Grant(110, kP2, 2, 1), max_token);
  EXPECT_GT(d.Grant(120, kP2, 99, 2), max_token + 1);
  d.Restart(200);
  EXPECT_GT(d.Grant(210, kP3, 4, 1), max_token + 2);
}

TEST(Store, B2_ForceReleaseRevokesHolderAndGrantsNextWithHigherTokenOnceItLetsGo) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 4));
  Effects fx = d.Admin(20, ForceRelease{kS});
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kForceReleased}));
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1}));
  // P1 may not know yet: nobody else is granted until it gives the token back.
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_EQ(d.Holder(kS), kP1);
  // The dead token is refused from then on.
  fx = d.Send(30, kP1, Com(kS, t1, 1, {Set("a", "x")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)).reason, Reason::kStaleToken);
  EXPECT_TRUE(d.session(kS).attributes.empty());
  // Force-releasing it again changes nothing.
  EXPECT_TRUE(d.Admin(35, ForceRelease{kS}).empty());
  // P1's release ends the tenure and the head of the queue is granted.
  fx = d.Send(40, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<ReleaseAck>(fx, kP1)), (ReleaseAck{kS, t1}));
  EXPECT_EQ(Only(PersistedOf<TenureEndRecord>(fx)), (TenureEndRecord{kS, t1}));
  Granted g = Only(SentTo<Granted>(fx, kP2));
  EXPECT_EQ(g.request_id, 4u);
  EXPECT_GT(g.token, t1);
  EXPECT_EQ(Only(PersistedOf<GrantRecord>(fx)), (GrantRecord{kS, g.token, kP2, g.request_id}));
  EXPECT_EQ(d.Holder(kS), kP2);
  // Force-releasing a session nobody holds does nothing.
  d.Send(50, kP2, Release{kS, g.token});
  fx = d.Admin(60, ForceRelease{kS});
  EXPECT_TRUE(fx.empty());
}

// ---- B3: durability -------------------------------------------------------------

TEST(Store, B3_GrantRecordTravelsWithEveryGrant) {
  StoreDriver d;
  // At once.
  Effects fx = d.Send(0, kP1, Acq(kS, 1));
  Token t1 = Only(SentTo<Granted>(fx, kP1)).token;
  EXPECT_EQ(Only(PersistedOf<GrantRecord>(fx)), (GrantRecord{kS, t1, kP1, 1}));
  // On release, to the head of the queue.
  d.Send(10, kP2, Acq(kS, 1));
  d.Send(20, kP3, Acq(kS, 1));
  fx = d.Send(30, kP1, Release{kS, t1});
  Token t2 = Only(SentTo<Granted>(fx, kP2)).token;
  EXPECT_EQ(Only(PersistedOf<GrantRecord>(fx)), (GrantRecord{kS, t2, kP2, 1}));
  // On lease expiry, from a tick.
  d.Send(900, kP3, Heartbeat{1});
  fx = d.Tick(1010);
  Token t3 = Only(SentTo<Granted>(fx, kP3)).token;
  EXPECT_EQ(Only(PersistedOf<GrantRecord>(fx)), (GrantRecord{kS, t3, kP3, 1}));
  // Replies that grant nothing persist nothing.
  fx = d.Send(1020, kP1, Acq(kS, 2));
  EXPECT_EQ(SentTo<Queued>(fx, kP1).size(), 1u);
  EXPECT_TRUE(fx.persist.empty());
}

TEST(Store, B3_CommitRecordTravelsWithItsAck) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  std::vector<AttributeWrite> writes{Set("a", "1"), Del("b")};
  Effects fx = d.Send(10, kP1, Com(kS, t1, 1, writes, /*clear_first=*/true));
  EXPECT_EQ(Only(SentTo<CommitAck>(fx, kP1)), (CommitAck{kS, t1, 1}));
  EXPECT_EQ(Only(PersistedOf<CommitRecord>(fx)), (CommitRecord{kS, t1, 1, true, writes}));
  // A refused commit persists nothing.
  fx = d.Send(20, kP2, Com(kS, t1, 2, {Set("a", "2")}));
  EXPECT_TRUE(fx.persist.empty());
}

TEST(Store, B3_RecoveryRestoresEveryAcknowledgedCommit) {
  StoreDriver d;
  std::map<SessionId, AttributeMap> acked;
  auto commit = [&](Time now, ProcessRef p, SessionId s, Token t, std::uint64_t seq,
                    std::vector<AttributeWrite> writes, bool clear_first = false) {
    Effects fx = d.Send(now, p, Com(s, t, seq, writes, clear_first));
    ASSERT_EQ(SentTo<CommitAck>(fx, p).size(), 1u);
    AttributeMap& m = acked[s];
    if (clear_first) m.clear();
    for (const AttributeWrite& w : writes) {
      if (w.erase) {
        m.erase(w.name);
      } else {
        m[w.name] = w.value;
      }
    }
  };
  Token a = d.Grant(0, kP1, kS, 1);
  commit(1, kP1, kS, a, 1, {Set("x", "1"), Set("y", "2")});
  commit(2, kP1, kS, a, 2, {Del("x"), Set("z", "3")});
  d.Send(3, kP1, Release{kS, a});
  Token b = d.Grant(4, kP2, kS, 1);
  commit(5, kP2, kS, b, 1, {Set("y", "20")});  // still held at the crash
  Token c = d.Grant(6, kP3, kS2, 1);
  commit(7, kP3, kS2, c, 1, {Set("gone", "1")});
  commit(8, kP3, kS2, c, 2, {Set("kept", "2")}, /*clear_first=*/true);
  d.Send(9, kP3, Release{kS2, c});

  core::StoreState before = d.state();
  d.Restart(100);
  for (const auto& [id, attrs] : acked) {
    ASSERT_TRUE(d.Has(id)) << "session " << id;
    EXPECT_EQ(d.session(id).attributes, attrs) << "session " << id;
    EXPECT_EQ(d.session(id).attributes, before.sessions.at(id).attributes);
    EXPECT_EQ(d.session(id).version, before.sessions.at(id).version);
  }
  EXPECT_EQ(acked[kS], (AttributeMap{{"y", "20"}, {"z", "3"}}));
  EXPECT_EQ(acked[kS2], (AttributeMap{{"kept", "2"}}));
}

// ---- B4: at-most-once -----------------------------------------------------------

TEST(Store, B4_RepeatedAcquireFromHolderGetsTheSameGrantAgain) {
  StoreDriver d;
  Effects fx = d.Send(0, kP1, Acq(kS, 3));
  Granted first = Only(SentTo<Granted>(fx, kP1));
  core::Tenure tenure = *d.session(kS).tenure;

  fx = d.Send(10, kP1, Acq(kS, 3));
  EXPECT_EQ(Only(SentTo<Granted>(fx, kP1)), first);
  EXPECT_TRUE(fx.persist.empty());  // no new tenure
  EXPECT_EQ(*d.session(kS).tenure, tenure);
  EXPECT_EQ(d.state().last_token, first.token);

  // After a commit the repeat carries the current version (and a snapshot
  // for the cache it names).
  d.Send(20, kP1, Com(kS, first.token, 1, {Set("a", "1")}));
  fx = d.Send(30, kP1, Acq(kS, 3));
  Granted again = Only(SentTo<Granted>(fx, kP1));
  EXPECT_EQ(again.token, first.token);
  EXPECT_EQ(again.request_id, 3u);
  EXPECT_EQ(again.version, (DataVersion{first.token, 1}));
  EXPECT_TRUE(again.has_snapshot);
  EXPECT_EQ(again.snapshot, (AttributeMap{{"a", "1"}}));
  EXPECT_TRUE(fx.persist.empty());
}

TEST(Store, B4_NewRequestFromTheHolderEndsItsOldTenure) {
  // The holder stopped trusting its lease and asks again while its release is
  // still on the way: its old tenure is over and the request is served anew.
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  Effects fx = d.Send(10, kP1, Acq(kS, 2));
  EXPECT_EQ(Only(PersistedOf<TenureEndRecord>(fx)), (TenureEndRecord{kS, t1}));
  Granted g = Only(SentTo<Granted>(fx, kP1));
  EXPECT_EQ(g.request_id, 2u);
  EXPECT_GT(g.token, t1);
  fx = d.Send(20, kP1, Com(kS, t1, 1, {Set("a", "old")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)).reason, Reason::kStaleToken);
  // The late release of the old tenure changes nothing.
  fx = d.Send(30, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<ReleaseAck>(fx, kP1)), (ReleaseAck{kS, t1}));
  EXPECT_EQ(d.TokenOf(kS), g.token);

  // With someone waiting, the waiter goes first and the holder queues behind.
  d.Send(40, kP2, Acq(kS, 1));
  fx = d.Send(50, kP1, Acq(kS, 3));
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_GT(g2.token, g.token);
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP1)), (Queued{kS, 3, 0}));
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP2)), (Recall{kS, g2.token}));
  EXPECT_EQ(d.Holder(kS), kP2);
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP1}));
}

TEST(Store, B4_RepeatedAcquireFromQueuedProcessIsQueuedAgainOnce) {
  StoreDriver d;
  d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 4));
  d.Send(20, kP3, Acq(kS, 8));
  std::uint64_t recalls = d.store().stats().recalls;

  Effects fx = d.Send(30, kP3, Acq(kS, 8));
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP3)), (Queued{kS, 8, 1}));
  fx = d.Send(40, kP2, Acq(kS, 4));
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP2)), (Queued{kS, 4, 0}));
  EXPECT_TRUE(SentTo<Recall>(fx, kP1).empty());
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP2, kP3}));
  EXPECT_EQ(d.store().stats().recalls, recalls);
}

TEST(Store, B4_OlderRequestIdIsIgnored) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 5);
  d.Send(10, kP2, Acq(kS, 7));
  core::StoreState before = d.state();

  // A late copy of an earlier request from the holder: no new tenure.
  Effects fx = d.Send(20, kP1, Acq(kS, 4));
  EXPECT_TRUE(fx.send.empty());
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_EQ(d.TokenOf(kS), t1);
  // From a queued process: no second entry, no answer.
  fx = d.Send(30, kP2, Acq(kS, 6));
  EXPECT_TRUE(fx.send.empty());
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP2}));
  EXPECT_EQ(d.session(kS).queue[0].request_id, 7u);
  EXPECT_EQ(d.session(kS).tenure, before.sessions.at(kS).tenure);
  EXPECT_EQ(d.session(kS).queue, before.sessions.at(kS).queue);
}

TEST(Store, B4_DuplicateCommitIsAcknowledgedButAppliedOnce) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  d.Send(20, kP1, Com(kS, t1, 2, {Set("a", "2")}));

  // A duplicate of seq 1 arrives late: re-applying it would set a back to 1.
  Effects fx = d.Send(30, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  EXPECT_EQ(Only(SentTo<CommitAck>(fx, kP1)), (CommitAck{kS, t1, 1}));
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "2"}}));
  EXPECT_EQ(d.session(kS).version, (DataVersion{t1, 2}));
  // And an immediate duplicate of the latest.
  fx = d.Send(40, kP1, Com(kS, t1, 2, {Set("a", "2")}));
  EXPECT_EQ(Only(SentTo<CommitAck>(fx, kP1)), (CommitAck{kS, t1, 2}));
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_EQ(d.session(kS).tenure->last_seq, 2u);
  EXPECT_EQ(d.store().stats().commits, 2u);
}

TEST(Store, B4_CommitWithGapInSeqIsRefused) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  Effects fx = d.Send(20, kP1, Com(kS, t1, 3, {Set("a", "3")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)),
            Refusal(kS, t1, 3, MessageKind::kCommit, Reason::kNotPending));
  EXPECT_TRUE(SentTo<CommitAck>(fx, kP1).empty());
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));
  EXPECT_EQ(d.session(kS).tenure->last_seq, 1u);
  // The tenure is intact: seq 2 then seq 3 apply.
  EXPECT_EQ(Only(SentTo<CommitAck>(d.Send(30, kP1, Com(kS, t1, 2, {Set("a", "2")})), kP1)).seq, 2u);
  EXPECT_EQ(Only(SentTo<CommitAck>(d.Send(40, kP1, Com(kS, t1, 3, {Set("a", "3")})), kP1)).seq, 3u);
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "3"}}));
}

TEST(Store, B4_MessageFromOlderIncarnationIsIgnored) {
  StoreDriver d;
  const ProcessRef old_p1{1, 1};
  const ProcessRef new_p1{1, 2};
  Token t = d.Grant(0, new_p1, kS, 1);
  core::StoreState before = d.state();

  // The predecessor's messages, even with the current token, do nothing.
  for (Message m :
       std::vector<Message>{Acq(kS2, 50), Heartbeat{3}, Release{kS, t},
                            Com(kS, t, 1, {Set("a", "old")}), Reclaim{kS, t}, Acq(kS, 99)}) {
    Effects fx = d.Send(10, old_p1, m);
    EXPECT_TRUE(fx.send.empty()) << "kind " << m.index();
    EXPECT_TRUE(fx.persist.empty()) << "kind " << m.index();
  }
  EXPECT_EQ(d.state(), before);
  EXPECT_EQ(d.Holder(kS), new_p1);
  EXPECT_FALSE(d.Has(kS2));
}

TEST(Store, B4_NewerIncarnationRevokesPredecessorsLocksAndQueuedRequests) {
  StoreDriver d;
  const ProcessRef new_p1{1, 2};
  Token t1 = d.Grant(0, kP1, kS, 1);  // incarnation 1 holds kS
  d.Grant(0, kP2, kS2, 1);
  d.Send(10, kP1, Acq(kS2, 2));  // ... and waits for kS2
  d.Send(20, kP3, Acq(kS, 1));   // P3 waits for kS

  Effects fx = d.Send(30, new_p1, Heartbeat{1});
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kProcessRestarted}));
  EXPECT_EQ(Only(SentTo<HeartbeatAck>(fx, new_p1)), (HeartbeatAck{1}));
  Granted g3 = Only(SentTo<Granted>(fx, kP3));
  EXPECT_GT(g3.token, t1);
  EXPECT_EQ(d.Holder(kS), kP3);
  EXPECT_TRUE(d.QueueOf(kS2).empty());
  EXPECT_EQ(d.state().processes.at(1).incarnation, 2u);
  EXPECT_TRUE(d.state().processes.at(1).held.empty());
  EXPECT_TRUE(d.state().processes.at(1).queued.empty());
  // The predecessor's token is dead even if one of its messages is late.
  fx = d.Send(40, kP1, Com(kS, t1, 1, {Set("a", "x")}));
  EXPECT_TRUE(fx.send.empty());
  EXPECT_TRUE(d.session(kS).attributes.empty());
}

// A late duplicate of an Acquire that was granted and whose tenure has
// finished must not create a second tenure. The store keeps the "newest
// request" mark in the session, and an empty, free session is erased, so the
// mark is lost with it.
TEST(Store, B4_StaleAcquireIsIgnoredAfterAnEmptySessionWasReleased) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Release{kS, t1});          // no data: only the request mark keeps it
  Effects fx = d.Send(20, kP1, Acq(kS, 1));  // a duplicate of request 1
  EXPECT_TRUE(SentTo<Granted>(fx, kP1).empty());
  EXPECT_TRUE(PersistedOf<GrantRecord>(fx).empty());
}

// ---- B5: try-lock and cancel ---------------------------------------------------------

TEST(Store, B5_TryLockOnHeldSessionAnswersBusyAndBuffersNothing) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  Effects fx = d.Send(10, kP2, Acq(kS, 3, {}, /*try_only=*/true));
  ASSERT_EQ(fx.send.size(), 1u);
  EXPECT_EQ(Only(SentTo<Busy>(fx, kP2)), (Busy{kS, 3}));
  EXPECT_TRUE(SentTo<Recall>(fx, kP1).empty());
  EXPECT_TRUE(fx.persist.empty());
  EXPECT_TRUE(d.QueueOf(kS).empty());
  EXPECT_FALSE(d.session(kS).tenure->recalled);
  EXPECT_TRUE(d.state().processes.at(kP2.id).queued.empty());
  // Nothing was buffered, so the release grants nobody.
  fx = d.Send(20, kP1, Release{kS, t1});
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  // A try-lock on a free session is granted like any request.
  fx = d.Send(30, kP2, Acq(kS, 4, {}, /*try_only=*/true));
  EXPECT_EQ(Only(SentTo<Granted>(fx, kP2)).request_id, 4u);
}

TEST(Store, B5_CancelledRequestIsAcknowledgedAndNeverGranted) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 4));
  d.Send(20, kP3, Acq(kS, 6));

  // A cancel naming another request id withdraws nothing.
  Effects fx = d.Send(30, kP2, Cancel{kS, 3});
  EXPECT_TRUE(SentTo<CancelAck>(fx, kP2).empty());
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP2, kP3}));

  fx = d.Send(40, kP2, Cancel{kS, 4});
  EXPECT_EQ(Only(SentTo<CancelAck>(fx, kP2)), (CancelAck{kS, 4}));
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP3}));
  EXPECT_TRUE(d.state().processes.at(kP2.id).queued.empty());
  // P3 moved up.
  EXPECT_EQ(Only(SentTo<Queued>(d.Send(50, kP3, Acq(kS, 6)), kP3)), (Queued{kS, 6, 0}));

  fx = d.Send(60, kP1, Release{kS, t1});
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  Granted g3 = Only(SentTo<Granted>(fx, kP3));
  fx = d.Send(70, kP3, Release{kS, g3.token});
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  EXPECT_FALSE(d.Has(kS));
}

// ---- B6: session lifecycle ---------------------------------------------------------

TEST(Store, B6_SessionIsCreatedOnFirstUse) {
  StoreDriver d;
  EXPECT_TRUE(d.state().sessions.empty());
  d.Grant(0, kP1, kS, 1);
  ASSERT_TRUE(d.Has(kS));
  EXPECT_TRUE(d.session(kS).attributes.empty());
  EXPECT_EQ(d.session(kS).version, DataVersion{});
  EXPECT_EQ(d.state().sessions.size(), 1u);
}

TEST(Store, B6_UnusedSessionIsDroppedAfterSessionIdle) {
  core::StoreConfig config = TestConfig();
  config.session_idle_us = 5000;
  StoreDriver d(config);
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  Effects fx = d.Send(20, kP1, Release{kS, t1});
  EXPECT_EQ(fx.next_deadline, 5020u);

  fx = d.Tick(5019);
  EXPECT_TRUE(fx.persist.empty());
  ASSERT_TRUE(d.Has(kS));
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));

  fx = d.Tick(5020);
  EXPECT_EQ(Only(PersistedOf<SessionDroppedRecord>(fx)).session, kS);
  EXPECT_FALSE(d.Has(kS));
  EXPECT_EQ(fx.next_deadline, core::kNever);

  // Used again, it starts empty; a process that cached the old data is told.
  fx = d.Send(6000, kP2, Acq(kS, 1, DataVersion{t1, 1}));
  Granted g = Only(SentTo<Granted>(fx, kP2));
  EXPECT_TRUE(g.has_snapshot);
  EXPECT_TRUE(g.snapshot.empty());
  EXPECT_EQ(g.version, DataVersion{});
  EXPECT_GT(g.token, t1);

  // The drop survives a restart.
  d.Send(6010, kP2, Release{kS, g.token});
  d.Restart(6020);
  EXPECT_FALSE(d.Has(kS));
}

TEST(Store, B6_UseKeepsASessionAlive) {
  core::StoreConfig config = TestConfig();
  config.session_idle_us = 5000;
  StoreDriver d(config);
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  // Held far longer than the idle time (with heartbeats): never dropped.
  for (Time t = 500; t <= 12000; t += 500) {
    Effects fx = d.Send(t, kP1, Heartbeat{t});
    EXPECT_TRUE(PersistedOf<SessionDroppedRecord>(fx).empty()) << "at " << t;
  }
  Effects fx = d.Send(12000, kP1, Release{kS, t1});
  // Idle counts from the release.
  EXPECT_EQ(fx.next_deadline, 17000u);
  // A grant renews it; a later release restarts the count.
  Token t2 = d.Grant(16000, kP2, kS, 1);
  d.Send(16500, kP2, Release{kS, t2});
  EXPECT_TRUE(PersistedOf<SessionDroppedRecord>(d.Tick(17000)).empty());
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));
  EXPECT_EQ(PersistedOf<SessionDroppedRecord>(d.Tick(21500)).size(), 1u);
  EXPECT_FALSE(d.Has(kS));
}

TEST(Store, B6_InvalidateWhileLockedRevokesHolderAndGrantsAnEmptySession) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("user", "alice")}));
  d.Send(20, kP2, Acq(kS, 1, DataVersion{t1, 1}));  // P2 even has the data cached
  d.Send(30, kP3, Acq(kS, 1));

  Effects fx = d.Admin(40, AdminInvalidate{kS});
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kInvalidated}));
  EXPECT_EQ(Only(PersistedOf<SessionDroppedRecord>(fx)).session, kS);
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  EXPECT_TRUE(d.session(kS).attributes.empty());
  // P1 lets go of the dead token: P2 is granted the empty session.
  fx = d.Send(45, kP1, Release{kS, t1});
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_GT(g2.token, t1);
  EXPECT_TRUE(g2.has_snapshot);
  EXPECT_TRUE(g2.snapshot.empty());
  EXPECT_EQ(g2.version, DataVersion{});
  // P3 still waits behind P2.
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP2)), (Recall{kS, g2.token}));
  EXPECT_TRUE(d.session(kS).attributes.empty());
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP3}));

  // The old holder's late write is refused; the data stays gone after a restart.
  fx = d.Send(50, kP1, Com(kS, t1, 2, {Set("user", "alice")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)).reason, Reason::kStaleToken);
  d.Restart(60);
  EXPECT_TRUE(d.session(kS).attributes.empty());
  EXPECT_EQ(d.Holder(kS), kP2);
}

TEST(Store, B6_InvalidateOfUnheldSessionDropsItsData) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("user", "bob")}));
  d.Send(20, kP1, Release{kS, t1});
  ASSERT_TRUE(d.Has(kS));
  Effects fx = d.Admin(30, AdminInvalidate{kS});
  EXPECT_EQ(PersistedOf<SessionDroppedRecord>(fx).size(), 1u);
  EXPECT_TRUE(SentTo<Revoked>(fx, kP1).empty());
  EXPECT_FALSE(d.Has(kS));
  // Invalidating a session that does not exist does nothing.
  EXPECT_TRUE(d.Admin(40, AdminInvalidate{kS3}).empty());
}

TEST(Store, B6_SessionClearedAndReleasedDisappears) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1"), Set("b", "2")}));
  d.Send(20, kP1, Com(kS, t1, 2, {}, /*clear_first=*/true));  // logout
  ASSERT_TRUE(d.Has(kS));                                     // still held
  EXPECT_TRUE(d.session(kS).attributes.empty());
  Effects fx = d.Send(30, kP1, Release{kS, t1});
  EXPECT_FALSE(d.Has(kS));
  EXPECT_TRUE(d.state().timers.empty());
  EXPECT_EQ(fx.next_deadline, core::kNever);
  // And it stays gone after a restart.
  d.Restart(40);
  EXPECT_FALSE(d.Has(kS));
}

// effects.h: "`token` is a fresh token so that versions never repeat". The
// store writes SessionDroppedRecord{id} with token 0 and does not advance
// last_token.
TEST(Store, B6_InvalidationPersistsADropAndVersionsNeverRepeat) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  Effects fx = d.Admin(20, AdminInvalidate{kS});
  EXPECT_EQ(Only(PersistedOf<SessionDroppedRecord>(fx)).session, kS);
  d.Send(25, kP1, Release{kS, t1});
  // Empty again, at version {0, 0}; the next write's version names a newer
  // tenure, so no version of this session's data is ever reused.
  Token t2 = d.Grant(30, kP2, kS, 1);
  EXPECT_GT(t2, t1);
  d.Send(40, kP2, Com(kS, t2, 1, {Set("a", "2")}));
  EXPECT_EQ(d.session(kS).version, (core::DataVersion{t2, 1}));
  EXPECT_GT(d.session(kS).version, (core::DataVersion{t1, 1}));
}

// The holder of an invalidated session may not have heard of it yet and still
// believe it holds the lock: the next waiter is granted only once the holder
// gives the dead token back. Its data is gone and its token refused at once.
TEST(Store, B6_InvalidatingAHeldSessionGrantsTheNextOnlyAfterTheHolderAcknowledges) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("user", "alice")}));
  d.Send(20, kP2, Acq(kS, 1, DataVersion{t1, 1}));  // cached: must not keep it
  Effects fx = d.Admin(30, AdminInvalidate{kS});
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kInvalidated}));
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1}));
  EXPECT_EQ(Only(PersistedOf<SessionDroppedRecord>(fx)).session, kS);
  EXPECT_TRUE(PersistedOf<TenureEndRecord>(fx).empty());
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  EXPECT_EQ(d.Holder(kS), kP1);
  EXPECT_EQ(d.session(kS).tenure->revoked, Reason::kInvalidated);
  EXPECT_TRUE(d.session(kS).attributes.empty());
  EXPECT_EQ(d.session(kS).version, DataVersion{});

  // The dead token is refused: commits (a repeat of an applied one is still
  // acknowledged) and reclaims.
  fx = d.Send(40, kP1, Com(kS, t1, 2, {Set("user", "alice")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)),
            Refusal(kS, t1, 2, MessageKind::kCommit, Reason::kStaleToken));
  EXPECT_TRUE(PersistedOf<CommitRecord>(fx).empty());
  EXPECT_EQ(Only(SentTo<CommitAck>(d.Send(41, kP1, Com(kS, t1, 1, {Set("user", "alice")})), kP1)),
            (CommitAck{kS, t1, 1}));
  EXPECT_EQ(Only(SentTo<Rejected>(d.Send(42, kP1, Reclaim{kS, t1}), kP1)).reason,
            Reason::kStaleToken);
  EXPECT_TRUE(d.session(kS).attributes.empty());
  // Requests keep buffering in order (R4), try-locks find it busy.
  EXPECT_EQ(Only(SentTo<Queued>(d.Send(50, kP3, Acq(kS, 1)), kP3)).ahead, 1u);
  EXPECT_EQ(SentTo<Busy>(d.Send(51, {4, 1}, Acq(kS, 1, {}, true)), {4, 1}).size(), 1u);
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP2, kP3}));
  EXPECT_EQ(d.Holder(kS), kP1);

  // P1's Release acknowledges: the tenure ends, the head is granted the empty
  // session and recalled at once, because P3 waits behind it (R5).
  fx = d.Send(60, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<ReleaseAck>(fx, kP1)), (ReleaseAck{kS, t1}));
  EXPECT_EQ(Only(PersistedOf<TenureEndRecord>(fx)), (TenureEndRecord{kS, t1}));
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_GT(g2.token, t1);
  EXPECT_TRUE(g2.has_snapshot);
  EXPECT_TRUE(g2.snapshot.empty());
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP2)), (Recall{kS, g2.token}));
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP3}));
  // A repeat of the release changes nothing.
  fx = d.Send(70, kP1, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<ReleaseAck>(fx, kP1)), (ReleaseAck{kS, t1}));
  EXPECT_EQ(d.Holder(kS), kP2);
}

// A holder that dropped the revoked tenure and asks again has given the token
// back too: the head is granted and the new request joins the back.
TEST(Store, B6_ANewAcquireFromTheRevokedHolderAcknowledges) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 1));
  d.Admin(20, AdminInvalidate{kS});
  Effects fx = d.Send(30, kP1, Acq(kS, 2));
  EXPECT_EQ(Only(PersistedOf<TenureEndRecord>(fx)), (TenureEndRecord{kS, t1}));
  EXPECT_GT(Only(SentTo<Granted>(fx, kP2)).token, t1);
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP1)).ahead, 0u);
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP1}));
}

TEST(Store, B6_ForceReleaseWaitsForLeaseExpiryWhenTheHolderIsSilent) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);  // P1's lease runs to 1000
  d.Send(10, kP2, Acq(kS, 1));
  d.Admin(20, ForceRelease{kS});
  for (Time t = 100; t < 1000; t += 100) {
    if (t % 400 == 0) d.Send(t, kP2, Heartbeat{t});
    Effects fx = d.Tick(t);
    EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty()) << "at " << t;
    EXPECT_TRUE(fx.persist.empty()) << "at " << t;
  }
  EXPECT_EQ(d.Holder(kS), kP1);
  // B1: the lease ends as for a crashed holder; the session moves on.
  Effects fx = d.Tick(1000);
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kLeaseExpired}));
  EXPECT_EQ(Only(PersistedOf<TenureEndRecord>(fx)), (TenureEndRecord{kS, t1}));
  Token t2 = Only(SentTo<Granted>(fx, kP2)).token;
  EXPECT_GT(t2, t1);
  EXPECT_EQ(d.Holder(kS), kP2);
  EXPECT_EQ(d.TokenOf(kS), t2);
}

// Lost Revoked messages: the store tells the holder again on the recall
// timer for as long as the tenure is revoking, even while the holder's
// heartbeats keep its lease alive, and stops once it is acknowledged.
TEST(Store, B6_RevokedIsResentUntilAcknowledged) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP2, Acq(kS, 1));
  Effects fx = d.Admin(20, ForceRelease{kS});
  EXPECT_EQ(fx.next_deadline, Time{120});
  EXPECT_TRUE(d.Tick(119).send.empty());
  for (Time t = 120; t <= 2020; t += 100) {
    fx = d.Tick(t);
    EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kForceReleased}))
        << "at " << t;
    EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1})) << "at " << t;
    EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty()) << "at " << t;
    EXPECT_EQ(fx.next_deadline, t + 100);
    if (t % 500 == 20) {
      d.Send(t + 50, kP1, Heartbeat{t});
      d.Send(t + 50, kP2, Heartbeat{t});
    }
  }
  EXPECT_EQ(d.Holder(kS), kP1);
  fx = d.Send(2050, kP1, Release{kS, t1});
  Token t2 = Only(SentTo<Granted>(fx, kP2)).token;
  EXPECT_GT(t2, t1);
  // The new holder is not recalled (nobody waits): nothing more is resent.
  fx = d.Tick(2120);
  EXPECT_TRUE(fx.send.empty());
  EXPECT_FALSE(d.session(kS).tenure->recalled);
}

// With nobody waiting, only Revoked goes at once (a holder that re-asks at
// once then finds the session free); the first retry also recalls the token.
TEST(Store, B6_RevokingAnUnwantedSessionRecallsOnTheFirstRetry) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  Effects fx = d.Admin(20, ForceRelease{kS});
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kForceReleased}));
  EXPECT_TRUE(SentTo<Recall>(fx, kP1).empty());
  fx = d.Tick(120);
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kForceReleased}));
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1}));
  d.Send(130, kP1, Release{kS, t1});
  EXPECT_FALSE(d.Has(kS));
}

// B6 + B7: an invalidation whose holder had not let go survives a restart:
// the tenure comes back revoked, not reclaimable, and still blocks grants
// until the holder gives the token back or the grace period ends.
TEST(Store, B6_InvalidationUnderAHolderSurvivesARestart) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("user", "alice")}));
  d.Admin(20, AdminInvalidate{kS});
  d.Restart(30);
  ASSERT_TRUE(d.session(kS).tenure);
  EXPECT_EQ(d.session(kS).tenure->revoked, Reason::kInvalidated);
  EXPECT_TRUE(d.session(kS).attributes.empty());
  EXPECT_EQ(Only(SentTo<Rejected>(d.Send(40, kP1, Reclaim{kS, t1}), kP1)).reason,
            Reason::kStaleToken);
  EXPECT_EQ(Only(SentTo<Queued>(d.Send(50, kP2, Acq(kS, 1)), kP2)).ahead, 0u);
  Effects fx = d.Tick(130);
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kInvalidated}));
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1}));
  fx = d.Send(140, kP1, Release{kS, t1});
  Granted g = Only(SentTo<Granted>(fx, kP2));
  EXPECT_GT(g.token, t1);
  EXPECT_TRUE(g.snapshot.empty());
}

// Found by the RapidCheck configuration property: a tenure invalidated before
// its first commit came back from a restart as an ordinary one, and the
// holder's late commit (computed from the data before the logout) landed in
// the emptied session.
TEST(Store, B6_InvalidationBeforeTheFirstCommitSurvivesARestart) {
  StoreDriver d;
  Token t0 = d.Grant(0, kP2, kS, 1);
  d.Send(5, kP2, Com(kS, t0, 1, {Set("a0", "2")}));
  d.Send(6, kP2, Release{kS, t0});
  Token t1 = d.Grant(10, kP1, kS, 1);
  d.Admin(20, AdminInvalidate{kS});
  d.Restart(30);
  ASSERT_TRUE(d.session(kS).tenure);
  EXPECT_EQ(d.session(kS).tenure->revoked, Reason::kInvalidated);
  EXPECT_EQ(Only(SentTo<Rejected>(d.Send(40, kP1, Com(kS, t1, 1, {Set("a0", "3")})), kP1)).reason,
            Reason::kStaleToken);
  EXPECT_TRUE(d.session(kS).attributes.empty());
  // Even a session that never had data: the revocation is remembered.
  StoreDriver e;
  Token u1 = e.Grant(0, kP1, kS, 1);
  e.Admin(20, AdminInvalidate{kS});
  e.Restart(30);
  ASSERT_TRUE(e.session(kS).tenure);
  EXPECT_EQ(e.session(kS).tenure->revoked, Reason::kInvalidated);
  EXPECT_EQ(Only(SentTo<Rejected>(e.Send(40, kP1, Reclaim{kS, u1}), kP1)).reason,
            Reason::kStaleToken);
}

// ---- B7: store restart --------------------------------------------------------------

TEST(Store, B7_RecoverGivesHigherEpochAndKeepsHoldersTokensAndData) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  Token t2 = d.Grant(20, kP2, kS2, 1);
  d.Send(30, kP2, Com(kS2, t2, 1, {Set("b", "2")}));
  d.Send(40, kP2, Release{kS2, t2});
  d.Send(50, kP3, Acq(kS, 1));  // the queue is volatile
  EXPECT_EQ(d.state().epoch, 1u);

  Effects fx = d.Restart(5000);
  EXPECT_EQ(d.state().epoch, 2u);
  EXPECT_EQ(Only(PersistedOf<StoreStartedRecord>(fx)), (StoreStartedRecord{2}));
  EXPECT_EQ(d.store().address(), core::StoreAddress(0, 2));
  EXPECT_EQ(d.state().last_token, t2);
  ASSERT_TRUE(d.Has(kS));
  ASSERT_TRUE(d.session(kS).tenure.has_value());
  EXPECT_EQ(d.Holder(kS), kP1);
  EXPECT_EQ(d.TokenOf(kS), t1);
  EXPECT_EQ(d.session(kS).tenure->last_seq, 1u);
  EXPECT_FALSE(d.session(kS).tenure->reclaimed);
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));
  EXPECT_TRUE(d.QueueOf(kS).empty());
  ASSERT_TRUE(d.Has(kS2));
  EXPECT_FALSE(d.session(kS2).tenure.has_value());
  EXPECT_EQ(d.session(kS2).attributes, (AttributeMap{{"b", "2"}}));
  EXPECT_TRUE(d.state().in_grace);
  EXPECT_EQ(d.state().grace_until, 6250u);
  EXPECT_LE(fx.next_deadline, 6250u);

  // Every restart raises the epoch again.
  fx = d.Restart(5100);
  EXPECT_EQ(d.state().epoch, 3u);
  EXPECT_EQ(Only(PersistedOf<StoreStartedRecord>(fx)), (StoreStartedRecord{3}));
}

TEST(Store, B7_PersistedHolderReclaimsDuringGraceAndKeepsItsTenure) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  d.Restart(5000);

  // Another process asks during grace: buffered, not granted; the holder is asked.
  Effects fx = d.Send(5010, kP2, Acq(kS, 1));
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  EXPECT_EQ(Only(SentTo<Queued>(fx, kP2)), (Queued{kS, 1, 0}));
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1}));
  // A try-lock during grace is busy.
  EXPECT_EQ(SentTo<Busy>(d.Send(5015, kP3, Acq(kS, 1, {}, true)), kP3).size(), 1u);

  fx = d.Send(5020, kP1, Reclaim{kS, t1});
  EXPECT_EQ(Only(SentTo<ReclaimAck>(fx, kP1)), (ReclaimAck{kS, t1}));
  EXPECT_TRUE(d.session(kS).tenure->reclaimed);
  EXPECT_TRUE(fx.persist.empty());
  // A repeated reclaim is acknowledged again.
  EXPECT_EQ(Only(SentTo<ReclaimAck>(d.Send(5030, kP1, Reclaim{kS, t1}), kP1)),
            (ReclaimAck{kS, t1}));

  d.Send(5900, kP1, Heartbeat{1});
  d.Send(5900, kP2, Heartbeat{1});
  fx = d.Tick(6250);  // grace over
  EXPECT_TRUE(SentTo<Revoked>(fx, kP1).empty());
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  EXPECT_FALSE(d.state().in_grace);
  EXPECT_EQ(d.Holder(kS), kP1);
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP2}));
  // The tenure goes on where it was: commit seq 2 applies.
  fx = d.Send(6300, kP1, Com(kS, t1, 2, {Set("a", "2")}));
  EXPECT_EQ(Only(SentTo<CommitAck>(fx, kP1)), (CommitAck{kS, t1, 2}));
  fx = d.Send(6400, kP1, Release{kS, t1});
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_GT(g2.token, t1);
  EXPECT_EQ(g2.snapshot, (AttributeMap{{"a", "2"}}));
}

TEST(Store, B7_UnreclaimedTenureEndsAtGraceEndAndWaiterIsGranted) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(10, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  d.Restart(5000);
  d.Send(5010, kP2, Acq(kS, 1));
  d.Send(5900, kP2, Heartbeat{1});

  Effects fx = d.Tick(6249);
  EXPECT_TRUE(SentTo<Granted>(fx, kP2).empty());
  EXPECT_TRUE(SentTo<Revoked>(fx, kP1).empty());
  EXPECT_EQ(d.Holder(kS), kP1);

  fx = d.Tick(6250);
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kLeaseExpired}));
  Granted g2 = Only(SentTo<Granted>(fx, kP2));
  EXPECT_GT(g2.token, t1);
  EXPECT_EQ(g2.snapshot, (AttributeMap{{"a", "1"}}));
  EXPECT_EQ(Only(PersistedOf<TenureEndRecord>(fx)), (TenureEndRecord{kS, t1}));
  EXPECT_EQ(Only(PersistedOf<GrantRecord>(fx)), (GrantRecord{kS, g2.token, kP2, g2.request_id}));
  EXPECT_FALSE(d.state().in_grace);

  // Too late to reclaim or to write.
  fx = d.Send(6300, kP1, Reclaim{kS, t1});
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)).what, static_cast<std::uint8_t>(MessageKind::kReclaim));
  EXPECT_TRUE(SentTo<ReclaimAck>(fx, kP1).empty());
  fx = d.Send(6310, kP1, Com(kS, t1, 2, {Set("a", "late")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP1)).reason, Reason::kStaleToken);
  EXPECT_EQ(d.session(kS).attributes, (AttributeMap{{"a", "1"}}));
}

TEST(Store, B7_HeartbeatsWithoutReclaimDoNotSaveTheTenure) {
  // A live process that does not claim its tenure (it lost it, or never got
  // the grant) loses it at grace end even though its lease is renewed.
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Restart(5000);
  d.Send(5010, kP2, Acq(kS, 1));
  d.Send(5900, kP1, Heartbeat{1});
  d.Send(5900, kP2, Heartbeat{1});
  EXPECT_GT(d.state().processes.at(kP1.id).lease_until, 6250u);
  EXPECT_TRUE(SentTo<Revoked>(d.Tick(6249), kP1).empty());
  Effects fx = d.Tick(6250);
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP1)), (Revoked{kS, t1, Reason::kLeaseExpired}));
  EXPECT_GT(Only(SentTo<Granted>(fx, kP2)).token, t1);
  EXPECT_EQ(d.Holder(kS), kP2);
}

TEST(Store, B7_SessionFreeInTheLogMayBeGrantedDuringGrace) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);  // held at the crash: blocks grace
  Token t2 = d.Grant(10, kP2, kS2, 1);
  d.Send(20, kP2, Com(kS2, t2, 1, {Set("b", "2")}));
  d.Send(30, kP2, Release{kS2, t2});
  d.Restart(5000);
  ASSERT_TRUE(d.state().in_grace);

  Effects fx = d.Send(5010, kP3, Acq(kS2, 1));
  Granted g = Only(SentTo<Granted>(fx, kP3));
  EXPECT_GT(g.token, std::max(t1, t2));
  EXPECT_EQ(g.snapshot, (AttributeMap{{"b", "2"}}));
  // So may a session that was never used.
  EXPECT_GT(d.Grant(5020, kP3, kS3, 2), g.token);
  EXPECT_TRUE(d.state().in_grace);
  EXPECT_EQ(d.Holder(kS), kP1);
}

TEST(Store, B7_RestartWithOneHolderReclaimingAndOneNot) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(1, kP1, Com(kS, t1, 1, {Set("a", "1")}));
  Token t2 = d.Grant(2, kP2, kS2, 1);
  d.Send(3, kP2, Com(kS2, t2, 1, {Set("b", "2")}));
  d.Restart(5000);

  // P3 wants both sessions; neither can be granted during grace.
  Effects fx = d.Send(5010, kP3, Acq(kS, 1));
  EXPECT_TRUE(SentTo<Granted>(fx, kP3).empty());
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP1)), (Recall{kS, t1}));
  fx = d.Send(5010, kP3, Acq(kS2, 2));
  EXPECT_TRUE(SentTo<Granted>(fx, kP3).empty());
  EXPECT_EQ(Only(SentTo<Recall>(fx, kP2)), (Recall{kS2, t2}));

  // Only P1 comes back.
  EXPECT_EQ(SentTo<ReclaimAck>(d.Send(5020, kP1, Reclaim{kS, t1}), kP1).size(), 1u);
  d.Send(5900, kP1, Heartbeat{1});
  d.Send(5900, kP3, Heartbeat{1});

  fx = d.Tick(6250);
  EXPECT_EQ(Only(SentTo<Revoked>(fx, kP2)), (Revoked{kS2, t2, Reason::kLeaseExpired}));
  EXPECT_TRUE(SentTo<Revoked>(fx, kP1).empty());
  Granted g = Only(SentTo<Granted>(fx, kP3));
  EXPECT_EQ(g.session, kS2);
  EXPECT_EQ(g.request_id, 2u);
  EXPECT_GT(g.token, t2);
  EXPECT_EQ(g.snapshot, (AttributeMap{{"b", "2"}}));

  EXPECT_EQ(d.Holder(kS), kP1);
  EXPECT_EQ(d.TokenOf(kS), t1);
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP3}));
  EXPECT_EQ(d.Holder(kS2), kP3);
  // The reclaimed holder writes on; the other's token is dead.
  EXPECT_EQ(SentTo<CommitAck>(d.Send(6300, kP1, Com(kS, t1, 2, {Set("a", "2")})), kP1).size(), 1u);
  EXPECT_EQ(Only(SentTo<Rejected>(d.Send(6300, kP2, Com(kS2, t2, 2, {Set("b", "x")})), kP2)).reason,
            Reason::kStaleToken);
  EXPECT_EQ(d.session(kS2).attributes, (AttributeMap{{"b", "2"}}));
}

TEST(Store, B7_ReclaimMustNameTheHolderAndItsToken) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Restart(5000);
  // Someone else's reclaim, a wrong token, a session with no tenure.
  const std::vector<std::pair<ProcessRef, Reclaim>> reclaims{
      {kP2, Reclaim{kS, t1}}, {kP1, Reclaim{kS, t1 + 5}}, {kP1, Reclaim{kS2, t1}}};
  for (const auto& [p, m] : reclaims) {
    Effects fx = d.Send(5010, p, m);
    Rejected r = Only(SentTo<Rejected>(fx, p));
    EXPECT_EQ(r.what, static_cast<std::uint8_t>(MessageKind::kReclaim));
    EXPECT_NE(r.reason, Reason::kNone);
    EXPECT_TRUE(SentTo<ReclaimAck>(fx, p).empty());
  }
  EXPECT_FALSE(d.session(kS).tenure->reclaimed);
  EXPECT_EQ(d.Holder(kS), kP1);
}

TEST(Store, B7_AgentsReclaimAfterRestartThroughTheHarness) {
  // End to end: two agents hold a session each; the store restarts; agent 2
  // is cut off, agent 1 reclaims and keeps its tenure; agent 2's ends.
  Cluster c(3);
  c.Ask(1, 0, kS, Exclusive({"a"}));
  c.Ask(2, 0, kS2, Exclusive({"b"}));
  c.DeliverAll();
  ASSERT_EQ(c.store().state().sessions.at(kS).tenure->holder, kP1);
  ASSERT_EQ(c.store().state().sessions.at(kS2).tenure->holder, kP2);
  Token t1 = c.store().state().sessions.at(kS).tenure->token;
  Token t2 = c.store().state().sessions.at(kS2).tenure->token;

  c.Advance(1000);
  c.RestartStore();
  ASSERT_EQ(c.store().state().epoch, 2u);
  Time grace_until = c.store().state().grace_until;
  auto from_p2 = [](const Envelope& e) {
    return e.from.kind == core::NodeKind::kProcess && e.from.id == 2;
  };
  // Process 3 asks for both; process 2 is cut off from the store.
  c.Ask(3, 0, kS, Exclusive({"a"}));
  c.Ask(3, 1, kS2, Exclusive({"b"}));
  auto pump = [&] {
    for (int n = 0; n < 10000; ++n) {
      c.Drop(from_p2);
      if (!c.DeliverOne()) return;
    }
    ADD_FAILURE() << "messages never stopped flowing";
  };
  pump();
  while (c.now < grace_until + 1000) {
    c.Advance(50);
    pump();
  }
  const core::StoreState& st = c.store().state();
  ASSERT_TRUE(st.sessions.at(kS).tenure.has_value());
  EXPECT_EQ(st.sessions.at(kS).tenure->holder, kP1);
  EXPECT_EQ(st.sessions.at(kS).tenure->token, t1);
  EXPECT_TRUE(st.sessions.at(kS).tenure->reclaimed);
  ASSERT_TRUE(st.sessions.at(kS2).tenure.has_value());
  EXPECT_EQ(st.sessions.at(kS2).tenure->holder, kP3);
  EXPECT_GT(st.sessions.at(kS2).tenure->token, t2);
}

// ---- B9: tokens are bound to their process --------------------------------------------

TEST(Store, B9_ProcessCannotReleaseOrCommitWithAnothersToken) {
  StoreDriver d;
  Token t1 = d.Grant(0, kP1, kS, 1);
  d.Send(5, kP3, Acq(kS, 1));
  core::StoreState before = d.state();

  Effects fx = d.Send(10, kP2, Release{kS, t1});
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP2)),
            Refusal(kS, t1, 0, MessageKind::kRelease, Reason::kNotHolder));
  EXPECT_TRUE(SentTo<ReleaseAck>(fx, kP2).empty());
  EXPECT_TRUE(SentTo<Granted>(fx, kP3).empty());
  EXPECT_TRUE(fx.persist.empty());

  fx = d.Send(20, kP2, Com(kS, t1, 1, {Set("a", "x")}));
  EXPECT_EQ(Only(SentTo<Rejected>(fx, kP2)),
            Refusal(kS, t1, 1, MessageKind::kCommit, Reason::kNotHolder));
  EXPECT_TRUE(fx.persist.empty());

  // The same process id with another incarnation is not the holder either.
  fx = d.Send(30, ProcessRef{1, 0}, Release{kS, t1});
  EXPECT_TRUE(fx.send.empty());

  EXPECT_EQ(d.Holder(kS), kP1);
  EXPECT_EQ(d.TokenOf(kS), t1);
  EXPECT_EQ(d.session(kS).tenure, before.sessions.at(kS).tenure);
  EXPECT_EQ(d.session(kS).attributes, before.sessions.at(kS).attributes);
  EXPECT_EQ(d.QueueOf(kS), (std::vector<ProcessRef>{kP3}));
}

}  // namespace
}  // namespace latchkey::testing
