#include "checker/history.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

namespace latchkey::checker {

void History::Add(core::SessionId session, core::Token token, std::uint64_t seq,
                  const std::vector<Access>& op_accesses) {
  ops.push_back(CommittedOp{session, token, seq, static_cast<std::uint32_t>(accesses.size()),
                            static_cast<std::uint32_t>(op_accesses.size())});
  accesses.insert(accesses.end(), op_accesses.begin(), op_accesses.end());
}

void History::Add(core::SessionId session, core::Token token, std::uint64_t seq,
                  std::initializer_list<Access> op_accesses) {
  ops.push_back(CommittedOp{session, token, seq, static_cast<std::uint32_t>(accesses.size()),
                            static_cast<std::uint32_t>(op_accesses.size())});
  accesses.insert(accesses.end(), op_accesses.begin(), op_accesses.end());
}

namespace {

// The ops by (session, token, seq). A store logs a session's commits in that
// order, so the ops are grouped by session keeping their order (a counting
// sort over the few sessions) and each group is checked to be strictly
// increasing; then the order is the only sorted one. Otherwise (equal or
// out-of-order keys, from a faulty store) all are sorted as before, so that
// even ties come out as they did.
std::vector<std::uint32_t> SortedOrder(const History& h) {
  const auto before = [&](std::uint32_t a, std::uint32_t b) {
    const CommittedOp& x = h.ops[a];
    const CommittedOp& y = h.ops[b];
    if (x.session != y.session) return x.session < y.session;
    if (x.token != y.token) return x.token < y.token;
    return x.seq < y.seq;
  };
  std::vector<std::uint32_t> order(h.ops.size());
  std::unordered_map<core::SessionId, std::uint32_t> group_of;
  std::vector<core::SessionId> sessions;
  std::vector<std::uint32_t> group(h.ops.size());
  // Groups numbered in order of first appearance; small session ids (most)
  // are looked up in a table (group + 1, 0: none yet).
  constexpr core::SessionId kSmall = 4096;
  std::vector<std::uint32_t> small_group;
  for (std::uint32_t i = 0; i < h.ops.size(); ++i) {
    const core::SessionId id = h.ops[i].session;
    if (id < kSmall) {
      if (id >= small_group.size()) small_group.resize(id + 1, 0);
      std::uint32_t& g = small_group[id];
      if (g == 0) {
        sessions.push_back(id);
        g = static_cast<std::uint32_t>(sessions.size());
      }
      group[i] = g - 1;
      continue;
    }
    auto [it, added] = group_of.try_emplace(id, static_cast<std::uint32_t>(sessions.size()));
    if (added) sessions.push_back(id);
    group[i] = it->second;
  }
  // Groups in session order, each starting where the previous ends.
  std::vector<std::uint32_t> by_session(sessions.size());
  std::iota(by_session.begin(), by_session.end(), 0u);
  std::sort(by_session.begin(), by_session.end(),
            [&](std::uint32_t a, std::uint32_t b) { return sessions[a] < sessions[b]; });
  std::vector<std::uint32_t> start(sessions.size() + 1, 0);
  for (std::uint32_t g : group) ++start[g + 1];
  std::vector<std::uint32_t> next(sessions.size());
  std::uint32_t at = 0;
  for (std::uint32_t g : by_session) {
    next[g] = at;
    at += start[g + 1];
  }
  for (std::uint32_t i = 0; i < h.ops.size(); ++i) order[next[group[i]]++] = i;
  bool sorted = true;
  for (std::size_t k = 1; k < order.size() && sorted; ++k) sorted = before(order[k - 1], order[k]);
  if (!sorted) {
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(), before);
  }
  return order;
}

}  // namespace

HistoryResult CheckSerializable(const History& h) {
  const std::vector<std::uint32_t> order = SortedOrder(h);
  // The replayed state of the current session: value per attribute, reset
  // through the list of touched attributes when the session changes.
  std::vector<std::uint64_t> value;
  std::vector<std::uint32_t> touched;
  const CommittedOp* prev = nullptr;
  for (std::uint32_t i : order) {
    const CommittedOp& op = h.ops[i];
    if (prev == nullptr || prev->session != op.session) {
      for (std::uint32_t a : touched) value[a] = 0;
      touched.clear();
    } else if (prev->token == op.token && prev->seq == op.seq) {
      return {false, "session " + std::to_string(op.session) + ": two commits share token " +
                         std::to_string(op.token) + " seq " + std::to_string(op.seq)};
    }
    for (std::uint32_t k = op.first; k < op.first + op.count; ++k) {
      const Access& a = h.accesses[k];
      if (a.attribute >= value.size()) value.resize(a.attribute + 1, 0);
      if (a.write) {
        touched.push_back(a.attribute);
        value[a.attribute] = a.value;
      } else if (value[a.attribute] != a.value) {
        return {false, "session " + std::to_string(op.session) + ": the commit with token " +
                           std::to_string(op.token) + " seq " + std::to_string(op.seq) +
                           " read attribute " + std::to_string(a.attribute) + " = " +
                           std::to_string(a.value) + " but the latest committed value is " +
                           std::to_string(value[a.attribute])};
      }
    }
    prev = &op;
  }
  return {};
}

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kPass:
      return "pass";
    case Verdict::kFail:
      return "fail";
    case Verdict::kInconclusive:
      return "inconclusive";
  }
  return "unknown";
}

namespace {

struct StateHash {
  std::size_t operator()(const std::pair<std::uint64_t, std::uint64_t>& s) const {
    return std::hash<std::uint64_t>()(s.first * 0x9e3779b97f4a7c15ULL ^ s.second);
  }
};

struct Search {
  const std::vector<RegisterOp>& ops;
  std::uint64_t budget;
  std::uint64_t spent = 0;
  std::uint64_t required = 0;  // completed ops: must all be linearised
  std::unordered_set<std::pair<std::uint64_t, std::uint64_t>, StateHash> seen;
  bool exhausted = false;

  bool Run(std::uint64_t done, std::uint64_t value) {
    if ((done & required) == required) return true;
    if (!seen.insert({done, value}).second) return false;
    if (++spent > budget) {
      exhausted = true;
      return false;
    }
    // An op may go next only if no op left undone returned before it was called.
    core::Time horizon = core::kNever;
    for (std::size_t j = 0; j < ops.size(); ++j) {
      if (!(done >> j & 1)) horizon = std::min(horizon, ops[j].returned);
    }
    for (std::size_t i = 0; i < ops.size() && !exhausted; ++i) {
      if (done >> i & 1) continue;
      const RegisterOp& op = ops[i];
      if (op.called > horizon) continue;
      std::uint64_t next = value;
      switch (op.kind) {
        case RegisterOpKind::kRead:
          if (op.read != value) continue;
          break;
        case RegisterOpKind::kWrite:
          next = op.write;
          break;
        case RegisterOpKind::kReadModifyWrite:
          if (op.read != value) continue;
          next = op.write;
          break;
      }
      if (Run(done | (1ULL << i), next)) return true;
    }
    return false;
  }
};

}  // namespace

Verdict CheckLinearizable(const std::vector<RegisterOp>& ops, std::uint64_t initial,
                          std::uint64_t budget) {
  if (ops.size() > 64) return Verdict::kInconclusive;
  Search s{ops, budget, 0, 0, {}, false};
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].returned != core::kNever) s.required |= 1ULL << i;
  }
  if (s.Run(0, initial)) return Verdict::kPass;
  return s.exhausted ? Verdict::kInconclusive : Verdict::kFail;
}

}  // namespace latchkey::checker
