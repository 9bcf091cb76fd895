// History checks over a finished run: serializability of each session's
// committed requests, witnessed by lock tokens, and a general (budgeted)
// linearizability checker for attribute registers to cross-check it.
//
// Thread-safety: plain values and pure functions.
//
// Invariants of a History: `accesses` holds, for each op in order, exactly
// `count` entries starting at `first`.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/types.h"

namespace latchkey::checker {

// One read or write of an attribute inside a committed request. Attributes
// and values are small integers (value 0 means "absent").
struct Access {
  std::uint32_t attribute = 0;
  bool write = false;
  std::uint64_t value = 0;
};

// A committed request: the token of the tenure it ran in and its commit
// sequence number within that tenure are its witness of order (grants totally
// order tenures, a tenure's commits are applied in seq order).
struct CommittedOp {
  core::SessionId session = 0;
  core::Token token = core::kNoToken;
  std::uint64_t seq = 0;
  std::uint32_t first = 0;  // into History::accesses
  std::uint32_t count = 0;
};

struct History {
  std::vector<CommittedOp> ops;
  std::vector<Access> accesses;
  void Add(core::SessionId session, core::Token token, std::uint64_t seq,
           const std::vector<Access>& op_accesses);
  // The same without building a vector first.
  void Add(core::SessionId session, core::Token token, std::uint64_t seq,
           std::initializer_list<Access> op_accesses);
};

struct HistoryResult {
  bool ok = true;
  std::string message;  // the first offending op, when !ok
};

// Orders each session's ops by (token, seq) and replays them: every read must
// see the latest committed write of its attribute, and no two ops may share a
// witness. O(n log n) for the sort, linear after it.
HistoryResult CheckSerializable(const History& history);

// ---- general linearizability of one register --------------------------------

enum class RegisterOpKind : std::uint8_t { kRead, kWrite, kReadModifyWrite };

// An operation on one register with its real-time interval. `returned` is
// kNever for an op whose outcome is unknown: it may or may not have happened.
struct RegisterOp {
  RegisterOpKind kind = RegisterOpKind::kRead;
  std::uint64_t read = 0;   // kRead, kReadModifyWrite: the value seen
  std::uint64_t write = 0;  // kWrite, kReadModifyWrite: the value left
  core::Time called = 0;
  core::Time returned = core::kNever;
};

enum class Verdict : std::uint8_t { kPass, kFail, kInconclusive };
std::string_view VerdictName(Verdict verdict);

// Wing-Gong search with memoised (linearised set, value) states. Gives up
// with kInconclusive after `budget` states, or for more than 64 ops.
Verdict CheckLinearizable(const std::vector<RegisterOp>& ops, std::uint64_t initial,
                          std::uint64_t budget);

}  // namespace latchkey::checker
