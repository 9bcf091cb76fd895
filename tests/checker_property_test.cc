// RapidCheck property over whole simulation configurations: whatever the
// topology, workload, timing, network and fault mix (random rates, swarm,
// scheduled faults of every kind), a seeded run of the clean core under the
// property checker (every online invariant after every event, then the
// history and liveness checks) finds no violation.
//
// Every configuration is valid by construction (sim::ValidateConfig accepts
// it; scheduled faults name existing targets), and runs are short: a fault
// phase of at most 1.5 s and a quiet phase of 3-5 s of simulated time, at
// most 15 requests per thread. Each draw shrinks towards the simplest world
// (one store, one process, one thread, no faults, no loss, "never" timers),
// so a failure shrinks to a minimal configuration, printed as the JSON that
// `latchkey sim --check --seed S --config FILE` replays.
//
// The same property is run against a planted bug by
// checker_property_mutant_test (which compiles this file against the mutant
// core, where the clean-core test below is left out), to show it can fail.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>

#include "checker/checker.h"
#include "sim/config.h"
#include "sim/simulator.h"
#include "tests/rc_support.h"

namespace latchkey::checker::property {

// One generated run: a configuration and the simulator's seed.
struct SimCase {
  sim::SimConfig config;
  std::uint64_t seed = 0;
};

// How RapidCheck prints a (shrunk) counterexample: the replayable JSON.
void showValue(const SimCase& c, std::ostream& os) {
  os << "seed " << c.seed << ", config " << sim::ConfigToJson(c.config).dump();
}

namespace {

using core::Time;
using sim::FaultKind;

// A value in [lo, hi] (inclusive), drawn uniformly whatever RapidCheck's
// size parameter (which would otherwise narrow every range in the first
// cases), shrinking towards lo.
template <class T>
T Between(T lo, T hi) {
  return *rc::gen::resize(rc::kNominalSize, rc::gen::inRange<T>(lo, hi + 1));
}

// One of `n` choices, shrinking towards choice 0.
int Choice(int n) { return Between(0, n - 1); }

// 0 about half the time (shrinks to 0), else a value in [1, max].
std::uint32_t SometimesPpm(std::uint32_t max) {
  return Choice(2) == 0 ? 0 : Between<std::uint32_t>(1, max);
}

// How many targets a scheduled fault of `kind` has (sim::ValidateConfig).
std::uint32_t Targets(const sim::SimConfig& c, FaultKind kind) {
  switch (kind) {
    case FaultKind::kProcessCrash:
    case FaultKind::kPause:
    case FaultKind::kDriftBeyond:
      return c.processes();
    case FaultKind::kServerCrash:
      return c.servers;
    case FaultKind::kStoreCrash:
      return c.stores;
    case FaultKind::kPartition:
    case FaultKind::kClog:
      return c.stores + c.processes();
    case FaultKind::kInvalidate:
      return c.workload.sessions;
  }
  return 1;
}

SimCase DrawCase() {
  SimCase out;
  sim::SimConfig& c = out.config;

  // Topology.
  c.stores = Between<std::uint32_t>(1, 3);
  c.servers = Between<std::uint32_t>(1, 3);
  c.processes_per_server = Between<std::uint32_t>(1, 3);
  c.threads_per_process = Between<std::uint32_t>(1, 4);

  // Workload.
  sim::WorkloadConfig& w = c.workload;
  w.sessions = Between<std::uint32_t>(1, 6);
  w.attributes = Between<std::uint32_t>(1, 4);
  w.requests_per_thread = Between<std::uint32_t>(1, 15);
  // Up to 100 ms of thinking between requests, so that the requests of a
  // thread can span the whole fault phase.
  w.think_us = Between<Time>(0, 100'000);
  w.hold_us = Between<Time>(0, 20'000);
  w.affinity_ppm = Between<std::uint32_t>(0, 1'000'000);
  w.zipf = Choice(2) == 1;
  if (w.zipf) w.zipf_s = Between(0, 200) / 100.0;
  w.shared_ppm = SometimesPpm(1'000'000);
  w.whole_ppm = SometimesPpm(1'000'000);
  w.try_ppm = SometimesPpm(1'000'000);
  w.portion_max = Between<std::uint32_t>(0, 3);
  w.wait_timeout_us = Choice(2) == 0 ? core::kNever : Between<Time>(1'000, 2'000'000);

  // Timing. Any drift up to 2000 ppm leaves a usable lease of at least
  // 100 ms (2 x 2000 ppm x 100 ms = 0.4 ms, plus at most 20 ms margin).
  c.lease_us = Between<Time>(100'000, 1'000'000);
  c.recall_retry_us = Between<Time>(10'000, 300'000);
  c.retry_us = Between<Time>(10'000, 100'000);
  c.expiry_margin_us = Between<Time>(0, 20'000);
  c.drift_ppm = Between<std::uint32_t>(0, 2'000);
  switch (Choice(3)) {
    case 0:
      c.idle_release_us = core::kNever;
      break;
    case 1:
      c.idle_release_us = 0;
      break;
    default:
      c.idle_release_us = Between<Time>(1, 500'000);
      break;
  }
  c.release_when_contended = Choice(2) == 0;
  c.session_idle_us = Choice(2) == 0 ? core::kNever : Between<Time>(50'000, 2'000'000);

  // Network (the loss, duplication and reordering act in the fault phase).
  c.network.latency_min_us = Between<Time>(0, 2'000);
  c.network.latency_max_us = c.network.latency_min_us + Between<Time>(0, 5'000);
  c.network.loss_ppm = SometimesPpm(100'000);
  c.network.duplicate_ppm = SometimesPpm(100'000);
  c.network.reorder_ppm = SometimesPpm(100'000);
  c.network.reorder_max_us = Between<Time>(0, 20'000);

  // Phases: short runs.
  c.fault_phase_us = Between<Time>(0, 1'500'000);
  c.quiet_phase_us = Between<Time>(3'000'000, 5'000'000);

  // Faults: swarm (which draws its own rates and network knobs per seed) or
  // not, random rates of each kind, and a few scheduled faults of any kind.
  c.swarm = Choice(2) == 1;
  c.faults.check_every_us = Between<Time>(1'000, 50'000);
  c.faults.max_duration_us = Between<Time>(1'000, 500'000);
  for (std::uint32_t& ppm : c.faults.ppm) ppm = SometimesPpm(20'000);
  const int scheduled = Between(0, 4);
  for (int i = 0; i < scheduled; ++i) {
    sim::ScheduledFault f;
    f.kind = static_cast<FaultKind>(Between(0, sim::kFaultKinds - 1));
    f.at_us = Between<Time>(0, c.fault_phase_us);
    f.target = Between<std::uint32_t>(0, Targets(c, f.kind) - 1);
    f.duration_us = Between<Time>(1'000, 500'000);
    f.variant = Between<std::uint32_t>(0, 2);
    c.schedule.push_back(f);
  }

  out.seed = Between<std::uint64_t>(1, 1'000'000);
  return out;
}

}  // namespace

rc::Gen<SimCase> GenSimCase() {
  return rc::gen::exec([] { return DrawCase(); });
}

// The property: the drawn run violates no invariant.
void NoViolationOnAnyConfiguration() {
  const SimCase run = *GenSimCase();
  const std::string invalid = sim::ValidateConfig(run.config);
  RC_ASSERT(invalid == "");  // by construction: a generator bug otherwise
  sim::Simulator simulator(run.config, run.seed);
  CheckerOptions options;
  options.verify_caches = true;  // the facts the checker keeps are asserted current
  Checker checker(options);
  simulator.AddObserver(&checker);
  simulator.Run();
  checker.Finish(simulator);
  if (checker.violation().has_value()) {
    std::ostringstream message;
    message << "seed " << run.seed << "\nconfig " << sim::ConfigToJson(run.config).dump() << "\n"
            << checker.violation()->Report();
    RC_FAIL(message.str());
  }
}

}  // namespace latchkey::checker::property

// The mutant build runs the property against a planted bug instead
// (tests/checker_property_mutant_test.cc).
#ifndef LATCHKEY_MUTANTS
namespace {

// Cases per run: runs are short (about 700 events on average), so this takes
// about 1 s in the release build and 20 s in the sanitizer (-O0) build.
constexpr int kCases = 1000;

TEST(CheckerProperty, NoConfigurationOfTheCleanCoreViolatesAnything) {
  latchkey::testing::ExpectHolds(
      "CheckerProperty/NoConfigurationOfTheCleanCoreViolatesAnything",
      [] { latchkey::checker::property::NoViolationOnAnyConfiguration(); }, kCases, 100);
}

}  // namespace
#endif
