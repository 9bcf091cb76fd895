// End-to-end tests of store and agents together through the test harness.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tests/harness.h"

namespace latchkey::testing {
namespace {

using core::kNever;
using core::LockState;
using core::Reason;
using core::SessionId;
using core::ThreadEvent;
using core::ThreadEventKind;
using core::ThreadId;

constexpr SessionId kS = 7;

std::string Describe(const ThreadEvent& w) {
  std::string kind;
  switch (w.kind) {
    case ThreadEventKind::kGranted:
      kind = "granted";
      break;
    case ThreadEventKind::kCommitted:
      kind = "committed";
      break;
    case ThreadEventKind::kRolledBack:
      kind = "rolled_back";
      break;
    case ThreadEventKind::kFailed:
      kind = "failed";
      break;
  }
  std::string s = std::to_string(w.thread) + ":" + kind;
  if (w.reason != Reason::kNone) s += "/" + std::string(core::ReasonName(w.reason));
  return s;
}

using Names = std::vector<std::string>;

// The thread events process p received since the last call, described.
Names Take(Cluster& c, int p) {
  Names out;
  for (const ThreadEvent& w : c.TakeWakes(p)) out.push_back(Describe(w));
  return out;
}

bool ToProcess(const Envelope& e, int p) {
  return e.to.kind == core::NodeKind::kProcess && e.to.id == static_cast<std::uint64_t>(p);
}
bool FromProcessId(const Envelope& e, int p) {
  return e.from.kind == core::NodeKind::kProcess && e.from.id == static_cast<std::uint64_t>(p);
}

// Delivers the oldest in-flight message matching `pred`; fails if none.
Effects DeliverFirst(Cluster& c, const std::function<bool(const Envelope&)>& pred) {
  auto& q = c.in_flight();
  for (auto it = q.begin(); it != q.end(); ++it) {
    if (pred(*it)) {
      Envelope e = *it;
      q.erase(it);
      return c.Deliver(e);
    }
  }
  ADD_FAILURE() << "no such message in flight";
  return {};
}

template <class M>
bool Is(const Envelope& e) {
  return std::holds_alternative<M>(e.message);
}

// Process p runs a thread-level critical section on `s` while trusting its lock.
bool InCriticalSection(Cluster& c, int p, SessionId s) {
  const auto& sessions = c.agent(p).state().sessions;
  auto it = sessions.find(s);
  return it != sessions.end() && !it->second.holders.empty() && c.agent(p).Trusts(c.now, s);
}

const core::Tenure* TenureOf(Cluster& c, SessionId s, int store = 0) {
  const auto& sessions = c.store(store).state().sessions;
  auto it = sessions.find(s);
  if (it == sessions.end() || !it->second.tenure) return nullptr;
  return &*it->second.tenure;
}

// The session's tenure, or an empty one (holder 0, token 0) if nobody holds it.
core::Tenure HeldTenure(Cluster& c, SessionId s, int store = 0) {
  const core::Tenure* t = TenureOf(c, s, store);
  return t != nullptr ? *t : core::Tenure{};
}

std::string StoredValue(Cluster& c, SessionId s, const std::string& name, int store = 0) {
  const auto& sessions = c.store(store).state().sessions;
  auto it = sessions.find(s);
  if (it == sessions.end() ||
      (!it->second.tenure && it->second.queue.empty() && it->second.attributes.empty())) {
    return "<no session>";  // an empty, unheld session is the same as none
  }
  auto a = it->second.attributes.find(name);
  return a == it->second.attributes.end() ? "<none>" : a->second;
}

TEST(Cluster, R11_ManyProcessesShareOneStore) {
  Cluster c(3);
  for (int p = 1; p <= 3; ++p) c.Ask(p, 0, 7, Exclusive({"n"}));
  int committed = 0;
  for (int round = 0; round < 50 && committed < 3; ++round) {
    c.DeliverAll();
    for (int p = 1; p <= 3; ++p) {
      for (const core::ThreadEvent& w : c.TakeWakes(p)) {
        if (w.kind == core::ThreadEventKind::kGranted) {
          core::ReadResult r = c.agent(p).Read(0, 7, "n");
          int n = r.value ? std::stoi(*r.value) : 0;
          ASSERT_EQ(c.agent(p).Write(0, 7, "n", std::to_string(n + 1)), core::Reason::kNone);
          c.Finish(p, 0, 7);
        } else {
          ASSERT_EQ(w.kind, core::ThreadEventKind::kCommitted);
          ++committed;
        }
      }
    }
  }
  EXPECT_EQ(committed, 3);
  EXPECT_EQ(c.store().state().sessions.at(7).attributes.at("n"), "3");
}

// ---- R6 / R7 / R8 end to end -------------------------------------------------------

TEST(Cluster, R6_CachedLockServesLaterRequestsWithNoMessages) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"1:granted"});
  ASSERT_EQ(c.agent(1).Write(1, kS, "a", "x"), Reason::kNone);
  c.Finish(1, 1, kS);
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"1:committed"});
  ASSERT_NE(TenureOf(c, kS), nullptr) << "the lock was given back";
  EXPECT_EQ(HeldTenure(c, kS).holder.id, 1u);
  const std::uint64_t grants = c.store().stats().grants;

  for (ThreadId t = 2; t < 5; ++t) {
    c.Ask(1, t, kS, Exclusive({"a"}));
    EXPECT_TRUE(c.in_flight().empty()) << "asked the store for a cached lock";
    EXPECT_EQ(Take(c, 1), Names{std::to_string(t) + ":granted"});
    c.Finish(1, t, kS, /*commit=*/false);
    Take(c, 1);
  }
  EXPECT_EQ(c.store().stats().grants, grants);
  EXPECT_EQ(c.store().stats().recalls, 0u);
}

TEST(Cluster, R7_RecalledHolderFinishesReleasesAndRequeuesBehindTheOther) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"1:granted"});
  // Thread 2 of process 1 waits behind thread 1 (it was not waiting at grant time).
  c.Ask(1, 2, kS, Exclusive({"a"}));
  EXPECT_TRUE(c.in_flight().empty());
  // Process 2 asks: the store buffers it and recalls process 1.
  c.Ask(2, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  EXPECT_GE(c.store().stats().recalls, 1u);
  EXPECT_TRUE(c.agent(1).state().sessions.at(kS).recalled);
  EXPECT_EQ(HeldTenure(c, kS).holder.id, 1u) << "released under a running thread";
  EXPECT_TRUE(Take(c, 2).empty());

  ASSERT_EQ(c.agent(1).Write(1, kS, "a", "1"), Reason::kNone);
  c.Finish(1, 1, kS);
  c.DeliverAll();
  // Thread 2 of process 1 was not served in the recalled tenure...
  EXPECT_EQ(Take(c, 1), Names{"1:committed"});
  // ...process 2 got the lock and sees the committed write...
  ASSERT_EQ(Take(c, 2), Names{"1:granted"});
  EXPECT_EQ(c.agent(2).Read(1, kS, "a").value, "1");
  // ...and process 1 asked again, at the back of the queue.
  ASSERT_EQ(c.store().state().sessions.at(kS).queue.size(), 1u);
  EXPECT_EQ(c.store().state().sessions.at(kS).queue.front().process.id, 1u);
  EXPECT_EQ(c.agent(1).state().sessions.at(kS).state, LockState::kRequested);

  ASSERT_EQ(c.agent(2).Write(1, kS, "a", "2"), Reason::kNone);
  c.Finish(2, 1, kS);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 2), Names{"1:committed"});
  ASSERT_EQ(Take(c, 1), Names{"2:granted"});
  EXPECT_EQ(c.agent(1).Read(2, kS, "a").value, "2");
}

TEST(Cluster, R7_ReleaseRacingARecallGrantsTheWaiterOnce) {
  // Either order of the crossing Recall and ReleaseAck at process 1.
  for (bool recall_first : {true, false}) {
    SCOPED_TRACE(recall_first ? "recall arrives while releasing" : "recall arrives after release");
    core::AgentConfig ac;
    ac.idle_release_us = 50'000;
    Cluster c(2, {}, ac);
    c.Ask(1, 1, kS, Exclusive({"a"}));
    c.DeliverAll();
    c.Finish(1, 1, kS, false);  // idle from now on
    c.Ask(2, 1, kS, Exclusive({"a"}));
    DeliverFirst(c, Is<core::Acquire>);   // store: queue process 2, recall process 1
    ASSERT_EQ(c.in_flight().size(), 2u);  // Queued, Recall
    c.AdvanceTo(50'000);                  // process 1 releases on its own meanwhile
    ASSERT_EQ(c.agent(1).state().sessions.at(kS).state, LockState::kReleasing);
    if (recall_first) {
      Effects r = DeliverFirst(c, Is<core::Recall>);
      EXPECT_TRUE(SentOf<core::Release>(r).empty()) << "released twice";
    }
    DeliverFirst(c, Is<core::Release>);     // store: grant process 2
    DeliverFirst(c, Is<core::ReleaseAck>);  // process 1: unlocked
    EXPECT_EQ(c.agent(1).state().sessions.at(kS).state, LockState::kUnlocked);
    if (!recall_first) {
      // A stale recall while unlocked is answered with a Release of that
      // finished tenure, which the store acknowledges and ignores.
      Effects r = DeliverFirst(c, Is<core::Recall>);
      EXPECT_EQ(SentOf<core::Release>(r).size(), 1u);
    }
    c.DeliverAll();
    EXPECT_EQ(Take(c, 2), Names{"1:granted"});
    ASSERT_NE(TenureOf(c, kS), nullptr);
    EXPECT_EQ(HeldTenure(c, kS).holder.id, 2u);
    EXPECT_TRUE(InCriticalSection(c, 2, kS));
    EXPECT_EQ(c.agent(1).state().sessions.at(kS).state, LockState::kUnlocked);
    EXPECT_EQ(c.store().stats().grants, 2u);
  }
}

TEST(Cluster, R8_IdleReleaseLetsTheNextProcessInWithoutARecall) {
  core::AgentConfig ac;
  ac.idle_release_us = 0;
  Cluster c(2, {}, ac);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  c.agent(1).Write(1, kS, "a", "v");
  c.Finish(1, 1, kS);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), (Names{"1:granted", "1:committed"}));
  EXPECT_EQ(TenureOf(c, kS), nullptr) << "still held after the request";
  EXPECT_EQ(c.agent(1).state().sessions.at(kS).state, LockState::kUnlocked);
  c.Ask(2, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  EXPECT_EQ(Take(c, 2), Names{"1:granted"});
  EXPECT_EQ(c.agent(2).Read(1, kS, "a").value, "v");
  EXPECT_EQ(c.store().stats().recalls, 0u);
}

// ---- B1: a cut-off holder -----------------------------------------------------------

TEST(Cluster, B1_CutOffHolderStopsTrustingBeforeTheStoreGrantsOthers) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"1:granted"});
  c.Ask(2, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  // Process 1 is cut off from now on: nothing it sends arrives.
  bool p1_lost = false;
  bool p2_granted = false;
  for (Time t = 10'000; t <= 3'000'000; t += 10'000) {
    c.AdvanceTo(t);
    c.Drop([](const Envelope& e) { return FromProcessId(e, 1) || ToProcess(e, 1); });
    c.DeliverAll();
    c.Drop([](const Envelope& e) { return FromProcessId(e, 1) || ToProcess(e, 1); });
    for (const std::string& w : Take(c, 1)) {
      EXPECT_EQ(w, "1:failed/lock_lost");
      p1_lost = true;
    }
    for (const std::string& w : Take(c, 2)) {
      EXPECT_EQ(w, "1:granted");
      EXPECT_TRUE(p1_lost) << "process 2 granted at " << t << " while process 1 still trusted";
      p2_granted = true;
    }
    ASSERT_FALSE(InCriticalSection(c, 1, kS) && InCriticalSection(c, 2, kS)) << "at " << t;
  }
  EXPECT_TRUE(p1_lost);
  EXPECT_TRUE(p2_granted);
  EXPECT_EQ(HeldTenure(c, kS).holder.id, 2u);
}

TEST(Cluster, B1_HeartbeatsKeepAnIdleHolderForManyLeases) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"1:granted"});
  const Time lease = c.store().config().lease_us;
  std::uint64_t heartbeats = 0;
  for (Time t = 50'000; t <= 5 * lease; t += 50'000) {
    c.AdvanceTo(t);
    for (const Envelope& e : c.in_flight()) heartbeats += Is<core::Heartbeat>(e) ? 1 : 0;
    c.DeliverAll();
  }
  EXPECT_TRUE(Take(c, 1).empty()) << "lost the lock while heartbeats were answered";
  EXPECT_TRUE(InCriticalSection(c, 1, kS));
  EXPECT_EQ(HeldTenure(c, kS).holder.id, 1u);
  // One per heartbeat interval (lease / 4), not one per lock or per tick.
  EXPECT_GE(heartbeats, 19u);
  EXPECT_LE(heartbeats, 21u);
}

// ---- B4: duplicated messages ---------------------------------------------------------

TEST(Cluster, B4_CounterWorkloadWithDuplicatedMessagesEndsExact) {
  constexpr int kProcesses = 3;
  constexpr int kThreads = 2;
  constexpr int kIncrements = 10;
  Cluster c(kProcesses);
  int left[kProcesses + 1][kThreads] = {};
  for (int p = 1; p <= kProcesses; ++p) {
    for (int t = 0; t < kThreads; ++t) {
      left[p][t] = kIncrements;
      c.Ask(p, static_cast<ThreadId>(t), kS, Exclusive({"n"}));
    }
  }
  std::uint64_t rng = 0x9E3779B97F4A7C15ULL;
  auto next = [&rng] {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng >> 33;
  };
  int committed = 0;
  int duplicated = 0;
  int steps = 0;
  while (committed < kProcesses * kThreads * kIncrements && steps < 200'000) {
    ++steps;
    if (c.in_flight().empty() || steps % 50 == 0) {
      c.Advance(1'000);
    } else {
      if (next() % 4 == 0) {
        // Duplicate a random in-flight message; the copy arrives later.
        auto& q = c.in_flight();
        q.push_back(q[next() % q.size()]);
        ++duplicated;
      }
      c.DeliverOne();
    }
    int in_section = 0;
    for (int p = 1; p <= kProcesses; ++p) {
      if (InCriticalSection(c, p, kS)) ++in_section;
      for (const ThreadEvent& w : c.TakeWakes(p)) {
        int t = static_cast<int>(w.thread);
        switch (w.kind) {
          case ThreadEventKind::kGranted: {
            core::ReadResult r = c.agent(p).Read(w.thread, kS, "n");
            ASSERT_EQ(r.reason, Reason::kNone);
            int n = r.value ? std::stoi(*r.value) : 0;
            ASSERT_EQ(c.agent(p).Write(w.thread, kS, "n", std::to_string(n + 1)), Reason::kNone);
            c.Finish(p, w.thread, kS);
            break;
          }
          case ThreadEventKind::kCommitted:
            ++committed;
            if (--left[p][t] > 0) c.Ask(p, w.thread, kS, Exclusive({"n"}));
            break;
          default:
            FAIL() << "process " << p << " thread " << Describe(w);
        }
      }
    }
    ASSERT_LE(in_section, 1) << "two processes in the critical section at step " << steps;
  }
  EXPECT_EQ(committed, kProcesses * kThreads * kIncrements);
  EXPECT_GT(duplicated, 20);
  EXPECT_EQ(StoredValue(c, kS, "n"), std::to_string(kProcesses * kThreads * kIncrements));
  for (int p = 1; p <= kProcesses; ++p) {
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(left[p][t], 0) << p << "/" << t;
  }
}

TEST(Cluster, B4_CounterWorkloadWithLostMessagesLosesNoAcknowledgedIncrement) {
  constexpr int kProcesses = 3;
  constexpr int kThreads = 2;
  constexpr int kIncrements = 5;
  Cluster c(kProcesses);
  int left[kProcesses + 1][kThreads] = {};
  for (int p = 1; p <= kProcesses; ++p) {
    for (int t = 0; t < kThreads; ++t) {
      left[p][t] = kIncrements;
      c.Ask(p, static_cast<ThreadId>(t), kS, Exclusive({"n"}));
    }
  }
  std::uint64_t rng = 12345;
  auto next = [&rng] {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng >> 33;
  };
  int committed = 0, unknown = 0, lost = 0, dropped = 0, steps = 0;
  auto done = [&] {
    for (int p = 1; p <= kProcesses; ++p) {
      for (int t = 0; t < kThreads; ++t) {
        if (left[p][t] > 0) return false;
      }
    }
    return true;
  };
  while (!done() && steps < 500'000) {
    ++steps;
    if (c.in_flight().empty() || next() % 20 == 0) {
      c.Advance(10'000);  // lets retries, recall timers and heartbeats fire
    } else if (next() % 10 == 0) {
      c.in_flight().pop_front();  // lost
      ++dropped;
    } else {
      c.DeliverOne();
    }
    int in_section = 0;
    for (int p = 1; p <= kProcesses; ++p) {
      if (InCriticalSection(c, p, kS)) ++in_section;
      for (const ThreadEvent& w : c.TakeWakes(p)) {
        int t = static_cast<int>(w.thread);
        switch (w.kind) {
          case ThreadEventKind::kGranted: {
            core::ReadResult r = c.agent(p).Read(w.thread, kS, "n");
            ASSERT_EQ(r.reason, Reason::kNone);
            int n = r.value ? std::stoi(*r.value) : 0;
            ASSERT_EQ(c.agent(p).Write(w.thread, kS, "n", std::to_string(n + 1)), Reason::kNone);
            c.Finish(p, w.thread, kS);
            break;
          }
          case ThreadEventKind::kCommitted:
            ++committed;
            if (--left[p][t] > 0) c.Ask(p, w.thread, kS, Exclusive({"n"}));
            break;
          case ThreadEventKind::kFailed:
            // The lock went away under the thread: try the increment again,
            // unless its commit may have applied (then count it as done).
            ASSERT_TRUE(w.reason == Reason::kLockLost || w.reason == Reason::kCommitOutcomeUnknown)
                << Describe(w);
            if (w.reason == Reason::kCommitOutcomeUnknown) {
              ++unknown;
              --left[p][t];
            } else {
              ++lost;
            }
            if (left[p][t] > 0) c.Ask(p, w.thread, kS, Exclusive({"n"}));
            break;
          default:
            FAIL() << "process " << p << " thread " << Describe(w);
        }
      }
    }
    ASSERT_LE(in_section, 1) << "two processes in the critical section at step " << steps;
  }
  ASSERT_TRUE(done()) << "stuck after " << steps << " steps: committed " << committed;
  EXPECT_GT(dropped, 20);
  // Every acknowledged increment is in the store; an unknown outcome may or
  // may not have applied.
  const int n = std::stoi(StoredValue(c, kS, "n"));
  EXPECT_GE(n, committed);
  EXPECT_LE(n, committed + unknown);
  EXPECT_EQ(committed + unknown, kProcesses * kThreads * kIncrements);
}

TEST(Cluster, B4_RestartedProcessLosesItsLocksToTheNextInLine) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"1:granted"});
  c.Ask(2, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  EXPECT_TRUE(Take(c, 2).empty());
  c.RestartProcess(1);
  // The new incarnation asks again: the store ends its predecessor's tenure.
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  EXPECT_EQ(Take(c, 2), Names{"1:granted"});
  EXPECT_EQ(HeldTenure(c, kS).holder.id, 2u);
  EXPECT_TRUE(Take(c, 1).empty());
  ASSERT_EQ(c.store().state().sessions.at(kS).queue.size(), 1u);
  EXPECT_EQ(c.store().state().sessions.at(kS).queue.front().process, (core::ProcessRef{1, 2}));
}

// ---- B5 end to end --------------------------------------------------------------------

TEST(Cluster, B5_TryLockOnASessionHeldElsewhereFailsBusy) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  Take(c, 1);
  c.Ask(2, 1, kS, Exclusive({"a"}), kNever, /*try_only=*/true);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 2), Names{"1:failed/busy"});
  EXPECT_EQ(c.store().stats().recalls, 0u) << "a try-lock recalled the holder";
  EXPECT_TRUE(c.store().state().sessions.at(kS).queue.empty());
  EXPECT_TRUE(InCriticalSection(c, 1, kS));
}

TEST(Cluster, B5_WaitTimeoutWithdrawsTheBufferedRequest) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  Take(c, 1);
  c.Ask(2, 1, kS, Exclusive({"a"}), /*deadline=*/60'000);
  c.DeliverAll();
  ASSERT_EQ(c.store().state().sessions.at(kS).queue.size(), 1u);
  c.AdvanceTo(60'000);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 2), Names{"1:failed/timeout"});
  EXPECT_TRUE(c.store().state().sessions.at(kS).queue.empty()) << "Cancel did not withdraw it";
  // Process 1 finishes: nobody is waiting, so it is granted to no one else.
  c.Finish(1, 1, kS, false);
  c.DeliverAll();
  EXPECT_TRUE(Take(c, 2).empty());
  EXPECT_EQ(c.store().stats().grants, 1u);
}

TEST(Cluster, B5_ForceReleaseTellsTheHolderItsLockIsLost) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.Ask(1, 2, kS, Exclusive({"b"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), (Names{"1:granted", "2:granted"}));
  c.Ask(2, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  c.Admin(0, core::ForceRelease{kS});
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), (Names{"1:failed/lock_lost", "2:failed/lock_lost"}));
  EXPECT_EQ(Take(c, 2), Names{"1:granted"});
  EXPECT_FALSE(InCriticalSection(c, 1, kS));
}

// ---- B6: invalidation while locked ---------------------------------------------------

TEST(Cluster, B6_ClearAndCommitWhileLockedDropsTheStoredAttributes) {
  Cluster c(2);
  c.Ask(1, 1, kS, core::Portion::Whole(core::Mode::kExclusive));
  c.DeliverAll();
  c.agent(1).Write(1, kS, "a", "A");
  c.agent(1).Write(1, kS, "b", "B");
  c.Finish(1, 1, kS);
  c.DeliverAll();
  ASSERT_EQ(StoredValue(c, kS, "a"), "A");
  c.Ask(1, 2, kS, core::Portion::Whole(core::Mode::kExclusive));
  ASSERT_EQ(c.agent(1).Clear(2, kS), Reason::kNone);
  ASSERT_EQ(c.agent(1).Write(2, kS, "c", "C"), Reason::kNone);
  c.Finish(1, 2, kS);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), (Names{"1:granted", "1:committed", "2:granted", "2:committed"}));
  EXPECT_EQ(c.store().state().sessions.at(kS).attributes, (core::AttributeMap{{"c", "C"}}));
  // Another process sees only what is left.
  c.Ask(2, 1, kS, core::Portion::Whole(core::Mode::kShared));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 2), Names{"1:granted"});
  EXPECT_FALSE(c.agent(2).Read(1, kS, "a").value.has_value());
  EXPECT_EQ(c.agent(2).Read(1, kS, "c").value, "C");
}

TEST(Cluster, B6_AdminInvalidateWhileLockedLosesTheLockAndTheData) {
  Cluster c(1);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  c.agent(1).Write(1, kS, "a", "A");
  c.Finish(1, 1, kS);
  c.DeliverAll();
  c.Ask(1, 2, kS, Exclusive({"a"}));
  ASSERT_EQ(Take(c, 1), (Names{"1:granted", "1:committed", "2:granted"}));
  c.Admin(0, core::AdminInvalidate{kS});
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), Names{"2:failed/lock_lost"});
  const std::string left = StoredValue(c, kS, "a");
  EXPECT_TRUE(left == "<none>" || left == "<no session>") << "data survived invalidation: " << left;
  // Asking again starts from an empty session.
  c.Ask(1, 3, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"3:granted"});
  EXPECT_FALSE(c.agent(1).Read(3, kS, "a").value.has_value());
}

// ---- B7: store restart -----------------------------------------------------------------

TEST(Cluster, B7_HolderReclaimsAfterStoreRestartAndKeepsItsLock) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"1:granted"});
  const core::Token token = c.agent(1).state().sessions.at(kS).token;
  ASSERT_EQ(c.agent(1).Write(1, kS, "a", "kept"), Reason::kNone);
  c.AdvanceTo(100'000);
  c.RestartStore();
  ASSERT_EQ(c.store().state().epoch, 2u);
  ASSERT_NE(TenureOf(c, kS), nullptr);
  EXPECT_FALSE(HeldTenure(c, kS).reclaimed);

  // The next heartbeat's answer comes from the new epoch: process 1 reclaims.
  c.AdvanceTo(c.agent(1).config().EffectiveHeartbeat());
  DeliverFirst(c, Is<core::Heartbeat>);
  Effects seen = DeliverFirst(c, Is<core::HeartbeatAck>);
  EXPECT_EQ(c.agent(1).state().stores[0].epoch, 2u);
  std::vector<core::Reclaim> reclaim = SentOf<core::Reclaim>(seen);
  ASSERT_EQ(reclaim.size(), 1u);
  EXPECT_EQ(reclaim[0], (core::Reclaim{kS, token}));
  EXPECT_EQ(seen.send.at(0).to.incarnation, 2u) << "sent to the old epoch";
  c.DeliverAll();
  EXPECT_EQ(HeldTenure(c, kS).holder.id, 1u);
  EXPECT_TRUE(HeldTenure(c, kS).reclaimed);
  EXPECT_FALSE(c.agent(1).state().sessions.at(kS).reclaiming);

  // Past the grace period the reclaimed holder still holds.
  for (Time t = 600'000; t <= 3'000'000; t += 100'000) {
    c.AdvanceTo(t);
    c.DeliverAll();
  }
  EXPECT_TRUE(Take(c, 1).empty()) << "the holder lost its reclaimed lock";
  EXPECT_TRUE(InCriticalSection(c, 1, kS));
  EXPECT_EQ(HeldTenure(c, kS).token, token);
  // Its commit, with the old token, is accepted by the new store life.
  c.Finish(1, 1, kS);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), Names{"1:committed"});
  EXPECT_EQ(StoredValue(c, kS, "a"), "kept");
  // Tokens continue past the old ones (B2).
  c.Ask(2, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 2), Names{"1:granted"});
  EXPECT_GT(c.agent(2).state().sessions.at(kS).token, token);
  EXPECT_EQ(c.agent(2).Read(1, kS, "a").value, "kept");
}

// Runs: process 1 holds kS with a thread in its critical section, the store
// restarts, process 2 asks, and every Reclaim of process 1 is lost. Revoked
// messages to process 1 are held back until `revoked_at`.
struct LostReclaim {
  bool p1_lost = false;
  bool p2_granted = false;
  Time both_trusting_at = kNever;  // first instant both were in a critical section
};

LostReclaim RunLostReclaim(Cluster& c, Time revoked_at) {
  LostReclaim out;
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), Names{"1:granted"});
  c.AdvanceTo(100'000);
  c.RestartStore();
  c.Ask(2, 1, kS, Exclusive({"a"}));
  std::vector<Envelope> held;
  for (Time t = 100'000; t <= 3'500'000; t += 10'000) {
    if (t > c.now) c.AdvanceTo(t);
    if (t >= revoked_at) {
      for (const Envelope& e : held) c.in_flight().push_back(e);
      held.clear();
    }
    while (!c.in_flight().empty()) {
      c.Drop(Is<core::Reclaim>);
      if (t < revoked_at) {
        for (Envelope& e :
             c.Drop([](const Envelope& e) { return Is<core::Revoked>(e) && ToProcess(e, 1); })) {
          held.push_back(e);
        }
      }
      c.DeliverOne();
    }
    for (const std::string& w : Take(c, 1)) {
      EXPECT_EQ(w, "1:failed/lock_lost");
      out.p1_lost = true;
    }
    for (const std::string& w : Take(c, 2)) {
      EXPECT_EQ(w, "1:granted");
      out.p2_granted = true;
    }
    if (out.both_trusting_at == kNever && InCriticalSection(c, 1, kS) &&
        InCriticalSection(c, 2, kS)) {
      out.both_trusting_at = c.now;
    }
  }
  return out;
}

TEST(Cluster, B7_HolderWhoseReclaimIsLostLosesItsLockAfterGrace) {
  Cluster c(2);
  LostReclaim r = RunLostReclaim(c, /*revoked_at=*/0);  // Revoked delivered at once
  EXPECT_TRUE(r.p1_lost);
  EXPECT_TRUE(r.p2_granted) << "the waiter was never granted";
  ASSERT_NE(TenureOf(c, kS), nullptr);
  EXPECT_EQ(HeldTenure(c, kS).holder.id, 2u);
  EXPECT_FALSE(InCriticalSection(c, 1, kS));
  EXPECT_TRUE(InCriticalSection(c, 2, kS));
  EXPECT_EQ(r.both_trusting_at, kNever);
}

// B1 + B7: the store's grace period ends at restart + grace whatever the
// holder does, so a holder whose Reclaim goes unanswered must stop trusting
// its lock by then by its own clock, without waiting for the Revoked message
// (which may be late). Heartbeat acks from the new epoch once extended the
// unreclaimed holder's trust past the grace end.
TEST(Cluster, B7_UnreclaimedHolderStopsTrustingBeforeGraceEnds) {
  Cluster c(2);
  LostReclaim r = RunLostReclaim(c, /*revoked_at=*/3'400'000);  // Revoked very late
  EXPECT_TRUE(r.p2_granted);
  EXPECT_TRUE(r.p1_lost);
  EXPECT_EQ(r.both_trusting_at, kNever)
      << "processes 1 and 2 both in a trusted critical section at " << r.both_trusting_at;
}

// ---- B8: several store nodes ------------------------------------------------------------

TEST(Cluster, B8_SessionsOnTwoStoresLockIndependently) {
  Cluster c(2, {}, {}, /*stores=*/2);
  SessionId on0 = 0, on1 = 0;
  for (SessionId s = 1; on0 == 0 || on1 == 0; ++s) {
    (core::StoreForSession(s, 2) == 0 ? on0 : on1) = s;
  }
  c.Ask(1, 1, on0, Exclusive({"a"}));
  c.Ask(1, 2, on1, Exclusive({"a"}));
  ASSERT_EQ(c.in_flight().size(), 2u);
  EXPECT_EQ(c.in_flight()[0].to.id, 0u);
  EXPECT_EQ(c.in_flight()[1].to.id, 1u);
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), (Names{"1:granted", "2:granted"}));
  ASSERT_NE(TenureOf(c, on0, 0), nullptr);
  ASSERT_NE(TenureOf(c, on1, 1), nullptr);
  EXPECT_EQ(c.store(0).state().sessions.count(on1), 0u);
  EXPECT_EQ(c.store(1).state().sessions.count(on0), 0u);

  // Process 2 contends for the session on store 0 only.
  c.Ask(2, 1, on0, Exclusive({"a"}));
  c.DeliverAll();
  EXPECT_TRUE(c.agent(1).state().sessions.at(on0).recalled);
  EXPECT_FALSE(c.agent(1).state().sessions.at(on1).recalled);
  c.agent(1).Write(1, on0, "a", "zero");
  c.agent(1).Write(2, on1, "a", "one");
  c.Finish(1, 1, on0);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), Names{"1:committed"});
  EXPECT_EQ(Take(c, 2), Names{"1:granted"});
  EXPECT_EQ(c.agent(2).Read(1, on0, "a").value, "zero");
  // Process 1 still holds the other session, on the other store.
  EXPECT_TRUE(InCriticalSection(c, 1, on1));
  EXPECT_EQ(HeldTenure(c, on1, 1).holder.id, 1u);
  c.Finish(1, 2, on1);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), Names{"2:committed"});
  EXPECT_EQ(StoredValue(c, on1, "a", 1), "one");
  EXPECT_EQ(StoredValue(c, on0, "a", 0), "zero");

  // A restart of store 1 leaves store 0's locks alone.
  c.RestartStore(1);
  EXPECT_EQ(c.store(0).state().epoch, 1u);
  EXPECT_TRUE(InCriticalSection(c, 2, on0));
  EXPECT_EQ(HeldTenure(c, on0, 0).holder.id, 2u);
}

// ---- B9: tokens are bound to their process --------------------------------------------

TEST(Cluster, B9_AnotherProcessCannotUseOrReleaseTheHoldersToken) {
  Cluster c(2);
  c.Ask(1, 1, kS, Exclusive({"a"}));
  c.DeliverAll();
  ASSERT_EQ(Take(c, 1), Names{"1:granted"});
  const core::Token token = c.agent(1).state().sessions.at(kS).token;
  const core::ProcessRef p2{2, 1};

  Effects commit = c.Deliver(FromProcess(
      p2, core::Commit{kS, token, 1, false, {core::AttributeWrite{"a", "evil", false}}}));
  std::vector<core::Rejected> rej = SentOf<core::Rejected>(commit);
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].reason, Reason::kNotHolder);
  EXPECT_TRUE(SentOf<core::CommitAck>(commit).empty());
  EXPECT_TRUE(commit.persist.empty()) << "a foreign commit was persisted";

  Effects release = c.Deliver(FromProcess(p2, core::Release{kS, token}));
  rej = SentOf<core::Rejected>(release);
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].reason, Reason::kNotHolder);
  EXPECT_TRUE(SentOf<core::ReleaseAck>(release).empty());
  c.DeliverAll();

  EXPECT_EQ(HeldTenure(c, kS).holder.id, 1u);
  EXPECT_EQ(HeldTenure(c, kS).token, token);
  EXPECT_TRUE(InCriticalSection(c, 1, kS));
  EXPECT_TRUE(Take(c, 1).empty());
  EXPECT_NE(StoredValue(c, kS, "a"), "evil") << "the foreign write was applied";
  c.agent(1).Write(1, kS, "a", "good");
  c.Finish(1, 1, kS);
  c.DeliverAll();
  EXPECT_EQ(Take(c, 1), Names{"1:committed"});
  EXPECT_EQ(StoredValue(c, kS, "a"), "good");
}

}  // namespace
}  // namespace latchkey::testing
