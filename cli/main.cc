// The `latchkey` command line: one binary, one subcommand per job.
#include <CLI/CLI.hpp>

#include "cli/demo.h"

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

  CLI11_PARSE(app, argc, argv);
  if (*demo_cmd) return latchkey::cli::RunDemo(demo);
  std::printf("%s", app.help().c_str());
  return 0;
}
