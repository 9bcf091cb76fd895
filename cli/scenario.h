// Scenario: a simulated world, the seeds to run it with, and the outcome it
// is expected to have. The JSON format is documented in scenarios/README.md
// (with scenarios/scenario.schema.json for editors); the world sections
// (topology, timing, network, workload, faults) are sim::LoadConfig's.
//
// Loading is strict: an unknown field, a wrong type or an out-of-range value
// is an error naming the file, the JSON path, what was expected and what was
// found.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/config.h"
#include "sim/simulator.h"

namespace latchkey::cli {

struct Expectation {
  bool present = false;    // a scenario for `latchkey run` must state one
  bool violation = false;  // false: every seed passes
  std::string invariant;   // with violation: the first violating seed breaks this one
  std::map<std::string, std::uint64_t> at_least, at_most;  // metrics over all seeds
  std::optional<std::uint64_t> trace_hash;                 // single seed: the run must hash to this
};

struct Scenario {
  std::string path;  // where it was loaded from ("" if built in memory)
  std::string description;
  std::vector<std::string> requirements;  // R1..R11, B1..B10
  std::uint64_t first_seed = 1;
  std::uint64_t seed_count = 1;
  bool seed_range = false;  // written as "seeds": {...} rather than "seed"
  std::string mutant;       // a planted bug of core/mutants.h; "" for the real core
  sim::SimConfig config;
  Expectation expect;
};

// Returns "" or an error "JSON path: what was wrong".
std::string LoadScenario(const nlohmann::json& json, Scenario& scenario);
// Returns "" or an error that starts with the file name.
std::string LoadScenarioFile(const std::string& path, Scenario& scenario);
nlohmann::json ScenarioToJson(const Scenario& scenario);
// Writes pretty JSON; returns "" or the error.
std::string WriteScenarioFile(const std::string& path, const Scenario& scenario);

// Every metric an expectation may bound, from one run's summary. Counts add
// up over seeds; wait_p99_us takes the maximum.
std::map<std::string, std::uint64_t> Metrics(const sim::SimSummary& summary);
bool IsMetric(const std::string& name);
void AddMetrics(std::map<std::string, std::uint64_t>& total,
                const std::map<std::string, std::uint64_t>& one);

}  // namespace latchkey::cli
