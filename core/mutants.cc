#include "core/mutants.h"

namespace latchkey::core {

namespace {
constexpr std::string_view kNames[kMutantCount] = {
    "none",
    "grant_while_held",
    "agent_trusts_forever",
    "agent_grants_conflicting",
    "token_reset_on_recover",
    "commit_accepts_stale",
    "lifo_queue",
    "ack_without_persist",
    "agent_ignores_snapshot",
    "agent_ignores_recall",
    "no_progress_rule",
    "agent_thread_lifo",
    "agent_releases_while_holding",
    "agent_confuses_modes",
    "token_not_bumped_after_expiry",
    "duplicate_commit_applied",
    "store_never_recalls",
    "agent_claims_commit_lost",
};
}  // namespace

std::string_view MutantName(Mutant mutant) {
  auto i = static_cast<int>(mutant);
  return i < kMutantCount ? kNames[i] : "unknown";
}

Mutant MutantFromName(std::string_view name) {
  for (int i = 0; i < kMutantCount; ++i) {
    if (kNames[i] == name) return static_cast<Mutant>(i);
  }
  return Mutant::kNone;
}

#ifdef LATCHKEY_MUTANTS
namespace {
Mutant active_mutant = Mutant::kNone;
}  // namespace

Mutant ActiveMutant() { return active_mutant; }
void SetMutant(Mutant mutant) { active_mutant = mutant; }
#endif

}  // namespace latchkey::core
