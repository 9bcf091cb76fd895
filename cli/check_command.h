// `latchkey check`: bounded exhaustive model checking of a small world with
// the real core (checker/explorer.h).
//
// Exit codes: 0 every reachable state was visited (or the bound was reached)
// and no invariant broke, 1 a violation (its shortest path is printed and
// written), 2 bad input.
#pragma once

#include <string>

#include "checker/explorer.h"

namespace latchkey::cli {

struct CheckOptions {
  checker::ExploreConfig config;
  std::string config_path;  // JSON; flags given on the command line win
  std::string faults;       // "crash,loss,..."
  std::string mutant;       // latchkey-mutants only
  std::string out_path = "counterexample.json";
  bool quiet = false;
  bool keep_locks = false;  // idle_release_us = never
};

int RunCheck(CheckOptions options, const std::vector<std::string>& flags_given);

}  // namespace latchkey::cli
