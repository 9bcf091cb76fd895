// The `latchkey` command line: one binary, one subcommand per job.
#include <CLI/CLI.hpp>

#include "cli/check_command.h"
#include "cli/demo.h"
#include "cli/runner.h"
#include "cli/scenario_commands.h"
#include "cli/sim_command.h"
#include "cli/timeline.h"

int main(int argc, char** argv) {
  namespace cli = latchkey::cli;
  CLI::App app{"Latchkey: a session-state store with a verified locking protocol"};
  app.set_version_flag("--version",
                       std::string(cli::MutantsAvailable() ? "latchkey-mutants " : "latchkey ") +
                           LATCHKEY_VERSION +
                           (cli::MutantsAvailable() ? " (planted bugs compiled in)" : ""));
  app.require_subcommand(0, 1);

  cli::DemoOptions demo;
  CLI::App* demo_cmd = app.add_subcommand("demo", "Run a short, checked demonstration of the core");
  demo_cmd->add_option("--processes", demo.processes, "application-server processes")
      ->check(CLI::Range(1, 64));
  demo_cmd->add_option("--threads", demo.threads, "threads per process")->check(CLI::Range(1, 64));
  demo_cmd->add_option("--requests", demo.requests, "requests per thread")
      ->check(CLI::Range(1, 100000));
  demo_cmd->add_flag("-v,--verbose", demo.verbose, "print every message");

  cli::SimOptions sim;
  CLI::App* sim_cmd =
      app.add_subcommand("sim", "Run one deterministic simulation and summarise it");
  sim_cmd->add_option("--seed", sim.seed, "seed: the same seed and config give the same run");
  sim_cmd->add_option("--config", sim.config_path, "world (JSON: a scenario file works too)")
      ->check(CLI::ExistingFile);
  sim_cmd->add_option("--trace", sim.trace_path, "write every event as a JSON line to this file");
  sim_cmd->add_flag("--check-determinism", sim.check_determinism,
                    "run the seed twice and compare trace hashes");
  sim_cmd->add_flag("--json", sim.json, "print the summary as one JSON object");
  sim_cmd
      ->add_option("--seeds", sim.seeds,
                   "run this many seeds from --seed on, one line each, and summarise")
      ->check(CLI::Range(1, 100'000'000));
  sim_cmd->add_flag("--check", sim.check,
                    "run the property checker on every event; exit 1 with a report on a violation");

  cli::RunOptions run;
  CLI::App* run_cmd = app.add_subcommand(
      "run",
      "Run scenario files (or every *.json under directories) and compare each outcome with the "
      "expected one. Exit 0 all as expected, 1 a mismatch, 2 bad input");
  run_cmd->add_option("paths", run.paths, "scenario files and directories")->required();
  run_cmd->add_flag("-v,--verbose", run.verbose, "also print the reports of expected violations");
  run_cmd->add_option("--timelines", run.timelines_dir,
                      "write an HTML timeline of every scenario that mismatched or ended in a "
                      "violation into this directory");

  cli::ReplayOptions replay;
  std::uint64_t replay_seed = 0;
  CLI::App* replay_cmd = app.add_subcommand(
      "replay", "Re-run one seed of a scenario exactly (same trace hash), with a full summary");
  replay_cmd->add_option("file", replay.path, "scenario file")->required();
  CLI::Option* replay_seed_opt =
      replay_cmd->add_option("--seed", replay_seed, "which seed (default: the scenario's first)");
  replay_cmd->add_option("--trace", replay.trace_path,
                         "write every event as a JSON line (and a last line for a violation)");
  replay_cmd->add_option("--html", replay.html_path, "write the run's timeline as one HTML page");

  cli::FuzzOptions fuzz;
  CLI::App* fuzz_cmd = app.add_subcommand(
      "fuzz",
      "Run many seeds under the checker; write the first failing seed as a scenario and shrink "
      "it. Exit 0 none failed, 1 a violation, 2 bad input");
  fuzz_cmd->add_option("--seeds", fuzz.seeds, "how many seeds")->check(CLI::Range(1, 100'000'000));
  fuzz_cmd->add_option("--first-seed", fuzz.first_seed, "the first seed");
  fuzz_cmd->add_option("--jobs,-j", fuzz.jobs, "worker threads")->check(CLI::Range(1, 256));
  fuzz_cmd->add_flag("--swarm", fuzz.swarm,
                     "each seed also draws which fault kinds are on and how often");
  fuzz_cmd->add_option("--time-budget", fuzz.time_budget_s, "stop starting seeds after S seconds")
      ->check(CLI::NonNegativeNumber);
  fuzz_cmd->add_option("--scenario", fuzz.scenario_path, "the base world (a scenario file)")
      ->check(CLI::ExistingFile);
  fuzz_cmd->add_option("--mutant", fuzz.mutant, "a planted bug (latchkey-mutants only)");
  fuzz_cmd->add_option("--out", fuzz.out_dir, "where failing cases are written");
  fuzz_cmd->add_flag("--check-determinism", fuzz.check_determinism,
                     "run each clean seed twice and compare trace hashes");
  bool no_shrink = false;
  fuzz_cmd->add_flag("--no-shrink", no_shrink, "write the failing case without shrinking it");
  fuzz_cmd->add_option("--shrink-budget", fuzz.shrink_budget_s, "seconds for shrinking")
      ->check(CLI::NonNegativeNumber);
  bool quiet = false;
  fuzz_cmd->add_flag("--quiet", quiet, "no progress output");

  cli::ShrinkOptionsCli shrink;
  CLI::App* shrink_cmd = app.add_subcommand(
      "shrink", "Reduce a failing scenario to a small one that fails with the same invariant");
  shrink_cmd->add_option("file", shrink.path, "failing scenario file")->required();
  shrink_cmd->add_option("-o,--out", shrink.out_path, "output file (default: FILE.min.json)");
  shrink_cmd->add_option("--time-budget", shrink.time_budget_s, "seconds to spend")
      ->check(CLI::PositiveNumber);

  cli::CheckOptions check;
  CLI::App* check_cmd = app.add_subcommand(
      "check",
      "Explore every reachable state of a small world with the real core (bounded model "
      "checking). Exit 0 no violation, 1 a violation (shortest path printed), 2 bad input");
  {
    latchkey::checker::ExploreConfig& c = check.config;
    check_cmd->add_option("--config", check.config_path, "the world as JSON (flags override it)")
        ->check(CLI::ExistingFile);
    check_cmd->add_option("--stores", c.stores, "store nodes")->check(CLI::Range(1, 4));
    check_cmd->add_option("--processes", c.processes, "processes")->check(CLI::Range(1, 8));
    check_cmd->add_option("--threads", c.threads, "threads per process")->check(CLI::Range(1, 8));
    check_cmd->add_option("--sessions", c.sessions, "sessions")->check(CLI::Range(1, 8));
    check_cmd->add_option("--attributes", c.attributes, "attributes")->check(CLI::Range(1, 8));
    check_cmd->add_option("--requests-per-thread", c.requests_per_thread, "requests per thread")
        ->check(CLI::Range(0, 16));
    check_cmd->add_option(
        "--faults", check.faults,
        "crash,loss,dup,reorder,lease-expiry,store-restart (one of each per path)");
    check_cmd->add_option("--max-depth", c.max_depth, "stop after this many steps (0: none)");
    check_cmd->add_option("--max-states", c.max_states, "stop after this many distinct states");
    check_cmd->add_option("--jobs,-j", c.jobs, "worker threads")->check(CLI::Range(1, 256));
    check_cmd
        ->add_option("--symmetry", c.symmetry,
                     "on: count states equal up to process numbering once (default); off: "
                     "search unreduced")
        ->check(CLI::IsMember({"on", "off"}))
        ->option_text("on|off");
    check_cmd->add_flag("--keep-locks", check.keep_locks,
                        "processes keep (cache) locks until recalled (R6) instead of releasing "
                        "after each request");
    check_cmd->add_flag("--release-when-contended", check.config.release_when_contended,
                        "with --keep-locks: a lock taken from another process (its Acquire was "
                        "Queued) is given back as soon as no thread uses it (R8)");
    check_cmd->add_option("--mutant", check.mutant, "a planted bug (latchkey-mutants only)");
    check_cmd->add_option("--out", check.out_path, "where a counterexample is written");
    check_cmd->add_flag("--quiet", check.quiet, "no progress lines");
  }

  cli::TimelineOptions timeline;
  CLI::App* timeline_cmd = app.add_subcommand(
      "timeline",
      "Draw a trace (sim/replay --trace) as one self-contained HTML page: lanes per store, "
      "process and thread, tenures, messages, faults and the violation. Exit 0 written, 2 bad "
      "input");
  timeline_cmd->add_option("trace", timeline.trace_path, "trace file (JSON lines)")
      ->required()
      ->check(CLI::ExistingFile);
  timeline_cmd->add_option("-o,--out", timeline.out_path, "the page (default: TRACE.html)");
  timeline_cmd->add_option("--title", timeline.title, "the page's title (default: the file name)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 exits 106 and the like for usage errors; ours say 2 for bad input.
    int code = app.exit(e);
    return code == 0 ? 0 : cli::kExitBadInput;
  }
  if (*demo_cmd) return cli::RunDemo(demo);
  if (*sim_cmd) return cli::RunSim(sim);
  if (*run_cmd) return cli::RunScenarios(run);
  if (*replay_cmd) {
    if (*replay_seed_opt) replay.seed = replay_seed;
    return cli::ReplayScenario(replay);
  }
  if (*fuzz_cmd) {
    fuzz.shrink = !no_shrink;
    fuzz.progress = !quiet;
    return cli::Fuzz(fuzz);
  }
  if (*shrink_cmd) return cli::ShrinkScenario(shrink);
  if (*timeline_cmd) return cli::TimelineCommand(timeline);
  if (*check_cmd) {
    // Which settings were given as flags, so that they override --config.
    std::vector<std::string> given;
    for (const auto& [flag, name] : std::vector<std::pair<std::string, std::string>>{
             {"--stores", "stores"},
             {"--processes", "processes"},
             {"--threads", "threads"},
             {"--sessions", "sessions"},
             {"--attributes", "attributes"},
             {"--requests-per-thread", "requests_per_thread"},
             {"--max-depth", "max_depth"},
             {"--max-states", "max_states"},
             {"--jobs", "jobs"},
             {"--symmetry", "symmetry"},
             {"--keep-locks", "idle_release_us"},
             {"--release-when-contended", "release_when_contended"}}) {
      if (check_cmd->count(flag) != 0) given.push_back(name);
    }
    return cli::RunCheck(check, given);
  }
  std::printf("%s", app.help().c_str());
  return 0;
}
