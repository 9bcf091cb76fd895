// What a state machine asks its driver to do after one input.
//
// A driver applies the fields strictly in declaration order: records are made
// durable before any message leaves (B3), then messages are sent, then request
// threads are woken, and the machine is ticked again by `next_deadline`.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "core/messages.h"
#include "core/types.h"

namespace latchkey::core {

// ---- records a store asks to persist (B3, B7) -----------------------------
// Together they are a complete, replayable description of a store's durable
// state: Store::Recover rebuilds a store from them.

struct StoreStartedRecord {
  std::uint64_t epoch = 0;
  bool operator==(const StoreStartedRecord&) const = default;
};
struct GrantRecord {
  SessionId session = 0;
  Token token = kNoToken;
  ProcessRef holder;
  std::uint64_t request_id = 0;  // the Acquire it answers: repeats after a restart
                                 // are recognised, not taken for a new request (B4)
  bool operator==(const GrantRecord&) const = default;
};
// A tenure ended: released, revoked, force-released or not reclaimed.
struct TenureEndRecord {
  SessionId session = 0;
  Token token = kNoToken;
  bool operator==(const TenureEndRecord&) const = default;
};
struct CommitRecord {
  SessionId session = 0;
  Token token = kNoToken;
  std::uint64_t seq = 0;
  bool clear_first = false;
  WriteSet writes;  // the Commit's, shared
  bool operator==(const CommitRecord&) const = default;
};
// The session's data is gone (idle expiry or invalidation); its version is
// back to {0, 0}, which always means "empty". Versions of data never repeat
// because every other version names a tenure's token.
struct SessionDroppedRecord {
  SessionId session = 0;
  bool operator==(const SessionDroppedRecord&) const = default;
};

using Record = std::variant<StoreStartedRecord, GrantRecord, TenureEndRecord, CommitRecord,
                            SessionDroppedRecord>;

// ---- notifications to request threads (agent only) ------------------------

enum class ThreadEventKind : std::uint8_t {
  kGranted,     // the thread now holds its portion
  kCommitted,   // its writes are acknowledged by the store; portion released
  kRolledBack,  // its writes were discarded on request; portion released
  kFailed,      // the ask, or the commit, failed: see reason
};

struct ThreadEvent {
  ThreadId thread = 0;
  SessionId session = 0;
  ThreadEventKind kind = ThreadEventKind::kGranted;
  Reason reason = Reason::kNone;
  bool operator==(const ThreadEvent&) const = default;
};

struct Effects {
  std::vector<Record> persist;    // 1. durable before anything leaves
  std::vector<Envelope> send;     // 2. then send
  std::vector<ThreadEvent> wake;  // 3. agent only: wake request threads
  Time next_deadline = kNever;    // 4. call OnTick by then

  bool empty() const { return persist.empty() && send.empty() && wake.empty(); }
  // Back to no effects, keeping the vectors' buffers: a driver that reuses
  // one Effects for every input allocates nothing for them once warmed up.
  void Clear() {
    persist.clear();
    send.clear();
    wake.clear();
    next_deadline = kNever;
  }
};

}  // namespace latchkey::core
