// Simulator throughput: simulated events per second on one core, with
// tracing off and on, with the property checker off and on (every online
// check after every event, then the history and liveness checks at the end),
// and how much faster than real time a workload with 1 ms network latency
// runs. Prints a table; `--json` prints JSON lines.
//
//   ./build/bench/sim_bench [--runs N] [--requests R] [--trace off|on|both]
//                           [--check off|on|both] [--workload standard|paced] [--json]
//
// --check defaults to off (the plain simulator). With --check on or both,
// --trace defaults to off: the cost of checking is measured without tracing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "checker/checker.h"
#include "sim/config.h"
#include "sim/simulator.h"

namespace {

using latchkey::sim::SimConfig;
using latchkey::sim::SimSummary;
using latchkey::sim::Simulator;

// The standard workload: 1 store, 4 servers x 2 processes x 4 threads, 64
// sessions, uniform popularity, 0.9 affinity, lock caching, no faults, network
// latency 0.5-1.5 ms (1 ms mean).
SimConfig StandardWorkload(std::uint32_t requests) {
  SimConfig c;
  c.servers = 4;
  c.processes_per_server = 2;
  c.threads_per_process = 4;
  c.workload.sessions = 64;
  c.workload.requests_per_thread = requests;
  c.workload.think_us = 1'000;
  c.workload.hold_us = 200;
  c.network.latency_min_us = 500;
  c.network.latency_max_us = 1'500;
  c.fault_phase_us = 0;
  c.quiet_phase_us = 3'600'000'000ULL;
  return c;
}

// The same world with interactive pacing: a thread thinks up to 1 s between
// requests (a user reading a page) instead of 1 ms. Events are sparser in
// simulated time, so this is the one that shows how much faster than real
// time a realistic cluster runs; the standard one is deliberately dense.
SimConfig PacedWorkload(std::uint32_t requests) {
  SimConfig c = StandardWorkload(requests);
  c.workload.think_us = 1'000'000;
  return c;
}

struct Measurement {
  double events_per_s;
  double speedup;  // simulated time / wall time
  std::uint64_t events;
  double wall_s;
  std::uint64_t hash;
  double finish_s;  // of wall_s: the checker's end-of-run checks
};

// With `check`, a checker observes every event and checks the finished run
// (inside the timed part); a violation is reported and ends the benchmark.
Measurement Measure(const SimConfig& c, std::uint64_t seed, bool trace, bool check) {
  std::ofstream sink;
  Simulator sim(c, seed);
  if (trace) {
    sink.open("/dev/null");
    sim.SetTrace(&sink);
  }
  latchkey::checker::Checker checker;
  if (check) sim.AddObserver(&checker);
  auto start = std::chrono::steady_clock::now();
  SimSummary s = sim.Run();
  auto finish_start = std::chrono::steady_clock::now();
  if (check) checker.Finish(sim);
  auto end = std::chrono::steady_clock::now();
  double wall = std::chrono::duration<double>(end - start).count();
  double finish = std::chrono::duration<double>(end - finish_start).count();
  if (checker.violation().has_value()) {
    std::fprintf(stderr, "%s", checker.violation()->Report().c_str());
    std::exit(1);
  }
  return {static_cast<double>(s.events) / wall,
          static_cast<double>(s.simulated_us) / 1e6 / wall,
          s.events,
          wall,
          s.trace_hash,
          finish};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  std::uint32_t requests = 2'000;
  bool json = false;
  std::vector<bool> modes = {false, true};
  std::vector<bool> checks = {false};  // default: the plain simulator, as before
  bool trace_given = false;
  bool paced = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--requests") == 0 && i + 1 < argc) {
      requests = static_cast<std::uint32_t>(std::max(1, std::atoi(argv[++i])));
    } else if (std::strcmp(argv[i], "--trace") == 0 && i + 1 < argc) {
      std::string mode = argv[++i];
      trace_given = true;
      modes = mode == "off"  ? std::vector<bool>{false}
              : mode == "on" ? std::vector<bool>{true}
                             : std::vector<bool>{false, true};
    } else if (std::strcmp(argv[i], "--check") == 0 && i + 1 < argc) {
      std::string mode = argv[++i];
      checks = mode == "off"  ? std::vector<bool>{false}
               : mode == "on" ? std::vector<bool>{true}
                              : std::vector<bool>{false, true};
    } else if (std::strcmp(argv[i], "--workload") == 0 && i + 1 < argc &&
               (std::strcmp(argv[i + 1], "standard") == 0 ||
                std::strcmp(argv[i + 1], "paced") == 0)) {
      paced = std::strcmp(argv[++i], "paced") == 0;
    } else if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else {
      std::fprintf(stderr,
                   "usage: sim_bench [--runs N] [--requests R] [--trace off|on|both] "
                   "[--check off|on|both] [--workload standard|paced] [--json]\n");
      return 2;
    }
  }
  if (!trace_given && checks.back()) modes = {false};
  // Paced runs are 1000x sparser: fewer requests keep a run short.
  SimConfig c = paced ? PacedWorkload(std::max(1u, requests / 10)) : StandardWorkload(requests);
  // events/s with the checker off, per tracing mode: the base of the ratio.
  std::vector<double> unchecked(2, 0.0);
  for (bool check : checks) {
    for (bool trace : modes) {
      std::vector<double> eps, speedup, finish_share;
      Measurement last{};
      for (int r = 0; r < runs; ++r) {
        last = Measure(c, 1 + static_cast<std::uint64_t>(r), trace, check);
        eps.push_back(last.events_per_s);
        speedup.push_back(last.speedup);
        finish_share.push_back(last.finish_s / last.wall_s);
      }
      const double median = Median(eps);
      if (!check) unchecked[trace] = median;
      const double ratio = check && unchecked[trace] > 0 ? median / unchecked[trace] : 0;
      if (json) {
        std::printf(
            "{\"bench\":\"sim\",\"workload\":\"%s\",\"trace\":%s,\"check\":%s,\"runs\":%d,\"events_"
            "per_run\":%llu,"
            "\"events_per_s_median\":%.0f,\"speedup_median\":%.0f",
            paced ? "paced" : "standard", trace ? "true" : "false", check ? "true" : "false", runs,
            static_cast<unsigned long long>(last.events), median, Median(speedup));
        std::printf(",\"last_trace_hash\":%llu", static_cast<unsigned long long>(last.hash));
        if (check) {
          std::printf(",\"vs_unchecked\":%.3f,\"end_of_run_share\":%.3f", ratio,
                      Median(finish_share));
        }
        std::printf("}\n");
      } else {
        std::printf(
            "%s  tracing %-3s  checks %-3s  %d runs x %llu events: median %.2f M events/s, "
            "simulated "
            "time %.0fx faster than wall",
            paced ? "paced" : "standard", trace ? "on" : "off", check ? "on" : "off", runs,
            static_cast<unsigned long long>(last.events), median / 1e6, Median(speedup));
        if (check) {
          std::printf(", %.2fx the unchecked rate (end-of-run checks: %.1f%% of the time)", ratio,
                      100 * Median(finish_share));
        }
        std::printf("\n");
      }
    }
  }
  return 0;
}
