// `latchkey sim`: one simulation run with a readable summary.
#pragma once

#include <cstdint>
#include <string>

#include "sim/simulator.h"

namespace latchkey::cli {

struct SimOptions {
  std::uint64_t seed = 1;
  std::string config_path;  // JSON SimConfig; empty = defaults
  std::string trace_path;   // JSONL trace; empty = none
  bool check_determinism = false;
  bool json = false;
  bool check = false;       // run with checker/: exit 1 and print the report on a violation
  std::uint64_t seeds = 1;  // > 1: a campaign over seeds seed..seed+seeds-1, one line each
};

// Exit codes: 0 run finished, 1 determinism failure or (with --check) an
// invariant violated, 2 bad input.
int RunSim(const SimOptions& options);

// The readable summary of one run, ending with the command that reproduces it.
void PrintSimSummary(const sim::SimSummary& summary, double wall_seconds,
                     const std::string& reproduce);

}  // namespace latchkey::cli
