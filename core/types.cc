#include "core/types.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "core/assert.h"
#include "core/messages.h"

namespace latchkey::core {

namespace {
AssertHandler g_assert_handler = nullptr;
}  // namespace

AssertHandler SetAssertHandler(AssertHandler handler) {
  AssertHandler previous = g_assert_handler;
  g_assert_handler = handler;
  return previous;
}

void AssertFailed(const char* expression, const char* file, int line) {
  if (g_assert_handler != nullptr) g_assert_handler(expression, file, line);
  // A handler that returns (or none at all) still must not let the core go on.
  std::abort();
}

AttributeMap::AttributeMap(std::initializer_list<value_type> entries) : entries_(entries) {
  std::stable_sort(entries_.begin(), entries_.end(),
                   [](const value_type& a, const value_type& b) { return a.first < b.first; });
  entries_.erase(
      std::unique(entries_.begin(), entries_.end(),
                  [](const value_type& a, const value_type& b) { return a.first == b.first; }),
      entries_.end());
}

std::string& AttributeMap::at(std::string_view name) {
  auto it = find(name);
  if (it == entries_.end()) throw std::out_of_range("AttributeMap::at: no such attribute");
  return it->second;
}

Portion Portion::Whole(Mode mode) { return Portion{true, {}, mode}; }

Portion Portion::Of(std::vector<std::string> attributes, Mode mode) {
  std::sort(attributes.begin(), attributes.end());
  attributes.erase(std::unique(attributes.begin(), attributes.end()), attributes.end());
  return Portion{false, std::move(attributes), mode};
}

bool Portion::Contains(std::string_view attribute) const {
  if (whole) return true;
  // A binary search with one three-way comparison per step.
  std::size_t lo = 0;
  std::size_t hi = attributes.size();
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    const int c = std::string_view(attributes[mid]).compare(attribute);
    if (c == 0) return true;
    if (c < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return false;
}

bool Portion::Overlaps(const Portion& other) const {
  if (whole || other.whole) return true;
  // Both sorted: a merge walk finds a common attribute in linear time.
  auto a = attributes.begin();
  auto b = other.attributes.begin();
  while (a != attributes.end() && b != other.attributes.end()) {
    const int c = a->compare(*b);
    if (c == 0) return true;
    if (c < 0) {
      ++a;
    } else {
      ++b;
    }
  }
  return false;
}

bool Portion::ConflictsWith(const Portion& other) const {
  if (mode == Mode::kShared && other.mode == Mode::kShared) return false;
  return Overlaps(other);
}

std::string_view ReasonName(Reason reason) {
  switch (reason) {
    case Reason::kNone:
      return "none";
    case Reason::kStaleToken:
      return "stale_token";
    case Reason::kNotHolder:
      return "not_holder";
    case Reason::kStaleIncarnation:
      return "stale_incarnation";
    case Reason::kLeaseExpired:
      return "lease_expired";
    case Reason::kForceReleased:
      return "force_released";
    case Reason::kInvalidated:
      return "invalidated";
    case Reason::kBusy:
      return "busy";
    case Reason::kTimeout:
      return "timeout";
    case Reason::kLockLost:
      return "lock_lost";
    case Reason::kCommitOutcomeUnknown:
      return "commit_outcome_unknown";
    case Reason::kBadPortion:
      return "bad_portion";
    case Reason::kNotInPortion:
      return "not_in_portion";
    case Reason::kNotLocked:
      return "not_locked";
    case Reason::kAlreadyWaiting:
      return "already_waiting";
    case Reason::kNotPending:
      return "not_pending";
    case Reason::kGracePeriod:
      return "grace_period";
    case Reason::kProcessRestarted:
      return "process_restarted";
    case Reason::kQueueFull:
      return "queue_full";
    case Reason::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string_view MessageKindName(MessageKind kind) {
  switch (kind) {
    case MessageKind::kAcquire:
      return "Acquire";
    case MessageKind::kRelease:
      return "Release";
    case MessageKind::kCommit:
      return "Commit";
    case MessageKind::kHeartbeat:
      return "Heartbeat";
    case MessageKind::kReclaim:
      return "Reclaim";
    case MessageKind::kCancel:
      return "Cancel";
    case MessageKind::kForceRelease:
      return "ForceRelease";
    case MessageKind::kAdminInvalidate:
      return "AdminInvalidate";
    case MessageKind::kGranted:
      return "Granted";
    case MessageKind::kQueued:
      return "Queued";
    case MessageKind::kBusy:
      return "Busy";
    case MessageKind::kRecall:
      return "Recall";
    case MessageKind::kReleaseAck:
      return "ReleaseAck";
    case MessageKind::kCommitAck:
      return "CommitAck";
    case MessageKind::kHeartbeatAck:
      return "HeartbeatAck";
    case MessageKind::kReclaimAck:
      return "ReclaimAck";
    case MessageKind::kCancelAck:
      return "CancelAck";
    case MessageKind::kRevoked:
      return "Revoked";
    case MessageKind::kRejected:
      return "Rejected";
  }
  return "Unknown";
}

}  // namespace latchkey::core
