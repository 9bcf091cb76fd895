#include "cli/check_command.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "cli/runner.h"

namespace latchkey::cli {

namespace {

std::string Bytes(double b) {
  char text[32];
  if (b >= 1024.0 * 1024 * 1024) {
    std::snprintf(text, sizeof text, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  } else if (b >= 1024.0 * 1024) {
    std::snprintf(text, sizeof text, "%.1f MiB", b / (1024.0 * 1024));
  } else {
    std::snprintf(text, sizeof text, "%.0f KiB", b / 1024.0);
  }
  return text;
}

// The counterexample as a scenario: the same world in the simulator, its
// path as the script, expecting the same violation. It is replayed once here
// so that the file records the trace hash the replay must reproduce.
void WriteCounterexample(const checker::ExploreConfig& c, const checker::ExploreViolation& v,
                         const CheckOptions& options) {
  Scenario scenario;
  scenario.description = "Counterexample found by latchkey check (" +
                         checker::ExploreConfigToJson(c).dump() + "): " + v.invariant + ": " +
                         v.message + ". The script is its shortest path, step by step.";
  scenario.mutant = options.mutant;
  scenario.expect.present = true;
  scenario.expect.violation = true;
  scenario.expect.invariant = v.invariant;
  if (std::string e = checker::ReplayConfig(c, v.script, scenario.config); !e.empty()) {
    std::printf("no counterexample scenario written: %s\n", e.c_str());
    return;
  }
  ScenarioResult replay = RunScenario(scenario);
  if (replay.violation && replay.violation->name() == v.invariant) {
    scenario.expect.trace_hash = replay.first_trace_hash;
    std::printf("replayed in the simulator: the same violation (%s) after %llu events\n",
                v.invariant.c_str(), static_cast<unsigned long long>(replay.events));
  } else {
    // Kept as found: the file then fails `latchkey replay`, which says how.
    std::printf("replayed in the simulator: NOT the same outcome (%s): %s\n",
                replay.observed.c_str(), replay.detail.c_str());
  }
  if (std::string e = WriteScenarioFile(options.out_path, scenario); !e.empty()) {
    std::printf("error: %s\n", e.c_str());
    return;
  }
  std::printf("counterexample written to %s (replay: %s %s %s)\n", options.out_path.c_str(),
              options.mutant.empty() ? "latchkey" : "latchkey-mutants", "replay",
              options.out_path.c_str());
}

}  // namespace

int RunCheck(CheckOptions options, const std::vector<std::string>& flags_given) {
  checker::ExploreConfig& c = options.config;
  if (options.keep_locks) c.idle_release_us = core::kNever;
  if (!options.config_path.empty()) {
    // The file first; flags given explicitly on the command line override it.
    checker::ExploreConfig from_file;
    std::ifstream in(options.config_path);
    if (!in) {
      std::fprintf(stderr, "error: %s: cannot open\n", options.config_path.c_str());
      return 2;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      std::fprintf(stderr, "error: %s: not valid JSON: %s\n", options.config_path.c_str(),
                   e.what());
      return 2;
    }
    if (std::string e = checker::LoadExploreConfig(j, from_file); !e.empty()) {
      std::fprintf(stderr, "error: %s: %s\n", options.config_path.c_str(), e.c_str());
      return 2;
    }
    nlohmann::json flags = checker::ExploreConfigToJson(c);
    nlohmann::json merged = checker::ExploreConfigToJson(from_file);
    for (const std::string& name : flags_given) {
      if (flags.contains(name)) merged[name] = flags[name];
    }
    c = checker::ExploreConfig{};
    if (std::string e = checker::LoadExploreConfig(merged, c); !e.empty()) {
      std::fprintf(stderr, "error: %s\n", e.c_str());
      return 2;
    }
  }
  if (std::string e = checker::ApplyFaultList(options.faults, c); !e.empty()) {
    std::fprintf(stderr, "error: %s\n", e.c_str());
    return 2;
  }
  if (!SelectMutant(options.mutant)) {
    std::fprintf(
        stderr, "error: --mutant %s: %s\n", options.mutant.c_str(),
        MutantsAvailable() ? "no such planted bug" : "check planted bugs with latchkey-mutants");
    return 2;
  }
  std::printf(
      "check: %u store(s), %u process(es) x %u thread(s), %u session(s), %u attribute(s), "
      "%u request(s) per thread, locks %s; faults: crashes %u, losses %u, duplicates %u, store "
      "restarts %u, reorder %s, lease expiry %s; symmetry reduction %s%s%s\n",
      c.stores, c.processes, c.threads, c.sessions, c.attributes, c.requests_per_thread,
      c.idle_release_us != core::kNever ? "released after use"
      : c.release_when_contended        ? "kept until recalled unless taken from another process"
                                        : "kept until recalled",
      c.crashes, c.losses, c.duplicates, c.store_restarts, c.reorder ? "on" : "off",
      c.lease_expiry ? "on" : "off", c.symmetry ? "on" : "off",
      options.mutant.empty() ? "" : "; planted bug ", options.mutant.c_str());
  std::fflush(stdout);
  double last_line = -1;
  auto progress = [&](const checker::ExploreProgress& p) {
    if (options.quiet) return;
    const checker::ExploreStats& s = *p.stats;
    // A line a second at most: levels can be many and quick.
    if (s.wall_s - last_line < 1.0 && p.frontier != 0) return;
    last_line = s.wall_s;
    std::printf("  depth %3u: %10llu distinct, %11llu generated, frontier %9llu, %8.0f states/s\n",
                p.depth, static_cast<unsigned long long>(s.distinct),
                static_cast<unsigned long long>(s.generated),
                static_cast<unsigned long long>(p.frontier),
                s.wall_s > 0 ? static_cast<double>(s.generated) / s.wall_s : 0.0);
    std::fflush(stdout);
  };
  checker::ExploreResult r = checker::Explore(c, progress);
  SelectMutant("");
  const checker::ExploreStats& s = r.stats;
  // Odds that two distinct states share a 128-bit fingerprint somewhere in
  // the search: about n^2 / 2^129 (birthday bound).
  const double n = static_cast<double>(s.distinct);
  const double odds = n * n / std::pow(2.0, 129);
  std::printf(
      "%s: %llu states generated, %llu distinct, %llu transitions, %llu terminal, depth %u, "
      "%.2f s, %.0f generated/s, %.0f distinct/s\n"
      "  memory: visited set %s (%.1f bytes per state, 128-bit fingerprints; odds of any "
      "collision about %.1e), peak resident %s\n",
      r.violation  ? "VIOLATION"
      : s.complete ? "verified (exhaustive)"
                   : "bounded (not exhaustive)",
      static_cast<unsigned long long>(s.generated), static_cast<unsigned long long>(s.distinct),
      static_cast<unsigned long long>(s.transitions), static_cast<unsigned long long>(s.terminal),
      s.depth, s.wall_s, s.wall_s > 0 ? static_cast<double>(s.generated) / s.wall_s : 0.0,
      s.wall_s > 0 ? n / s.wall_s : 0.0, Bytes(static_cast<double>(s.visited_bytes)).c_str(),
      n > 0 ? static_cast<double>(s.visited_bytes) / n : 0.0, odds,
      Bytes(static_cast<double>(s.peak_rss_bytes)).c_str());
  if (s.symmetry_abandoned) {
    std::printf(
        "  symmetry reduction abandoned: a store could end two tenure holders' leases in one "
        "step, which it does in process-id order (B1), so the search ran unreduced\n");
  }
  if (!r.violation) return 0;
  const checker::ExploreViolation& v = *r.violation;
  std::printf("\nVIOLATION %s after %zu steps (a shortest path)\n  %s\npath:\n",
              v.invariant.c_str(), v.path.size(), v.message.c_str());
  for (std::size_t i = 0; i < v.path.size(); ++i) {
    std::printf("  %3zu. %s\n", i + 1, v.path[i].c_str());
  }
  std::printf("state:\n%s", v.state.c_str());
  WriteCounterexample(c, v, options);
  return 1;
}

}  // namespace latchkey::cli
