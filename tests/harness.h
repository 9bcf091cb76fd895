// Test harness: one or more store cores and N process agents wired by a
// hand-driven network. Tests decide when each message is delivered, dropped
// or duplicated and when time moves, so every interleaving they name is
// exact. Every step re-checks both machines' own invariants.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/agent.h"
#include "core/store.h"

namespace latchkey::testing {

using core::Effects;
using core::Envelope;
using core::Message;
using core::Time;

// Messages of type M among the effects' sends, in order.
template <class M>
std::vector<M> SentOf(const Effects& fx) {
  std::vector<M> out;
  for (const Envelope& e : fx.send) {
    if (const M* m = std::get_if<M>(&e.message)) out.push_back(*m);
  }
  return out;
}

// Records of type R among the effects' persists, in order.
template <class R>
std::vector<R> PersistedOf(const Effects& fx) {
  std::vector<R> out;
  for (const core::Record& r : fx.persist) {
    if (const R* x = std::get_if<R>(&r)) out.push_back(*x);
  }
  return out;
}

inline Envelope FromProcess(core::ProcessRef p, Message m, std::uint64_t store_epoch = 1) {
  return Envelope{core::ProcessAddress(p), core::StoreAddress(0, store_epoch), std::move(m)};
}

inline Envelope FromStore(core::ProcessRef to, Message m, std::uint64_t store_epoch = 1,
                          std::uint64_t store_id = 0) {
  return Envelope{core::StoreAddress(store_id, store_epoch), core::ProcessAddress(to),
                  std::move(m)};
}

inline core::Portion Exclusive(std::vector<std::string> attributes) {
  return core::Portion::Of(std::move(attributes), core::Mode::kExclusive);
}
inline core::Portion Shared(std::vector<std::string> attributes) {
  return core::Portion::Of(std::move(attributes), core::Mode::kShared);
}

// A store node (or several, B8) and `processes` agents with ids 1..N.
class Cluster {
 public:
  explicit Cluster(int processes, core::StoreConfig store_config = {},
                   core::AgentConfig agent_config = {}, int stores = 1)
      : store_config_(store_config), agent_config_(agent_config) {
    agent_config_.store_count = static_cast<std::uint32_t>(stores);
    for (int i = 0; i < stores; ++i) {
      core::StoreConfig c = store_config_;
      c.node_id = static_cast<std::uint64_t>(i);
      stores_.emplace_back(c);
      logs_.emplace_back();
      ApplyStore(i, stores_.back().Start(now));
    }
    for (int i = 0; i < processes; ++i) {
      core::AgentConfig c = agent_config_;
      c.self = {static_cast<std::uint64_t>(i + 1), 1};
      agents_.emplace_back(c);
      wakes_.emplace_back();
    }
  }

  core::Store& store(int i = 0) { return stores_.at(static_cast<std::size_t>(i)); }
  // Agent of process id `p` (1-based, as in the addresses).
  core::ProcessAgent& agent(int p) { return agents_.at(static_cast<std::size_t>(p - 1)); }
  const std::vector<core::Record>& log(int store = 0) const {
    return logs_.at(static_cast<std::size_t>(store));
  }
  // Thread events delivered to process p so far (cleared by TakeWakes).
  std::vector<core::ThreadEvent>& wakes(int p) {
    return wakes_.at(static_cast<std::size_t>(p - 1));
  }
  std::vector<core::ThreadEvent> TakeWakes(int p) {
    std::vector<core::ThreadEvent> out;
    out.swap(wakes(p));
    return out;
  }
  std::deque<Envelope>& in_flight() { return in_flight_; }

  Effects Ask(int p, core::ThreadId thread, core::SessionId session, const core::Portion& portion,
              Time deadline = core::kNever, bool try_only = false) {
    return ApplyAgent(p, agent(p).OnThreadAsk(now, thread, session, portion, deadline, try_only));
  }
  Effects Finish(int p, core::ThreadId thread, core::SessionId session, bool commit = true) {
    return ApplyAgent(p, agent(p).OnThreadFinish(now, thread, session, commit));
  }
  Effects Cancel(int p, core::ThreadId thread, core::SessionId session) {
    return ApplyAgent(p, agent(p).OnThreadCancel(now, thread, session));
  }
  Effects Admin(int store_index, Message m) {
    Envelope e{core::Address{core::NodeKind::kAdmin, 0, 0},
               stores_.at(static_cast<std::size_t>(store_index)).address(), std::move(m)};
    return ApplyStore(store_index, store(store_index).OnMessage(now, e));
  }

  // Delivers the oldest in-flight message; returns the receiver's effects.
  std::optional<Effects> DeliverOne() {
    if (in_flight_.empty()) return std::nullopt;
    Envelope e = std::move(in_flight_.front());
    in_flight_.pop_front();
    return Deliver(e);
  }
  Effects Deliver(const Envelope& e) {
    if (e.to.kind == core::NodeKind::kStore) {
      int s = static_cast<int>(e.to.id);
      return ApplyStore(s, store(s).OnMessage(now, e));
    }
    int p = static_cast<int>(e.to.id);
    return ApplyAgent(p, agent(p).OnMessage(now, e));
  }
  // Delivers until nothing is in flight (bounded, to catch ping-pong loops).
  int DeliverAll(int limit = 10000) {
    int n = 0;
    while (!in_flight_.empty() && n < limit) {
      DeliverOne();
      ++n;
    }
    EXPECT_LT(n, limit) << "messages never stopped flowing";
    return n;
  }
  // Removes every in-flight message for which `pred` is true; returns them.
  std::vector<Envelope> Drop(const std::function<bool(const Envelope&)>& pred) {
    std::vector<Envelope> dropped;
    std::deque<Envelope> kept;
    for (Envelope& e : in_flight_) {
      if (pred(e)) {
        dropped.push_back(std::move(e));
      } else {
        kept.push_back(std::move(e));
      }
    }
    in_flight_.swap(kept);
    return dropped;
  }
  template <class M>
  std::vector<Envelope> DropAll() {
    return Drop([](const Envelope& e) { return std::holds_alternative<M>(e.message); });
  }

  // Moves time to `t` and ticks every machine (stores first, then agents).
  void AdvanceTo(Time t) {
    now = t;
    for (std::size_t i = 0; i < stores_.size(); ++i) {
      ApplyStore(static_cast<int>(i), stores_[i].OnTick(now));
    }
    for (std::size_t i = 0; i < agents_.size(); ++i) {
      ApplyAgent(static_cast<int>(i + 1), agents_[i].OnTick(now));
    }
  }
  void Advance(Time dt) { AdvanceTo(now + dt); }

  // B7: the store crashes (volatile state and in-flight messages to it are
  // lost) and recovers from its persisted log.
  void RestartStore(int s = 0) {
    Drop([&](const Envelope& e) {
      return e.to.kind == core::NodeKind::kStore && e.to.id == static_cast<std::uint64_t>(s);
    });
    Effects fx;
    core::StoreConfig c = store(s).config();
    stores_.at(static_cast<std::size_t>(s)) =
        core::Store::Recover(c, logs_.at(static_cast<std::size_t>(s)), now, &fx);
    ApplyStore(s, fx);
  }
  // B4: the process restarts as a new incarnation with no volatile state.
  void RestartProcess(int p) {
    core::AgentConfig c = agent(p).config();
    c.self.incarnation += 1;
    agents_.at(static_cast<std::size_t>(p - 1)) = core::ProcessAgent(c);
    Drop([&](const Envelope& e) {
      return e.to.kind == core::NodeKind::kProcess && e.to.id == static_cast<std::uint64_t>(p);
    });
  }

  Effects ApplyStore(int s, Effects fx) {
    store(s).CheckInvariants();
    for (const core::Record& r : fx.persist) logs_.at(static_cast<std::size_t>(s)).push_back(r);
    for (const Envelope& e : fx.send) in_flight_.push_back(e);
    return fx;
  }
  Effects ApplyAgent(int p, Effects fx) {
    agent(p).CheckInvariants();
    for (const Envelope& e : fx.send) in_flight_.push_back(e);
    for (const core::ThreadEvent& w : fx.wake) wakes(p).push_back(w);
    return fx;
  }

  Time now = 0;

 private:
  core::StoreConfig store_config_;
  core::AgentConfig agent_config_;
  std::vector<core::Store> stores_;
  std::vector<std::vector<core::Record>> logs_;
  std::vector<core::ProcessAgent> agents_;
  std::vector<std::vector<core::ThreadEvent>> wakes_;
  std::deque<Envelope> in_flight_;
};

}  // namespace latchkey::testing
