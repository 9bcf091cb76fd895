#include "cli/timeline.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "cli/scenario_commands.h"

namespace latchkey::cli {

namespace {

using nlohmann::json;

extern const char* const kPage;  // the HTML template, at the end of this file

// "p3@2" -> "p3", "s0@1" -> "s0"; "" for the administrator.
std::string LaneOfAddress(const std::string& address) {
  if (address == "admin") return "";
  return address.substr(0, address.find('@'));
}

std::int64_t SessionOf(const json& j) {
  auto it = j.find("session");
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : -1;
}

std::uint64_t U64(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>()
         : it != j.end() && it->is_number_integer()
             ? static_cast<std::uint64_t>(std::max<std::int64_t>(0, it->get<std::int64_t>()))
             : 0;
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string PortionText(const json& p) {
  if (!p.is_object()) return "";
  std::string text = Str(p, "mode");
  if (p.value("whole", false)) return text + " whole";
  if (auto a = p.find("attributes"); a != p.end() && a->is_array()) {
    text += " {";
    bool first = true;
    for (const json& name : *a) {
      if (!first) text += ",";
      first = false;
      text += name.is_string() ? name.get<std::string>() : name.dump();
    }
    text += "}";
  }
  return text;
}

// Reads "kind target=3 duration_us=500 variant=1" (a fault's note).
struct FaultNote {
  std::string kind;
  std::uint64_t target = 0, duration = 0, variant = 0;
};
FaultNote ParseFault(const std::string& what) {
  FaultNote f;
  std::istringstream in(what);
  in >> f.kind;
  std::string field;
  while (in >> field) {
    const auto eq = field.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = field.substr(0, eq);
    const std::uint64_t value = std::strtoull(field.c_str() + eq + 1, nullptr, 10);
    if (key == "target") f.target = value;
    if (key == "duration_us") f.duration = value;
    if (key == "variant") f.variant = value;
  }
  return f;
}

// A short description of one event, for the list of events before a violation.
std::string Describe(const json& e) {
  std::string text = "t=" + std::to_string(U64(e, "t")) + " " + Str(e, "node") + " " + Str(e, "ev");
  if (auto w = Str(e, "what"); !w.empty() && w != Str(e, "ev")) text += " " + w;
  if (auto th = Str(e, "thread"); !th.empty()) {
    text += " " + th + " session " + std::to_string(SessionOf(e)) + " " +
            PortionText(e.value("portion", json()));
  }
  if (auto in = e.find("in"); in != e.end() && in->is_object()) {
    text += " <- " + Str(*in, "kind") + " from " + Str(*in, "from");
    if (in->contains("session")) text += " s" + std::to_string(SessionOf(*in));
    if (in->contains("token")) text += " tok " + std::to_string(U64(*in, "token"));
  }
  if (auto out = e.find("out"); out != e.end() && out->is_object()) {
    for (const json& r : out->value("persist", json::array())) {
      text += "; persist " + Str(r, "record");
      if (r.contains("token")) text += " tok " + std::to_string(U64(r, "token"));
    }
    for (const json& m : out->value("send", json::array())) {
      text += "; send " + Str(m, "kind") + " -> " + Str(m, "to");
      if (m.contains("token")) text += " tok " + std::to_string(U64(m, "token"));
      if (m.contains("reason")) text += " (" + Str(m, "reason") + ")";
    }
    for (const json& w : out->value("wake", json::array())) {
      text += "; wake t" + std::to_string(U64(w, "thread")) + " " + Str(w, "event");
      if (w.contains("reason")) text += " (" + Str(w, "reason") + ")";
    }
  }
  return text;
}

class Builder {
 public:
  explicit Builder(TimelineModel& m) : m_(m) {}

  int Lane(const std::string& name) {
    if (name.empty()) return -1;
    auto it = lane_index_.find(name);
    if (it != lane_index_.end()) return it->second;
    TimelineLane lane;
    lane.name = name;
    const auto dot = name.find('.');
    if (name[0] == 's') {
      lane.kind = "store";
    } else if (dot != std::string::npos) {
      lane.kind = "thread";
      lane.parent = Lane(name.substr(0, dot));
    } else {
      lane.kind = "process";
    }
    m_.lanes.push_back(lane);
    const int index = static_cast<int>(m_.lanes.size()) - 1;
    lane_index_[name] = index;
    if (lane.parent >= 0) threads_of_[lane.parent].push_back(index);
    return index;
  }

  void Event(const json& e, std::int64_t ev) {
    const std::uint64_t t = U64(e, "t");
    now_ = t;
    m_.t_end = std::max(m_.t_end, t);
    const std::string kind = Str(e, "ev");
    const std::string what = Str(e, "what");
    const std::string node = Str(e, "node");
    int lane = Lane(node);
    const TimelineLane* info = lane >= 0 ? &m_.lanes[static_cast<std::size_t>(lane)] : nullptr;
    const bool at_store = info != nullptr && info->kind == "store";

    if (kind == "deliver") Deliver(e, ev, lane, at_store, what);
    if (kind == "thread_start" && what == "ask") {
      const int th = Lane(Str(e, "thread"));
      const std::int64_t session = SessionOf(e);
      portion_[th] = e.value("portion", json());
      CloseThread(th, t, ev);
      Open(waiting_, th, session, 0, BarKind::kWaiting, t, ev,
           "asks " + PortionText(portion_[th]) + " of session " + std::to_string(session));
    }
    if (kind == "fault") Fault(e, ev, what, lane);
    if (kind == "recover" && lane >= 0) {
      auto down = down_since_.find(lane);
      if (down == down_since_.end() && !at_store) {
        // A server crash: the note does not say which processes went down,
        // but each comes back exactly when its downtime ends.
        for (const auto& [at, duration] : server_crashes_) {
          if (at + std::max<std::uint64_t>(duration, 1) == t) {
            down = down_since_.emplace(lane, std::make_pair(at, ev)).first;
            CrashProcessLane(lane, at, ev);  // after the fact
          }
        }
      }
      std::uint64_t from = t;
      std::int64_t from_ev = ev;
      if (down != down_since_.end()) {
        from = down->second.first;
        from_ev = down->second.second;
        down_since_.erase(down);
      }
      Mark(lane, from, t, "crash", -1, from_ev, (at_store ? "store down" : "process down"));
      Mark(lane, t, t, "restart", -1, ev, at_store ? "store recovers from its log" : "restarts");
    }
    if (kind == "quiet") Mark(-1, t, t, "quiet", -1, ev, "the fault phase ends");

    if (auto out = e.find("out"); out != e.end() && out->is_object())
      Out(*out, e, ev, lane, at_store);
  }

  void Violation(const json& e, std::int64_t events) {
    TimelineViolation v;
    v.invariant = Str(e, "invariant");
    v.message = Str(e, "message");
    v.state = Str(e, "state");
    v.time = U64(e, "t");
    const auto recent = static_cast<std::int64_t>(U64(e, "recent"));
    v.recent_from = std::max<std::int64_t>(0, events - recent);
    m_.violation = v;
    m_.t_end = std::max(m_.t_end, v.time);
  }

  void Finish() {
    // Whatever is still open runs to the end of the trace.
    for (auto* open : {&store_tenure_, &process_tenure_, &queued_, &waiting_, &holding_}) {
      for (auto& [key, index] : *open) {
        TimelineBar& b = m_.bars[index];
        b.t1 = m_.t_end;
        b.open = true;
      }
      open->clear();
    }
    for (const auto& [lane, since] : down_since_) {
      Mark(lane, since.first, m_.t_end, "crash", -1, since.second, "down until the end");
    }
    for (TimelineArrow& a : m_.arrows) {
      if (a.fate == ArrowFate::kInFlight) a.t1 = std::max(a.t0, m_.t_end);
    }
    // The page relies on both being sorted by start (duplicates come late).
    auto by_start = [](const auto& a, const auto& b) { return a.t0 < b.t0; };
    std::stable_sort(m_.arrows.begin(), m_.arrows.end(), by_start);
    std::stable_sort(m_.bars.begin(), m_.bars.end(), by_start);
    // Rows: bars that overlap in time on one lane get different slots.
    std::vector<std::vector<std::size_t>> by_lane(m_.lanes.size());
    for (std::size_t i = 0; i < m_.bars.size(); ++i) {
      by_lane[static_cast<std::size_t>(m_.bars[i].lane)].push_back(i);
    }
    for (std::size_t l = 0; l < by_lane.size(); ++l) {
      std::vector<std::size_t>& list = by_lane[l];
      std::stable_sort(list.begin(), list.end(),
                       [&](std::size_t a, std::size_t b) { return m_.bars[a].t0 < m_.bars[b].t0; });
      std::vector<std::uint64_t> slot_end;
      for (std::size_t i : list) {
        TimelineBar& b = m_.bars[i];
        std::size_t s = 0;
        while (s < slot_end.size() && slot_end[s] > b.t0) ++s;
        if (s == slot_end.size()) slot_end.push_back(0);
        slot_end[s] = std::max(b.t1, b.t0 + 1);
        b.slot = static_cast<int>(s);
      }
      m_.lanes[l].slots = std::max<int>(1, static_cast<int>(slot_end.size()));
    }
    m_.sessions.assign(sessions_.begin(), sessions_.end());
  }

 private:
  using Key = std::pair<int, std::int64_t>;  // lane, session
  using OpenMap = std::map<Key, std::size_t>;

  std::size_t Open(OpenMap& open, int lane, std::int64_t session, std::uint64_t token, BarKind kind,
                   std::uint64_t t, std::int64_t ev, std::string label) {
    Close(open, lane, session, t, ev);
    TimelineBar b;
    b.lane = lane;
    b.t0 = b.t1 = t;
    b.session = session;
    b.token = token;
    b.kind = kind;
    b.ev = ev;
    b.label = std::move(label);
    if (session >= 0) sessions_.insert(session);
    m_.bars.push_back(std::move(b));
    open[{lane, session}] = m_.bars.size() - 1;
    return m_.bars.size() - 1;
  }

  bool Close(OpenMap& open, int lane, std::int64_t session, std::uint64_t t, std::int64_t ev) {
    auto it = open.find({lane, session});
    if (it == open.end()) return false;
    TimelineBar& b = m_.bars[it->second];
    b.t1 = std::max(b.t0, t);
    b.ev_end = ev;
    open.erase(it);
    return true;
  }

  void CloseLane(OpenMap& open, int lane, std::uint64_t t, std::int64_t ev) {
    for (auto it = open.lower_bound({lane, INT64_MIN});
         it != open.end() && it->first.first == lane;) {
      TimelineBar& b = m_.bars[it->second];
      b.t1 = std::max(b.t0, t);
      b.ev_end = ev;
      it = open.erase(it);
    }
  }

  void CloseThread(int th, std::uint64_t t, std::int64_t ev) {
    CloseLane(waiting_, th, t, ev);
    CloseLane(holding_, th, t, ev);
  }

  void Mark(int lane, std::uint64_t t0, std::uint64_t t1, std::string kind, std::int64_t session,
            std::int64_t ev, std::string label) {
    m_.marks.push_back({lane, t0, t1, std::move(kind), session, ev, std::move(label)});
  }

  // A process went down at `t`: its tenures, queued requests and threads end.
  void CrashProcessLane(int lane, std::uint64_t t, std::int64_t ev) {
    auto cut = [&](OpenMap& open, int l) {
      for (auto it = open.lower_bound({l, INT64_MIN}); it != open.end() && it->first.first == l;) {
        TimelineBar& b = m_.bars[it->second];
        b.t1 = std::max(b.t0, t);
        b.ev_end = ev;
        it = open.erase(it);
      }
    };
    cut(process_tenure_, lane);
    cut(queued_, lane);
    for (int th : threads_of_[lane]) {
      cut(waiting_, th);
      cut(holding_, th);
    }
  }

  void Deliver(const json& e, std::int64_t ev, int lane, bool at_store, const std::string& what) {
    auto in_it = e.find("in");
    if (in_it == e.end() || !in_it->is_object()) return;
    const json& in = *in_it;
    const std::uint64_t t = now_;
    const std::string key = in.dump();
    ArrowFate fate = what == "drop_down"        ? ArrowFate::kDroppedDown
                     : what == "drop_partition" ? ArrowFate::kDroppedPartition
                                                : ArrowFate::kDelivered;
    auto pending = pending_.find(key);
    if (pending != pending_.end() && !pending->second.empty()) {
      TimelineArrow& a = m_.arrows[pending->second.front()];
      pending->second.pop_front();
      a.t1 = t;
      a.to = lane;
      a.ev_end = ev;
      a.fate = fate;
      last_sent_[key] = &a - m_.arrows.data();
    } else if (auto last = last_sent_.find(key); last != last_sent_.end()) {
      TimelineArrow copy = m_.arrows[static_cast<std::size_t>(last->second)];
      copy.t1 = t;
      copy.to = lane;
      copy.ev_end = ev;
      copy.fate = fate == ArrowFate::kDelivered ? ArrowFate::kDuplicate : fate;
      m_.arrows.push_back(copy);
    }
    if (fate != ArrowFate::kDelivered || at_store || lane < 0) return;
    // What the process learns.
    const std::string kind = Str(in, "kind");
    const std::int64_t session = SessionOf(in);
    const std::uint64_t token = U64(in, "token");
    if (kind == "Granted") {
      Close(queued_, lane, session, t, ev);
      Open(process_tenure_, lane, session, token, BarKind::kProcessTenure, t, ev,
           "holds session " + std::to_string(session) + " with token " + std::to_string(token));
      token_of_[{lane, session}] = token;
    } else if (kind == "Queued") {
      if (queued_.count({lane, session}) == 0) {
        Open(queued_, lane, session, 0, BarKind::kQueued, t, ev,
             "buffered at the store for session " + std::to_string(session) + " (" +
                 std::to_string(U64(in, "ahead")) + " ahead)");
      }
    } else if (kind == "Busy") {
      Close(queued_, lane, session, t, ev);
    } else if (kind == "Recall") {
      Mark(lane, t, t, "recall", session, ev,
           "recalled: session " + std::to_string(session) + " token " + std::to_string(token));
    } else if (kind == "Revoked") {
      const std::string reason = Str(in, "reason");
      Close(process_tenure_, lane, session, t, ev);
      Mark(lane, t, t, reason == "lease_expired" ? "lease_expiry" : "revoked", session, ev,
           "revoked (" + reason + "): session " + std::to_string(session) + " token " +
               std::to_string(token));
    }
  }

  void Fault(const json& e, std::int64_t ev, const std::string& what, int lane) {
    const FaultNote f = ParseFault(what);
    const std::uint64_t t = now_;
    const std::uint64_t end = t + std::max<std::uint64_t>(f.duration, 1);
    const std::string duration = " for " + std::to_string(f.duration) + " us";
    if (f.kind == "process_crash" || f.kind == "store_crash") {
      if (lane >= 0 && down_since_.count(lane) == 0) {
        down_since_[lane] = {t, ev};
        if (f.kind == "process_crash") CrashProcessLane(lane, t, ev);
      }
    } else if (f.kind == "server_crash") {
      server_crashes_.push_back({t, f.duration});
      Mark(-1, t, t, "server_crash", -1, ev,
           "server " + std::to_string(f.target) + " crashes" + duration);
    } else if (f.kind == "partition") {
      const std::string target = Str(e, "node");
      const std::string label = f.variant == 0
                                    ? std::string("partition: two halves (") + target + "'s side)"
                                : f.variant == 1 ? std::string("partition: one-way from ") + target
                                                 : std::string("partition: isolates ") + target;
      Mark(-1, t, end, "partition", -1, ev, label + duration);
      Mark(lane, t, end, "partition", -1, ev, label + duration);
    } else if (f.kind == "clog") {
      Mark(lane, t, end, "clog", -1, ev, "clogged link" + duration);
    } else if (f.kind == "pause") {
      Mark(lane, t, end, "pause", -1, ev, "paused" + duration);
    } else if (f.kind == "drift_beyond") {
      Mark(lane, t, t, "drift", -1, ev, "clock drift beyond the bound");
    } else if (f.kind == "invalidate") {
      Mark(lane, t, t, "invalidate", static_cast<std::int64_t>(f.target), ev,
           "administrator invalidates session " + std::to_string(f.target));
    } else {
      Mark(lane, t, t, "fault", -1, ev, what);
    }
  }

  void Out(const json& out, const json& e, std::int64_t ev, int lane, bool at_store) {
    const std::uint64_t t = now_;
    std::set<std::size_t> lost;
    if (auto l = e.find("lost"); l != e.end() && l->is_array()) {
      for (const json& i : *l) {
        if (i.is_number_unsigned()) lost.insert(i.get<std::size_t>());
      }
    }
    if (at_store) {
      for (const json& r : out.value("persist", json::array())) {
        const std::string record = Str(r, "record");
        const std::int64_t session = SessionOf(r);
        const std::uint64_t token = U64(r, "token");
        if (record == "Grant") {
          Open(store_tenure_, lane, session, token, BarKind::kStoreTenure, t, ev,
               "session " + std::to_string(session) + " token " + std::to_string(token) +
                   " granted to " + Str(r, "holder"));
        } else if (record == "TenureEnd") {
          Close(store_tenure_, lane, session, t, ev);
        } else if (record == "SessionDropped") {
          Mark(lane, t, t, "dropped", session, ev,
               "session " + std::to_string(session) + " dropped");
        }
      }
    }
    const json sends = out.value("send", json::array());
    for (std::size_t i = 0; i < sends.size(); ++i) {
      const json& msg = sends[i];
      const std::string kind = Str(msg, "kind");
      const std::int64_t session = SessionOf(msg);
      TimelineArrow a;
      a.from = lane;
      a.to = Lane(LaneOfAddress(Str(msg, "to")));
      a.t0 = a.t1 = t;
      a.session = session;
      a.kind = kind;
      a.ev = ev;
      a.fate = lost.count(i) != 0 ? ArrowFate::kLost : ArrowFate::kInFlight;
      m_.arrows.push_back(a);
      if (a.fate == ArrowFate::kInFlight) pending_[msg.dump()].push_back(m_.arrows.size() - 1);
      if (at_store && kind == "Queued") {
        Mark(lane, t, t, "queued", session, ev,
             Str(msg, "to") + " buffered for session " + std::to_string(session) + ", " +
                 std::to_string(U64(msg, "ahead")) + " ahead");
      }
      if (at_store && kind == "Revoked" && Str(msg, "reason") == "lease_expired") {
        Mark(lane, t, t, "lease_expiry", session, ev,
             "lease of " + Str(msg, "to") + " expired: session " + std::to_string(session) +
                 " token " + std::to_string(U64(msg, "token")));
      }
      if (!at_store && lane >= 0 && kind == "Release") {
        Close(process_tenure_, lane, session, t, ev);
      }
    }
    if (at_store || lane < 0) return;
    for (const json& w : out.value("wake", json::array())) {
      const int th = Lane(m_.lanes[static_cast<std::size_t>(lane)].name + ".t" +
                          std::to_string(U64(w, "thread")));
      const std::string event = Str(w, "event");
      const std::int64_t session = SessionOf(w);
      if (event == "granted") {
        CloseLane(waiting_, th, t, ev);
        const json& portion = portion_[th];
        const bool shared = Str(portion, "mode") == "shared";
        auto token = token_of_.find({lane, session});
        Open(holding_, th, session, token == token_of_.end() ? 0 : token->second,
             shared ? BarKind::kThreadShared : BarKind::kThreadExclusive, t, ev,
             PortionText(portion) + " of session " + std::to_string(session));
      } else {
        CloseThread(th, t, ev);
        if (event == "failed") {
          Mark(
              th, t, t, "failed", session, ev,
              "request failed: " + Str(w, "reason") + " (session " + std::to_string(session) + ")");
        }
      }
    }
  }

  TimelineModel& m_;
  std::uint64_t now_ = 0;
  std::unordered_map<std::string, int> lane_index_;
  std::map<int, std::vector<int>> threads_of_;
  std::set<std::int64_t> sessions_;
  OpenMap store_tenure_, process_tenure_, queued_, waiting_, holding_;
  std::map<Key, std::uint64_t> token_of_;  // the token a process last got for a session
  std::map<int, json> portion_;            // a thread's current request
  std::map<int, std::pair<std::uint64_t, std::int64_t>> down_since_;     // lane: time, event
  std::vector<std::pair<std::uint64_t, std::uint64_t>> server_crashes_;  // time, duration
  std::unordered_map<std::string, std::deque<std::size_t>> pending_;     // sends in flight
  std::unordered_map<std::string, std::int64_t> last_sent_;              // for duplicates
};

// Lanes in reading order: stores, then each process followed by its threads.
void SortLanes(TimelineModel& m) {
  auto number = [](const std::string& s, std::size_t from) {
    return std::strtoll(s.c_str() + from, nullptr, 10);
  };
  auto key = [&](const TimelineLane& l) {
    if (l.kind == "store") return std::make_tuple(0, number(l.name, 1), -1LL);
    const auto dot = l.name.find('.');
    const long long process = number(l.name, 1);
    return std::make_tuple(1, process, dot == std::string::npos ? -1LL : number(l.name, dot + 2));
  };
  std::vector<int> order(m.lanes.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return key(m.lanes[a]) < key(m.lanes[b]); });
  std::vector<int> where(order.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    where[static_cast<std::size_t>(order[i])] = static_cast<int>(i);
  std::vector<TimelineLane> lanes;
  for (int i : order) lanes.push_back(m.lanes[static_cast<std::size_t>(i)]);
  for (TimelineLane& l : lanes) {
    if (l.parent >= 0) l.parent = where[static_cast<std::size_t>(l.parent)];
  }
  m.lanes = std::move(lanes);
  auto remap = [&](int& lane) {
    if (lane >= 0) lane = where[static_cast<std::size_t>(lane)];
  };
  for (TimelineBar& b : m.bars) remap(b.lane);
  for (TimelineArrow& a : m.arrows) {
    remap(a.from);
    remap(a.to);
  }
  for (TimelineMark& k : m.marks) remap(k.lane);
}

// Inside <script>: "<" only occurs in JSON strings, where \u003c means the same.
std::string ScriptSafe(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

std::string HtmlEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

const char* BarKindName(BarKind k) {
  static const char* const kNames[] = {"store_tenure",  "process_tenure", "thread_exclusive",
                                       "thread_shared", "queued",         "waiting"};
  return kNames[static_cast<int>(k)];
}
const char* FateName(ArrowFate f) {
  static const char* const kNames[] = {"delivered",         "lost",      "dropped_down",
                                       "dropped_partition", "in_flight", "duplicate"};
  return kNames[static_cast<int>(f)];
}

}  // namespace

int TimelineModel::LaneIndex(const std::string& name) const {
  for (std::size_t i = 0; i < lanes.size(); ++i) {
    if (lanes[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

std::string BuildTimeline(const std::vector<std::string>& lines, TimelineModel& model) {
  model = TimelineModel{};
  Builder b(model);
  std::int64_t ev = 0;
  for (std::size_t n = 0; n < lines.size(); ++n) {
    if (lines[n].empty()) continue;
    json e = json::parse(lines[n], nullptr, /*allow_exceptions=*/false);
    if (!e.is_object()) return "line " + std::to_string(n + 1) + ": not a JSON object";
    if (Str(e, "ev") == "violation") {
      b.Violation(e, ev);
      continue;
    }
    b.Event(e, ev++);
  }
  model.events = ev;
  b.Finish();
  SortLanes(model);
  return "";
}

json TimelineModel::ToJson(const std::vector<std::string>& lines) const {
  json j;
  j["t_end"] = t_end;
  j["events"] = events;
  j["sessions"] = sessions;
  json& ls = j["lanes"] = json::array();
  for (const TimelineLane& l : lanes) {
    ls.push_back({{"name", l.name}, {"kind", l.kind}, {"parent", l.parent}, {"slots", l.slots}});
  }
  // Columns, not objects: a 100,000-event trace has as many bars and arrows.
  std::vector<std::string> bar_kinds, fates, msg_kinds, mark_kinds;
  for (int k = 0; k <= static_cast<int>(BarKind::kWaiting); ++k) {
    bar_kinds.push_back(BarKindName(static_cast<BarKind>(k)));
  }
  for (int f = 0; f <= static_cast<int>(ArrowFate::kDuplicate); ++f) {
    fates.push_back(FateName(static_cast<ArrowFate>(f)));
  }
  std::map<std::string, int> msg_index, mark_index;
  auto intern = [](std::map<std::string, int>& index, std::vector<std::string>& names,
                   const std::string& name) {
    auto [it, added] = index.emplace(name, static_cast<int>(names.size()));
    if (added) names.push_back(name);
    return it->second;
  };
  json bl = json::array(), bs = json::array(), b0 = json::array(), b1 = json::array(),
       bse = json::array(), bt = json::array(), bk = json::array(), be = json::array(),
       bee = json::array(), bo = json::array(), blabel = json::array();
  for (const TimelineBar& b : bars) {
    bl.push_back(b.lane);
    bs.push_back(b.slot);
    b0.push_back(b.t0);
    b1.push_back(b.t1);
    bse.push_back(b.session);
    bt.push_back(b.token);
    bk.push_back(static_cast<int>(b.kind));
    be.push_back(b.ev);
    bee.push_back(b.ev_end);
    bo.push_back(b.open ? 1 : 0);
    blabel.push_back(b.label);
  }
  j["bars"] = {{"lane", bl},     {"slot", bs},  {"t0", b0},       {"t1", b1},
               {"session", bse}, {"token", bt}, {"kind", bk},     {"ev", be},
               {"ev_end", bee},  {"open", bo},  {"label", blabel}};
  json af = json::array(), at = json::array(), a0 = json::array(), a1 = json::array(),
       ase = json::array(), ak = json::array(), afa = json::array(), ae = json::array(),
       aee = json::array();
  for (const TimelineArrow& a : arrows) {
    af.push_back(a.from);
    at.push_back(a.to);
    a0.push_back(a.t0);
    a1.push_back(a.t1);
    ase.push_back(a.session);
    ak.push_back(intern(msg_index, msg_kinds, a.kind));
    afa.push_back(static_cast<int>(a.fate));
    ae.push_back(a.ev);
    aee.push_back(a.ev_end);
  }
  j["arrows"] = {{"from", af}, {"to", at},    {"t0", a0}, {"t1", a1},     {"session", ase},
                 {"kind", ak}, {"fate", afa}, {"ev", ae}, {"ev_end", aee}};
  json ml = json::array(), m0 = json::array(), m1 = json::array(), mk = json::array(),
       mse = json::array(), me = json::array(), mlabel = json::array();
  for (const TimelineMark& k : marks) {
    ml.push_back(k.lane);
    m0.push_back(k.t0);
    m1.push_back(k.t1);
    mk.push_back(intern(mark_index, mark_kinds, k.kind));
    mse.push_back(k.session);
    me.push_back(k.ev);
    mlabel.push_back(k.label);
  }
  j["marks"] = {{"lane", ml},     {"t0", m0}, {"t1", m1},       {"kind", mk},
                {"session", mse}, {"ev", me}, {"label", mlabel}};
  j["bar_kinds"] = bar_kinds;
  j["fates"] = fates;
  j["msg_kinds"] = msg_kinds;
  j["mark_kinds"] = mark_kinds;
  if (violation) {
    json v{{"invariant", violation->invariant},
           {"message", violation->message},
           {"state", violation->state},
           {"time", violation->time},
           {"recent_from", violation->recent_from}};
    json& list = v["events"] = json::array();
    // The events that led to it, in words; the raw lines are in the page too.
    std::int64_t index = 0;
    for (const std::string& line : lines) {
      if (line.empty()) continue;
      if (index >= violation->recent_from && index < events) {
        json e = json::parse(line, nullptr, false);
        if (e.is_object() && Str(e, "ev") != "violation") {
          list.push_back({{"ev", index}, {"t", U64(e, "t")}, {"text", Describe(e)}});
        }
      }
      if (line.find("\"ev\":\"violation\"") == std::string::npos) ++index;
    }
    j["violation"] = v;
  } else {
    j["violation"] = nullptr;
  }
  return j;
}

std::string TimelineHtml(const TimelineModel& model, const std::vector<std::string>& lines,
                         const std::string& title) {
  const std::string model_json =
      ScriptSafe(model.ToJson(lines).dump(-1, ' ', false, json::error_handler_t::replace));
  std::string events;
  for (const std::string& line : lines) {
    if (line.empty() || line.find("\"ev\":\"violation\"") != std::string::npos) continue;
    events += ScriptSafe(line);
    events += '\n';
  }
  std::string page = kPage;
  auto replace = [&page](const std::string& what, const std::string& with) {
    const auto at = page.find(what);
    if (at != std::string::npos) page.replace(at, what.size(), with);
  };
  replace("@TITLE@", HtmlEscape(title));
  replace("@TITLE@", HtmlEscape(title));
  replace("@MODEL@", model_json);
  replace("@EVENTS@", events);
  return page;
}

std::string ViolationTraceLine(const checker::Violation& v) {
  json j{{"ev", "violation"},    {"t", v.time},      {"invariant", v.name()},
         {"message", v.message}, {"state", v.state}, {"recent", v.recent.size()},
         {"seed", v.seed}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<std::string> SplitTraceLines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) lines.emplace_back(text, start, end - start);
    start = end + 1;
  }
  return lines;
}

std::string WriteTimelineFile(const std::vector<std::string>& lines, const std::string& html_path,
                              const std::string& title) {
  TimelineModel model;
  if (std::string error = BuildTimeline(lines, model); !error.empty()) return error;
  std::ofstream out(html_path, std::ios::binary);
  if (!out) return html_path + ": cannot write the timeline";
  out << TimelineHtml(model, lines, title);
  out.close();
  if (!out) return html_path + ": cannot write the timeline";
  return "";
}

int TimelineCommand(const TimelineOptions& options) {
  std::ifstream in(options.trace_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "error: %s: cannot read the trace\n", options.trace_path.c_str());
    return kExitBadInput;
  }
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(std::move(line));
  }
  namespace fs = std::filesystem;
  std::string out = options.out_path;
  if (out.empty()) out = (fs::path(options.trace_path).replace_extension(".html")).string();
  const std::string title =
      options.title.empty() ? fs::path(options.trace_path).filename().string() : options.title;
  TimelineModel model;
  if (std::string error = BuildTimeline(lines, model); !error.empty()) {
    std::fprintf(stderr, "error: %s: %s\n", options.trace_path.c_str(), error.c_str());
    return kExitBadInput;
  }
  std::ofstream file(out, std::ios::binary);
  file << TimelineHtml(model, lines, title);
  file.close();
  if (!file) {
    std::fprintf(stderr, "error: %s: cannot write the timeline\n", out.c_str());
    return kExitBadInput;
  }
  std::printf("timeline of %lld events (%zu lanes, %zu bars, %zu messages%s) written to %s\n",
              static_cast<long long>(model.events), model.lanes.size(), model.bars.size(),
              model.arrows.size(),
              model.violation ? (", violation " + model.violation->invariant).c_str() : "",
              out.c_str());
  return kExitPass;
}

namespace {

const char* const kPage = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Latchkey timeline: @TITLE@</title>
<style>
body { margin: 0; font: 13px system-ui, sans-serif; color: #222; background: #f4f4f4; }
header { position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 10px;
         align-items: center; padding: 6px 10px; background: #fff; border-bottom: 1px solid #ccc; }
header h1 { font-size: 15px; margin: 0 8px 0 0; }
button { font: inherit; padding: 1px 8px; }
#legend span { margin-right: 8px; white-space: nowrap; }
.sw { display: inline-block; width: 14px; height: 9px; margin-right: 3px; vertical-align: middle;
      border: 1px solid #777; }
#violation { margin: 8px 10px; padding: 6px 10px; background: #fff0f0; border: 2px solid #c00; }
#violation h2 { margin: 0 0 4px; font-size: 14px; color: #a00; }
#violation ol { max-height: 11em; overflow: auto; margin: 4px 0; padding-left: 3.5em;
                font: 12px monospace; }
#violation li { cursor: pointer; }
#violation li:hover { background: #fdd; }
#violation pre { max-height: 8em; overflow: auto; margin: 4px 0; font-size: 11px; }
#wrap { margin: 6px 10px 20px; }
canvas { display: block; background: #fff; border: 1px solid #bbb; cursor: grab; }
canvas.drag { cursor: grabbing; }
#tip { position: fixed; z-index: 3; display: none; max-width: 660px; max-height: 70vh;
       overflow: hidden; padding: 4px 6px; pointer-events: none; white-space: pre-wrap;
       font: 11px monospace; background: #fffff2; border: 1px solid #888;
       box-shadow: 2px 2px 6px rgba(0, 0, 0, .25); }
#tip b { font: bold 12px system-ui, sans-serif; }
#lanes, #summary { display: none; }
</style>
</head>
<body>
<header>
  <h1>@TITLE@</h1>
  <span id="stats"></span>
  <label>session <select id="session"><option value="">all</option></select></label>
  <label><input type="checkbox" id="messages" checked> messages</label>
  <button id="fit" title="whole trace (key 0)">fit</button>
  <button id="zoomin" title="zoom in (key +; or the mouse wheel)">+</button>
  <button id="zoomout" title="zoom out (key -)">&minus;</button>
  <button id="goto" hidden>violation</button>
  <span id="legend">
    <span><i class="sw" style="background:hsl(200,60%,55%)"></i>tenure (colour: token)</span>
    <span><i class="sw" style="background:hsla(200,60%,55%,.45)"></i>shared portion</span>
    <span><i class="sw" style="background:#fff;border-style:dashed"></i>queued / waiting</span>
    <span style="color:#39c">&rarr; message</span>
    <span style="color:#d00">&times; lost</span>
    <span><i class="sw" style="background:rgba(60,60,60,.4)"></i>down</span>
    <span><i class="sw" style="background:rgba(220,180,0,.45)"></i>paused</span>
    <span><i class="sw" style="background:rgba(150,0,200,.2)"></i>partition</span>
    <span>R recall, L lease expiry, V revoked, Q queued, ! failed</span>
  </span>
  <span id="pos"></span>
</header>
<div id="violation" hidden></div>
<div id="wrap"><canvas id="canvas"></canvas></div>
<div id="tip"></div>
<ul id="lanes"></ul>
<div id="summary"></div>
<script type="application/json" id="model">@MODEL@</script>
<script type="text/plain" id="events">@EVENTS@</script>
<script>
'use strict';
const started = performance.now();
const M = JSON.parse(document.getElementById('model').textContent);
const B = M.bars, A = M.arrows, K = M.marks;
const nBars = B.t0.length, nArrows = A.t0.length, nMarks = K.t0.length;
let rawEvents = null;  // the trace's lines, split on first use
function eventLine(i) {
  if (i < 0) return '';
  if (!rawEvents) rawEvents = document.getElementById('events').textContent.split('\n');
  return rawEvents[i] || '';
}

// ---- layout: one lane per store, process and thread; rows for overlapping bars
const GUTTER = 70, AXIS = 24, ROW = 14, TROW = 10;
const lanes = M.lanes;
let y = AXIS;
for (const l of lanes) {
  l.row = l.kind === 'thread' ? TROW : ROW;
  l.y = y;
  l.h = Math.max(1, l.slots) * l.row + 6;
  y += l.h;
}
const height = y + 4;
const laneBars = lanes.map(() => []);
for (let i = 0; i < nBars; i++) laneBars[B.lane[i]].push(i);
const tEnd = Math.max(1, M.t_end);

// ---- view: the time at the left edge and pixels per microsecond
const canvas = document.getElementById('canvas');
const ctx = canvas.getContext('2d');
let width = 800, v0 = 0, scale = 1, session = null, showMessages = true, highlight = -1;
function X(t) { return GUTTER + (t - v0) * scale; }
function T(x) { return v0 + (x - GUTTER) / scale; }
function plotWidth() { return Math.max(100, width - GUTTER - 10); }
function fit() { v0 = 0; scale = plotWidth() / tEnd; }
function show(a, b) { const pad = Math.max(1, (b - a) * 0.08); v0 = a - pad; scale = plotWidth() / (b - a + 2 * pad); }
function zoom(factor, atX) {
  const t = T(atX);
  scale = Math.min(50, Math.max(plotWidth() / tEnd / 4, scale * factor));
  v0 = t - (atX - GUTTER) / scale;
}
function visible(s) { return session === null || s === session || s < 0; }
const colors = new Map();
function tokenColor(s, token, alpha) {
  const key = s * 1e6 + token + (alpha ? 0.5 : 0);
  let c = colors.get(key);
  if (!c) {
    const hue = (Math.max(0, s) * 67 + token * 137.508) % 360;
    c = 'hsla(' + hue.toFixed(0) + ',62%,52%,' + (alpha || 1) + ')';
    colors.set(key, c);
  }
  return c;
}
function timeText(us) {
  const a = Math.abs(us);
  if (a >= 1e6) return (us / 1e6).toFixed(a >= 1e7 ? 2 : 3) + ' s';
  if (a >= 1e3) return (us / 1e3).toFixed(a >= 1e4 ? 1 : 2) + ' ms';
  return Math.round(us) + ' µs';
}
// The event at which the checker stopped the run: its bars, messages and marks in red.
const lastEvent = M.violation ? M.events - 1 : -2;
function marked(ev, evEnd) { return ev === lastEvent || evEnd === lastEvent; }
function picked(ev, evEnd) { return highlight >= 0 && (ev === highlight || evEnd === highlight); }
const markStyle = {
  crash: { span: 'rgba(60,60,60,.40)' }, pause: { span: 'rgba(220,180,0,.45)' },
  clog: { span: 'rgba(240,130,0,.30)' }, partition: { span: 'rgba(150,0,200,.22)' },
  recall: { letter: 'R', color: '#d60' }, lease_expiry: { letter: 'L', color: '#c00' },
  revoked: { letter: 'V', color: '#a30' }, queued: { letter: 'Q', color: '#555' },
  failed: { letter: '!', color: '#d00' }, restart: { letter: '\u25B2', color: '#080' },
  drift: { letter: 'D', color: '#808' }, invalidate: { letter: 'I', color: '#06a' },
  dropped: { letter: 'x', color: '#666' }, fault: { letter: 'F', color: '#000' },
};

// ---- drawing ----------------------------------------------------------------
let lastDrawMs = 0, crowded = false;
// The first index whose value is above t, in an ascending column.
function firstAfter(column, t) {
  let lo = 0, hi = column.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (column[mid] <= t) lo = mid + 1; else hi = mid; }
  return lo;
}
function draw() {
  const t1 = performance.now();
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = width + 'px';
  canvas.style.height = height + 'px';
  const c = ctx;
  c.setTransform(ratio, 0, 0, ratio, 0, 0);
  c.clearRect(0, 0, width, height);
  const tA = T(GUTTER), tB = T(width);
  // lane backgrounds
  for (let i = 0; i < lanes.length; i++) {
    const l = lanes[i];
    c.fillStyle = l.kind === 'store' ? '#eef3fa' : l.kind === 'process' ? '#f6f6f6' : '#fff';
    c.fillRect(GUTTER, l.y, width - GUTTER, l.h);
    c.fillStyle = '#ddd';
    c.fillRect(GUTTER, l.y + l.h - 1, width - GUTTER, 1);
  }
  c.save();
  c.beginPath();
  c.rect(GUTTER, 0, width - GUTTER, height);
  c.clip();
  // the window of events that led to the violation, and its moment
  if (M.violation) {
    const ev = M.violation.events;
    const from = ev.length ? ev[0].t : M.violation.time;
    c.fillStyle = 'rgba(255,0,0,.07)';
    c.fillRect(X(from), AXIS, Math.max(2, X(M.violation.time) - X(from)), height - AXIS);
  }
  // spans: world-wide first (partition halves, server crashes, the quiet phase)
  for (let i = 0; i < nMarks; i++) {
    if (K.t1[i] < tA || K.t0[i] > tB || !visible(K.session[i])) continue;
    const kind = M.mark_kinds[K.kind[i]], lane = K.lane[i];
    const x0 = X(K.t0[i]), x1 = X(K.t1[i]);
    if (lane < 0) {
      if (kind === 'partition') {
        c.fillStyle = 'rgba(150,0,200,.07)';
        c.fillRect(x0, AXIS, Math.max(1, x1 - x0), height - AXIS);
      } else {
        c.strokeStyle = kind === 'quiet' ? '#36c' : '#000';
        c.setLineDash([4, 3]);
        c.beginPath(); c.moveTo(x0, AXIS); c.lineTo(x0, height); c.stroke();
        c.setLineDash([]);
      }
      continue;
    }
    const st = markStyle[kind];
    if (st && st.span && K.t1[i] > K.t0[i]) {
      const l = lanes[lane];
      c.fillStyle = st.span;
      c.fillRect(x0, l.y, Math.max(1, x1 - x0), l.h - 1);
    }
  }
  // bars; far out, many share a pixel: draw one per pixel column and row
  const lastPx = new Map();
  let drawn = 0;
  for (let i = 0; i < nBars; i++) {
    // a bar still open when the trace ended runs on to the right edge
    const b0 = B.t0[i], b1 = B.open[i] ? Math.max(B.t1[i], tB) : B.t1[i];
    if (b0 > tB) break;  // bars are sorted by their start
    if (b1 < tA || !visible(B.session[i])) continue;
    const l = lanes[B.lane[i]];
    const x0 = X(b0), w = Math.max(1, X(b1) - x0);
    const key = B.lane[i] * 1024 + B.slot[i];
    const px = Math.floor(x0);
    if (w <= 1 && px <= lastPx.get(key) && !marked(B.ev[i], B.ev_end[i])) continue;  // sorted by t0
    lastPx.set(key, Math.floor(x0 + w - 1));
    drawn++;
    const top = l.y + 3 + B.slot[i] * l.row, h = l.row - 2, kind = B.kind[i];
    const s = B.session[i], token = B.token[i];
    if (kind === 4 || kind === 5) {  // queued at the store / a thread waiting
      c.strokeStyle = kind === 4 ? '#777' : '#aaa';
      c.setLineDash([3, 2]);
      c.strokeRect(x0 + .5, top + 2.5, w, h - 4);
      c.setLineDash([]);
    } else {
      c.fillStyle = tokenColor(s, token, kind === 3 ? 0.45 : 0);
      c.fillRect(x0, top, w, h);
      if (kind === 0) { c.fillStyle = 'rgba(0,0,0,.25)'; c.fillRect(x0, top + h - 2, w, 2); }
      if (w > 46 && kind !== 3) {
        c.fillStyle = '#fff';
        c.font = '9px sans-serif';
        c.fillText('s' + s + ' #' + token, x0 + 3, top + h - 3, w - 4);
      }
    }
    if (marked(B.ev[i], B.ev_end[i]) || picked(B.ev[i], B.ev_end[i])) {
      c.strokeStyle = picked(B.ev[i], B.ev_end[i]) ? '#06f' : '#e00';
      c.lineWidth = 2;
      c.strokeRect(x0, top, w, h);
      c.lineWidth = 1;
    }
  }
  // messages, batched by style (a few hundred lines per stroke keeps the
  // rasteriser fast); far out, one line per lane pair and pixel pair
  if (showMessages) {
    const batch = (style, width, dash) => ({ style, width, dash, path: new Path2D(), n: 0 });
    const styles = {
      ok: batch('rgba(40,140,200,.55)', 0.8, []), flight: batch('rgba(120,120,120,.6)', 0.8, [2, 2]),
      lost: batch('#d00', 1.3, []), dropped: batch('#d00', 1.3, [4, 2]),
      marked: batch('#e00', 2, []), picked: batch('#06f', 2, []),
    };
    const heads = batch('rgba(40,140,200,.7)', 0, null);
    const flush = b => {
      if (!b.n) return;
      if (b.dash) {
        c.strokeStyle = b.style; c.lineWidth = b.width; c.setLineDash(b.dash); c.stroke(b.path);
      } else {
        c.fillStyle = b.style; c.fill(b.path);
      }
      b.path = new Path2D(); b.n = 0;
    };
    const seen = new Set(), nl = lanes.length;
    // Too many in view to tell apart: only the lost, dropped and marked ones.
    crowded = firstAfter(A.t0, tB) - firstAfter(A.t0, tA) > 4000;
    const cross = (p, x, y) => { p.moveTo(x - 3, y - 3); p.lineTo(x + 3, y + 3); p.moveTo(x + 3, y - 3); p.lineTo(x - 3, y + 3); };
    for (let i = 0; i < nArrows; i++) {
      const a0 = A.t0[i], a1 = A.t1[i];
      if (a0 > tB) break;  // sorted by the time they were sent
      if (a1 < tA || !visible(A.session[i]) || A.from[i] < 0) continue;
      const fate = A.fate[i];
      if (crowded && (fate === 0 || fate === 4 || fate === 5) && !marked(A.ev[i], A.ev_end[i]) &&
          !picked(A.ev[i], A.ev_end[i])) continue;
      const lf = lanes[A.from[i]], lt = A.to[i] >= 0 ? lanes[A.to[i]] : lf;
      const xa = X(a0), ya = lf.y + lf.h / 2;
      let xb = X(a1), yb = lt.y + lt.h / 2;
      let b = fate === 0 || fate === 5 ? styles.ok : fate === 1 ? styles.lost : fate === 4 ? styles.flight : styles.dropped;
      if (marked(A.ev[i], A.ev_end[i])) b = styles.marked;
      if (picked(A.ev[i], A.ev_end[i])) b = styles.picked;
      if (b === styles.ok || b === styles.flight) {
        const clamp = x => Math.max(-1, Math.min(8190, Math.round(x))) + 1;
        const key = ((A.from[i] * nl + A.to[i]) * 8192 + clamp(xa)) * 8192 + clamp(xb);
        if (seen.has(key)) continue;
        seen.add(key);
      }
      const p = b.path;
      if (fate === 1) {  // lost when sent: a stub towards its target and a cross
        xb = xa + 8; yb = ya + (yb - ya) * 0.35;
        cross(p, xb, yb);
      } else if (fate === 2 || fate === 3) {
        cross(p, xb, yb);
      }
      p.moveTo(xa, ya);
      p.lineTo(xb, yb);
      if (++b.n >= 300) flush(b);
      const dx = xb - xa, dy = yb - ya, len = Math.hypot(dx, dy);
      if (len > 25 && fate !== 1) {
        const ux = dx / len, uy = dy / len;
        heads.path.moveTo(xb, yb);
        heads.path.lineTo(xb - 6 * ux + 3 * uy, yb - 6 * uy - 3 * ux);
        heads.path.lineTo(xb - 6 * ux - 3 * uy, yb - 6 * uy + 3 * ux);
        heads.path.closePath();
        if (++heads.n >= 300) flush(heads);
      }
    }
    for (const b of Object.values(styles)) flush(b);
    flush(heads);
    c.setLineDash([]);
    c.lineWidth = 1;
  }
  // instant marks, as letters
  c.font = 'bold 10px sans-serif';
  c.textAlign = 'center';
  const letters = new Set();  // far out, one letter per lane, kind and 5 pixels
  for (let i = 0; i < nMarks; i++) {
    if (K.t0[i] < tA - 1 / scale * 6 || K.t0[i] > tB || !visible(K.session[i]) || K.lane[i] < 0) continue;
    const st = markStyle[M.mark_kinds[K.kind[i]]];
    if (!st || !st.letter) continue;
    const l = lanes[K.lane[i]], x = X(K.t0[i]);
    const key = (K.lane[i] * 64 + K.kind[i]) * 8192 + Math.floor(Math.max(0, Math.min(8191, x)) / 5);
    if (letters.has(key) && !marked(K.ev[i], -1)) continue;
    letters.add(key);
    c.fillStyle = picked(K.ev[i], -1) ? '#06f' : marked(K.ev[i], -1) ? '#f00' : st.color;
    c.fillText(st.letter, x, l.y + Math.min(l.h - 2, 11));
  }
  c.textAlign = 'left';
  if (M.violation) {
    const x = X(M.violation.time);
    c.fillStyle = '#e00';
    c.fillRect(x - 1, AXIS, 3, height - AXIS);
    c.font = 'bold 11px sans-serif';
    c.fillText('\u26A0 ' + M.violation.invariant, Math.min(x + 4, width - 140), AXIS + 11);
  }
  c.restore();
  // the time axis and the lane names
  c.fillStyle = '#fff';
  c.fillRect(0, 0, width, AXIS);
  c.fillStyle = '#333';
  c.font = '10px sans-serif';
  const raw = 90 / scale, p10 = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * p10).find(s => s >= raw);
  for (let t = Math.ceil(tA / step) * step; t <= tB; t += step) {
    const x = X(t);
    c.fillRect(x, AXIS - 6, 1, 6);
    c.fillText(timeText(t), x + 2, AXIS - 8);
  }
  c.fillStyle = '#fff';
  c.fillRect(0, 0, GUTTER, height);
  for (const l of lanes) {
    c.fillStyle = l.kind === 'thread' ? '#666' : '#000';
    c.font = (l.kind === 'thread' ? '' : 'bold ') + '11px sans-serif';
    c.fillText(l.name, l.kind === 'thread' ? 16 : 4, l.y + Math.min(l.h - 3, 12));
  }
  lastDrawMs = performance.now() - t1;
  document.getElementById('summary').dataset.drawMs = lastDrawMs.toFixed(1);
  document.getElementById('summary').dataset.barsDrawn = drawn;
  document.getElementById('pos').textContent =
    timeText(Math.max(0, tA)) + ' \u2013 ' + timeText(tB) + '  (drawn in ' + lastDrawMs.toFixed(0) + ' ms)' +
    (crowded && showMessages ? '; too many messages to draw: zoom in (lost ones are shown)' : '');
}
let frame = 0;
function redraw() { if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); }); }

// ---- hit-testing: what is under the pointer ----------------------------------
function laneAt(py) {
  let lo = 0, hi = lanes.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1, l = lanes[mid];
    if (py < l.y) hi = mid - 1; else if (py >= l.y + l.h) lo = mid + 1; else return mid;
  }
  return -1;
}
function segmentDistance(px, py, xa, ya, xb, yb) {
  const dx = xb - xa, dy = yb - ya, len2 = dx * dx + dy * dy;
  const u = len2 ? Math.max(0, Math.min(1, ((px - xa) * dx + (py - ya) * dy) / len2)) : 0;
  return Math.hypot(px - xa - u * dx, py - ya - u * dy);
}
function hit(px, py) {
  if (px < GUTTER) return null;
  const li = laneAt(py), t = T(px), tol = 4 / scale;
  if (li >= 0) {  // a mark's letter first
    for (let i = 0; i < nMarks; i++) {
      if (K.lane[i] !== li || !visible(K.session[i])) continue;
      const st = markStyle[M.mark_kinds[K.kind[i]]];
      if (st && st.letter && Math.abs(X(K.t0[i]) - px) <= 5) return { type: 'mark', i };
    }
  }
  if (showMessages) {
    let best = null, bestD = 4;
    for (let i = 0; i < nArrows; i++) {
      if (A.t0[i] > t + tol) break;
      if (A.t1[i] < t - tol - 10 / scale || !visible(A.session[i]) || A.from[i] < 0) continue;
      if (crowded && (A.fate[i] === 0 || A.fate[i] === 4 || A.fate[i] === 5)) continue;
      const lf = lanes[A.from[i]], lt = A.to[i] >= 0 ? lanes[A.to[i]] : lf;
      const xa = X(A.t0[i]), ya = lf.y + lf.h / 2;
      let xb = X(A.t1[i]), yb = lt.y + lt.h / 2;
      if (A.fate[i] === 1) { xb = xa + 8; yb = ya + (yb - ya) * 0.35; }
      const d = segmentDistance(px, py, xa, ya, xb, yb);
      if (d < bestD) { bestD = d; best = { type: 'arrow', i }; }
    }
    if (best) return best;
  }
  if (li >= 0) {
    const l = lanes[li];
    for (const i of laneBars[li]) {
      const top = l.y + 3 + B.slot[i] * l.row;
      if (!visible(B.session[i]) || py < top || py > top + l.row) continue;
      if (t >= B.t0[i] - tol && t <= B.t1[i] + tol) return { type: 'bar', i };
    }
    for (let i = 0; i < nMarks; i++) {
      if (K.lane[i] === li && K.t1[i] > K.t0[i] && t >= K.t0[i] && t <= K.t1[i]) return { type: 'mark', i };
    }
  }
  for (let i = 0; i < nMarks; i++) {
    if (K.lane[i] < 0 && visible(K.session[i]) &&
        (K.t1[i] > K.t0[i] ? t >= K.t0[i] && t <= K.t1[i] : Math.abs(X(K.t0[i]) - px) <= 3)) return { type: 'mark', i };
  }
  return null;
}
function eventText(i) {
  const line = eventLine(i);
  if (!line) return '';
  let text;
  try { text = JSON.stringify(JSON.parse(line), null, 1); } catch (e) { text = line; }
  const rows = text.split('\n');
  return 'event #' + i + ':\n' + (rows.length > 40 ? rows.slice(0, 40).join('\n') + '\n...' : text);
}
function describe(h) {
  const esc = s => String(s).replace(/[&<>]/g, ch => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' }[ch]));
  let title, events;
  if (h.type === 'bar') {
    const i = h.i;
    title = M.bar_kinds[B.kind[i]].replace('_', ' ') + ' on ' + lanes[B.lane[i]].name + ': ' + B.label[i] +
      '\n' + timeText(B.t0[i]) + ' \u2013 ' + timeText(B.t1[i]) + (B.open[i] ? ' (still open at the end)' : '') +
      ' (' + timeText(B.t1[i] - B.t0[i]) + ')';
    events = [B.ev[i], B.ev_end[i]];
  } else if (h.type === 'arrow') {
    const i = h.i;
    title = M.msg_kinds[A.kind[i]] + ' ' + lanes[A.from[i]].name + ' \u2192 ' + (A.to[i] >= 0 ? lanes[A.to[i]].name : '?') +
      (A.session[i] >= 0 ? ', session ' + A.session[i] : '') + ': ' + M.fates[A.fate[i]].replace('_', ' ') +
      '\nsent ' + timeText(A.t0[i]) + (A.fate[i] === 1 || A.fate[i] === 4 ? '' : ', arrived ' + timeText(A.t1[i]));
    events = [A.ev[i], A.ev_end[i]];
  } else {
    const i = h.i;
    title = M.mark_kinds[K.kind[i]].replace('_', ' ') + (K.lane[i] >= 0 ? ' on ' + lanes[K.lane[i]].name : '') + ': ' +
      K.label[i] + '\n' + timeText(K.t0[i]) + (K.t1[i] > K.t0[i] ? ' \u2013 ' + timeText(K.t1[i]) : '');
    events = [K.ev[i]];
  }
  const seen = new Set();
  const parts = events.filter(e => e >= 0 && !seen.has(e) && seen.add(e)).map(e => esc(eventText(e)));
  return '<b>' + esc(title) + '</b>\n' + parts.join('\n');
}

// ---- interaction -------------------------------------------------------------
const tip = document.getElementById('tip');
let drag = null, pointer = null, hoverFrame = 0;
canvas.addEventListener('mousedown', e => { drag = { x: e.clientX, v0 }; canvas.classList.add('drag'); tip.style.display = 'none'; });
window.addEventListener('mouseup', () => { drag = null; canvas.classList.remove('drag'); });
window.addEventListener('mousemove', e => {
  if (drag) { v0 = drag.v0 - (e.clientX - drag.x) / scale; redraw(); return; }
  if (e.target !== canvas) { tip.style.display = 'none'; return; }
  pointer = e;
  if (!hoverFrame) hoverFrame = requestAnimationFrame(() => {
    hoverFrame = 0;
    const r = canvas.getBoundingClientRect();
    const h = hit(pointer.clientX - r.left, pointer.clientY - r.top);
    if (!h) { tip.style.display = 'none'; return; }
    tip.innerHTML = describe(h);
    tip.style.display = 'block';
    const w = tip.offsetWidth, hh = tip.offsetHeight;
    tip.style.left = Math.min(pointer.clientX + 14, window.innerWidth - w - 4) + 'px';
    tip.style.top = Math.max(4, Math.min(pointer.clientY + 14, window.innerHeight - hh - 4)) + 'px';
  });
});
canvas.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
canvas.addEventListener('wheel', e => {
  if (e.shiftKey) { v0 += e.deltaY / scale; } else {
    const r = canvas.getBoundingClientRect();
    zoom(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left);
  }
  e.preventDefault();
  redraw();
}, { passive: false });
window.addEventListener('keydown', e => {
  if (e.target.tagName === 'SELECT') return;
  const mid = GUTTER + plotWidth() / 2;
  if (e.key === '+' || e.key === '=') zoom(1.5, mid);
  else if (e.key === '-') zoom(1 / 1.5, mid);
  else if (e.key === '0') fit();
  else if (e.key === 'ArrowLeft') v0 -= plotWidth() / 4 / scale;
  else if (e.key === 'ArrowRight') v0 += plotWidth() / 4 / scale;
  else return;
  redraw();
});
document.getElementById('fit').onclick = () => { fit(); redraw(); };
document.getElementById('zoomin').onclick = () => { zoom(1.5, GUTTER + plotWidth() / 2); redraw(); };
document.getElementById('zoomout').onclick = () => { zoom(1 / 1.5, GUTTER + plotWidth() / 2); redraw(); };
document.getElementById('messages').onchange = e => { showMessages = e.target.checked; redraw(); };
const select = document.getElementById('session');
for (const s of M.sessions) {
  const o = document.createElement('option');
  o.value = s; o.textContent = s;
  select.appendChild(o);
}
select.onchange = () => { session = select.value === '' ? null : Number(select.value); redraw(); };
function showViolation() {
  const ev = M.violation.events;
  show(ev.length ? ev[0].t : M.violation.time, M.violation.time);
}
window.addEventListener('resize', () => {
  const span = plotWidth() / scale;
  width = document.getElementById('wrap').clientWidth;
  scale = plotWidth() / span;
  redraw();
});

// ---- the violation panel and the summary the tests read -------------------------
if (M.violation) {
  const v = M.violation, panel = document.getElementById('violation');
  panel.hidden = false;
  panel.dataset.invariant = v.invariant;
  panel.dataset.time = v.time;
  const h2 = document.createElement('h2');
  h2.textContent = 'Violation: ' + v.invariant + ' at ' + timeText(v.time);
  const msg = document.createElement('div');
  msg.id = 'violation-message';
  msg.textContent = v.message;
  const intro = document.createElement('div');
  intro.textContent = 'The ' + v.events.length + ' events that led to it (the pink band on the timeline; ' +
    'the last one in red; click one to find it in blue):';
  const list = document.createElement('ol');
  list.id = 'violation-events';
  list.start = v.recent_from;
  for (const e of v.events) {
    const li = document.createElement('li');
    li.value = e.ev;
    li.dataset.ev = e.ev;
    li.textContent = e.text;
    li.onclick = () => { highlight = e.ev; show(e.t - 2000, e.t + 2000); redraw(); };
    list.appendChild(li);
  }
  panel.append(h2, msg, intro, list);
  if (v.state) {
    const d = document.createElement('details'), s = document.createElement('summary'), pre = document.createElement('pre');
    s.textContent = 'state of the sessions involved';
    pre.textContent = v.state;
    d.append(s, pre);
    panel.appendChild(d);
  }
  const go = document.getElementById('goto');
  go.hidden = false;
  go.onclick = () => { showViolation(); redraw(); };
}
const laneList = document.getElementById('lanes');
const barsPerLane = lanes.map((l, i) => laneBars[i].length);
lanes.forEach((l, i) => {
  const li = document.createElement('li');
  li.textContent = l.name;
  li.dataset.kind = l.kind;
  li.dataset.bars = barsPerLane[i];
  laneList.appendChild(li);
});
document.getElementById('stats').textContent = M.events + ' events, ' + lanes.length + ' lanes, ' +
  nBars + ' bars, ' + nArrows + ' messages, ' + timeText(tEnd);
width = document.getElementById('wrap').clientWidth;
fit();
if (M.violation && M.violation.events.length && M.violation.events[0].t > tEnd * 0.2) showViolation();
draw();
const summary = document.getElementById('summary');
Object.assign(summary.dataset, {
  lanes: lanes.length, stores: lanes.filter(l => l.kind === 'store').length,
  processes: lanes.filter(l => l.kind === 'process').length, threads: lanes.filter(l => l.kind === 'thread').length,
  bars: nBars, arrows: nArrows, lost: A.fate.filter(f => f === 1).length, marks: nMarks, events: M.events,
  violation: M.violation ? M.violation.invariant : '',
  // from navigation start (parsing the page included) and from this script's start
  renderMs: performance.now().toFixed(1), scriptMs: (performance.now() - started).toFixed(1),
  ready: 'yes',
});
// For tests and the console: what is under a point, and its details.
window.timeline = { model: M, lanes, hit, describe, X, fit, redraw };
</script>
</body>
</html>
)PAGE";

}  // namespace

}  // namespace latchkey::cli
