#include "cli/demo.h"

#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "core/agent.h"
#include "core/store.h"

namespace latchkey::cli {

namespace {

using core::Effects;
using core::Envelope;
using core::Time;

constexpr Time kLatencyUs = 500;
constexpr Time kThinkUs = 300;
constexpr core::SessionId kSession = 42;
const std::string kCounter = "counter";

// One pending event: deliver a message, tick a node, or start a thread's
// next request. Ordered by (time, sequence number).
struct Event {
  enum Kind { kDeliver, kTick, kStartRequest } kind;
  int node = 0;  // -1 = the store, else the process index
  core::ThreadId thread = 0;
  Envelope envelope;
};

class DemoWorld {
 public:
  explicit DemoWorld(const DemoOptions& options) : options_(options), store_(StoreConfig()) {
    for (int p = 0; p < options_.processes; ++p) {
      core::AgentConfig config;
      config.self = {static_cast<std::uint64_t>(p + 1), 1};
      config.idle_release_us = core::kNever;  // R6: cache the lock until recalled
      agents_.emplace_back(config);
      remaining_.emplace_back(options_.threads, options_.requests);
      agent_ticks_.push_back(core::kNever);
    }
  }

  int Run() {
    Apply(-1, store_.Start(0));
    for (int p = 0; p < options_.processes; ++p) {
      for (int t = 0; t < options_.threads; ++t) {
        Push(static_cast<Time>(t) * 100,
             Event{Event::kStartRequest, p, static_cast<core::ThreadId>(t), {}});
      }
    }
    long long expected_total =
        static_cast<long long>(options_.processes) * options_.threads * options_.requests;
    // Caching holders heartbeat forever, so the run ends once every request
    // has finished (committed or failed).
    while (!queue_.empty() && acknowledged_ + failures_ < expected_total) {
      auto it = queue_.begin();
      now_ = std::get<0>(it->first);
      Event ev = std::move(it->second);
      queue_.erase(it);
      Step(ev);
    }
    long long stored = 0;
    auto session = store_.state().sessions.find(kSession);
    if (session != store_.state().sessions.end()) {
      stored = std::stoll(session->second.attributes.at(kCounter));
    }
    long long expected =
        static_cast<long long>(options_.processes) * options_.threads * options_.requests;
    std::printf("demo: %d processes x %d threads x %d requests on one session\n",
                options_.processes, options_.threads, options_.requests);
    std::printf("  grants %llu, recalls %llu, queued %llu, commits acknowledged %lld\n",
                static_cast<unsigned long long>(store_.stats().grants),
                static_cast<unsigned long long>(store_.stats().recalls),
                static_cast<unsigned long long>(store_.stats().queued), acknowledged_);
    std::printf("  final counter %lld, expected %lld, simulated time %.3f ms\n", stored, expected,
                static_cast<double>(now_) / 1000.0);
    bool ok = stored == expected && acknowledged_ == expected && failures_ == 0;
    std::printf("  %s\n", ok ? "PASS: no lost update, every request committed"
                             : "FAIL: lost update or failed request");
    return ok ? 0 : 1;
  }

 private:
  static core::StoreConfig StoreConfig() {
    core::StoreConfig config;
    config.node_id = 0;
    return config;
  }

  void Push(Time at, Event ev) { queue_.emplace(std::make_tuple(at, seq_++), std::move(ev)); }

  void Step(const Event& ev) {
    switch (ev.kind) {
      case Event::kDeliver:
        if (options_.verbose) Log(ev.envelope);
        if (ev.node < 0) {
          Apply(-1, store_.OnMessage(now_, ev.envelope));
        } else {
          Apply(ev.node, agents_[ev.node].OnMessage(now_, ev.envelope));
        }
        break;
      case Event::kTick:
        if ((ev.node < 0 ? store_tick_ : agent_ticks_[ev.node]) != now_) break;  // superseded
        if (ev.node < 0) {
          Apply(-1, store_.OnTick(now_));
        } else {
          Apply(ev.node, agents_[ev.node].OnTick(now_));
        }
        break;
      case Event::kStartRequest:
        Apply(ev.node,
              agents_[ev.node].OnThreadAsk(now_, ev.thread, kSession,
                                           core::Portion::Of({kCounter}, core::Mode::kExclusive)));
        break;
    }
  }

  void Apply(int node, const Effects& fx) {
    // Records would be made durable here, before anything is sent (B3).
    for (const Envelope& e : fx.send) {
      int to = e.to.kind == core::NodeKind::kStore ? -1 : static_cast<int>(e.to.id) - 1;
      Push(now_ + kLatencyUs, Event{Event::kDeliver, to, 0, e});
    }
    for (const core::ThreadEvent& w : fx.wake) OnWake(node, w);
    // One pending tick per node: a newer deadline replaces the older one.
    Time& scheduled = node < 0 ? store_tick_ : agent_ticks_[node];
    if (fx.next_deadline != core::kNever && fx.next_deadline != scheduled) {
      scheduled = fx.next_deadline;
      Push(fx.next_deadline, Event{Event::kTick, node, 0, {}});
    }
  }

  void OnWake(int node, const core::ThreadEvent& w) {
    core::ProcessAgent& agent = agents_[node];
    switch (w.kind) {
      case core::ThreadEventKind::kGranted: {
        // Read-modify-write of the counter under the thread-level lock.
        core::ReadResult r = agent.Read(w.thread, w.session, kCounter);
        long long value = r.value ? std::stoll(*r.value) : 0;
        agent.Write(w.thread, w.session, kCounter, std::to_string(value + 1));
        Apply(node, agent.OnThreadFinish(now_, w.thread, w.session, true));
        break;
      }
      case core::ThreadEventKind::kCommitted:
        ++acknowledged_;
        if (--remaining_[node][w.thread] > 0) {
          Push(now_ + kThinkUs, Event{Event::kStartRequest, node, w.thread, {}});
        }
        break;
      case core::ThreadEventKind::kRolledBack:
      case core::ThreadEventKind::kFailed:
        ++failures_;
        std::printf("  thread %d.%u failed: %s\n", node + 1, w.thread,
                    std::string(core::ReasonName(w.reason)).c_str());
        break;
    }
  }

  void Log(const Envelope& e) const {
    auto name = [](const core::Address& a) {
      return a.kind == core::NodeKind::kStore ? std::string("store") : "p" + std::to_string(a.id);
    };
    std::printf("  t=%-8llu %-6s -> %-6s %s\n", static_cast<unsigned long long>(now_),
                name(e.from).c_str(), name(e.to).c_str(),
                std::string(core::MessageKindName(core::KindOf(e.message))).c_str());
  }

  DemoOptions options_;
  core::Store store_;
  std::vector<core::ProcessAgent> agents_;
  std::vector<std::vector<int>> remaining_;
  std::map<std::tuple<Time, std::uint64_t>, Event> queue_;
  Time store_tick_ = core::kNever;
  std::vector<Time> agent_ticks_;
  std::uint64_t seq_ = 0;
  Time now_ = 0;
  long long acknowledged_ = 0;
  long long failures_ = 0;
};

}  // namespace

int RunDemo(const DemoOptions& options) { return DemoWorld(options).Run(); }

}  // namespace latchkey::cli
