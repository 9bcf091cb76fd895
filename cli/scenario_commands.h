// `latchkey run`, `replay`, `fuzz` and `shrink`: the scenario commands.
//
// Exit codes, for all four: 0 pass (outcomes as expected; no violation
// found), 1 a violation or a mismatch with the expected outcome, 2 bad input
// (a missing or malformed file, an impossible option).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace latchkey::cli {

inline constexpr int kExitPass = 0;
inline constexpr int kExitFail = 1;
inline constexpr int kExitBadInput = 2;

struct RunOptions {
  std::vector<std::string> paths;  // files and directories (searched for *.json)
  bool verbose = false;            // print every violation report, not only mismatches
  // If set: a timeline (HTML) of every scenario that mismatched or ended in
  // a violation, as DIR/<scenario>.html (the violating seed, else the first).
  std::string timelines_dir;
};
int RunScenarios(const RunOptions& options);

struct ReplayOptions {
  std::string path;
  std::optional<std::uint64_t> seed;  // default: the scenario's (first) seed
  std::string trace_path;             // ends with a {"ev":"violation",...} line if there was one
  std::string html_path;              // the run's timeline (cli/timeline.h)
};
int ReplayScenario(const ReplayOptions& options);

struct FuzzOptions {
  std::uint64_t seeds = 100;
  std::uint64_t first_seed = 1;
  unsigned jobs = 1;
  bool swarm = false;
  double time_budget_s = 0;               // 0: no limit
  std::string scenario_path;              // the base world; default: the simulator's defaults
  std::string mutant;                     // latchkey-mutants only
  std::string out_dir = "fuzz-failures";  // the failing case, its .min.json, and a timeline
                                          // (.html) of each
  bool check_determinism = false;
  bool shrink = true;
  double shrink_budget_s = 60;
  bool progress = true;  // a progress bar on a terminal, plain lines otherwise
};
int Fuzz(const FuzzOptions& options);

struct ShrinkOptionsCli {
  std::string path;
  std::string out_path;  // default: FILE with .min.json
  double time_budget_s = 60;
};
int ShrinkScenario(const ShrinkOptionsCli& options);

}  // namespace latchkey::cli
