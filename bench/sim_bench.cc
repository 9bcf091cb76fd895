// Simulator throughput: simulated events per second on one core, with
// tracing off and on, and how much faster than real time a workload with
// 1 ms network latency runs. Prints a table; `--json` prints JSON lines.
//
//   ./build/bench/sim_bench [--runs N] [--requests R] [--trace off|on|both] [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

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

struct Measurement {
  double events_per_s;
  double speedup;  // simulated time / wall time
  std::uint64_t events;
  double wall_s;
  std::uint64_t hash;
};

Measurement Measure(const SimConfig& c, std::uint64_t seed, bool trace) {
  std::ofstream sink;
  Simulator sim(c, seed);
  if (trace) {
    sink.open("/dev/null");
    sim.SetTrace(&sink);
  }
  auto start = std::chrono::steady_clock::now();
  SimSummary s = sim.Run();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {static_cast<double>(s.events) / wall, static_cast<double>(s.simulated_us) / 1e6 / wall,
          s.events, wall, s.trace_hash};
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
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--requests") == 0 && i + 1 < argc) {
      requests = static_cast<std::uint32_t>(std::max(1, std::atoi(argv[++i])));
    } else if (std::strcmp(argv[i], "--trace") == 0 && i + 1 < argc) {
      std::string mode = argv[++i];
      modes = mode == "off"  ? std::vector<bool>{false}
              : mode == "on" ? std::vector<bool>{true}
                             : std::vector<bool>{false, true};
    } else if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else {
      std::fprintf(stderr,
                   "usage: sim_bench [--runs N] [--requests R] [--trace off|on|both] [--json]\n");
      return 2;
    }
  }
  SimConfig c = StandardWorkload(requests);
  for (bool trace : modes) {
    std::vector<double> eps, speedup;
    Measurement last{};
    for (int r = 0; r < runs; ++r) {
      last = Measure(c, 1 + static_cast<std::uint64_t>(r), trace);
      eps.push_back(last.events_per_s);
      speedup.push_back(last.speedup);
    }
    if (json) {
      std::printf(
          "{\"bench\":\"sim\",\"trace\":%s,\"runs\":%d,\"events_per_run\":%llu,"
          "\"events_per_s_median\":%.0f,\"speedup_median\":%.0f}\n",
          trace ? "true" : "false", runs, static_cast<unsigned long long>(last.events), Median(eps),
          Median(speedup));
    } else {
      std::printf(
          "tracing %-3s  %d runs x %llu events: median %.2f M events/s, simulated time %.0fx "
          "faster than wall\n",
          trace ? "on" : "off", runs, static_cast<unsigned long long>(last.events),
          Median(eps) / 1e6, Median(speedup));
    }
  }
  return 0;
}
