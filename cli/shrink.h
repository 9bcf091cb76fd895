// Shrinking: reduces a failing scenario to a small one that still fails with
// the same invariant (fewer stores, servers, processes, threads, sessions,
// requests and faults; a shorter run; a plainer network and fault schedule).
//
// Greedy and deterministic: candidates are tried in a fixed order, each run
// under the checker; a candidate is kept when it breaks the same invariant
// in no more events than the current one. A candidate that no longer fails
// with the current seed gets a few neighbouring seeds before it is dropped.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "cli/scenario.h"

namespace latchkey::cli {

struct ShrinkOptions {
  double time_budget_s = 60;
  std::uint64_t extra_seeds = 3;  // neighbouring seeds tried per rejected candidate
  std::function<void(const std::string&)> progress;  // one line per kept step
};

struct ShrinkResult {
  std::string error;  // "" on success
  Scenario scenario;  // single seed, expects the violation, names its trace hash
  std::string invariant;
  std::uint64_t events_before = 0, events_after = 0;
  std::uint64_t runs = 0;
  double wall_s = 0;
};

ShrinkResult Shrink(const Scenario& failing, const ShrinkOptions& options = {});

}  // namespace latchkey::cli
