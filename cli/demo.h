// `latchkey demo`: a short, checked demonstration of the core, driven by a
// tiny deterministic message pump. It stands in for the simulator until
// sim/ exists.
#pragma once

namespace latchkey::cli {

struct DemoOptions {
  int processes = 3;
  int threads = 2;
  int requests = 5;  // per thread
  bool verbose = false;
};

// Returns the process exit code: 0 if the run's final counter equals the
// acknowledged increments, 1 otherwise.
int RunDemo(const DemoOptions& options);

}  // namespace latchkey::cli
