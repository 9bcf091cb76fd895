// LK_ASSERT: checks of the core's own invariants. It stays on in every build.
//
// A broken invariant is a bug in the core, never something a peer can cause
// (those are Reason values). The core does no I/O, so the failure goes to a
// handler the driver installs (tests and the simulator report the seed);
// the default handler aborts.
#pragma once

namespace latchkey::core {

using AssertHandler = void (*)(const char* expression, const char* file, int line);

// Installs `handler` and returns the previous one. Call before running the
// core; not meant to be switched while cores run on other threads.
AssertHandler SetAssertHandler(AssertHandler handler);

[[noreturn]] void AssertFailed(const char* expression, const char* file, int line);

}  // namespace latchkey::core

#define LK_ASSERT(condition)                                                          \
  do {                                                                                \
    if (!(condition)) ::latchkey::core::AssertFailed(#condition, __FILE__, __LINE__); \
  } while (false)
