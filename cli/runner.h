// Running scenarios: one seed under the property checker, or a whole
// scenario compared with its expected outcome.
//
// Thread-safety: RunSeed may run on several threads at once, provided the
// planted-bug selector (mutant builds only) was set before they started:
// SelectMutant writes a global.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include "checker/checker.h"
#include "cli/scenario.h"

namespace latchkey::cli {

// True in the latchkey-mutants build, which can run planted bugs.
bool MutantsAvailable();
// Activates a planted bug ("" for none). False if this build cannot.
bool SelectMutant(const std::string& mutant);

struct SeedRun {
  sim::SimSummary summary;
  std::optional<checker::Violation> violation;
  std::string script_error;  // a scripted run whose script could not be followed
};

// One seed of a world with the checker on every event; the active mutant is
// whatever SelectMutant chose.
SeedRun RunSeed(const sim::SimConfig& config, std::uint64_t seed, std::ostream* trace = nullptr);

struct ScenarioResult {
  enum class Status { kOk, kMismatch, kSkipped };
  Status status = Status::kOk;
  std::string expected;  // in words, e.g. "violation queue_order"
  std::string observed;  // e.g. "pass", "violation liveness (seed 7)"
  std::string detail;    // why it mismatched or was skipped
  std::uint64_t seeds_run = 0;
  std::uint64_t events = 0;
  double wall_s = 0;
  std::map<std::string, std::uint64_t> metrics;  // summed over the seeds run
  std::optional<checker::Violation> violation;   // the first, if any
  std::uint64_t violating_seed = 0;
  std::uint64_t first_trace_hash = 0;
};

std::string ExpectedText(const Expectation& expect);
// Runs the scenario's seeds (stopping at the first violation) and compares
// the outcome with its expectation. `seed` overrides the scenario's seeds.
ScenarioResult RunScenario(const Scenario& scenario, std::optional<std::uint64_t> seed = {},
                           std::ostream* trace = nullptr);

}  // namespace latchkey::cli
