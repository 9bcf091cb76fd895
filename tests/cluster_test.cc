// End-to-end tests of store and agents together through the test harness.
#include "tests/harness.h"

namespace latchkey::testing {
namespace {

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

}  // namespace
}  // namespace latchkey::testing
