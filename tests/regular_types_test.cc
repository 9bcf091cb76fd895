// The core's state types are regular: copies compare equal and hash equal,
// and any change to a state changes its equality (and, in practice, its hash).
// The model checker relies on this to store and compare whole states.
#include "core/hash.h"
#include "tests/harness.h"

namespace latchkey::testing {
namespace {

TEST(RegularTypes, CopiesCompareAndHashEqual) {
  Cluster c(2);
  c.Ask(1, 0, 5, Exclusive({"a"}));
  c.Ask(2, 0, 5, Exclusive({"a"}));
  c.DeliverAll();
  core::Store store_copy = c.store();
  core::ProcessAgent agent_copy = c.agent(1);
  EXPECT_EQ(store_copy, c.store());
  EXPECT_EQ(agent_copy, c.agent(1));
  EXPECT_EQ(core::HashOf(store_copy.state()), core::HashOf(c.store().state()));
  EXPECT_EQ(core::HashOf(agent_copy.state()), core::HashOf(c.agent(1).state()));
  EXPECT_EQ(std::hash<core::StoreState>{}(store_copy.state()),
            std::hash<core::StoreState>{}(c.store().state()));
}

TEST(RegularTypes, DifferentStatesDiffer) {
  Cluster c(2);
  core::Store before = c.store();
  core::ProcessAgent agent_before = c.agent(1);
  c.Ask(1, 0, 5, Exclusive({"a"}));
  c.DeliverAll();
  EXPECT_NE(before, c.store());
  EXPECT_NE(agent_before, c.agent(1));
  EXPECT_NE(core::HashOf(before.state()), core::HashOf(c.store().state()));
  EXPECT_NE(core::HashOf(agent_before.state()), core::HashOf(c.agent(1).state()));
}

TEST(RegularTypes, HashIsStableAcrossRuns) {
  // Fixed value: the hash has no per-process seed, so a visited set or a
  // trace hash computed today matches one computed on another machine.
  core::Envelope e = FromProcess({1, 1}, core::Acquire{7, 3, {}, false});
  EXPECT_EQ(core::HashOf(e), core::HashOf(FromProcess({1, 1}, core::Acquire{7, 3, {}, false})));
  EXPECT_NE(core::HashOf(e), core::HashOf(FromProcess({1, 1}, core::Acquire{7, 4, {}, false})));
  EXPECT_EQ(core::Splitmix64(0), 0xE220A8397B1DCDAFULL);
}

TEST(RegularTypes, B8_SessionsSpreadEvenlyAndGrowingMovesOnlyToTheNewNode) {
  // Fixed values: placement must not change between builds or platforms.
  const std::uint32_t on4[] = {3, 3, 0, 1, 3, 3, 0, 1, 0, 2};
  for (core::SessionId s = 0; s < 10; ++s) EXPECT_EQ(core::StoreForSession(s, 4), on4[s]) << s;
  for (core::SessionId s = 0; s < 100; ++s) EXPECT_EQ(core::StoreForSession(s, 1), 0u);
  constexpr int kSessions = 20000;
  for (std::uint32_t n = 1; n <= 8; ++n) {
    std::vector<int> share(n + 1, 0);
    int moved = 0;
    for (core::SessionId s = 0; s < kSessions; ++s) {
      std::uint32_t before = core::StoreForSession(s, n);
      std::uint32_t after = core::StoreForSession(s, n + 1);
      ASSERT_LT(before, n);
      ++share[after];
      if (before != after) {
        ++moved;
        EXPECT_EQ(after, n) << "session " << s << " moved between old nodes";
      }
    }
    // About 1/(n+1) of the sessions move, and every node holds about its share.
    EXPECT_NEAR(moved, kSessions / static_cast<double>(n + 1), kSessions * 0.02) << n;
    for (int c : share) EXPECT_NEAR(c, kSessions / static_cast<double>(n + 1), kSessions * 0.02);
  }
}

}  // namespace
}  // namespace latchkey::testing
