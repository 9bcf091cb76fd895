// The time the TCP shell feeds the core: microseconds of the monotonic clock,
// so leases and recalls do not jump with the wall clock. Shared by latchkeyd
// and the client library.
#pragma once

#include <chrono>

#include "core/types.h"

namespace latchkey::net {

inline core::Time MonotonicMicros() {
  // +1: the core reserves time 0 for "never happened".
  return static_cast<core::Time>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count()) +
         1;
}

// The steady_clock instant of a MonotonicMicros() value (for Asio timers).
inline std::chrono::steady_clock::time_point SteadyTimeOf(core::Time t) {
  return std::chrono::steady_clock::time_point(std::chrono::microseconds(t - 1));
}

}  // namespace latchkey::net
