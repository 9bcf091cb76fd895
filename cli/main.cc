// The `latchkey` command line: one binary, one subcommand per job.
#include <CLI/CLI.hpp>

#include "cli/demo.h"
#include "cli/sim_command.h"

int main(int argc, char** argv) {
  CLI::App app{"Latchkey: a session-state store with a verified locking protocol"};
  app.set_version_flag("--version", std::string("latchkey ") + LATCHKEY_VERSION);
  app.require_subcommand(0, 1);

  latchkey::cli::DemoOptions demo;
  CLI::App* demo_cmd = app.add_subcommand("demo", "Run a short, checked demonstration of the core");
  demo_cmd->add_option("--processes", demo.processes, "application-server processes")
      ->check(CLI::Range(1, 64));
  demo_cmd->add_option("--threads", demo.threads, "threads per process")->check(CLI::Range(1, 64));
  demo_cmd->add_option("--requests", demo.requests, "requests per thread")
      ->check(CLI::Range(1, 100000));
  demo_cmd->add_flag("-v,--verbose", demo.verbose, "print every message");

  latchkey::cli::SimOptions sim;
  CLI::App* sim_cmd =
      app.add_subcommand("sim", "Run one deterministic simulation and summarise it");
  sim_cmd->add_option("--seed", sim.seed, "seed: the same seed and config give the same run");
  sim_cmd->add_option("--config", sim.config_path, "simulation config (JSON)")
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

  CLI11_PARSE(app, argc, argv);
  if (*demo_cmd) return latchkey::cli::RunDemo(demo);
  if (*sim_cmd) return latchkey::cli::RunSim(sim);
  std::printf("%s", app.help().c_str());
  return 0;
}
