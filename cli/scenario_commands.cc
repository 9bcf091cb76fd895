#include "cli/scenario_commands.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cli/runner.h"
#include "cli/scenario.h"
#include "cli/shrink.h"
#include "cli/sim_command.h"
#include "cli/timeline.h"

namespace latchkey::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string Hex(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

// Files named on the command line, and every *.json under named directories
// (sorted, so the table's order is stable). Schemas are not scenarios.
std::vector<std::string> CollectFiles(const std::vector<std::string>& paths, std::string& error) {
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::recursive_directory_iterator(path, ec)) {
        const std::string name = entry.path().filename().string();
        if (entry.is_regular_file() && entry.path().extension() == ".json" &&
            name.find(".schema.") == std::string::npos) {
          found.push_back(entry.path().string());
        }
      }
      if (ec) error = path + ": " + ec.message();
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(path, ec)) {
      files.push_back(path);
    } else {
      error = path + ": no such file or directory";
      return {};
    }
  }
  return files;
}

std::string Shorten(const std::string& text, std::size_t width) {
  return text.size() <= width ? text : "..." + text.substr(text.size() - (width - 3));
}

// "dir/case.json" -> "dir/case.html", "dir/case.min.json" -> "dir/case.min.html".
std::string HtmlPath(const std::string& path) {
  std::string base = path;
  if (base.size() > 5 && base.substr(base.size() - 5) == ".json") base.resize(base.size() - 5);
  return base + ".html";
}

// Runs one seed of a scenario again with a trace and writes its timeline
// (cli/timeline.h). Returns "" or what went wrong.
std::string WriteScenarioTimeline(const Scenario& scenario, std::uint64_t seed,
                                  const std::string& html_path) {
  if (!SelectMutant(scenario.mutant)) return "planted bug " + scenario.mutant + " not built in";
  std::ostringstream trace;
  SeedRun run = RunSeed(scenario.config, seed, &trace);
  SelectMutant("");
  std::string title = (scenario.path.empty() ? std::string("scenario")
                                             : fs::path(scenario.path).filename().string()) +
                      ", seed " + std::to_string(seed);
  if (run.violation) {
    trace << ViolationTraceLine(*run.violation) << '\n';
    title += ": violation " + run.violation->name();
  }
  return WriteTimelineFile(SplitTraceLines(trace.str()), html_path, title);
}

}  // namespace

// ---- latchkey run -------------------------------------------------------------

int RunScenarios(const RunOptions& options) {
  std::string error;
  std::vector<std::string> files = CollectFiles(options.paths, error);
  if (!error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return kExitBadInput;
  }
  if (files.empty()) {
    std::fprintf(stderr, "error: no scenario files (*.json) found\n");
    return kExitBadInput;
  }
  std::size_t width = 20;
  for (const std::string& f : files) width = std::max(width, std::min<std::size_t>(f.size(), 58));
  std::printf("%-*s %6s  %-28s %-34s %9s %7s  %s\n", static_cast<int>(width), "scenario", "seeds",
              "expected", "observed", "events", "time", "result");
  int ok = 0, mismatched = 0, skipped = 0, bad = 0;
  std::vector<std::string> details, timelines;
  std::set<std::string> timeline_names;
  const auto start = Clock::now();
  for (const std::string& file : files) {
    Scenario scenario;
    if (std::string load = LoadScenarioFile(file, scenario); !load.empty()) {
      ++bad;
      std::printf("%-*s %6s  %-28s %-34s %9s %7s  %s\n", static_cast<int>(width),
                  Shorten(file, width).c_str(), "-", "-", "-", "-", "-", "BAD INPUT");
      details.push_back("BAD INPUT " + load);
      continue;
    }
    if (!scenario.expect.present || scenario.description.empty()) {
      ++bad;
      std::printf("%-*s %6s  %-28s %-34s %9s %7s  %s\n", static_cast<int>(width),
                  Shorten(file, width).c_str(), "-", "-", "-", "-", "-", "BAD INPUT");
      details.push_back("BAD INPUT " + file +
                        (scenario.expect.present
                             ? ": /description: missing (a scenario says what it shows)"
                             : ": /expect: missing (a scenario states its expected outcome)"));
      continue;
    }
    ScenarioResult r = RunScenario(scenario);
    const char* verdict = r.status == ScenarioResult::Status::kOk        ? "ok"
                          : r.status == ScenarioResult::Status::kSkipped ? "skipped"
                                                                         : "MISMATCH";
    std::printf("%-*s %6llu  %-28s %-34s %9llu %6.2fs  %s\n", static_cast<int>(width),
                Shorten(file, width).c_str(), static_cast<unsigned long long>(scenario.seed_count),
                r.expected.c_str(), r.observed.c_str(), static_cast<unsigned long long>(r.events),
                r.wall_s, verdict);
    std::fflush(stdout);
    switch (r.status) {
      case ScenarioResult::Status::kOk:
        ++ok;
        if (options.verbose && r.violation) details.push_back(file + ":\n" + r.violation->Report());
        break;
      case ScenarioResult::Status::kSkipped:
        ++skipped;
        details.push_back("skipped " + file + ": " + r.detail);
        break;
      case ScenarioResult::Status::kMismatch: {
        ++mismatched;
        std::string text = "MISMATCH " + file + ": " + r.detail;
        if (r.violation) {
          text += "\n" + r.violation->Report() + "replay: latchkey replay " + file + " --seed " +
                  std::to_string(r.violating_seed);
        }
        details.push_back(text);
        break;
      }
    }
    if (!options.timelines_dir.empty() &&
        (r.status == ScenarioResult::Status::kMismatch || r.violation)) {
      // Named after the scenario; a second one of the same name gets its
      // directory's name in front.
      std::string name = fs::path(file).stem().string();
      if (!timeline_names.insert(name).second) {
        name = fs::path(file).parent_path().filename().string() + "-" + name;
        timeline_names.insert(name);
      }
      std::error_code ec;
      fs::create_directories(options.timelines_dir, ec);
      const std::string html = (fs::path(options.timelines_dir) / (name + ".html")).string();
      const std::uint64_t seed = r.violation ? r.violating_seed : scenario.first_seed;
      const std::string error = WriteScenarioTimeline(scenario, seed, html);
      timelines.push_back(error.empty() ? "timeline of " + file + " (seed " + std::to_string(seed) +
                                              "): " + html
                                        : "error: timeline of " + file + ": " + error);
    }
  }
  for (const std::string& d : details) std::printf("\n%s\n", d.c_str());
  if (!timelines.empty()) std::printf("\n");
  for (const std::string& t : timelines) std::printf("%s\n", t.c_str());
  std::printf(
      "\n%zu scenarios in %.1f s: %d as expected, %d mismatched, %d skipped, %d bad input\n",
      files.size(), Since(start), ok, mismatched, skipped, bad);
  if (bad != 0) return kExitBadInput;
  return mismatched != 0 ? kExitFail : kExitPass;
}

// ---- latchkey replay ----------------------------------------------------------

int ReplayScenario(const ReplayOptions& options) {
  Scenario scenario;
  if (std::string error = LoadScenarioFile(options.path, scenario); !error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return kExitBadInput;
  }
  const std::uint64_t seed = options.seed.value_or(scenario.first_seed);
  std::ofstream trace;
  if (!options.trace_path.empty()) {
    trace.open(options.trace_path);
    if (!trace) {
      std::fprintf(stderr, "error: %s: cannot write the trace\n", options.trace_path.c_str());
      return kExitBadInput;
    }
  }
  if (!options.html_path.empty() && !std::ofstream(options.html_path)) {
    std::fprintf(stderr, "error: %s: cannot write the timeline\n", options.html_path.c_str());
    return kExitBadInput;
  }
  // The timeline needs the trace in memory; a trace alone goes to its file.
  std::ostringstream buffer;
  std::ostream* sink = nullptr;
  if (!options.html_path.empty()) {
    sink = &buffer;
  } else if (trace.is_open()) {
    sink = &trace;
  }
  if (!SelectMutant(scenario.mutant)) {
    std::fprintf(stderr, "error: %s: planted bug %s: replay it with latchkey-mutants\n",
                 options.path.c_str(), scenario.mutant.c_str());
    return kExitBadInput;
  }
  if (scenario.seed_count > 1 && !options.seed) {
    std::printf("note: the scenario has %llu seeds; replaying the first (choose with --seed)\n",
                static_cast<unsigned long long>(scenario.seed_count));
  }
  const auto start = Clock::now();
  SeedRun run = RunSeed(scenario.config, seed, sink);
  const double wall = Since(start);
  SelectMutant("");
  if (!run.script_error.empty()) {
    // The script does not fit the world (edited, or meant for another core).
    std::fprintf(stderr, "error: %s: %s\n", options.path.c_str(), run.script_error.c_str());
    return kExitBadInput;
  }
  // The trace ends with the violation, if any, for the timeline to show.
  if (sink != nullptr && run.violation) *sink << ViolationTraceLine(*run.violation) << '\n';
  if (trace.is_open() && sink == &buffer) trace << buffer.str();
  std::string timeline_error;
  if (!options.html_path.empty()) {
    timeline_error = WriteTimelineFile(
        SplitTraceLines(buffer.str()), options.html_path,
        fs::path(options.path).filename().string() + ", seed " + std::to_string(seed) +
            (run.violation ? ": violation " + run.violation->name() : std::string()));
  }
  PrintSimSummary(run.summary, wall,
                  "latchkey replay " + options.path + " --seed " + std::to_string(seed));
  if (run.violation) std::printf("\n%s", run.violation->Report().c_str());
  // Compare with what the scenario expects of this seed.
  std::string observed = run.violation ? "violation " + run.violation->name() : "pass";
  std::vector<std::string> why;
  if (scenario.expect.present) {
    const std::string expected = ExpectedText(scenario.expect);
    // In a range, an expected violation may belong to another seed.
    const bool single = scenario.seed_count == 1 || options.seed.has_value();
    if (observed != expected && (single || !scenario.expect.violation)) {
      why.push_back("expected " + expected + ", observed " + observed);
    }
    if (scenario.expect.trace_hash && seed == scenario.first_seed &&
        *scenario.expect.trace_hash != run.summary.trace_hash) {
      why.push_back("trace hash " + Hex(run.summary.trace_hash) + ", the scenario recorded " +
                    Hex(*scenario.expect.trace_hash));
    }
    std::printf("\nexpected %s; observed %s; trace hash %s%s\n", expected.c_str(), observed.c_str(),
                Hex(run.summary.trace_hash).c_str(),
                scenario.expect.trace_hash && seed == scenario.first_seed
                    ? (*scenario.expect.trace_hash == run.summary.trace_hash ? " (as recorded)"
                                                                             : " (DIFFERENT)")
                    : "");
  }
  if (!options.trace_path.empty()) std::printf("trace written to %s\n", options.trace_path.c_str());
  if (!options.html_path.empty()) {
    if (!timeline_error.empty()) {
      std::fprintf(stderr, "error: %s\n", timeline_error.c_str());
      return kExitBadInput;
    }
    std::printf("timeline written to %s\n", options.html_path.c_str());
  }
  for (const std::string& w : why) std::printf("MISMATCH: %s\n", w.c_str());
  if (!scenario.expect.present) return run.violation ? kExitFail : kExitPass;
  return why.empty() ? kExitPass : kExitFail;
}

// ---- latchkey shrink ----------------------------------------------------------

namespace {

std::string MinPath(const std::string& path) {
  std::string base = path;
  if (base.size() > 5 && base.substr(base.size() - 5) == ".json") base.resize(base.size() - 5);
  return base + ".min.json";
}

int ShrinkAndWrite(const Scenario& scenario, const std::string& out_path, double budget,
                   Scenario* shrunk = nullptr) {
  ShrinkOptions options;
  options.time_budget_s = budget;
  options.progress = [](const std::string& line) { std::printf("  shrink: %s\n", line.c_str()); };
  ShrinkResult r = Shrink(scenario, options);
  if (!r.error.empty()) {
    std::fprintf(stderr, "error: %s: %s\n",
                 scenario.path.empty() ? "shrink" : scenario.path.c_str(), r.error.c_str());
    return kExitBadInput;
  }
  if (std::string error = WriteScenarioFile(out_path, r.scenario); !error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return kExitBadInput;
  }
  if (shrunk != nullptr) *shrunk = r.scenario;
  const sim::SimConfig& c = r.scenario.config;
  std::printf(
      "shrunk %s: %llu -> %llu events in %.1f s (%llu runs): %u store(s), %u process(es) x %u "
      "thread(s), %u session(s), %u request(s) per thread, %zu scheduled fault(s)\n"
      "written to %s\nreplay: latchkey%s replay %s\n",
      r.invariant.c_str(), static_cast<unsigned long long>(r.events_before),
      static_cast<unsigned long long>(r.events_after), r.wall_s,
      static_cast<unsigned long long>(r.runs), c.stores, c.processes(), c.threads_per_process,
      c.workload.sessions, c.workload.requests_per_thread, c.schedule.size(), out_path.c_str(),
      r.scenario.mutant.empty() ? "" : "-mutants", out_path.c_str());
  return kExitFail;  // a failing case, now small
}

}  // namespace

int ShrinkScenario(const ShrinkOptionsCli& options) {
  Scenario scenario;
  if (std::string error = LoadScenarioFile(options.path, scenario); !error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return kExitBadInput;
  }
  return ShrinkAndWrite(scenario,
                        options.out_path.empty() ? MinPath(options.path) : options.out_path,
                        options.time_budget_s);
}

// ---- latchkey fuzz ------------------------------------------------------------

int Fuzz(const FuzzOptions& options) {
  Scenario base;
  std::string base_name = "fuzz";
  if (!options.scenario_path.empty()) {
    if (std::string error = LoadScenarioFile(options.scenario_path, base); !error.empty()) {
      std::fprintf(stderr, "error: %s\n", error.c_str());
      return kExitBadInput;
    }
    base_name = fs::path(options.scenario_path).stem().string();
  }
  if (!options.mutant.empty()) base.mutant = options.mutant;
  if (options.swarm) base.config.swarm = true;
  if (!SelectMutant(base.mutant)) {
    std::fprintf(stderr, "error: planted bug %s: fuzz it with latchkey-mutants\n",
                 base.mutant.c_str());
    return kExitBadInput;
  }
  const unsigned jobs = std::max(1u, options.jobs);
  const bool tty = options.progress && isatty(fileno(stdout));
  std::atomic<std::uint64_t> next{0}, done{0}, events{0}, violations{0}, nondeterministic{0};
  std::atomic<bool> stop{false};
  std::mutex mutex;
  struct Found {
    std::uint64_t seed;
    checker::Violation violation;
  };
  std::vector<Found> found;
  std::vector<std::uint64_t> unstable;
  const auto start = Clock::now();
  std::atomic<unsigned> running{jobs};
  auto worker = [&] {
    struct Exit {
      std::atomic<unsigned>& running;
      ~Exit() { --running; }
    } on_exit{running};
    for (;;) {
      if (stop.load()) return;
      const std::uint64_t i = next.fetch_add(1);
      if (i >= options.seeds) return;
      if (options.time_budget_s > 0 && Since(start) > options.time_budget_s) {
        stop = true;
        return;
      }
      const std::uint64_t seed = options.first_seed + i;
      SeedRun run = RunSeed(base.config, seed);
      events += run.summary.events;
      if (options.check_determinism &&
          sim::Simulator(base.config, seed).Run().trace_hash != run.summary.trace_hash &&
          !run.violation) {
        // The checker stops a violating run early; only clean runs compare.
        ++nondeterministic;
        std::lock_guard lock(mutex);
        unstable.push_back(seed);
      }
      if (run.violation) {
        ++violations;
        stop = true;  // finish the seeds in flight, start no more
        std::lock_guard lock(mutex);
        found.push_back({seed, *run.violation});
      }
      ++done;
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 0; j < jobs; ++j) threads.emplace_back(worker);
  // Progress: a bar on a terminal, a plain line per tenth otherwise.
  std::uint64_t next_line = options.seeds / 10;
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 100 : 50));
    const double t = Since(start);
    const std::uint64_t d = done.load();
    if (tty) {
      const int filled =
          static_cast<int>(30.0 * static_cast<double>(d) /
                           static_cast<double>(std::max<std::uint64_t>(1, options.seeds)));
      std::printf("\r[%-30s] %llu/%llu seeds  %.0f seeds/s  %.2fM events/s  %llu violations ",
                  std::string(static_cast<std::size_t>(filled), '#').c_str(),
                  static_cast<unsigned long long>(d),
                  static_cast<unsigned long long>(options.seeds), t > 0 ? d / t : 0.0,
                  t > 0 ? static_cast<double>(events.load()) / t / 1e6 : 0.0,
                  static_cast<unsigned long long>(violations.load()));
      std::fflush(stdout);
    } else if (options.progress && next_line > 0 && d >= next_line && d < options.seeds) {
      std::printf("fuzz: %llu/%llu seeds, %.0f seeds/s, %.2fM events/s, %llu violations\n",
                  static_cast<unsigned long long>(d),
                  static_cast<unsigned long long>(options.seeds), t > 0 ? d / t : 0.0,
                  t > 0 ? static_cast<double>(events.load()) / t / 1e6 : 0.0,
                  static_cast<unsigned long long>(violations.load()));
      std::fflush(stdout);
      next_line = (d / (options.seeds / 10) + 1) * (options.seeds / 10);
    }
  }
  for (auto& th : threads) th.join();
  SelectMutant("");
  const double wall = Since(start);
  if (tty) std::printf("\n");
  const std::uint64_t d = done.load();
  std::printf(
      "fuzz %s%s: %llu seeds (%llu..%llu) in %.1f s with %u job(s): %.0f seeds/s, "
      "%.2fM events/s, %llu violations, %llu nondeterministic%s\n",
      options.scenario_path.empty() ? "(default world)" : options.scenario_path.c_str(),
      base.config.swarm ? " swarm" : "", static_cast<unsigned long long>(d),
      static_cast<unsigned long long>(options.first_seed),
      static_cast<unsigned long long>(options.first_seed + (d == 0 ? 0 : d - 1)), wall, jobs,
      wall > 0 ? d / wall : 0.0, wall > 0 ? events.load() / wall / 1e6 : 0.0,
      static_cast<unsigned long long>(violations.load()),
      static_cast<unsigned long long>(nondeterministic.load()),
      d < options.seeds && found.empty() ? " (stopped by the time budget)" : "");
  for (std::uint64_t seed : unstable) {
    std::printf("NONDETERMINISTIC: seed %llu hashed differently on a second run\n",
                static_cast<unsigned long long>(seed));
  }
  if (found.empty()) return nondeterministic.load() == 0 ? kExitPass : kExitFail;

  // The lowest failing seed: the same answer whatever the number of jobs.
  const Found& first = *std::min_element(
      found.begin(), found.end(), [](const Found& a, const Found& b) { return a.seed < b.seed; });
  std::printf("\n%s", first.violation.Report().c_str());
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  Scenario failing = base;
  failing.path =
      (fs::path(options.out_dir) / (base_name + "-seed" + std::to_string(first.seed) + ".json"))
          .string();
  failing.description =
      "Found by latchkey fuzz" +
      (options.scenario_path.empty() ? std::string() : " from " + options.scenario_path) +
      ": seed " + std::to_string(first.seed) + " violates " + first.violation.name() + ".";
  failing.first_seed = first.seed;
  failing.seed_count = 1;
  failing.seed_range = false;
  failing.expect = Expectation{};
  failing.expect.present = true;
  failing.expect.violation = true;
  failing.expect.invariant = first.violation.name();
  SelectMutant(failing.mutant);
  failing.expect.trace_hash = RunSeed(failing.config, first.seed).summary.trace_hash;
  SelectMutant("");
  if (std::string error = WriteScenarioFile(failing.path, failing); !error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return kExitFail;
  }
  std::printf("failing case written to %s\nreplay: latchkey%s replay %s\n", failing.path.c_str(),
              failing.mutant.empty() ? "" : "-mutants", failing.path.c_str());
  // A timeline next to each case: the failing seed as found, then as shrunk.
  auto timeline = [](const Scenario& s) {
    const std::string html = HtmlPath(s.path);
    if (std::string error = WriteScenarioTimeline(s, s.first_seed, html); !error.empty()) {
      std::fprintf(stderr, "error: timeline: %s\n", error.c_str());
    } else {
      std::printf("timeline written to %s\n", html.c_str());
    }
  };
  timeline(failing);
  if (options.shrink) {
    Scenario shrunk;
    const std::string min_path = MinPath(failing.path);
    if (ShrinkAndWrite(failing, min_path, options.shrink_budget_s, &shrunk) == kExitFail) {
      shrunk.path = min_path;
      timeline(shrunk);
    }
  }
  return kExitFail;
}

}  // namespace latchkey::cli
