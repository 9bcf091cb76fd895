#include "cli/sim_command.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "checker/checker.h"
#include "sim/config.h"
#include "sim/simulator.h"

namespace latchkey::cli {

namespace {

nlohmann::json SummaryJson(const sim::SimSummary& s, double wall_seconds) {
  nlohmann::json faults = nlohmann::json::object();
  for (int k = 0; k < sim::kFaultKinds; ++k) {
    faults[std::string(sim::FaultKindName(static_cast<sim::FaultKind>(k)))] = s.faults[k];
  }
  return {{"seed", s.seed},
          {"requests_completed", s.requests_completed},
          {"failed_by_reason", s.failed_by_reason},
          {"requests_cut_by_crash", s.requests_cut_by_crash},
          {"unfinished_threads", s.unfinished_threads},
          {"grants", s.grants},
          {"recalls", s.recalls},
          {"lease_expiries_store", s.lease_expiries},
          {"lease_expiries_agent", s.agent_lease_expiries},
          {"wait_p50_us", s.wait_p50_us},
          {"wait_p99_us", s.wait_p99_us},
          {"faults", faults},
          {"messages_sent", s.messages_sent},
          {"messages_lost", s.messages_lost},
          {"messages_duplicated", s.messages_duplicated},
          {"events", s.events},
          {"simulated_us", s.simulated_us},
          {"wall_s", wall_seconds},
          {"events_per_s", wall_seconds > 0 ? static_cast<double>(s.events) / wall_seconds : 0.0},
          {"acknowledged_increments", s.acknowledged_increments},
          {"counter_total", s.counter_total},
          {"unknown_increments", s.unknown_increments},
          {"trace_hash", s.trace_hash}};
}

}  // namespace

void PrintSimSummary(const sim::SimSummary& s, double wall_seconds, const std::string& reproduce) {
  std::printf("seed %llu: %llu requests completed", static_cast<unsigned long long>(s.seed),
              static_cast<unsigned long long>(s.requests_completed));
  std::uint64_t failed = 0;
  for (const auto& [reason, n] : s.failed_by_reason) failed += n;
  std::printf(", %llu failed", static_cast<unsigned long long>(failed));
  if (failed != 0) {
    std::printf(" (");
    const char* sep = "";
    for (const auto& [reason, n] : s.failed_by_reason) {
      std::printf("%s%s %llu", sep, reason.c_str(), static_cast<unsigned long long>(n));
      sep = ", ";
    }
    std::printf(")");
  }
  std::printf(", %llu cut by crashes\n", static_cast<unsigned long long>(s.requests_cut_by_crash));
  std::printf("  grants %llu, recalls %llu, lease expiries %llu (store) / %llu (agents)\n",
              static_cast<unsigned long long>(s.grants), static_cast<unsigned long long>(s.recalls),
              static_cast<unsigned long long>(s.lease_expiries),
              static_cast<unsigned long long>(s.agent_lease_expiries));
  std::printf("  queue wait p50 %.3f ms, p99 %.3f ms (simulated)\n", s.wait_p50_us / 1000.0,
              s.wait_p99_us / 1000.0);
  std::printf("  faults:");
  for (int k = 0; k < sim::kFaultKinds; ++k) {
    std::printf(" %s %llu", std::string(sim::FaultKindName(static_cast<sim::FaultKind>(k))).c_str(),
                static_cast<unsigned long long>(s.faults[k]));
  }
  std::printf("\n  messages: %llu sent, %llu lost, %llu duplicated\n",
              static_cast<unsigned long long>(s.messages_sent),
              static_cast<unsigned long long>(s.messages_lost),
              static_cast<unsigned long long>(s.messages_duplicated));
  std::printf(
      "  counter: %llu acknowledged increments, %llu in the stores, %llu of unknown outcome\n",
      static_cast<unsigned long long>(s.acknowledged_increments),
      static_cast<unsigned long long>(s.counter_total),
      static_cast<unsigned long long>(s.unknown_increments));
  double speedup = wall_seconds > 0 ? s.simulated_us / 1e6 / wall_seconds : 0;
  std::printf("  simulated %.3f s in %.3f s wall (%.0fx), %llu events, %.0f events/s\n",
              s.simulated_us / 1e6, wall_seconds, speedup,
              static_cast<unsigned long long>(s.events),
              wall_seconds > 0 ? s.events / wall_seconds : 0.0);
  if (s.unfinished_threads != 0) {
    std::printf(
        "  WARNING: %llu threads did not finish their requests by the end of the quiet phase\n",
        static_cast<unsigned long long>(s.unfinished_threads));
  }
  std::printf("  trace hash %016llx\n", static_cast<unsigned long long>(s.trace_hash));
  std::printf("reproduce: %s\n", reproduce.c_str());
}

namespace {

// A campaign: one line per seed and a closing summary a person reads at a
// glance. Stops at the first violation and prints its report.
int RunCampaign(const SimOptions& options, const sim::SimConfig& config) {
  std::uint64_t violations = 0, nondeterministic = 0, events = 0, requests = 0, failed = 0,
                faults = 0;
  auto start = std::chrono::steady_clock::now();
  for (std::uint64_t seed = options.seed; seed < options.seed + options.seeds; ++seed) {
    sim::Simulator simulator(config, seed);
    checker::Checker property_checker;
    if (options.check) simulator.AddObserver(&property_checker);
    sim::SimSummary s = simulator.Run();
    if (options.check) property_checker.Finish(simulator);
    std::uint64_t seed_failed = 0, seed_faults = 0;
    for (const auto& [reason, n] : s.failed_by_reason) seed_failed += n;
    for (std::uint64_t n : s.faults) seed_faults += n;
    bool same = true;
    if (options.check_determinism)
      same = sim::Simulator(config, seed).Run().trace_hash == s.trace_hash;
    const auto& v = property_checker.violation();
    std::printf(
        "  seed %-6llu %6llu requests %4llu failed %3llu faults %8llu events  hash %016llx  %s\n",
        static_cast<unsigned long long>(seed),
        static_cast<unsigned long long>(s.requests_completed),
        static_cast<unsigned long long>(seed_failed), static_cast<unsigned long long>(seed_faults),
        static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.trace_hash),
        v       ? "VIOLATION"
        : !same ? "NONDETERMINISTIC"
                : "ok");
    events += s.events;
    requests += s.requests_completed;
    failed += seed_failed;
    faults += seed_faults;
    if (!same) ++nondeterministic;
    if (v) {
      ++violations;
      std::fprintf(stderr, "%s", v->Report().c_str());
      std::fprintf(stderr, "reproduce: latchkey sim --check --seed %llu%s%s\n",
                   static_cast<unsigned long long>(seed),
                   options.config_path.empty() ? "" : " --config ", options.config_path.c_str());
      break;
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "%llu seeds: %llu requests completed, %llu failed with a reason, %llu faults injected, "
      "%llu events in %.2f s (%.0f events/s)\n",
      static_cast<unsigned long long>(options.seeds), static_cast<unsigned long long>(requests),
      static_cast<unsigned long long>(failed), static_cast<unsigned long long>(faults),
      static_cast<unsigned long long>(events), wall, wall > 0 ? events / wall : 0.0);
  std::printf("%s: %llu invariant violations%s, %llu nondeterministic seeds%s\n",
              violations + nondeterministic == 0 ? "PASS" : "FAIL",
              static_cast<unsigned long long>(violations), options.check ? "" : " (checker off)",
              static_cast<unsigned long long>(nondeterministic),
              options.check_determinism ? "" : " (not checked)");
  return violations + nondeterministic == 0 ? 0 : 1;
}

}  // namespace

int RunSim(const SimOptions& options) {
  sim::SimConfig config;
  if (!options.config_path.empty()) {
    std::ifstream in(options.config_path);
    if (!in) {
      std::fprintf(stderr, "error: %s: cannot open\n", options.config_path.c_str());
      return 2;
    }
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded()) {
      std::fprintf(stderr, "error: %s: not valid JSON\n", options.config_path.c_str());
      return 2;
    }
    // A scenario file works too: its seed and expectation are not needed here.
    std::string error = sim::LoadConfig(
        j, config, {"description", "requirements", "seed", "seeds", "mutant", "expect"});
    if (!error.empty()) {
      std::fprintf(stderr, "error: %s: %s\n", options.config_path.c_str(), error.c_str());
      return 2;
    }
  }
  if (options.seeds > 1) return RunCampaign(options, config);
  std::ofstream trace;
  sim::Simulator simulator(config, options.seed);
  if (!options.trace_path.empty()) {
    trace.open(options.trace_path);
    if (!trace) {
      std::fprintf(stderr, "error: %s: cannot write the trace\n", options.trace_path.c_str());
      return 2;
    }
    simulator.SetTrace(&trace);
  }
  checker::Checker property_checker;
  if (options.check) simulator.AddObserver(&property_checker);
  auto start = std::chrono::steady_clock::now();
  sim::SimSummary summary = simulator.Run();
  if (!simulator.script_error().empty()) {
    std::fprintf(stderr, "error: %s\n", simulator.script_error().c_str());
    return 2;
  }
  if (options.check) property_checker.Finish(simulator);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (options.json) {
    std::cout << SummaryJson(summary, wall).dump() << "\n";
  } else {
    PrintSimSummary(summary, wall,
                    "latchkey sim --seed " + std::to_string(options.seed) +
                        (options.config_path.empty() ? "" : " --config " + options.config_path));
  }
  int code = 0;
  if (options.check) {
    if (const auto& v = property_checker.violation()) {
      std::fprintf(stderr, "%s", v->Report().c_str());
      if (!options.config_path.empty()) {
        std::fprintf(stderr, "reproduce: latchkey sim --check --seed %llu --config %s\n",
                     static_cast<unsigned long long>(options.seed), options.config_path.c_str());
      }
      code = 1;
    } else {
      std::printf("check: no invariant violated\n");
    }
  }
  if (options.check_determinism) {
    // Same seed, same configuration, tracing off: the hash must not change.
    sim::SimSummary again = sim::Simulator(config, options.seed).Run();
    bool same = again.trace_hash == summary.trace_hash;
    std::printf("determinism: second run hash %016llx: %s\n",
                static_cast<unsigned long long>(again.trace_hash), same ? "same" : "DIFFERENT");
    if (!same) code = 1;
  }
  return code;
}

}  // namespace latchkey::cli
