// Unit tests of the process agent alone (R6-R9, R1/R2 agent side, B1, B4, B5).
//
// The agent is driven directly with thread calls and FromStore envelopes, so
// each test names the exact order of inputs. Every step re-checks the agent's
// own invariants.
#include <string>
#include <vector>

#include "tests/harness.h"

namespace latchkey::testing {
namespace {

using core::AttributeMap;
using core::Granted;
using core::kNever;
using core::LockState;
using core::MessageKind;
using core::Portion;
using core::Reason;
using core::SessionId;
using core::ThreadEvent;
using core::ThreadEventKind;
using core::ThreadId;
using core::Token;

constexpr core::ProcessRef kSelf{1, 1};
constexpr SessionId kS = 7;

// ---- readable descriptions, so failures say what happened -----------------

std::string KindName(ThreadEventKind kind) {
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

// "3:granted", "1:failed/lock_lost", ...
std::vector<std::string> Wakes(const Effects& fx) {
  std::vector<std::string> out;
  for (const ThreadEvent& w : fx.wake) {
    std::string s = std::to_string(w.thread) + ":" + KindName(w.kind);
    if (w.reason != Reason::kNone) s += "/" + std::string(core::ReasonName(w.reason));
    out.push_back(s);
  }
  return out;
}

// Names of the sent message kinds, in order: {"Acquire", "Heartbeat"}.
std::vector<std::string> Sent(const Effects& fx) {
  std::vector<std::string> out;
  for (const Envelope& e : fx.send)
    out.emplace_back(core::MessageKindName(core::KindOf(e.message)));
  return out;
}

using Names = std::vector<std::string>;

std::uint8_t What(MessageKind kind) { return static_cast<std::uint8_t>(kind); }

// One agent, its clock, and shorthands for its inputs.
class Rig {
 public:
  explicit Rig(core::AgentConfig config = {}) : agent_(WithSelf(config)) {}

  core::ProcessAgent& agent() { return agent_; }
  const core::AgentSession& session(SessionId s = kS) const {
    return agent_.state().sessions.at(s);
  }
  LockState state(SessionId s = kS) const { return session(s).state; }

  Effects Ask(ThreadId t, const Portion& p, Time deadline = kNever, bool try_only = false,
              SessionId s = kS) {
    return Check(agent_.OnThreadAsk(now, t, s, p, deadline, try_only));
  }
  Effects Finish(ThreadId t, bool commit = true, SessionId s = kS) {
    return Check(agent_.OnThreadFinish(now, t, s, commit));
  }
  Effects Cancel(ThreadId t, SessionId s = kS) { return Check(agent_.OnThreadCancel(now, t, s)); }
  Effects Receive(Message m, std::uint64_t epoch = 1) {
    return Check(agent_.OnMessage(now, FromStore(kSelf, std::move(m), epoch)));
  }
  Effects TickAt(Time t) {
    now = t;
    return Check(agent_.OnTick(now));
  }

  // A full snapshot grant of `token` for the outstanding request of `s`.
  Effects Grant(Token token, AttributeMap snapshot = {}, SessionId s = kS) {
    return Receive(Granted{s, token, session(s).request_id, core::DataVersion{token - 1, 1}, true,
                           std::move(snapshot)});
  }

  Time now = 0;

 private:
  static core::AgentConfig WithSelf(core::AgentConfig c) {
    c.self = kSelf;
    return c;
  }
  Effects Check(Effects fx) {
    agent_.CheckInvariants();
    for (const Envelope& e : fx.send) {
      EXPECT_EQ(e.from, core::ProcessAddress(kSelf));
      EXPECT_EQ(e.to.kind, core::NodeKind::kStore);
    }
    return fx;
  }

  core::ProcessAgent agent_;
};

core::AgentConfig IdleRelease(Time us) {
  core::AgentConfig c;
  c.idle_release_us = us;
  return c;
}

// ---- R6: lock caching --------------------------------------------------------

TEST(Agent, R6_KeepsLockAfterCommitAndReusesItWithoutAskingTheStore) {
  Rig r;  // idle_release_us = kNever
  ASSERT_EQ(Sent(r.Ask(1, Exclusive({"a"}))), Names{"Acquire"});
  EXPECT_EQ(Wakes(r.Grant(5)), Names{"1:granted"});
  ASSERT_EQ(r.agent().Write(1, kS, "a", "x"), Reason::kNone);
  r.now = 10;
  ASSERT_EQ(Sent(r.Finish(1)), Names{"Commit"});
  Effects acked = r.Receive(core::CommitAck{kS, 5, 1});
  EXPECT_EQ(Wakes(acked), Names{"1:committed"});
  EXPECT_TRUE(SentOf<core::Release>(acked).empty());
  EXPECT_EQ(r.state(), LockState::kHeld);
  EXPECT_EQ(r.agent().stats().releases, 0u);

  // Idle for a while (no heartbeat is due yet): the lock stays.
  Effects idle = r.TickAt(400'000);
  EXPECT_TRUE(idle.send.empty());
  EXPECT_EQ(r.state(), LockState::kHeld);

  // A later request on the same session is granted locally, at once.
  Effects again = r.Ask(2, Exclusive({"a"}));
  EXPECT_TRUE(again.send.empty()) << "asked the store again: " << Sent(again).size();
  EXPECT_EQ(Wakes(again), Names{"2:granted"});
  EXPECT_EQ(r.agent().Read(2, kS, "a").value, "x");  // served from the cache
  EXPECT_EQ(r.agent().stats().acquires, 1u);
  // Rolling back also keeps the lock.
  Effects rolled = r.Finish(2, /*commit=*/false);
  EXPECT_EQ(Wakes(rolled), Names{"2:rolled_back"});
  EXPECT_TRUE(rolled.send.empty());
  EXPECT_EQ(r.state(), LockState::kHeld);
}

// ---- R7: recall ------------------------------------------------------------

TEST(Agent, R7_RecallWaitsForBothDisjointHoldersAndTheirCommitAcks) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  EXPECT_EQ(Wakes(r.Ask(2, Exclusive({"b"}))), Names{"2:granted"});
  ASSERT_EQ(r.agent().Write(1, kS, "a", "1"), Reason::kNone);
  ASSERT_EQ(r.agent().Write(2, kS, "b", "2"), Reason::kNone);

  Effects recall = r.Receive(core::Recall{kS, 5});
  EXPECT_TRUE(recall.send.empty()) << "released under running threads";

  // A thread that arrives after the recall gets nothing, even disjoint.
  Effects late = r.Ask(3, Exclusive({"c"}));
  EXPECT_TRUE(late.wake.empty());
  EXPECT_TRUE(late.send.empty());

  EXPECT_EQ(Sent(r.Finish(1)), Names{"Commit"});
  Effects ack1 = r.Receive(core::CommitAck{kS, 5, 1});
  EXPECT_EQ(Wakes(ack1), Names{"1:committed"});
  EXPECT_TRUE(SentOf<core::Release>(ack1).empty()) << "thread 2 still holds";

  Effects fin2 = r.Finish(2);
  EXPECT_EQ(Sent(fin2), Names{"Commit"}) << "released before the commit was acknowledged";
  Effects ack2 = r.Receive(core::CommitAck{kS, 5, 2});
  EXPECT_EQ(Wakes(ack2), Names{"2:committed"});
  std::vector<core::Release> rel = SentOf<core::Release>(ack2);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 5u);
  EXPECT_EQ(r.state(), LockState::kReleasing);

  // Thread 3 still waits: the agent asks again (back of the queue).
  Effects acked = r.Receive(core::ReleaseAck{kS, 5});
  std::vector<core::Acquire> again = SentOf<core::Acquire>(acked);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].request_id, 2u);
  EXPECT_EQ(r.state(), LockState::kRequested);
  EXPECT_EQ(Wakes(r.Grant(9)), Names{"3:granted"});
}

TEST(Agent, R7_ProgressServesThreadsWaitingAtGrantTimeEvenIfRecalledAtOnce) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Ask(2, Exclusive({"a"}));  // waits for thread 1 inside the process
  Effects granted = r.Grant(5);
  EXPECT_EQ(Wakes(granted), Names{"1:granted"});
  Effects recall = r.Receive(core::Recall{kS, 5});
  EXPECT_TRUE(recall.send.empty());
  // Arrived after the grant and after the recall: not entitled.
  EXPECT_TRUE(r.Ask(3, Exclusive({"z"})).wake.empty());

  Effects fin1 = r.Finish(1, /*commit=*/false);
  EXPECT_EQ(Wakes(fin1), (Names{"1:rolled_back", "2:granted"}))
      << "a thread waiting when the tenure was granted must be served";
  EXPECT_TRUE(fin1.send.empty());

  Effects fin2 = r.Finish(2, /*commit=*/false);
  EXPECT_EQ(Wakes(fin2), Names{"2:rolled_back"});
  EXPECT_EQ(Sent(fin2), Names{"Release"});
  EXPECT_EQ(SentOf<core::Acquire>(r.Receive(core::ReleaseAck{kS, 5})).size(), 1u);
}

TEST(Agent, R7_RecallOvertakingItsGrantIsRememberedAndHonoured) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  // The store granted token 5 and recalled it at once; the recall arrives first.
  Effects early = r.Receive(core::Recall{kS, 5});
  EXPECT_TRUE(early.send.empty()) << "a recall for a grant on its way is not answered yet";
  EXPECT_EQ(r.state(), LockState::kRequested);

  Effects granted = r.Grant(5);
  EXPECT_EQ(Wakes(granted), Names{"1:granted"}) << "the waiting thread is still served";
  EXPECT_TRUE(granted.send.empty());
  EXPECT_TRUE(r.session().recalled);
  // No new thread locks in a recalled tenure.
  EXPECT_TRUE(r.Ask(2, Exclusive({"b"})).wake.empty());
  Effects done = r.Finish(1, /*commit=*/false);
  std::vector<core::Release> rel = SentOf<core::Release>(done);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 5u);
}

TEST(Agent, R7_RecallForATokenNotHeldWhileUnlockedIsAnsweredWithRelease) {
  Rig r;
  Effects fx = r.Receive(core::Recall{kS, 4});
  std::vector<core::Release> rel = SentOf<core::Release>(fx);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].session, kS);
  EXPECT_EQ(rel[0].token, 4u);
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

TEST(Agent, R7_RecallForAnOlderTokenWhileHeldIsIgnored) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(8);
  r.Finish(1, false);
  Effects stale = r.Receive(core::Recall{kS, 5});  // a late copy from an earlier tenure
  EXPECT_TRUE(stale.send.empty());
  EXPECT_FALSE(r.session().recalled);
  EXPECT_EQ(Wakes(r.Ask(2, Exclusive({"a"}))), Names{"2:granted"});
  EXPECT_EQ(r.state(), LockState::kHeld);
}

TEST(Agent, R7_ReleaseRacingARecallIsNotRepeatedWhileReleasing) {
  Rig r(IdleRelease(0));
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  Effects own = r.Finish(1, false);  // R8: releases on its own...
  EXPECT_EQ(Sent(own), Names{"Release"});
  // ...while the store's recall for the same tenure crosses it.
  Effects recall = r.Receive(core::Recall{kS, 5});
  EXPECT_TRUE(recall.send.empty());
  EXPECT_EQ(r.state(), LockState::kReleasing);
  Effects ack = r.Receive(core::ReleaseAck{kS, 5});
  EXPECT_TRUE(ack.send.empty());
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

// ---- R8: releases on its own -------------------------------------------------

TEST(Agent, R8_IdleReleaseZeroReleasesAfterEveryRequest) {
  Rig r(IdleRelease(0));
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  ASSERT_EQ(r.agent().Write(1, kS, "a", "v"), Reason::kNone);
  Effects fin = r.Finish(1);
  EXPECT_EQ(Sent(fin), Names{"Commit"}) << "must not release before the commit is acknowledged";
  Effects ack = r.Receive(core::CommitAck{kS, 5, 1});
  EXPECT_EQ(Wakes(ack), Names{"1:committed"});
  std::vector<core::Release> rel = SentOf<core::Release>(ack);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 5u);
  r.Receive(core::ReleaseAck{kS, 5});
  EXPECT_EQ(r.state(), LockState::kUnlocked);

  // The next request goes to the store again, and is released again.
  EXPECT_EQ(Sent(r.Ask(2, Exclusive({"a"}))), Names{"Acquire"});
  r.Grant(6);
  EXPECT_EQ(Sent(r.Finish(2, false)), Names{"Release"});
}

TEST(Agent, R8_IdleReleaseAfterNOfIdlenessNotBefore) {
  constexpr Time kIdle = 200'000;
  Rig r(IdleRelease(kIdle));
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  r.now = 1'000;
  EXPECT_TRUE(r.Finish(1, false).send.empty());
  EXPECT_EQ(r.TickAt(1'000 + kIdle / 2).send.size(), 0u);
  // Used again half-way: idleness restarts from the end of this request.
  r.Ask(2, Exclusive({"a"}));
  r.now = 1'000 + kIdle / 2 + 10;
  Effects fin = r.Finish(2, false);
  EXPECT_TRUE(fin.send.empty());
  const Time idle_from = r.now;
  EXPECT_EQ(fin.next_deadline, idle_from + kIdle);

  Effects early = r.TickAt(idle_from + kIdle - 1);
  EXPECT_TRUE(SentOf<core::Release>(early).empty()) << "released before N of idleness";
  EXPECT_EQ(r.state(), LockState::kHeld);
  Effects due = r.TickAt(idle_from + kIdle);
  std::vector<core::Release> rel = SentOf<core::Release>(due);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 5u);
  EXPECT_EQ(r.state(), LockState::kReleasing);
}

core::AgentConfig ReleaseWhenContended(bool on) {
  core::AgentConfig c;            // idle_release_us = kNever: cached until recalled...
  c.release_when_contended = on;  // ...unless the store took it from another process
  return c;
}

// One request on kS by thread `t` (ask, the store's answer, a write, commit,
// ack): the effects of the thread's finish and of the CommitAck. `queued`:
// the store buffered the Acquire behind another process's tenure before
// granting it.
struct Request {
  Effects finish, ack;
};
Request RequestWithCommit(Rig& r, ThreadId t, Token token, bool queued) {
  EXPECT_EQ(Sent(r.Ask(t, Exclusive({"a"}))), Names{"Acquire"});
  if (queued) {
    EXPECT_TRUE(r.Receive(core::Queued{kS, r.session().request_id, 1}).send.empty());
  }
  EXPECT_EQ(Wakes(r.Grant(token)), Names{std::to_string(t) + ":granted"});
  EXPECT_EQ(r.agent().Write(t, kS, "a", "v" + std::to_string(t)), Reason::kNone);
  Request out;
  out.finish = r.Finish(t);
  out.ack = r.Receive(core::CommitAck{kS, token, 1});
  EXPECT_EQ(Wakes(out.ack), Names{std::to_string(t) + ":committed"});
  return out;
}

TEST(Agent, R8_ReleaseWhenContendedGivesBackALockThatWasQueuedFor) {
  Rig r(ReleaseWhenContended(true));
  Request first = RequestWithCommit(r, 1, 5, /*queued=*/true);
  // The last thread's commit ends the tenure: the Release leaves with it.
  EXPECT_EQ(Sent(first.finish), (Names{"Commit", "Release"}))
      << "a lock taken from another process goes back after use";
  std::vector<core::Release> rel = SentOf<core::Release>(first.finish);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 5u);
  EXPECT_TRUE(first.ack.send.empty()) << "sent once, with the commit";
  EXPECT_EQ(r.state(), LockState::kReleasing);
  r.Receive(core::ReleaseAck{kS, 5});
  EXPECT_EQ(r.state(), LockState::kUnlocked);

  // The next tenure was granted at once (nobody held it): it is cached (R6).
  Request second = RequestWithCommit(r, 2, 6, /*queued=*/false);
  EXPECT_EQ(Sent(second.finish), Names{"Commit"});
  EXPECT_TRUE(SentOf<core::Release>(second.ack).empty());
  EXPECT_EQ(r.state(), LockState::kHeld);
  EXPECT_FALSE(r.session().contended);
}

// Thread 1 takes kS (token 5) after the store queued the request, writes,
// and commits: the Release leaves right behind the Commit.
void CommitPipeliningTheRelease(Rig& r) {
  r.Ask(1, Exclusive({"a"}));
  r.Receive(core::Queued{kS, r.session().request_id, 1});
  r.Grant(5);
  ASSERT_EQ(r.agent().Write(1, kS, "a", "x"), Reason::kNone);
  EXPECT_EQ(Sent(r.Finish(1)), (Names{"Commit", "Release"}));
}

// The store answers the Commit and then the Release; the answers may arrive
// the other way round.
TEST(Agent, R8_PipelinedReleaseAcknowledgedBeforeItsCommit) {
  Rig r(ReleaseWhenContended(true));
  CommitPipeliningTheRelease(r);
  Effects early = r.Receive(core::ReleaseAck{kS, 5});
  EXPECT_TRUE(early.wake.empty() && early.send.empty());
  EXPECT_EQ(r.state(), LockState::kHeld) << "the commit's outcome is still awaited";
  Effects ack = r.Receive(core::CommitAck{kS, 5, 1});
  EXPECT_EQ(Wakes(ack), Names{"1:committed"});
  EXPECT_TRUE(ack.send.empty()) << "the release is done: no resend";
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

TEST(Agent, R8_PipelinedReleaseThreadArrivingMeanwhileWaitsForTheNextTenure) {
  Rig r(ReleaseWhenContended(true));
  CommitPipeliningTheRelease(r);
  Effects ask = r.Ask(2, Exclusive({"b"}));
  EXPECT_TRUE(ask.wake.empty()) << "granted under a tenure that is being given back";
  EXPECT_TRUE(ask.send.empty());
  EXPECT_EQ(Wakes(r.Receive(core::CommitAck{kS, 5, 1})), Names{"1:committed"});
  EXPECT_EQ(r.state(), LockState::kReleasing);
  Effects done = r.Receive(core::ReleaseAck{kS, 5});
  EXPECT_EQ(Sent(done), Names{"Acquire"}) << "thread 2 asks for the next tenure";
  EXPECT_EQ(r.state(), LockState::kRequested);
  EXPECT_EQ(Wakes(r.Grant(7)), Names{"2:granted"});
}

// B4 with duplicates: after a pipelined Release, a refused copy of the commit
// may be a duplicate of one that applied before the release. The thread is
// told the outcome is unknown, never that its write was lost for sure.
TEST(Agent, R8_PipelinedReleaseRefusedCommitHasAnUnknownOutcome) {
  Rig r(ReleaseWhenContended(true));
  CommitPipeliningTheRelease(r);
  Effects refused =
      r.Receive(core::Rejected{kS, 5, 1, What(MessageKind::kCommit), Reason::kStaleToken});
  EXPECT_EQ(Wakes(refused), Names{"1:failed/commit_outcome_unknown"});
  EXPECT_EQ(r.state(), LockState::kUnlocked);
  EXPECT_TRUE(Wakes(r.Receive(core::CommitAck{kS, 5, 1})).empty()) << "already answered";
}

TEST(Agent, R8_ReleaseWhenContendedWaitsForEveryThreadOfTheTenure) {
  Rig r(ReleaseWhenContended(true));
  r.Ask(1, Exclusive({"a"}));
  r.Receive(core::Queued{kS, r.session().request_id, 1});
  r.Grant(5);
  EXPECT_TRUE(r.Ask(2, Exclusive({"a"})).wake.empty()) << "waits for thread 1";
  Effects fin1 = r.Finish(1, false);
  EXPECT_EQ(Wakes(fin1), (Names{"1:rolled_back", "2:granted"}));
  EXPECT_TRUE(SentOf<core::Release>(fin1).empty()) << "thread 2 still wants it";
  Effects fin2 = r.Finish(2, false);
  EXPECT_EQ(SentOf<core::Release>(fin2).size(), 1u);
}

TEST(Agent, R6_WithoutReleaseWhenContendedAQueuedForLockIsCached) {
  Rig r(ReleaseWhenContended(false));
  Request req = RequestWithCommit(r, 1, 5, /*queued=*/true);
  EXPECT_EQ(Sent(req.finish), Names{"Commit"});
  EXPECT_TRUE(SentOf<core::Release>(req.ack).empty());
  EXPECT_EQ(r.state(), LockState::kHeld);
  EXPECT_FALSE(r.session().contended) << "the flag stays clear, so states hash alike";
}

// ---- R9: thread-level locks on portions ------------------------------------------

TEST(Agent, R9_DisjointPortionsRunInParallel) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Ask(2, Exclusive({"b"}));
  EXPECT_EQ(Wakes(r.Grant(5, {{"a", "1"}, {"b", "2"}})), (Names{"1:granted", "2:granted"}));
  EXPECT_EQ(Wakes(r.Ask(3, Exclusive({"c", "d"}))), Names{"3:granted"});
  EXPECT_EQ(r.session().holders.size(), 3u);
  EXPECT_EQ(r.agent().Write(1, kS, "a", "x"), Reason::kNone);
  EXPECT_EQ(r.agent().Write(2, kS, "b", "y"), Reason::kNone);
  EXPECT_EQ(r.agent().Read(2, kS, "b").value, "y");
}

TEST(Agent, R9_OverlappingExclusiveWaitsUntilHolderFinishes) {
  Rig r;
  r.Ask(1, Exclusive({"a", "b"}));
  r.Grant(5);
  Effects wait = r.Ask(2, Exclusive({"b", "c"}));
  EXPECT_TRUE(wait.wake.empty()) << "overlapping portion granted to a second thread";
  EXPECT_TRUE(wait.send.empty());
  EXPECT_EQ(r.agent().Read(2, kS, "c").reason, Reason::kNotLocked);
  Effects fin = r.Finish(1, false);
  EXPECT_EQ(Wakes(fin), (Names{"1:rolled_back", "2:granted"}));
}

TEST(Agent, R9_SharedReadersTogetherAndWaitingWriterNotStarved) {
  Rig r;
  r.Ask(1, Shared({"a"}));
  r.Ask(2, Shared({"a"}));
  EXPECT_EQ(Wakes(r.Grant(5, {{"a", "0"}})), (Names{"1:granted", "2:granted"}));
  EXPECT_EQ(r.agent().Read(1, kS, "a").value, "0");
  EXPECT_EQ(r.agent().Read(2, kS, "a").value, "0");

  EXPECT_TRUE(r.Ask(3, Exclusive({"a"})).wake.empty());  // the writer waits
  // A later reader would be compatible with the readers, but not with the
  // earlier waiting writer: it must not overtake it.
  EXPECT_TRUE(r.Ask(4, Shared({"a"})).wake.empty()) << "a later reader overtook a waiting writer";
  EXPECT_TRUE(r.Finish(1, false).wake.size() == 1u);
  EXPECT_EQ(Wakes(r.Finish(2, false)), (Names{"2:rolled_back", "3:granted"}));
  ASSERT_EQ(r.agent().Write(3, kS, "a", "1"), Reason::kNone);
  EXPECT_EQ(Sent(r.Finish(3)), Names{"Commit"});
  Effects ack = r.Receive(core::CommitAck{kS, 5, 1});
  EXPECT_EQ(Wakes(ack), (Names{"3:committed", "4:granted"}));
  EXPECT_EQ(r.agent().Read(4, kS, "a").value, "1");
}

TEST(Agent, R9_MultiAttributeRequestIsAllOrNothing) {
  Rig r;
  r.Ask(1, Exclusive({"b"}));
  r.Grant(5, {{"a", "A"}, {"b", "B"}});
  EXPECT_TRUE(r.Ask(2, Exclusive({"a", "b"})).wake.empty());
  // Not half-granted: "a" is free but thread 2 may not touch it yet.
  EXPECT_EQ(r.agent().Read(2, kS, "a").reason, Reason::kNotLocked);
  EXPECT_EQ(r.agent().Write(2, kS, "a", "x"), Reason::kNotLocked);
  EXPECT_EQ(r.session().holders.size(), 1u);
  // A disjoint request goes ahead meanwhile.
  EXPECT_EQ(Wakes(r.Ask(3, Exclusive({"c"}))), Names{"3:granted"});
  EXPECT_EQ(Wakes(r.Finish(1, false)), (Names{"1:rolled_back", "2:granted"}));
  EXPECT_EQ(r.agent().Read(2, kS, "a").value, "A");
  EXPECT_EQ(r.agent().Read(2, kS, "b").value, "B");
}

TEST(Agent, R9_UpdateReadsAndWritesAsReadThenWrite) {
  Rig r;
  r.Ask(1, Exclusive({"a", "b"}));
  r.Ask(2, Shared({"c"}));
  r.Grant(5, {{"a", "1"}, {"c", "C"}});
  auto increment = [](const std::string* v) { return std::to_string(v ? std::stoi(*v) + 1 : 0); };
  EXPECT_EQ(r.agent().Update(1, kS, "a", increment), Reason::kNone);  // from the cache
  EXPECT_EQ(r.agent().Read(1, kS, "a").value, "2");
  EXPECT_EQ(r.agent().Update(1, kS, "a", increment), Reason::kNone);  // its own write
  EXPECT_EQ(r.agent().Read(1, kS, "a").value, "3");
  EXPECT_EQ(r.agent().Update(1, kS, "b", increment), Reason::kNone);  // absent
  EXPECT_EQ(r.agent().Read(1, kS, "b").value, "0");
  ASSERT_EQ(r.agent().Erase(1, kS, "b"), Reason::kNone);
  EXPECT_EQ(r.agent().Update(1, kS, "b", increment), Reason::kNone);  // erased
  EXPECT_EQ(r.agent().Read(1, kS, "b").value, "0");
  // Refused as Write refuses, without calling the function.
  auto never = [](const std::string*) -> std::string {
    ADD_FAILURE() << "called for a refused update";
    return "";
  };
  EXPECT_EQ(r.agent().Update(1, kS, "c", never), Reason::kNotInPortion);
  EXPECT_EQ(r.agent().Update(2, kS, "c", never), Reason::kNotInPortion);  // shared: read-only
  EXPECT_EQ(r.agent().Update(9, kS, "a", never), Reason::kNotLocked);
  EXPECT_EQ(Sent(r.Finish(1)), Names{"Commit"});
  EXPECT_EQ(r.agent().Update(1, kS, "a", never), Reason::kNotLocked);  // committing
  Effects ack = r.Receive(core::CommitAck{kS, 5, 1});
  EXPECT_EQ(Wakes(ack), Names{"1:committed"});
  EXPECT_EQ(r.session().cache, (AttributeMap{{"a", "3"}, {"b", "0"}, {"c", "C"}}));
}

TEST(Agent, R9_AccessOutsideThePortionIsRefused) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Ask(2, Shared({"b"}));
  r.Grant(5, {{"a", "A"}, {"b", "B"}, {"c", "C"}});
  EXPECT_EQ(r.agent().Write(1, kS, "c", "x"), Reason::kNotInPortion);
  EXPECT_EQ(r.agent().Erase(1, kS, "c"), Reason::kNotInPortion);
  EXPECT_EQ(r.agent().Read(1, kS, "c").reason, Reason::kNotInPortion);
  EXPECT_FALSE(r.agent().Read(1, kS, "c").value.has_value())
      << "leaked a value outside the portion";
  // A shared portion is read-only.
  EXPECT_EQ(r.agent().Read(2, kS, "b").value, "B");
  EXPECT_EQ(r.agent().Write(2, kS, "b", "x"), Reason::kNotInPortion);
  EXPECT_EQ(r.agent().Erase(2, kS, "b"), Reason::kNotInPortion);
  EXPECT_EQ(r.agent().Clear(1, kS), Reason::kNotInPortion) << "Clear needs the whole session";
  // A thread with no portion at all.
  EXPECT_EQ(r.agent().Read(9, kS, "a").reason, Reason::kNotLocked);
  EXPECT_EQ(r.agent().Write(9, kS, "a", "x"), Reason::kNotLocked);
  EXPECT_EQ(Wakes(r.Finish(9)), Names{"9:failed/not_locked"});
  // Nothing refused was buffered: thread 1 commits nothing.
  EXPECT_EQ(Wakes(r.Finish(1)), Names{"1:committed"});
}

TEST(Agent, R9_ReadYourWritesInsideARequestOnly) {
  Rig r;
  r.Ask(1, Exclusive({"a", "b"}));
  r.Grant(5, {{"a", "old"}, {"b", "keep"}});
  ASSERT_EQ(r.agent().Write(1, kS, "a", "v1"), Reason::kNone);
  ASSERT_EQ(r.agent().Write(1, kS, "a", "v2"), Reason::kNone);
  EXPECT_EQ(r.agent().Read(1, kS, "a").value, "v2");
  ASSERT_EQ(r.agent().Erase(1, kS, "b"), Reason::kNone);
  EXPECT_FALSE(r.agent().Read(1, kS, "b").value.has_value());
  EXPECT_EQ(r.agent().Read(1, kS, "b").reason, Reason::kNone);
  // Rolled back: the next request sees the cached values, not the writes.
  r.Finish(1, /*commit=*/false);
  r.Ask(2, Exclusive({"a", "b"}));
  EXPECT_EQ(r.agent().Read(2, kS, "a").value, "old");
  EXPECT_EQ(r.agent().Read(2, kS, "b").value, "keep");
  // Committed: visible to the next request once acknowledged.
  ASSERT_EQ(r.agent().Write(2, kS, "a", "new"), Reason::kNone);
  ASSERT_EQ(r.agent().Erase(2, kS, "b"), Reason::kNone);
  std::vector<core::Commit> c = SentOf<core::Commit>(r.Finish(2));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].writes.size(), 2u);
  r.Receive(core::CommitAck{kS, 5, 1});
  r.Ask(3, Shared({"a", "b"}));
  EXPECT_EQ(r.agent().Read(3, kS, "a").value, "new");
  EXPECT_FALSE(r.agent().Read(3, kS, "b").value.has_value());
}

TEST(Agent, R9_ThreadAskingTwiceIsRefused) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  // Twice while waiting for the store.
  EXPECT_EQ(Wakes(r.Ask(1, Exclusive({"b"}))), Names{"1:failed/already_waiting"});
  r.Grant(5);
  // Twice while holding.
  Effects twice = r.Ask(1, Exclusive({"c"}));
  EXPECT_EQ(Wakes(twice), Names{"1:failed/already_waiting"});
  EXPECT_EQ(r.session().holders.size(), 1u);
  // The original hold is intact.
  EXPECT_EQ(r.agent().Write(1, kS, "a", "x"), Reason::kNone);
  EXPECT_EQ(r.agent().Write(1, kS, "c", "x"), Reason::kNotInPortion);
}

TEST(Agent, R9_EmptyOrMalformedPortionIsRefused) {
  Rig r;
  Effects empty = r.Ask(1, Exclusive({}));
  EXPECT_EQ(Wakes(empty), Names{"1:failed/bad_portion"});
  EXPECT_TRUE(empty.send.empty()) << "asked the store for an empty portion";
  Portion unsorted{false, {"b", "a"}, core::Mode::kExclusive};
  EXPECT_EQ(Wakes(r.Ask(2, unsorted)), Names{"2:failed/bad_portion"});
  Portion dup{false, {"a", "a"}, core::Mode::kExclusive};
  EXPECT_EQ(Wakes(r.Ask(3, dup)), Names{"3:failed/bad_portion"});
  EXPECT_EQ(r.state(), LockState::kUnlocked);
  // The thread may ask properly afterwards.
  EXPECT_EQ(Sent(r.Ask(1, Exclusive({"a"}))), Names{"Acquire"});
}

TEST(Agent, R9_WholeSessionExcludesEveryAttribute) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  EXPECT_TRUE(r.Ask(2, Portion::Whole(core::Mode::kShared)).wake.empty());
  EXPECT_TRUE(r.Ask(3, Exclusive({"zzz"})).wake.empty()) << "overtook a waiting whole-session ask";
  EXPECT_EQ(Wakes(r.Finish(1, false)), (Names{"1:rolled_back", "2:granted"}));
  EXPECT_EQ(r.agent().Read(2, kS, "anything").reason, Reason::kNone);
  EXPECT_EQ(Wakes(r.Finish(2, false)), (Names{"2:rolled_back", "3:granted"}));
}

// ---- R1 / R2, agent side ------------------------------------------------------

TEST(Agent, R2_AcquireCarriesAFreshRequestIdAndGrantMustMatchIt) {
  Rig r(IdleRelease(0));
  std::vector<core::Acquire> a1 = SentOf<core::Acquire>(r.Ask(1, Exclusive({"a"})));
  ASSERT_EQ(a1.size(), 1u);
  EXPECT_EQ(a1[0].session, kS);
  EXPECT_NE(a1[0].request_id, 0u);
  EXPECT_FALSE(a1[0].try_only);
  r.Receive(Granted{kS, 5, a1[0].request_id, {}, true, {}});
  r.Finish(1, false);
  r.Receive(core::ReleaseAck{kS, 5});
  std::vector<core::Acquire> a2 = SentOf<core::Acquire>(r.Ask(1, Exclusive({"a"})));
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_GT(a2[0].request_id, a1[0].request_id);
  // A grant answering the old request is not taken for the new one.
  Effects stale = r.Receive(Granted{kS, 5, a1[0].request_id, {}, true, {}});
  EXPECT_TRUE(stale.wake.empty());
  EXPECT_EQ(r.state(), LockState::kRequested);
  EXPECT_EQ(Wakes(r.Receive(Granted{kS, 6, a2[0].request_id, {}, true, {}})), Names{"1:granted"});
}

TEST(Agent, R1_CommitCarriesTheTokenAndCompletesOnlyOnItsAck) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(42);
  ASSERT_EQ(r.agent().Write(1, kS, "a", "v"), Reason::kNone);
  Effects fin = r.Finish(1);
  EXPECT_TRUE(fin.wake.empty()) << "committed before the store acknowledged";
  std::vector<core::Commit> c = SentOf<core::Commit>(fin);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].session, kS);
  EXPECT_EQ(c[0].token, 42u);
  EXPECT_EQ(c[0].seq, 1u);
  ASSERT_EQ(c[0].writes.size(), 1u);
  EXPECT_EQ(c[0].writes[0], (core::AttributeWrite{"a", "v", false}));
  // While committing, the thread may not write any more.
  EXPECT_EQ(r.agent().Write(1, kS, "a", "w"), Reason::kNotLocked);
  // Acks for another token or another seq complete nothing.
  EXPECT_TRUE(r.Receive(core::CommitAck{kS, 41, 1}).wake.empty());
  EXPECT_TRUE(r.Receive(core::CommitAck{kS, 42, 2}).wake.empty());
  EXPECT_EQ(Wakes(r.Receive(core::CommitAck{kS, 42, 1})), Names{"1:committed"});
  // A second request in the same tenure uses the next seq.
  r.Ask(2, Exclusive({"a"}));
  r.agent().Write(2, kS, "a", "w");
  std::vector<core::Commit> c2 = SentOf<core::Commit>(r.Finish(2));
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0].token, 42u);
  EXPECT_EQ(c2[0].seq, 2u);
}

TEST(Agent, R1_CommitsOfParallelThreadsAreSentOneAtATimeInOrder) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Ask(2, Exclusive({"b"}));
  r.Grant(5);
  r.agent().Write(1, kS, "a", "1");
  r.agent().Write(2, kS, "b", "2");
  EXPECT_EQ(SentOf<core::Commit>(r.Finish(2)).at(0).seq, 1u);
  EXPECT_TRUE(SentOf<core::Commit>(r.Finish(1)).empty())
      << "second commit sent while one is in flight";
  Effects ack = r.Receive(core::CommitAck{kS, 5, 1});
  EXPECT_EQ(Wakes(ack), Names{"2:committed"});
  std::vector<core::Commit> next = SentOf<core::Commit>(ack);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].seq, 2u);
  EXPECT_EQ(Wakes(r.Receive(core::CommitAck{kS, 5, 2})), Names{"1:committed"});
}

// ---- B1: leases, heartbeats, self-expiry ---------------------------------------

TEST(Agent, B1_HeartbeatsEveryIntervalWhileWaitingOrHoldingOnly) {
  core::AgentConfig cfg;
  cfg.retry_us = 10'000'000;  // keep resends out of the way
  Rig r(cfg);
  const Time hb = cfg.EffectiveHeartbeat();
  ASSERT_EQ(hb, cfg.lease_us / 4);
  r.Ask(1, Exclusive({"a"}));  // at 0
  r.Receive(core::Queued{kS, 1, 0});
  EXPECT_TRUE(SentOf<core::Heartbeat>(r.TickAt(hb - 1)).empty());
  std::vector<core::Heartbeat> h1 = SentOf<core::Heartbeat>(r.TickAt(hb));
  ASSERT_EQ(h1.size(), 1u) << "no heartbeat while waiting";
  r.Receive(core::HeartbeatAck{h1[0].seq});
  r.now = hb + 100;
  r.Grant(5);
  std::vector<core::Heartbeat> h2 = SentOf<core::Heartbeat>(r.TickAt(2 * hb));
  ASSERT_EQ(h2.size(), 1u) << "no heartbeat while holding";
  EXPECT_GT(h2[0].seq, h1[0].seq);
  r.Receive(core::HeartbeatAck{h2[0].seq});
  // Acknowledged heartbeats renew the lease: still trusted past the first span.
  const Time first_end = cfg.TrustSpan();
  r.TickAt(first_end + 1);
  EXPECT_TRUE(r.agent().Trusts(r.now, kS));
  EXPECT_EQ(r.session().holders.size(), 1u);
  // Released: no more heartbeats.
  r.Finish(1, false);
  r.Receive(core::Recall{kS, 5});
  r.Receive(core::ReleaseAck{kS, 5});
  ASSERT_EQ(r.state(), LockState::kUnlocked);
  const Time released_at = r.now;
  for (Time t = released_at; t < released_at + 4 * hb; t += hb / 2) {
    EXPECT_TRUE(SentOf<core::Heartbeat>(r.TickAt(t)).empty())
        << "heartbeat while unlocked at " << t;
  }
}

TEST(Agent, B1_StopsTrustingAtSendTimePlusTrustSpanWithDriftMargin) {
  core::AgentConfig cfg;
  cfg.lease_us = 1'000'000;
  cfg.drift_ppm = 10'000;  // 1%: 2 x 1% of the lease = 20ms
  cfg.expiry_margin_us = 5'000;
  cfg.retry_us = 10'000'000;
  ASSERT_EQ(cfg.TrustSpan(), 1'000'000u - 20'000u - 5'000u);
  Rig r(cfg);
  const Time sent = 1'000;
  r.now = sent;
  r.Ask(1, Exclusive({"a"}));
  r.Ask(2, Exclusive({"b"}));
  // The grant arrives late; the lease still counts from the send.
  r.now = sent + 300'000;
  EXPECT_EQ(Wakes(r.Grant(5)), (Names{"1:granted", "2:granted"}));
  const Time end = sent + cfg.TrustSpan();
  EXPECT_EQ(r.agent().state().stores[0].trusted_until, end);
  // Heartbeats go unanswered.
  Effects before = r.TickAt(end - 1);
  EXPECT_TRUE(before.wake.empty());
  EXPECT_TRUE(r.agent().Trusts(end - 1, kS));
  Effects at = r.TickAt(end);
  EXPECT_EQ(Wakes(at), (Names{"1:failed/lock_lost", "2:failed/lock_lost"}));
  EXPECT_FALSE(r.agent().Trusts(end, kS));
  std::vector<core::Release> rel = SentOf<core::Release>(at);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 5u);
  EXPECT_EQ(r.state(), LockState::kUnlocked);
  EXPECT_EQ(r.agent().Write(1, kS, "a", "x"), Reason::kNotLocked);
  // Well before the store's lease end (sent + lease).
  EXPECT_LT(end, sent + cfg.lease_us);
}

TEST(Agent, B1_GrantArrivingAfterTheTrustSpanIsGivenBack) {
  core::AgentConfig cfg;
  cfg.retry_us = 10'000'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}));  // sent at 0
  const Time end = cfg.TrustSpan();
  r.TickAt(end - 10);  // heartbeats go unanswered
  r.now = end;
  Effects late = r.Grant(5);
  EXPECT_TRUE(late.wake.empty()) << "used a grant whose lease may be over";
  std::vector<core::Release> rel = SentOf<core::Release>(late);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 5u);
  // The thread still waits: the agent asks anew.
  std::vector<core::Acquire> again = SentOf<core::Acquire>(late);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].request_id, 2u);
  EXPECT_EQ(r.state(), LockState::kRequested);
  EXPECT_FALSE(r.agent().Trusts(r.now, kS));
}

// A grant made before our lease lapsed at the store may have been revoked
// there (lease expiry) while our later heartbeats started a new lease: once
// the agent's trust has run out while a request was outstanding, it asks
// again with a new request id and never uses a grant of the old one. (The
// checker found two processes in the critical section without this.)
TEST(Agent, B1_LapseWhileWaitingAsksAgainAndRefusesTheOldGrant) {
  core::AgentConfig cfg;
  cfg.retry_us = 10'000'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}));
  r.Receive(core::Queued{kS, 1, 0});  // renews trust from the send at 0
  const Time end = cfg.TrustSpan();
  Effects fx = r.TickAt(end);  // nothing heard since: trust runs out
  std::vector<core::Acquire> again = SentOf<core::Acquire>(fx);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].request_id, 2u);
  // Heartbeats are answered again: a new lease.
  r.now = end + 10;
  r.Receive(core::Queued{kS, 2, 0});
  // The grant of request 1 arrives late: given back, not used.
  Effects late = r.Receive(Granted{kS, 7, 1, {}, true, {}});
  EXPECT_TRUE(late.wake.empty());
  ASSERT_EQ(SentOf<core::Release>(late).size(), 1u);
  EXPECT_EQ(SentOf<core::Release>(late)[0].token, 7u);
  // The grant of request 2 is used.
  EXPECT_EQ(Wakes(r.Receive(Granted{kS, 9, 2, {}, true, {}})), Names{"1:granted"});
}

// A Revoked that overtakes its Granted (reordering) is remembered: the grant
// is given back and the thread waits for a new one.
TEST(Agent, B5_RevokedOvertakingItsGrantIsNeverUsed) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Receive(core::Revoked{kS, 5, Reason::kForceReleased});
  Effects fx = r.Grant(5);
  EXPECT_TRUE(fx.wake.empty());
  ASSERT_EQ(SentOf<core::Release>(fx).size(), 1u);
  ASSERT_EQ(SentOf<core::Acquire>(fx).size(), 1u);
  EXPECT_EQ(r.state(), LockState::kRequested);
  EXPECT_EQ(Wakes(r.Grant(6)), Names{"1:granted"});
}

TEST(Agent, B1_GrantJustBeforeTheTrustSpanIsUsed) {
  core::AgentConfig cfg;
  cfg.retry_us = 10'000'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}));
  r.now = cfg.TrustSpan() - 1;
  EXPECT_EQ(Wakes(r.Grant(5)), Names{"1:granted"});
  EXPECT_EQ(Wakes(r.TickAt(cfg.TrustSpan())), Names{"1:failed/lock_lost"});
}

// Found by scenarios/adversarial/process_pause_longer_than_lease.json: a
// thread finishing after its process slept through the lease was told twice
// (lock_lost from the expiry, then not_locked), and the simulator counted two
// failed requests.
TEST(Agent, B1_ThreadFinishingAfterTheTrustSpanIsToldOnceThatTheLockWasLost) {
  core::AgentConfig cfg;
  cfg.retry_us = 10'000'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}));
  EXPECT_EQ(Wakes(r.Grant(5)), Names{"1:granted"});
  r.now = cfg.TrustSpan() + 1;  // no tick in between: the process was paused
  EXPECT_EQ(Wakes(r.Finish(1)), Names{"1:failed/lock_lost"});
  // A thread that held nothing is still told so.
  EXPECT_EQ(Wakes(r.Finish(2)), Names{"2:failed/not_locked"});
}

// Found by the RapidCheck configuration property: a fresh process asked (no
// lease yet), its link was clogged past the lease (the store granted, then
// expired the lease and revoked), and after the clog a heartbeat's answer
// arrived just before the old grant. The grant must not be used.
TEST(Agent, B1_GrantDelayedPastAGapInTrustIsGivenBack) {
  core::AgentConfig cfg;
  cfg.retry_us = 10'000'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}));  // request 1, sent at 0
  const Time late = 3 * cfg.lease_us;
  r.TickAt(late);  // heartbeats went unanswered; one is sent now
  const std::uint64_t seq = r.agent().state().stores[0].heartbeat_seq;
  r.now = late + 10;
  r.Receive(core::HeartbeatAck{seq});  // a renewal sent long after request 1's lease
  Effects fx = r.Grant(5);
  EXPECT_TRUE(fx.wake.empty());
  ASSERT_EQ(SentOf<core::Release>(fx).size(), 1u);
  EXPECT_EQ(SentOf<core::Release>(fx)[0].token, 5u);
  EXPECT_EQ(SentOf<core::Acquire>(fx).size(), 1u);  // asks again, with a new request
  EXPECT_EQ(r.state(), LockState::kRequested);
  // The new request's grant is used.
  EXPECT_EQ(Wakes(r.Grant(6)), Names{"1:granted"});
}

// ---- B4: duplicates, stale grants, resends -------------------------------------

TEST(Agent, B4_DuplicatedGrantIsIgnored) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5, {{"a", "0"}});
  r.agent().Write(1, kS, "a", "1");
  Effects dup = r.Grant(5, {{"a", "0"}});
  EXPECT_TRUE(dup.send.empty());
  EXPECT_TRUE(dup.wake.empty());
  // The thread's hold and its buffered writes are untouched.
  EXPECT_EQ(r.agent().Read(1, kS, "a").value, "1");
  EXPECT_EQ(r.agent().stats().grants, 1u);
  // Also after the thread finished: nothing re-granted, the cache is kept.
  r.Finish(1);
  r.Receive(core::CommitAck{kS, 5, 1});
  Effects dup2 = r.Receive(Granted{kS, 5, 1, {4, 1}, true, {{"a", "0"}}});
  EXPECT_TRUE(dup2.send.empty());
  EXPECT_TRUE(dup2.wake.empty());
  r.Ask(2, Shared({"a"}));
  EXPECT_EQ(r.agent().Read(2, kS, "a").value, "1") << "a duplicate grant overwrote the cache";
}

TEST(Agent, B4_GrantForATimedOutRequestIsReleased) {
  Rig r;
  r.Ask(1, Exclusive({"a"}), /*deadline=*/50'000);
  Effects timeout = r.TickAt(50'000);
  EXPECT_EQ(Wakes(timeout), Names{"1:failed/timeout"});
  std::vector<core::Cancel> cancel = SentOf<core::Cancel>(timeout);
  ASSERT_EQ(cancel.size(), 1u);
  EXPECT_EQ(cancel[0].request_id, 1u);
  EXPECT_EQ(r.state(), LockState::kUnlocked);
  // The grant crossed the Cancel.
  Effects late = r.Receive(Granted{kS, 5, 1, {}, true, {}});
  EXPECT_TRUE(late.wake.empty());
  std::vector<core::Release> rel = SentOf<core::Release>(late);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 5u);
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

TEST(Agent, B4_GrantForAnOlderRequestWhileAskingAgainIsReleased) {
  Rig r;
  r.Ask(1, Exclusive({"a"}), /*deadline=*/50'000);
  r.TickAt(50'000);            // times out; Cancel sent
  r.Ask(2, Exclusive({"a"}));  // request 2
  Effects late = r.Receive(Granted{kS, 5, 1, {}, true, {}});
  EXPECT_TRUE(late.wake.empty()) << "thread 2 served by the grant of request 1";
  ASSERT_EQ(SentOf<core::Release>(late).size(), 1u);
  EXPECT_EQ(SentOf<core::Release>(late)[0].token, 5u);
  EXPECT_EQ(Wakes(r.Receive(Granted{kS, 6, 2, {}, true, {}})), Names{"2:granted"});
}

// The last waiting thread withdraws its ask: the agent should withdraw the
// buffered request (Cancel) and give back a grant that crosses it, exactly as
// when the thread times out. (It once sent nothing and kept the lock.)
TEST(Agent, B4_GrantForACancelledRequestIsReleased) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Receive(core::Queued{kS, 1, 0});
  Effects cancel = r.Cancel(1);
  EXPECT_EQ(Wakes(cancel), Names{"1:failed/cancelled"});
  EXPECT_EQ(SentOf<core::Cancel>(cancel).size(), 1u) << "buffered request not withdrawn";
  Effects late = r.Receive(Granted{kS, 5, 1, {}, true, {}});
  EXPECT_EQ(SentOf<core::Release>(late).size(), 1u) << "kept a lock nobody asked for";
  EXPECT_NE(r.state(), LockState::kHeld);
}

TEST(Agent, B5_CancelledThreadIsNotServedByALaterGrant) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  EXPECT_EQ(Wakes(r.Cancel(1)), Names{"1:failed/cancelled"});
  EXPECT_TRUE(r.Cancel(1).wake.empty()) << "cancelled twice";
  Effects g = r.Receive(Granted{kS, 5, 1, {}, true, {}});
  EXPECT_TRUE(g.wake.empty());
  EXPECT_EQ(r.agent().Write(1, kS, "a", "x"), Reason::kNotLocked);
}

TEST(Agent, B4_UnansweredAcquireIsResentAfterRetry) {
  core::AgentConfig cfg;
  cfg.retry_us = 30'000;
  Rig r(cfg);
  std::vector<core::Acquire> first = SentOf<core::Acquire>(r.Ask(1, Exclusive({"a"})));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(SentOf<core::Acquire>(r.TickAt(29'999)).empty());
  std::vector<core::Acquire> again = SentOf<core::Acquire>(r.TickAt(30'000));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0], first[0]) << "a resend must be recognisable as a repeat";
  EXPECT_EQ(SentOf<core::Acquire>(r.TickAt(60'000)).size(), 1u);
  // Answered: resends stop.
  r.Grant(5);
  EXPECT_TRUE(SentOf<core::Acquire>(r.TickAt(90'000)).empty());
  EXPECT_TRUE(SentOf<core::Acquire>(r.TickAt(200'000)).empty());
}

TEST(Agent, B4_UnansweredReleaseIsResentAfterRetry) {
  core::AgentConfig cfg = IdleRelease(0);
  cfg.retry_us = 30'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  r.now = 1'000;
  ASSERT_EQ(SentOf<core::Release>(r.Finish(1, false)).size(), 1u);
  EXPECT_TRUE(SentOf<core::Release>(r.TickAt(30'999)).empty());
  std::vector<core::Release> again = SentOf<core::Release>(r.TickAt(31'000));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0], (core::Release{kS, 5}));
  r.Receive(core::ReleaseAck{kS, 5});
  EXPECT_TRUE(SentOf<core::Release>(r.TickAt(100'000)).empty());
}

TEST(Agent, B4_UnansweredCommitIsResentAndADuplicateAckIsHarmless) {
  core::AgentConfig cfg;
  cfg.retry_us = 30'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  r.agent().Write(1, kS, "a", "v");
  std::vector<core::Commit> first = SentOf<core::Commit>(r.Finish(1));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(SentOf<core::Commit>(r.TickAt(29'999)).empty());
  std::vector<core::Commit> again = SentOf<core::Commit>(r.TickAt(30'000));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0], first[0]);
  EXPECT_EQ(Wakes(r.Receive(core::CommitAck{kS, 5, 1})), Names{"1:committed"});
  Effects dup = r.Receive(core::CommitAck{kS, 5, 1});
  EXPECT_TRUE(dup.wake.empty());
  EXPECT_TRUE(dup.send.empty());
  EXPECT_TRUE(SentOf<core::Commit>(r.TickAt(100'000)).empty());
}

TEST(Agent, B4_RejectedCommitAfterResendIsOutcomeUnknown) {
  core::AgentConfig cfg;
  cfg.retry_us = 30'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  r.agent().Write(1, kS, "a", "v");
  r.Finish(1);
  ASSERT_EQ(SentOf<core::Commit>(r.TickAt(30'000)).size(), 1u);  // resent
  Effects rej =
      r.Receive(core::Rejected{kS, 5, 1, What(MessageKind::kCommit), Reason::kStaleToken});
  EXPECT_EQ(Wakes(rej), Names{"1:failed/commit_outcome_unknown"});
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

// ---- B5: timeouts, try-lock, lost locks -----------------------------------------

TEST(Agent, B5_WaitTimesOutAtItsDeadlineAndTheRequestIsCancelled) {
  core::AgentConfig cfg;
  cfg.retry_us = 10'000'000;
  Rig r(cfg);
  r.Ask(1, Exclusive({"a"}), /*deadline=*/50'000);
  Effects second = r.Ask(2, Exclusive({"b"}), /*deadline=*/80'000);
  EXPECT_TRUE(second.send.empty()) << "one Acquire per session, not per thread";
  EXPECT_EQ(second.next_deadline, 50'000u);
  EXPECT_TRUE(r.TickAt(49'999).wake.empty());
  Effects t1 = r.TickAt(50'000);
  EXPECT_EQ(Wakes(t1), Names{"1:failed/timeout"});
  EXPECT_TRUE(SentOf<core::Cancel>(t1).empty()) << "cancelled while thread 2 still waits";
  EXPECT_EQ(r.state(), LockState::kRequested);
  Effects t2 = r.TickAt(80'000);
  EXPECT_EQ(Wakes(t2), Names{"2:failed/timeout"});
  std::vector<core::Cancel> cancel = SentOf<core::Cancel>(t2);
  ASSERT_EQ(cancel.size(), 1u);
  EXPECT_EQ(cancel[0], (core::Cancel{kS, 1}));
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

TEST(Agent, B5_WaitForALocalHolderTimesOut) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  r.Ask(2, Exclusive({"a"}), /*deadline=*/40'000);
  Effects t = r.TickAt(40'000);
  EXPECT_EQ(Wakes(t), Names{"2:failed/timeout"});
  EXPECT_TRUE(t.send.empty());
  EXPECT_EQ(r.state(), LockState::kHeld);
  EXPECT_EQ(Wakes(r.Finish(1, false)), Names{"1:rolled_back"})
      << "the timed-out thread was granted";
}

TEST(Agent, B5_TryLockRefusedLocallyWhenAConflictingThreadHolds) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  Effects busy = r.Ask(2, Shared({"a"}), kNever, /*try_only=*/true);
  EXPECT_EQ(Wakes(busy), Names{"2:failed/busy"});
  EXPECT_TRUE(busy.send.empty());
  // Not left waiting: finishing thread 1 grants nobody.
  EXPECT_EQ(Wakes(r.Finish(1, false)), Names{"1:rolled_back"});
  // A disjoint try-lock is granted locally.
  r.Ask(1, Exclusive({"a"}));
  EXPECT_EQ(Wakes(r.Ask(3, Exclusive({"b"}), kNever, true)), Names{"3:granted"});
}

TEST(Agent, B5_TryLockTheStoreAnswersBusyFails) {
  Rig r;
  std::vector<core::Acquire> a =
      SentOf<core::Acquire>(r.Ask(1, Exclusive({"a"}), kNever, /*try_only=*/true));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_TRUE(a[0].try_only);
  Effects busy = r.Receive(core::Busy{kS, a[0].request_id});
  EXPECT_EQ(Wakes(busy), Names{"1:failed/busy"});
  EXPECT_TRUE(busy.send.empty());
  EXPECT_EQ(r.state(), LockState::kUnlocked);
  // A Busy for another request changes nothing.
  r.Ask(2, Exclusive({"a"}), kNever, true);
  EXPECT_TRUE(r.Receive(core::Busy{kS, a[0].request_id}).wake.empty());
  EXPECT_EQ(r.state(), LockState::kRequested);
}

TEST(Agent, B5_RevokedLosesEveryHolderAndRequestsAgainForWaiters) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Ask(2, Exclusive({"b"}));
  r.Grant(5);
  r.Ask(3, Exclusive({"a"}));  // waits for thread 1
  r.agent().Write(1, kS, "a", "x");
  Effects rev = r.Receive(core::Revoked{kS, 5, Reason::kForceReleased});
  EXPECT_EQ(Wakes(rev), (Names{"1:failed/lock_lost", "2:failed/lock_lost"}));
  EXPECT_FALSE(r.agent().Trusts(r.now, kS));
  EXPECT_EQ(r.agent().Write(1, kS, "a", "y"), Reason::kNotLocked);
  EXPECT_EQ(Sent(rev), Names{"Acquire"});
  EXPECT_EQ(r.state(), LockState::kRequested);
  // A Revoked for an older tenure is ignored.
  r.Receive(Granted{kS, 6, r.session().request_id, {}, true, {}});
  EXPECT_TRUE(r.Receive(core::Revoked{kS, 5, Reason::kForceReleased}).wake.empty());
  EXPECT_EQ(r.state(), LockState::kHeld);
}

TEST(Agent, B5_RejectedCommitLosesTheLockForEveryHolder) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Ask(2, Exclusive({"b"}));
  r.Grant(5);
  r.agent().Write(1, kS, "a", "x");
  r.Finish(1);
  Effects rej =
      r.Receive(core::Rejected{kS, 5, 1, What(MessageKind::kCommit), Reason::kStaleToken});
  EXPECT_EQ(Wakes(rej), (Names{"1:failed/lock_lost", "2:failed/lock_lost"}));
  EXPECT_EQ(r.state(), LockState::kUnlocked);
  // The rejected write never reached the cache.
  r.Ask(3, Shared({"a"}));
  r.Receive(Granted{kS, 7, r.session().request_id, {6, 0}, true, {}});
  EXPECT_FALSE(r.agent().Read(3, kS, "a").value.has_value());
}

TEST(Agent, B5_LockLostWhileACommitIsInFlightLeavesItsOutcomeUnknown) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Ask(2, Exclusive({"b"}));
  r.Ask(3, Exclusive({"c"}));
  r.Grant(5);
  r.agent().Write(1, kS, "a", "1");
  r.agent().Write(2, kS, "b", "2");
  ASSERT_EQ(SentOf<core::Commit>(r.Finish(1)).size(), 1u);  // in flight: may apply
  ASSERT_TRUE(SentOf<core::Commit>(r.Finish(2)).empty());   // queued behind it: never sent
  Effects rev = r.Receive(core::Revoked{kS, 5, Reason::kLeaseExpired});
  EXPECT_EQ(Wakes(rev),
            (Names{"1:failed/commit_outcome_unknown", "2:failed/lock_lost", "3:failed/lock_lost"}));
  EXPECT_TRUE(SentOf<core::Commit>(rev).empty());
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

// ---- B6 on the agent: invalidation while locked -----------------------------------

TEST(Agent, B6_ClearAndCommitWhileLockedDropsEveryAttribute) {
  Rig r;
  r.Ask(1, Portion::Whole(core::Mode::kExclusive));
  r.Grant(5, {{"a", "A"}, {"b", "B"}});
  ASSERT_EQ(r.agent().Write(1, kS, "a", "gone"), Reason::kNone);
  ASSERT_EQ(r.agent().Clear(1, kS), Reason::kNone);
  EXPECT_FALSE(r.agent().Read(1, kS, "a").value.has_value()) << "Clear dropped earlier writes";
  EXPECT_FALSE(r.agent().Read(1, kS, "b").value.has_value());
  ASSERT_EQ(r.agent().Write(1, kS, "c", "C"), Reason::kNone);
  EXPECT_EQ(r.agent().Read(1, kS, "c").value, "C");
  std::vector<core::Commit> c = SentOf<core::Commit>(r.Finish(1));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].clear_first);
  ASSERT_EQ(c[0].writes.size(), 1u);
  EXPECT_EQ(c[0].writes[0].name, "c");
  r.Receive(core::CommitAck{kS, 5, 1});
  r.Ask(2, Portion::Whole(core::Mode::kShared));
  EXPECT_FALSE(r.agent().Read(2, kS, "a").value.has_value());
  EXPECT_FALSE(r.agent().Read(2, kS, "b").value.has_value());
  EXPECT_EQ(r.agent().Read(2, kS, "c").value, "C");
  EXPECT_EQ(r.session().cache, (AttributeMap{{"c", "C"}}));
}

// ---- R6: the cache across tenures -------------------------------------------------

TEST(Agent, R6_GrantWithoutSnapshotIsUsedOnlyForAMatchingCache) {
  Rig r(IdleRelease(0));
  r.Ask(1, Exclusive({"a"}));
  r.Receive(Granted{kS, 5, 1, {4, 1}, true, {{"a", "1"}}});
  r.agent().Write(1, kS, "a", "2");
  r.Finish(1);
  r.Receive(core::CommitAck{kS, 5, 1});
  r.Receive(core::ReleaseAck{kS, 5});
  // The next Acquire names the cached version, so the store may skip the data.
  std::vector<core::Acquire> a = SentOf<core::Acquire>(r.Ask(2, Exclusive({"a"})));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].cached, (core::DataVersion{5, 1}));
  EXPECT_EQ(Wakes(r.Receive(Granted{kS, 6, a[0].request_id, {5, 1}, false, {}})),
            Names{"2:granted"});
  EXPECT_EQ(r.agent().Read(2, kS, "a").value, "2");
  r.Finish(2, false);
  r.Receive(core::ReleaseAck{kS, 6});
  // A grant without data for a version the agent does not have is not used.
  a = SentOf<core::Acquire>(r.Ask(3, Exclusive({"a"})));
  ASSERT_EQ(a.size(), 1u);
  Effects bad = r.Receive(Granted{kS, 7, a[0].request_id, {6, 3}, false, {}});
  EXPECT_TRUE(bad.wake.empty()) << "served a thread from a stale cache";
  std::vector<core::Release> rel = SentOf<core::Release>(bad);
  ASSERT_EQ(rel.size(), 1u);
  EXPECT_EQ(rel[0].token, 7u);
  std::vector<core::Acquire> again = SentOf<core::Acquire>(bad);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].cached, core::DataVersion{}) << "must ask for a full copy";
}

// ---- B7 on the agent: a new store epoch ----------------------------------------------

TEST(Agent, B7_NewStoreEpochReclaimsHeldReasksRequestedAndRepeatsRelease) {
  Rig r;
  constexpr SessionId kHeld = 1, kRequested = 2, kReleasing = 3;
  r.Ask(1, Exclusive({"a"}), kNever, false, kHeld);
  r.Grant(5, {}, kHeld);
  r.Ask(2, Exclusive({"a"}), kNever, false, kReleasing);
  r.Grant(6, {}, kReleasing);
  r.Finish(2, false, kReleasing);
  ASSERT_EQ(SentOf<core::Release>(r.Receive(core::Recall{kReleasing, 6})).size(), 1u);
  r.Ask(3, Exclusive({"a"}), kNever, false, kRequested);
  const std::uint64_t rid = r.session(kRequested).request_id;

  r.now = 1'000;
  Effects fx = r.Receive(core::HeartbeatAck{0}, /*epoch=*/2);
  EXPECT_EQ(r.agent().state().stores[0].epoch, 2u);
  EXPECT_EQ(SentOf<core::Reclaim>(fx), (std::vector<core::Reclaim>{{kHeld, 5}}));
  EXPECT_EQ(SentOf<core::Acquire>(fx).size(), 1u);
  EXPECT_EQ(SentOf<core::Acquire>(fx).at(0).request_id, rid);
  EXPECT_EQ(SentOf<core::Release>(fx), (std::vector<core::Release>{{kReleasing, 6}}));
  for (const Envelope& e : fx.send) EXPECT_EQ(e.to.incarnation, 2u) << "sent to the old epoch";
  EXPECT_TRUE(fx.wake.empty()) << "the holder's thread must keep its lock while reclaiming";
  EXPECT_TRUE(r.session(kHeld).reclaiming);

  // Messages from the earlier store life are ignored from now on.
  Effects old = r.Receive(Granted{kRequested, 9, rid, {}, true, {}}, /*epoch=*/1);
  EXPECT_TRUE(old.wake.empty());
  EXPECT_TRUE(old.send.empty());
  EXPECT_EQ(r.state(kRequested), LockState::kRequested);

  // The reclaim is resent until answered.
  EXPECT_EQ(SentOf<core::Reclaim>(r.TickAt(1'000 + r.agent().config().retry_us)).size(), 1u);
  r.Receive(core::ReclaimAck{kHeld, 5}, 2);
  EXPECT_FALSE(r.session(kHeld).reclaiming);
  EXPECT_TRUE(SentOf<core::Reclaim>(r.TickAt(r.now + 10 * r.agent().config().retry_us)).empty());
  EXPECT_EQ(r.agent().Write(1, kHeld, "a", "x"), Reason::kNone);
}

TEST(Agent, B7_RejectedReclaimLosesTheLock) {
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  r.Receive(core::HeartbeatAck{0}, 2);
  ASSERT_TRUE(r.session().reclaiming);
  Effects rej =
      r.Receive(core::Rejected{kS, 5, 0, What(MessageKind::kReclaim), Reason::kStaleToken}, 2);
  EXPECT_EQ(Wakes(rej), Names{"1:failed/lock_lost"});
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

TEST(Agent, B7_CommitResentToARestartedStoreThenRefusedHasAnUnknownOutcome) {
  // The first copy may have applied and been made durable before the store
  // went down; a refusal of the copy sent after the restart proves nothing.
  Rig r;
  r.Ask(1, Exclusive({"a"}));
  r.Grant(5);
  r.agent().Write(1, kS, "a", "v");
  r.Finish(1);
  Effects restart = r.Receive(core::HeartbeatAck{0}, /*epoch=*/2);
  ASSERT_EQ(SentOf<core::Commit>(restart).size(), 1u) << "the head commit is sent again";
  Effects rej =
      r.Receive(core::Rejected{kS, 5, 1, What(MessageKind::kCommit), Reason::kStaleToken}, 2);
  EXPECT_EQ(Wakes(rej), Names{"1:failed/commit_outcome_unknown"});
  EXPECT_EQ(r.state(), LockState::kUnlocked);
}

// ---- B8 on the agent: sessions go to their home store ------------------------------

TEST(Agent, B8_SessionsGoToTheirHomeStoreNode) {
  core::AgentConfig cfg;
  cfg.store_count = 2;
  Rig r(cfg);
  SessionId on0 = 0, on1 = 0;
  for (SessionId s = 1; on0 == 0 || on1 == 0; ++s) {
    (core::StoreForSession(s, 2) == 0 ? on0 : on1) = s;
  }
  Effects a0 = r.Ask(1, Exclusive({"a"}), kNever, false, on0);
  Effects a1 = r.Ask(2, Exclusive({"a"}), kNever, false, on1);
  ASSERT_EQ(a0.send.size(), 1u);
  ASSERT_EQ(a1.send.size(), 1u);
  EXPECT_EQ(a0.send[0].to.id, 0u);
  EXPECT_EQ(a1.send[0].to.id, 1u);
}

}  // namespace
}  // namespace latchkey::testing
