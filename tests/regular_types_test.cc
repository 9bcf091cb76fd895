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

TEST(RegularTypes, B8_SplitmixHomesMatchTheWorkloadCheckValues) {
  // ../shared/WORKLOAD.md: for P = 4, sessions 0..9 have homes 3 1 2 1 2 2 0 3 2 0.
  const std::uint32_t expected[] = {3, 1, 2, 1, 2, 2, 0, 3, 2, 0};
  for (core::SessionId s = 0; s < 10; ++s) EXPECT_EQ(core::StoreForSession(s, 4), expected[s]);
}

}  // namespace
}  // namespace latchkey::testing
