// RapidCheck generators for core messages and records, for the codec and log
// tests. Call only inside a property (they use `*gen`).
#pragma once

#include <rapidcheck.h>

#include "core/effects.h"
#include "core/messages.h"

namespace latchkey::testing {

inline std::uint64_t AnyU64() {
  // Mostly small values, sometimes the extremes: both ends of every width.
  return *rc::gen::oneOf(rc::gen::inRange<std::uint64_t>(0, 1000),
                         rc::gen::arbitrary<std::uint64_t>(),
                         rc::gen::element<std::uint64_t>(0, ~std::uint64_t{0}));
}
inline std::string AnyString() {
  return *rc::gen::oneOf(rc::gen::arbitrary<std::string>(),
                         rc::gen::container<std::string>(rc::gen::inRange<char>(0, 127)));
}
inline bool AnyBool() { return *rc::gen::arbitrary<bool>(); }
inline core::Reason AnyReason() { return static_cast<core::Reason>(*rc::gen::inRange(0, 20)); }
inline std::vector<core::AttributeWrite> AnyWrites() {
  int n = *rc::gen::inRange(0, 6);
  std::vector<core::AttributeWrite> writes;
  for (int i = 0; i < n; ++i) writes.push_back({AnyString(), AnyString(), AnyBool()});
  return writes;
}
inline core::AttributeMap AnyMap() {
  int n = *rc::gen::inRange(0, 6);
  core::AttributeMap map;
  for (int i = 0; i < n; ++i) map[AnyString()] = AnyString();
  return map;
}

inline core::Message AnyMessage() {
  using namespace core;
  switch (*rc::gen::inRange(0, 19)) {
    case 0:
      return Acquire{AnyU64(), AnyU64(), {AnyU64(), AnyU64()}, AnyBool()};
    case 1:
      return Release{AnyU64(), AnyU64()};
    case 2:
      return Commit{AnyU64(), AnyU64(), AnyU64(), AnyBool(), AnyWrites()};
    case 3:
      return Heartbeat{AnyU64()};
    case 4:
      return Reclaim{AnyU64(), AnyU64()};
    case 5:
      return Cancel{AnyU64(), AnyU64()};
    case 6:
      return ForceRelease{AnyU64()};
    case 7:
      return AdminInvalidate{AnyU64()};
    case 8:
      return Granted{AnyU64(), AnyU64(), AnyU64(), {AnyU64(), AnyU64()}, AnyBool(), AnyMap()};
    case 9:
      return Queued{AnyU64(), AnyU64(), *rc::gen::arbitrary<std::uint32_t>()};
    case 10:
      return Busy{AnyU64(), AnyU64()};
    case 11:
      return Recall{AnyU64(), AnyU64()};
    case 12:
      return ReleaseAck{AnyU64(), AnyU64()};
    case 13:
      return CommitAck{AnyU64(), AnyU64(), AnyU64()};
    case 14:
      return HeartbeatAck{AnyU64()};
    case 15:
      return ReclaimAck{AnyU64(), AnyU64()};
    case 16:
      return CancelAck{AnyU64(), AnyU64()};
    case 17:
      return Revoked{AnyU64(), AnyU64(), AnyReason()};
    default:
      return Rejected{AnyU64(), AnyU64(), AnyU64(),
                      static_cast<std::uint8_t>(*rc::gen::inRange(0, 19)), AnyReason()};
  }
}

inline core::Record AnyRecord() {
  using namespace core;
  switch (*rc::gen::inRange(0, 5)) {
    case 0:
      return StoreStartedRecord{AnyU64()};
    case 1:
      return GrantRecord{AnyU64(), AnyU64(), {AnyU64(), AnyU64()}, AnyU64()};
    case 2:
      return TenureEndRecord{AnyU64(), AnyU64()};
    case 3:
      return CommitRecord{AnyU64(), AnyU64(), AnyU64(), AnyBool(), AnyWrites()};
    default:
      return SessionDroppedRecord{AnyU64()};
  }
}

}  // namespace latchkey::testing
