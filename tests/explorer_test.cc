// The bounded model checker on the real core: small worlds are verified
// exhaustively, and every planted bug is found on a small world with a
// shortest counterexample. Configurations per planted bug are listed in the
// README.
#include <gtest/gtest.h>

#include <cstdio>

#include "checker/checker.h"
#include "checker/explorer.h"
#include "core/mutants.h"
#include "sim/simulator.h"

namespace latchkey::checker {
namespace {

ExploreConfig World(std::uint32_t processes, std::uint32_t threads, std::uint32_t requests,
                    const std::string& faults = "") {
  ExploreConfig c;
  c.processes = processes;
  c.threads = threads;
  c.requests_per_thread = requests;
  EXPECT_EQ(ApplyFaultList(faults, c), "");
  return c;
}

void Print(const char* what, const ExploreResult& r) {
  std::printf("%s: %llu generated, %llu distinct, depth %u, %.2f s%s\n", what,
              static_cast<unsigned long long>(r.stats.generated),
              static_cast<unsigned long long>(r.stats.distinct), r.stats.depth, r.stats.wall_s,
              r.violation ? (" -> " + r.violation->invariant).c_str() : "");
}

TEST(Explorer, TwoProcessesOneRequestEachAreVerifiedExhaustively) {
  ExploreResult r = Explore(World(2, 1, 1));
  Print("2x1x1", r);
  ASSERT_FALSE(r.violation) << r.violation->invariant << ": " << r.violation->message;
  EXPECT_TRUE(r.stats.complete);
  EXPECT_GT(r.stats.distinct, 50u);  // 78 with symmetry, 155 without
  EXPECT_GT(r.stats.terminal, 0u);
  // 16 bytes a fingerprint, and a directory of at most 4 bytes per 4 states.
  EXPECT_GE(r.stats.visited_bytes, r.stats.distinct * 16);
  EXPECT_LE(r.stats.visited_bytes, r.stats.distinct * 17 + 8);
}

TEST(Explorer, CrashesLossDuplicationAndRestartsAreVerified) {
  for (const char* faults : {"crash", "loss", "dup", "store-restart", "reorder"}) {
    ExploreResult r = Explore(World(2, 1, 1, faults));
    Print(faults, r);
    ASSERT_FALSE(r.violation) << faults << ": " << r.violation->invariant << ": "
                              << r.violation->message;
    EXPECT_TRUE(r.stats.complete) << faults;
  }
}

// R8's release_when_contended (a lock taken from another process goes back
// as soon as no thread wants it) with otherwise cached locks: every state of
// a contended world, with and without crashes, violates nothing, and the
// policy changes which states are reached (so it is exercised).
// With it, the last thread's Commit carries its Release right behind it;
// lost, duplicated and reordered messages test that pipelined release. With
// dup and reorder together, a refused duplicate of the last Commit can
// overtake the CommitAck: the agent's first version of the pipelined release
// told that thread its commit was lost, and this world finds it (17 steps).
TEST(Explorer, ReleaseWhenContendedIsVerifiedExhaustively) {
  for (const char* faults : {"", "crash", "loss", "dup", "reorder", "dup,reorder"}) {
    ExploreConfig keep = World(2, 1, 2, faults);
    keep.idle_release_us = core::kNever;
    ExploreConfig adaptive = keep;
    adaptive.release_when_contended = true;
    ExploreResult cached = Explore(keep);
    ExploreResult r = Explore(adaptive);
    Print((std::string("2x1x2 release-when-contended ") + faults).c_str(), r);
    ASSERT_FALSE(r.violation) << faults << ": " << r.violation->invariant << ": "
                              << r.violation->message;
    EXPECT_TRUE(r.stats.complete) << faults;
    EXPECT_NE(r.stats.distinct, cached.stats.distinct) << faults;
  }
}

// With leases running out while messages are in flight the space grows
// about threefold per step: explored to a bound, not exhaustively.
TEST(Explorer, LeaseExpiryIsCleanToDepthTen) {
  ExploreConfig c = World(2, 1, 1, "lease-expiry");
  c.max_depth = 10;
  ExploreResult r = Explore(c);
  Print("lease-expiry, depth 10", r);
  ASSERT_FALSE(r.violation) << r.violation->invariant << ": " << r.violation->message;
  EXPECT_EQ(r.stats.depth, 10u);
}

TEST(Explorer, TheSameSearchWhateverTheNumberOfJobs) {
  ExploreConfig one = World(2, 1, 1, "crash");
  ExploreConfig two = one;
  two.jobs = 2;
  ExploreResult a = Explore(one), b = Explore(two);
  EXPECT_EQ(a.stats.distinct, b.stats.distinct);
  EXPECT_EQ(a.stats.generated, b.stats.generated);
  EXPECT_EQ(a.stats.depth, b.stats.depth);
}

// Symmetry reduction is exact: the reduced search visits one state per
// class of states equal up to process numbering, and exactly the classes
// the unreduced search reaches (counted there with count_classes), so
// nothing reachable is skipped. A step that would break the symmetry makes
// the search start over unreduced (symmetry_abandoned); none of these does.
TEST(Explorer, SymmetryReductionVisitsEveryReachableClassOnce) {
  struct Case {
    const char* name;
    ExploreConfig config;
  };
  std::vector<Case> cases = {
      {"2x1x1", World(2, 1, 1)},
      {"2x1x2", World(2, 1, 2)},
      {"2x2x1", World(2, 2, 1)},
      {"3x1x1", World(3, 1, 1)},
      {"2x1x1 crash", World(2, 1, 1, "crash")},
      {"2x1x1 loss", World(2, 1, 1, "loss")},
      {"2x1x1 dup", World(2, 1, 1, "dup")},
      {"2x1x1 store-restart", World(2, 1, 1, "store-restart")},
      {"2x1x1 reorder,crash", World(2, 1, 1, "reorder,crash")},
      {"3x1x1 crash", World(3, 1, 1, "crash")},
  };
  cases.push_back({"2x1x1 keep-locks", World(2, 1, 1)});
  cases.back().config.idle_release_us = core::kNever;
  cases.push_back({"2x1x1 lease-expiry depth 8", World(2, 1, 1, "lease-expiry")});
  cases.back().config.max_depth = 8;
  cases.push_back({"2x1x2 2 sessions", World(2, 1, 2)});
  cases.back().config.sessions = 2;
  cases.push_back({"2 stores 2x1x2 2 sessions", World(2, 1, 2)});
  cases.back().config.stores = 2;
  cases.back().config.sessions = 2;
  for (Case& c : cases) {
    ExploreConfig plain = c.config;
    plain.symmetry = false;
    plain.count_classes = true;
    ExploreResult full = Explore(plain);
    ExploreResult reduced = Explore(c.config);
    Print((std::string(c.name) + ", unreduced").c_str(), full);
    Print((std::string(c.name) + ", symmetry").c_str(), reduced);
    EXPECT_FALSE(full.violation) << c.name;
    EXPECT_FALSE(reduced.violation) << c.name;
    EXPECT_TRUE(reduced.stats.symmetry) << c.name;
    EXPECT_FALSE(reduced.stats.symmetry_abandoned) << c.name;
    EXPECT_EQ(reduced.stats.complete, full.stats.complete) << c.name;
    EXPECT_EQ(reduced.stats.depth, full.stats.depth) << c.name;
    EXPECT_EQ(reduced.stats.distinct, full.stats.classes) << c.name;
    EXPECT_LT(reduced.stats.distinct, full.stats.distinct) << c.name;
  }
}

// States that differ only in which process did what share a fingerprint.
TEST(Explorer, SymmetricStatesShareAFingerprint) {
  ExploreConfig c = World(2, 1, 1);
  ExploreConfig plain = c;
  plain.symmetry = false;
  const std::vector<std::string> p1_first = {"p1.t0 asks", "p2.t0 asks", R"("from":"p1@1")"};
  const std::vector<std::string> p2_first = {"p2.t0 asks", "p1.t0 asks", R"("from":"p2@1")"};
  // p1 asked first, but p2's request reached the store first: not a renaming.
  const std::vector<std::string> crossed = {"p1.t0 asks", "p2.t0 asks", R"("from":"p2@1")"};
  for (const auto* steps : {&p1_first, &p2_first, &crossed}) {
    ASSERT_TRUE(FingerprintAfter(c, *steps).has_value());
  }
  EXPECT_EQ(FingerprintAfter(c, {"p1.t0 asks"}), FingerprintAfter(c, {"p2.t0 asks"}));
  EXPECT_NE(FingerprintAfter(plain, {"p1.t0 asks"}), FingerprintAfter(plain, {"p2.t0 asks"}));
  EXPECT_EQ(FingerprintAfter(c, p1_first), FingerprintAfter(c, p2_first));
  EXPECT_NE(FingerprintAfter(plain, p1_first), FingerprintAfter(plain, p2_first));
  EXPECT_NE(FingerprintAfter(c, p1_first), FingerprintAfter(c, crossed));
  EXPECT_NE(FingerprintAfter(c, p2_first), FingerprintAfter(c, crossed));
}

TEST(Explorer, ADepthBoundIsReportedAsNotExhaustive) {
  ExploreConfig c = World(2, 1, 1);
  c.max_depth = 3;
  ExploreResult r = Explore(c);
  EXPECT_FALSE(r.stats.complete);
  EXPECT_EQ(r.stats.depth, 3u);
}

TEST(Explorer, BadConfigurationsNameTheField) {
  ExploreConfig c;
  EXPECT_EQ(LoadExploreConfig(nlohmann::json::parse(R"({"proceses": 2})"), c),
            "/proceses: unknown field");
  EXPECT_NE(LoadExploreConfig(nlohmann::json::parse(R"({"threads": 0})"), c)
                .find("/threads: expected an integer in [1, 8], found 0"),
            std::string::npos);
  EXPECT_NE(ApplyFaultList("crash,meteor", c).find("unknown fault \"meteor\""), std::string::npos);
  EXPECT_NE(ApplyFaultList("drift", c).find("not modelled"), std::string::npos);
}

#ifdef LATCHKEY_MUTANTS
struct MutantCase {
  core::Mutant mutant;
  const char* invariant;
  std::uint32_t processes, threads, requests;
  const char* faults;
  bool keep_locks = false;  // cache locks until recalled (R6) instead of releasing each time
};

ExploreConfig WorldOf(const MutantCase& m) {
  ExploreConfig c = World(m.processes, m.threads, m.requests, m.faults);
  if (m.keep_locks) c.idle_release_us = core::kNever;
  // With lease expiry the space has no small bound: the planted bugs show
  // within 8 steps; the real core is checked to depth 10.
  if (c.lease_expiry) c.max_depth = 10;
  return c;
}

// Each planted bug, the smallest world found to show it, and its invariant.
const MutantCase kMutantCases[] = {
    {core::Mutant::kGrantWhileHeld, "process_exclusion", 2, 1, 1, ""},
    {core::Mutant::kAgentTrustsForever, "process_exclusion", 2, 1, 1, "lease-expiry"},
    {core::Mutant::kAgentGrantsConflicting, "thread_exclusion", 1, 2, 1, ""},
    {core::Mutant::kTokenResetOnRecover, "token_validity", 2, 1, 1, "store-restart"},
    {core::Mutant::kCommitAcceptsStale, "token_validity", 2, 1, 1, "lease-expiry"},
    {core::Mutant::kLifoQueue, "queue_order", 3, 1, 1, ""},
    {core::Mutant::kAckWithoutPersist, "no_lost_update", 1, 1, 1, ""},
    {core::Mutant::kAgentIgnoresSnapshot, "serializability", 2, 1, 2, ""},
    {core::Mutant::kAgentIgnoresRecall, "no_deadlock", 2, 1, 1, "", true},
    {core::Mutant::kNoProgressRule, "liveness", 2, 2, 1, "", true},
    {core::Mutant::kAgentThreadLifo, "bounded_bypass", 1, 3, 1, ""},
    {core::Mutant::kAgentReleasesWhileHolding, "process_exclusion", 2, 2, 1, "", true},
    {core::Mutant::kAgentConfusesModes, "thread_exclusion", 1, 3, 1, ""},
    {core::Mutant::kTokenNotBumpedAfterExpiry, "token_validity", 2, 1, 1, "lease-expiry"},
    {core::Mutant::kDuplicateCommitApplied, "serializability", 1, 1, 1, "dup"},
    {core::Mutant::kStoreNeverRecalls, "liveness", 2, 1, 1, "", true},
    {core::Mutant::kAgentClaimsCommitLost, "no_lost_update", 1, 1, 1, "lease-expiry"},
};

void PrintTo(const MutantCase& m, std::ostream* out) { *out << core::MutantName(m.mutant); }

class ExplorerMutant : public testing::TestWithParam<MutantCase> {};

TEST_P(ExplorerMutant, IsFoundWithAShortestCounterexample) {
  const MutantCase& m = GetParam();
  core::SetMutant(m.mutant);
  ExploreResult r = Explore(WorldOf(m));
  ExploreConfig plain = WorldOf(m);
  plain.symmetry = false;
  ExploreResult unreduced = Explore(plain);
  core::SetMutant(core::Mutant::kNone);
  Print(std::string(core::MutantName(m.mutant)).c_str(), r);
  ASSERT_TRUE(r.violation.has_value()) << core::MutantName(m.mutant);
  EXPECT_EQ(r.violation->invariant, m.invariant) << r.violation->message;
  EXPECT_FALSE(r.violation->path.empty());
  // Breadth-first: the path is as long as the levels searched (one more
  // step when the violation is on a step rather than a terminal state).
  EXPECT_GE(r.violation->path.size(), r.stats.depth);
  EXPECT_LE(r.violation->path.size(), r.stats.depth + 1u);
  // The reduction changes neither the verdict nor the shortest path's length.
  ASSERT_TRUE(unreduced.violation.has_value());
  EXPECT_EQ(unreduced.violation->invariant, r.violation->invariant);
  EXPECT_EQ(unreduced.violation->path.size(), r.violation->path.size());
  EXPECT_LE(r.stats.distinct, unreduced.stats.distinct);
  // The counterexample replays in the simulator, scripted step by step, and
  // the simulator's checker sees the same violation.
  ASSERT_EQ(r.violation->script.size(), r.violation->path.size());
  sim::SimConfig replay;
  ASSERT_EQ(ReplayConfig(WorldOf(m), r.violation->script, replay), "");
  core::SetMutant(m.mutant);
  sim::Simulator simulator(replay, 1);
  Checker checker;
  simulator.AddObserver(&checker);
  simulator.Run();
  if (simulator.script_error().empty()) checker.Finish(simulator);
  core::SetMutant(core::Mutant::kNone);
  EXPECT_EQ(simulator.script_error(), "");
  EXPECT_EQ(simulator.script_steps_taken(), r.violation->script.size());
  ASSERT_TRUE(checker.violation().has_value()) << "the simulator saw no violation";
  EXPECT_EQ(checker.violation()->name(), m.invariant) << checker.violation()->message;
  // Without the planted bug the same script cannot be followed, or breaks nothing.
  sim::Simulator clean(replay, 1);
  Checker clean_checker;
  clean.AddObserver(&clean_checker);
  clean.Run();
  if (clean.script_error().empty()) {
    clean_checker.Finish(clean);
    EXPECT_FALSE(clean_checker.violation().has_value()) << clean_checker.violation()->message;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryPlantedBug, ExplorerMutant, testing::ValuesIn(kMutantCases),
                         [](const testing::TestParamInfo<MutantCase>& info) {
                           return std::string(core::MutantName(info.param.mutant));
                         });

// A thread told LockLost while the store has made its commit durable is
// caught on the very step that tells it, before any terminal state: the
// message names the commit, and the path ends with the step.
TEST(Explorer, ALostLockWhoseCommitAppliedIsCaughtOnTheStep) {
  ExploreConfig c = World(1, 1, 1, "lease-expiry");
  c.max_depth = 10;
  core::SetMutant(core::Mutant::kAgentClaimsCommitLost);
  ExploreResult r = Explore(c);
  core::SetMutant(core::Mutant::kNone);
  ASSERT_TRUE(r.violation.has_value());
  EXPECT_EQ(r.violation->invariant, "no_lost_update");
  EXPECT_NE(r.violation->message.find("p1.t0 was told its lock was lost"), std::string::npos)
      << r.violation->message;
  EXPECT_NE(r.violation->message.find("has made it durable (session 0, token 1, seq 1)"),
            std::string::npos)
      << r.violation->message;
  EXPECT_EQ(r.violation->path.size(), r.stats.depth + 1u);  // on a step, not a terminal state
  std::string path;
  for (const std::string& step : r.violation->path) path += step + "\n";
  std::printf("%s", path.c_str());
}

// Without the planted bug, the same worlds are clean.
TEST(Explorer, TheMutantWorldsAreCleanOnTheRealCore) {
  for (const MutantCase& m : kMutantCases) {
    ExploreResult r = Explore(WorldOf(m));
    ASSERT_FALSE(r.violation) << core::MutantName(m.mutant) << ": " << r.violation->invariant
                              << ": " << r.violation->message;
  }
}
#endif

}  // namespace
}  // namespace latchkey::checker
