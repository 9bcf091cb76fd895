#include "cli/runner.h"

#include <chrono>

#include "core/mutants.h"

namespace latchkey::cli {

bool MutantsAvailable() {
#ifdef LATCHKEY_MUTANTS
  return true;
#else
  return false;
#endif
}

bool SelectMutant(const std::string& mutant) {
#ifdef LATCHKEY_MUTANTS
  core::Mutant m = mutant.empty() ? core::Mutant::kNone : core::MutantFromName(mutant);
  if (!mutant.empty() && m == core::Mutant::kNone) return false;
  if (core::ActiveMutant() != m) core::SetMutant(m);
  return true;
#else
  return mutant.empty();
#endif
}

SeedRun RunSeed(const sim::SimConfig& config, std::uint64_t seed, std::ostream* trace) {
  sim::Simulator simulator(config, seed);
  simulator.SetTrace(trace);
  checker::Checker checker;
  simulator.AddObserver(&checker);
  SeedRun run;
  run.summary = simulator.Run();
  run.script_error = simulator.script_error();
  // A script that could not be followed did not run the world it describes.
  if (run.script_error.empty()) checker.Finish(simulator);
  run.violation = checker.violation();
  return run;
}

std::string ExpectedText(const Expectation& e) {
  return e.violation ? "violation " + e.invariant : "pass";
}

ScenarioResult RunScenario(const Scenario& s, std::optional<std::uint64_t> seed,
                           std::ostream* trace) {
  using Status = ScenarioResult::Status;
  ScenarioResult r;
  r.expected = s.expect.present ? ExpectedText(s.expect) : "(none)";
  if (!SelectMutant(s.mutant)) {
    r.status = Status::kSkipped;
    r.observed = "-";
    r.detail = "planted bug " + s.mutant + ": run it with latchkey-mutants";
    return r;
  }
  const auto start = std::chrono::steady_clock::now();
  const std::uint64_t first = seed.value_or(s.first_seed);
  const std::uint64_t count = seed ? 1 : s.seed_count;
  for (std::uint64_t i = 0; i < count; ++i) {
    SeedRun run = RunSeed(s.config, first + i, trace);
    if (i == 0) r.first_trace_hash = run.summary.trace_hash;
    ++r.seeds_run;
    r.events += run.summary.events;
    AddMetrics(r.metrics, Metrics(run.summary));
    if (!run.script_error.empty()) {
      SelectMutant("");
      r.status = Status::kMismatch;
      r.observed = "script error";
      r.detail = run.script_error;
      return r;
    }
    if (run.violation) {
      r.violation = std::move(run.violation);
      r.violating_seed = first + i;
      break;
    }
  }
  SelectMutant("");
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.observed = r.violation ? "violation " + r.violation->name() + " (seed " +
                                 std::to_string(r.violating_seed) + ")"
                           : "pass";
  if (!s.expect.present) {
    r.status = Status::kMismatch;
    r.detail = "the scenario states no expected outcome (add \"expect\")";
    return r;
  }
  std::string why;
  if (s.expect.violation && !r.violation) {
    why = "expected a violation of " + s.expect.invariant + ", but all " +
          std::to_string(r.seeds_run) + " seeds passed";
  } else if (s.expect.violation && r.violation->name() != s.expect.invariant) {
    why = "expected a violation of " + s.expect.invariant + ", but seed " +
          std::to_string(r.violating_seed) + " violated " + r.violation->name() + ": " +
          r.violation->message;
  } else if (!s.expect.violation && r.violation) {
    why = "seed " + std::to_string(r.violating_seed) + " violated " + r.violation->name() + ": " +
          r.violation->message;
  }
  for (const auto& [name, bound] : s.expect.at_least) {
    if (r.metrics[name] < bound) {
      why += (why.empty() ? "" : "; ") + name + " was " + std::to_string(r.metrics[name]) +
             ", expected at least " + std::to_string(bound);
    }
  }
  for (const auto& [name, bound] : s.expect.at_most) {
    if (r.metrics[name] > bound) {
      why += (why.empty() ? "" : "; ") + name + " was " + std::to_string(r.metrics[name]) +
             ", expected at most " + std::to_string(bound);
    }
  }
  if (s.expect.trace_hash && !seed && r.first_trace_hash != *s.expect.trace_hash) {
    char text[96];
    std::snprintf(text, sizeof text, "trace hash %016llx, expected %016llx",
                  static_cast<unsigned long long>(r.first_trace_hash),
                  static_cast<unsigned long long>(*s.expect.trace_hash));
    why += (why.empty() ? "" : "; ") + std::string(text);
  }
  r.status = why.empty() ? Status::kOk : Status::kMismatch;
  r.detail = why;
  return r;
}

}  // namespace latchkey::cli
