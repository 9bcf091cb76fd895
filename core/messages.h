// The protocol's messages between process agents and store nodes.
//
// Every message that refers to a tenure carries its token, so late and
// duplicated copies are recognised (B4). Every envelope names the sender's
// and the receiver's incarnation: a restarted store (B7) or process (B4) never
// mistakes a predecessor's message for its own.
#pragma once

#include <cstdint>
#include <string_view>
#include <variant>
#include <vector>

#include "core/types.h"

namespace latchkey::core {

// ---- process agent -> store ----------------------------------------------

// R2: ask for locked access. A repeated Acquire from the holder gets its grant
// again; from a queued process it is answered Queued again (B4).
struct Acquire {
  SessionId session = 0;
  std::uint64_t request_id = 0;  // per process incarnation, increasing
  DataVersion cached;            // the version the agent has cached, if any
  bool try_only = false;         // B5: answer Busy instead of buffering
  bool operator==(const Acquire&) const = default;
};

// R8 / R7: give the lock back. Idempotent: releasing a finished tenure is
// acknowledged and changes nothing.
struct Release {
  SessionId session = 0;
  Token token = kNoToken;
  bool operator==(const Release&) const = default;
};

// R1: a write carries the holder's token. `seq` numbers commits within a
// tenure; the store applies seq == last + 1 and acknowledges repeats (B4).
struct Commit {
  SessionId session = 0;
  Token token = kNoToken;
  std::uint64_t seq = 0;
  bool clear_first = false;  // B6: logout, drop every attribute first
  WriteSet writes;
  bool operator==(const Commit&) const = default;
};

// B1: one lease per process, renewed by heartbeats (and by Acquire/Reclaim).
struct Heartbeat {
  std::uint64_t seq = 0;
  bool operator==(const Heartbeat&) const = default;
};

// B7: after a store restart, a holder asks to keep its tenure.
struct Reclaim {
  SessionId session = 0;
  Token token = kNoToken;
  bool operator==(const Reclaim&) const = default;
};

// Withdraw a buffered request (its threads timed out or gave up).
struct Cancel {
  SessionId session = 0;
  std::uint64_t request_id = 0;
  bool operator==(const Cancel&) const = default;
};

// ---- administrator -> store ------------------------------------------------

// Ends the current tenure whatever the holder is doing; the token it held is
// dead from then on and the head of the queue is granted with a new one.
struct ForceRelease {
  SessionId session = 0;
  bool operator==(const ForceRelease&) const = default;
};

// B6: logout from outside; ends any tenure and drops the session's data.
struct AdminInvalidate {
  SessionId session = 0;
  bool operator==(const AdminInvalidate&) const = default;
};

// ---- store -> process agent ------------------------------------------------

// R1/R2: the lock token, with a snapshot of the attributes unless the agent's
// cached version is current.
struct Granted {
  SessionId session = 0;
  Token token = kNoToken;
  std::uint64_t request_id = 0;
  DataVersion version;
  bool has_snapshot = false;
  AttributeMap snapshot;
  bool operator==(const Granted&) const = default;
};

// R4: the request is buffered; `ahead` requests come before it.
struct Queued {
  SessionId session = 0;
  std::uint64_t request_id = 0;
  std::uint32_t ahead = 0;
  bool operator==(const Queued&) const = default;
};

// B5: try-lock refused, nothing buffered.
struct Busy {
  SessionId session = 0;
  std::uint64_t request_id = 0;
  bool operator==(const Busy&) const = default;
};

// R7: the store asks the holder of `token` to release.
struct Recall {
  SessionId session = 0;
  Token token = kNoToken;
  bool operator==(const Recall&) const = default;
};

struct ReleaseAck {
  SessionId session = 0;
  Token token = kNoToken;
  bool operator==(const ReleaseAck&) const = default;
};

struct CommitAck {
  SessionId session = 0;
  Token token = kNoToken;
  std::uint64_t seq = 0;
  bool operator==(const CommitAck&) const = default;
};

struct HeartbeatAck {
  std::uint64_t seq = 0;
  bool operator==(const HeartbeatAck&) const = default;
};

struct ReclaimAck {
  SessionId session = 0;
  Token token = kNoToken;
  bool operator==(const ReclaimAck&) const = default;
};

struct CancelAck {
  SessionId session = 0;
  std::uint64_t request_id = 0;
  bool operator==(const CancelAck&) const = default;
};

// The tenure of `token` is over without the holder asking (lease expiry,
// force release, invalidation, no reclaim after restart).
struct Revoked {
  SessionId session = 0;
  Token token = kNoToken;
  Reason reason = Reason::kNone;
  bool operator==(const Revoked&) const = default;
};

// R1: an access with a missing, stale or foreign token, or a reclaim that does
// not match, is refused. `what` names the refused message kind.
struct Rejected {
  SessionId session = 0;
  Token token = kNoToken;
  std::uint64_t seq = 0;  // the commit seq, when a commit was refused
  std::uint8_t what = 0;  // MessageKind of the refused message
  Reason reason = Reason::kNone;
  bool operator==(const Rejected&) const = default;
};

using Message = std::variant<Acquire, Release, Commit, Heartbeat, Reclaim, Cancel, ForceRelease,
                             AdminInvalidate, Granted, Queued, Busy, Recall, ReleaseAck, CommitAck,
                             HeartbeatAck, ReclaimAck, CancelAck, Revoked, Rejected>;

// Index into Message, stable for tracing and the wire format.
enum class MessageKind : std::uint8_t {
  kAcquire,
  kRelease,
  kCommit,
  kHeartbeat,
  kReclaim,
  kCancel,
  kForceRelease,
  kAdminInvalidate,
  kGranted,
  kQueued,
  kBusy,
  kRecall,
  kReleaseAck,
  kCommitAck,
  kHeartbeatAck,
  kReclaimAck,
  kCancelAck,
  kRevoked,
  kRejected,
};
inline MessageKind KindOf(const Message& m) { return static_cast<MessageKind>(m.index()); }
std::string_view MessageKindName(MessageKind kind);

enum class NodeKind : std::uint8_t { kStore, kProcess, kAdmin };

struct Address {
  NodeKind kind = NodeKind::kStore;
  std::uint64_t id = 0;
  std::uint64_t incarnation = 0;  // process incarnation, or store epoch
  bool operator==(const Address&) const = default;
  auto operator<=>(const Address&) const = default;
};

inline Address StoreAddress(std::uint64_t id, std::uint64_t epoch) {
  return {NodeKind::kStore, id, epoch};
}
inline Address ProcessAddress(ProcessRef p) { return {NodeKind::kProcess, p.id, p.incarnation}; }

struct Envelope {
  Address from;
  Address to;
  Message message;
  bool operator==(const Envelope&) const = default;
};

}  // namespace latchkey::core
