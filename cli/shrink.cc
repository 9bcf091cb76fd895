#include "cli/shrink.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "cli/runner.h"

namespace latchkey::cli {

namespace {

using sim::FaultKind;
using sim::SimConfig;

struct Shrinker {
  const ShrinkOptions& options;
  std::string invariant;
  SimConfig best;
  std::uint64_t seed = 0;
  std::uint64_t events = 0;  // of the best so far
  core::Time violation_at = 0;
  std::uint64_t runs = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  bool OutOfTime() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
           options.time_budget_s;
  }

  // Keeps `candidate` if it breaks the same invariant in no more events.
  bool Try(const SimConfig& candidate, const char* what) {
    if (OutOfTime() || !sim::ValidateConfig(candidate).empty()) return false;
    for (std::uint64_t k = 0; k <= options.extra_seeds; ++k) {
      const std::uint64_t s = seed + k;
      SeedRun run = RunSeed(candidate, s);
      ++runs;
      if (run.violation && run.violation->name() == invariant && run.summary.events <= events) {
        best = candidate;
        seed = s;
        events = run.summary.events;
        violation_at = run.violation->time;
        if (options.progress) {
          options.progress(std::string(what) + ": " + std::to_string(events) + " events, seed " +
                           std::to_string(seed));
        }
        return true;
      }
      if (OutOfTime()) return false;
    }
    return false;
  }

  // Drops scheduled faults whose target no longer exists.
  static void DropDanglingFaults(SimConfig& c) {
    std::vector<sim::ScheduledFault> kept;
    for (const sim::ScheduledFault& f : c.schedule) {
      SimConfig probe = c;
      probe.schedule = {f};
      if (sim::ValidateConfig(probe).empty()) kept.push_back(f);
    }
    c.schedule = std::move(kept);
  }

  // A smaller value for a count, tried as: 1, half, one less.
  template <class Field>
  bool ShrinkCount(Field field, std::uint32_t floor, const char* what) {
    bool any = false;
    for (;;) {
      std::uint32_t now = field(best);
      if (now <= floor) return any;
      bool kept = false;
      for (std::uint32_t next : {floor, std::max(floor, now / 2), now - 1}) {
        if (next >= now) continue;
        SimConfig c = best;
        field(c) = next;
        DropDanglingFaults(c);
        if (Try(c, what)) {
          kept = any = true;
          break;
        }
      }
      if (!kept) return any;
    }
  }

  template <class Field, class Value>
  bool Set(Field field, Value value, const char* what) {
    if (field(best) == value) return false;
    SimConfig c = best;
    field(c) = value;
    return Try(c, what);
  }

  bool ShrinkTime() {
    bool any = false;
    // Nothing after the violation matters to a safety violation; a liveness
    // one needs the quiet phase, so each cut is only a candidate.
    const core::Time end = violation_at + 1;
    if (end < best.end_us()) {
      SimConfig c = best;
      c.fault_phase_us = std::min(c.fault_phase_us, end);
      c.quiet_phase_us = end - c.fault_phase_us;
      std::erase_if(c.schedule, [&](const sim::ScheduledFault& f) { return f.at_us >= end; });
      any |= Try(c, "run ends at the violation");
    }
    while (best.quiet_phase_us > 1'000) {
      SimConfig c = best;
      c.quiet_phase_us /= 2;
      if (!Try(c, "shorter quiet phase")) break;
      any = true;
    }
    return any;
  }

  bool ShrinkSchedule() {
    bool any = false;
    // Halves first, then one fault at a time (ddmin's coarse and fine steps).
    for (std::size_t chunk = std::max<std::size_t>(best.schedule.size() / 2, 1); chunk >= 1;
         chunk /= 2) {
      for (std::size_t i = 0; i < best.schedule.size();) {
        SimConfig c = best;
        auto from = c.schedule.begin() + static_cast<std::ptrdiff_t>(i);
        c.schedule.erase(
            from, from + static_cast<std::ptrdiff_t>(std::min(chunk, c.schedule.size() - i)));
        if (Try(c, "fewer scheduled faults")) {
          any = true;
        } else {
          i += chunk;
        }
      }
      if (chunk == 1) break;
    }
    for (std::size_t i = 0; i < best.schedule.size(); ++i) {
      while (best.schedule[i].duration_us > 1'000) {
        SimConfig c = best;
        c.schedule[i].duration_us /= 2;
        if (!Try(c, "shorter fault")) break;
        any = true;
      }
    }
    return any;
  }

  bool Pass() {
    bool any = false;
    any |= ShrinkTime();
    any |= ShrinkSchedule();
    any |= ShrinkCount([](SimConfig& c) -> std::uint32_t& { return c.stores; }, 1, "fewer stores");
    any |=
        ShrinkCount([](SimConfig& c) -> std::uint32_t& { return c.servers; }, 1, "fewer servers");
    any |= ShrinkCount([](SimConfig& c) -> std::uint32_t& { return c.processes_per_server; }, 1,
                       "fewer processes");
    any |= ShrinkCount([](SimConfig& c) -> std::uint32_t& { return c.threads_per_process; }, 1,
                       "fewer threads");
    any |=
        ShrinkCount([](SimConfig& c) -> std::uint32_t& { return c.workload.requests_per_thread; },
                    1, "fewer requests");
    any |= ShrinkCount([](SimConfig& c) -> std::uint32_t& { return c.workload.sessions; }, 1,
                       "fewer sessions");
    any |= ShrinkCount([](SimConfig& c) -> std::uint32_t& { return c.workload.attributes; }, 1,
                       "fewer attributes");
    for (int k = 0; k < sim::kRandomFaultKinds; ++k) {
      any |= Set([k](SimConfig& c) -> std::uint32_t& { return c.faults.ppm[k]; }, 0u,
                 "one random fault kind off");
    }
    any |= Set([](SimConfig& c) -> std::uint32_t& { return c.network.loss_ppm; }, 0u, "no loss");
    any |= Set([](SimConfig& c) -> std::uint32_t& { return c.network.duplicate_ppm; }, 0u,
               "no duplicates");
    any |= Set([](SimConfig& c) -> std::uint32_t& { return c.network.reorder_ppm; }, 0u,
               "no reordering");
    any |= Set([](SimConfig& c) -> core::Time& { return c.network.latency_max_us; },
               best.network.latency_min_us, "fixed latency");
    any |=
        Set([](SimConfig& c) -> std::uint32_t& { return c.workload.try_ppm; }, 0u, "no try-locks");
    any |= Set([](SimConfig& c) -> std::uint32_t& { return c.workload.whole_ppm; }, 0u,
               "no whole-session locks");
    any |= Set([](SimConfig& c) -> std::uint32_t& { return c.workload.shared_ppm; }, 0u,
               "no shared locks");
    any |= Set([](SimConfig& c) -> std::uint32_t& { return c.workload.portion_max; }, 0u,
               "smallest portions");
    any |= Set([](SimConfig& c) -> bool& { return c.workload.zipf; }, false, "uniform sessions");
    return any;
  }
};

}  // namespace

ShrinkResult Shrink(const Scenario& failing, const ShrinkOptions& options) {
  ShrinkResult result;
  const auto start = std::chrono::steady_clock::now();
  if (!SelectMutant(failing.mutant)) {
    result.error = "planted bug " + failing.mutant + ": shrink it with latchkey-mutants";
    return result;
  }
  // The first failing seed and its invariant.
  Shrinker s{options, "", failing.config};
  bool found = false;
  for (std::uint64_t i = 0; i < failing.seed_count && !found; ++i) {
    SeedRun run = RunSeed(failing.config, failing.first_seed + i);
    ++s.runs;
    if (!run.violation) continue;
    found = true;
    s.invariant = run.violation->name();
    s.seed = failing.first_seed + i;
    s.events = run.summary.events;
    s.violation_at = run.violation->time;
  }
  if (!found) {
    SelectMutant("");
    result.error = "no seed of the scenario fails: nothing to shrink";
    return result;
  }
  if (failing.expect.present && failing.expect.violation &&
      failing.expect.invariant != s.invariant) {
    SelectMutant("");
    result.error = "the scenario expects " + failing.expect.invariant + " but seed " +
                   std::to_string(s.seed) + " violates " + s.invariant;
    return result;
  }
  result.events_before = s.events;
  result.invariant = s.invariant;

  // Swarm draws become explicit rates (exactly the same run), then the
  // random faults become a schedule (the same faults at the same times).
  if (s.best.swarm) {
    sim::Simulator probe(s.best, s.seed);
    SimConfig c = s.best;
    c.swarm = false;
    std::copy(probe.effective_fault_ppm(), probe.effective_fault_ppm() + sim::kRandomFaultKinds,
              c.faults.ppm);
    c.network = probe.effective_network();
    s.Try(c, "swarm draws made explicit");
  }
  {
    sim::Simulator probe(s.best, s.seed);
    probe.Run();
    SimConfig c = s.best;
    c.schedule = probe.faults();
    std::fill(std::begin(c.faults.ppm), std::end(c.faults.ppm), 0u);
    s.Try(c, "random faults made a schedule");
  }
  while (!s.OutOfTime() && s.Pass()) {
  }
  SelectMutant("");

  Scenario& out = result.scenario;
  out.description = "Shrunk by latchkey shrink from " +
                    (failing.path.empty() ? std::string("a failing run") : failing.path) + " (" +
                    std::to_string(result.events_before) + " events) to " +
                    std::to_string(s.events) + " events; still violates " + s.invariant + ".";
  out.requirements = failing.requirements;
  out.first_seed = s.seed;
  out.seed_count = 1;
  out.mutant = failing.mutant;
  out.config = s.best;
  out.expect.present = true;
  out.expect.violation = true;
  out.expect.invariant = s.invariant;
  SelectMutant(failing.mutant);
  out.expect.trace_hash = RunSeed(s.best, s.seed).summary.trace_hash;
  SelectMutant("");
  result.events_after = s.events;
  result.runs = s.runs + 1;
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace latchkey::cli
