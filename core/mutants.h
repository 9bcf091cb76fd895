// Planted bugs (mutants) in the core, for showing that the checker's
// invariants can fail. Each is selected at run time in a test build.
//
// Only the `latchkey_core_mutants` library is compiled with LATCHKEY_MUTANTS;
// the production `latchkey_core` has no mutant code paths at all: every hook
// sits inside `#ifdef LATCHKEY_MUTANTS`, and LK_MUTANT is not even defined
// without it.
//
// Thread-safety: the selector is one plain global value, set before a run and
// read by the core; tests that run cores on several threads must not switch
// it meanwhile. It is plain data: no I/O, clocks or randomness.
//
// Invariants: at most one mutant is active; kNone means the core is unchanged.
#pragma once

#include <cstdint>
#include <string_view>

namespace latchkey::core {

enum class Mutant : std::uint8_t {
  kNone,
  kGrantWhileHeld,          // store: a new Acquire takes the lock from the holder without a Revoked
  kAgentTrustsForever,      // agent: trusts its lock past its lease (ignores self-expiry)
  kAgentGrantsConflicting,  // agent: grants thread portions that conflict with holders
  kTokenResetOnRecover,     // store: a restarted store restarts its token counter
  kCommitAcceptsStale,      // store: applies a commit whose token is not the current one
  kLifoQueue,               // store: grants the newest buffered request, not the oldest
  kAckWithoutPersist,       // store: acknowledges a commit without persisting it
  kAgentIgnoresSnapshot,    // agent: keeps its old cache when a grant brings a snapshot
  kAgentIgnoresRecall,      // agent: never releases on a recall
  kNoProgressRule,          // agent: a recall stops even the threads waiting at the grant
  kAgentThreadLifo,         // agent: serves the newest waiting thread first
  kAgentReleasesWhileHolding,  // agent: gives a recalled lock back while threads hold portions
  kAgentConfusesModes,         // agent: a shared and an exclusive portion may overlap
  kTokenNotBumpedAfterExpiry,  // store: the grant after a lease expiry reuses the expired token
  kDuplicateCommitApplied,     // store: a repeated commit is applied (and persisted) again
  kStoreNeverRecalls,          // store: never sends a recall
  kAgentClaimsCommitLost,      // agent: a lost lock's in-flight commit is reported certainly lost
};
inline constexpr int kMutantCount = 18;

std::string_view MutantName(Mutant mutant);
// kNone if `name` names no mutant.
Mutant MutantFromName(std::string_view name);

#ifdef LATCHKEY_MUTANTS
// The active mutant (kNone by default).
Mutant ActiveMutant();
void SetMutant(Mutant mutant);
#define LK_MUTANT(m) (::latchkey::core::ActiveMutant() == ::latchkey::core::Mutant::m)
#endif

}  // namespace latchkey::core
