// The timeline's model (cli/timeline.h): lanes, bars, arrows and marks built
// from a small trace written by hand, then from a real simulated run.
#include "cli/timeline.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "cli/runner.h"
#include "sim/simulator.h"

namespace latchkey::cli {
namespace {

// One store, one process with two threads: p1.t0 asks for session 3 and gets
// it; a Recall is lost, a heartbeat arrives twice; the process releases; the
// store crashes and recovers; then the checker stops the run.
const std::vector<std::string> kTrace = {
    R"({"ev":"start","node":"s0","out":{"persist":[{"epoch":1,"record":"StoreStarted"}]},"t":0,"what":"start"})",
    R"({"ev":"thread_start","node":"p1","out":{"send":[{"cached":[0,0],"from":"p1@1","kind":"Acquire","request":1,"session":3,"to":"s0@0","try":false}]},"portion":{"attributes":["a0"],"mode":"exclusive"},"session":3,"t":10,"thread":"p1.t0","what":"ask"})",
    R"({"ev":"deliver","in":{"cached":[0,0],"from":"p1@1","kind":"Acquire","request":1,"session":3,"to":"s0@0","try":false},"node":"s0","out":{"persist":[{"holder":"p1@1","record":"Grant","request":1,"session":3,"token":7}],"send":[{"from":"s0@1","kind":"Granted","request":1,"session":3,"to":"p1@1","token":7,"version":[0,0]},{"from":"s0@1","kind":"Recall","session":3,"to":"p1@1","token":7}]},"lost":[1],"t":100})",
    R"({"ev":"deliver","in":{"from":"s0@1","kind":"Granted","request":1,"session":3,"to":"p1@1","token":7,"version":[0,0]},"node":"p1","out":{"send":[{"from":"p1@1","kind":"Heartbeat","seq":1,"to":"s0@1"}],"wake":[{"event":"granted","session":3,"thread":0}]},"t":200})",
    R"({"ev":"deliver","in":{"from":"p1@1","kind":"Heartbeat","seq":1,"to":"s0@1"},"node":"s0","out":{},"t":300})",
    R"({"ev":"deliver","in":{"from":"p1@1","kind":"Heartbeat","seq":1,"to":"s0@1"},"node":"s0","out":{},"t":310})",
    R"({"ev":"thread_finish","node":"p1","out":{"send":[{"from":"p1@1","kind":"Release","session":3,"to":"s0@1","token":7}],"wake":[{"event":"committed","session":3,"thread":0}]},"portion":{"attributes":["a0"],"mode":"exclusive"},"session":3,"t":400,"thread":"p1.t0","what":"finish"})",
    R"({"ev":"fault","node":"s0","t":450,"what":"store_crash target=0 duration_us=100 variant=0"})",
    R"({"ev":"deliver","in":{"from":"p1@1","kind":"Release","session":3,"to":"s0@1","token":7},"node":"s0","t":500,"what":"drop_down"})",
    R"({"ev":"recover","node":"s0","out":{},"t":550,"what":"recover"})",
    R"({"ev":"thread_start","node":"p1","out":{},"portion":{"mode":"shared","whole":true},"session":4,"t":600,"thread":"p1.t1","what":"ask"})",
    R"({"ev":"violation","invariant":"queue_order","message":"a made-up violation","recent":3,"seed":1,"state":"","t":600})",
};

const TimelineBar* FindBar(const TimelineModel& m, const std::string& lane, BarKind kind) {
  const int l = m.LaneIndex(lane);
  for (const TimelineBar& b : m.bars) {
    if (b.lane == l && b.kind == kind) return &b;
  }
  return nullptr;
}

TEST(Timeline, LanesInOrderStoresThenEachProcessWithItsThreads) {
  TimelineModel m;
  ASSERT_EQ(BuildTimeline(kTrace, m), "");
  std::vector<std::string> names;
  for (const TimelineLane& l : m.lanes) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"s0", "p1", "p1.t0", "p1.t1"}));
  EXPECT_EQ(m.lanes[0].kind, "store");
  EXPECT_EQ(m.lanes[1].kind, "process");
  EXPECT_EQ(m.lanes[2].kind, "thread");
  EXPECT_EQ(m.lanes[2].parent, 1);
  EXPECT_EQ(m.events, 11);
  EXPECT_EQ(m.t_end, 600u);
  EXPECT_EQ(m.sessions, (std::vector<std::int64_t>{3, 4}));
}

TEST(Timeline, TenuresAsTheStoreAndTheProcessSeeThemAndThreadPortions) {
  TimelineModel m;
  ASSERT_EQ(BuildTimeline(kTrace, m), "");
  // The store's tenure survives its crash: the log keeps it.
  const TimelineBar* store = FindBar(m, "s0", BarKind::kStoreTenure);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->t0, 100u);
  EXPECT_EQ(store->token, 7u);
  EXPECT_EQ(store->session, 3);
  EXPECT_TRUE(store->open);
  // The process holds it from the grant's arrival to its release.
  const TimelineBar* process = FindBar(m, "p1", BarKind::kProcessTenure);
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(process->t0, 200u);
  EXPECT_EQ(process->t1, 400u);
  EXPECT_EQ(process->token, 7u);
  EXPECT_FALSE(process->open);
  // The thread waited from its ask, then held its portion until committed.
  const TimelineBar* waiting = FindBar(m, "p1.t0", BarKind::kWaiting);
  ASSERT_NE(waiting, nullptr);
  EXPECT_EQ(waiting->t0, 10u);
  EXPECT_EQ(waiting->t1, 200u);
  const TimelineBar* holding = FindBar(m, "p1.t0", BarKind::kThreadExclusive);
  ASSERT_NE(holding, nullptr);
  EXPECT_EQ(holding->t0, 200u);
  EXPECT_EQ(holding->t1, 400u);
  EXPECT_EQ(holding->token, 7u);  // coloured by the process's token
  // p1.t1 is still waiting when the trace ends.
  const TimelineBar* still = FindBar(m, "p1.t1", BarKind::kWaiting);
  ASSERT_NE(still, nullptr);
  EXPECT_TRUE(still->open);
}

TEST(Timeline, MessagesFromSendToDeliveryLostDroppedAndDuplicated) {
  TimelineModel m;
  ASSERT_EQ(BuildTimeline(kTrace, m), "");
  std::map<std::string, std::vector<const TimelineArrow*>> by_kind;
  for (const TimelineArrow& a : m.arrows) by_kind[a.kind].push_back(&a);
  ASSERT_EQ(by_kind["Acquire"].size(), 1u);
  const TimelineArrow& acquire = *by_kind["Acquire"][0];
  EXPECT_EQ(acquire.from, m.LaneIndex("p1"));
  EXPECT_EQ(acquire.to, m.LaneIndex("s0"));
  EXPECT_EQ(acquire.t0, 10u);
  EXPECT_EQ(acquire.t1, 100u);
  EXPECT_EQ(acquire.fate, ArrowFate::kDelivered);
  EXPECT_EQ(acquire.ev, 1);
  EXPECT_EQ(acquire.ev_end, 2);
  // The trace's "lost" names the second send of that event.
  ASSERT_EQ(by_kind["Recall"].size(), 1u);
  EXPECT_EQ(by_kind["Recall"][0]->fate, ArrowFate::kLost);
  EXPECT_EQ(by_kind["Recall"][0]->to, m.LaneIndex("p1"));
  ASSERT_EQ(by_kind["Granted"].size(), 1u);
  EXPECT_EQ(by_kind["Granted"][0]->fate, ArrowFate::kDelivered);
  // One heartbeat, delivered twice.
  ASSERT_EQ(by_kind["Heartbeat"].size(), 2u);
  EXPECT_EQ(by_kind["Heartbeat"][0]->fate, ArrowFate::kDelivered);
  EXPECT_EQ(by_kind["Heartbeat"][1]->fate, ArrowFate::kDuplicate);
  EXPECT_EQ(by_kind["Heartbeat"][1]->t0, 200u);
  EXPECT_EQ(by_kind["Heartbeat"][1]->t1, 310u);
  // The release reached a store that was down.
  ASSERT_EQ(by_kind["Release"].size(), 1u);
  EXPECT_EQ(by_kind["Release"][0]->fate, ArrowFate::kDroppedDown);
}

TEST(Timeline, CrashSpansRestartsAndTheViolation) {
  TimelineModel m;
  ASSERT_EQ(BuildTimeline(kTrace, m), "");
  bool crash = false, restart = false;
  for (const TimelineMark& k : m.marks) {
    if (k.kind == "crash" && k.lane == m.LaneIndex("s0")) {
      crash = true;
      EXPECT_EQ(k.t0, 450u);
      EXPECT_EQ(k.t1, 550u);
    }
    if (k.kind == "restart" && k.lane == m.LaneIndex("s0")) restart = true;
  }
  EXPECT_TRUE(crash);
  EXPECT_TRUE(restart);
  ASSERT_TRUE(m.violation.has_value());
  EXPECT_EQ(m.violation->invariant, "queue_order");
  EXPECT_EQ(m.violation->message, "a made-up violation");
  EXPECT_EQ(m.violation->recent_from, 8);  // the last 3 of 11 events
  const nlohmann::json j = m.ToJson(kTrace);
  EXPECT_EQ(j["violation"]["events"].size(), 3u);
  EXPECT_EQ(j["bars"]["t0"].size(), m.bars.size());
}

TEST(Timeline, PageIsSelfContained) {
  TimelineModel m;
  ASSERT_EQ(BuildTimeline(kTrace, m), "");
  std::vector<std::string> lines = kTrace;
  lines.push_back(R"({"ev":"quiet","node":"s0","t":700,"what":"</script><b>"})");
  ASSERT_EQ(BuildTimeline(lines, m), "");
  const std::string page = TimelineHtml(m, lines, "a <title>");
  EXPECT_NE(page.find("<canvas"), std::string::npos);
  EXPECT_NE(page.find("a &lt;title&gt;"), std::string::npos);
  // Nothing fetched from anywhere, and no trace text can end a script early.
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_EQ(page.find(" src="), std::string::npos);
  EXPECT_EQ(page.find("</script><b>"), std::string::npos);
}

TEST(Timeline, BadLineIsNamed) {
  TimelineModel m;
  EXPECT_EQ(BuildTimeline({R"({"ev":"start","t":0,"node":"s0"})", "{not json"}, m),
            "line 2: not a JSON object");
}

// A real run: every delivered message ends at or after its send, every lane
// of the world is there, and tracing (with its notes of lost messages) does
// not change the trace hash.
TEST(Timeline, SimulatedRunWithLossAndCrashes) {
  sim::SimConfig config;
  config.stores = 2;
  config.servers = 2;
  config.processes_per_server = 2;
  config.threads_per_process = 2;
  config.schedule.push_back({5'000, sim::FaultKind::kServerCrash, 1, 20'000, 0});
  config.schedule.push_back({8'000, sim::FaultKind::kStoreCrash, 0, 10'000, 0});
  config.workload.requests_per_thread = 10;
  config.network.loss_ppm = 50'000;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    std::ostringstream trace;
    sim::Simulator traced(config, seed);
    traced.SetTrace(&trace);
    const std::uint64_t hash = traced.Run().trace_hash;
    EXPECT_EQ(sim::Simulator(config, seed).Run().trace_hash, hash) << "seed " << seed;
    const std::vector<std::string> lines = SplitTraceLines(trace.str());
    TimelineModel m;
    ASSERT_EQ(BuildTimeline(lines, m), "");
    EXPECT_EQ(m.events, static_cast<std::int64_t>(lines.size()));
    EXPECT_GE(m.LaneIndex("s1"), 0);
    EXPECT_GE(m.LaneIndex("p4"), 0);
    EXPECT_GE(m.LaneIndex("p4.t1"), 0);
    std::size_t lost = 0;
    for (const TimelineArrow& a : m.arrows) {
      EXPECT_GE(a.t1, a.t0);
      if (a.fate == ArrowFate::kLost) ++lost;
    }
    EXPECT_GT(lost, 0u) << "seed " << seed << ": 5% loss, yet no lost message traced";
    for (std::size_t i = 1; i < m.bars.size(); ++i) EXPECT_LE(m.bars[i - 1].t0, m.bars[i].t0);
    // The server crash took down both of its processes, p3 and p4.
    std::set<std::string> down;
    for (const TimelineMark& k : m.marks) {
      if (k.kind == "crash" && k.t0 == 5'000) down.insert(m.lanes[k.lane].name);
    }
    EXPECT_EQ(down, (std::set<std::string>{"p3", "p4"})) << "seed " << seed;
  }
}

}  // namespace
}  // namespace latchkey::cli
