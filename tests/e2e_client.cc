// A client process for the end-to-end tests (tests/e2e_test.cc): one real OS
// process using the client library against real latchkeyd nodes.
//
//   e2e_client counter --store H:P [--store ...] --secret S --process-id N
//                      --threads T --increments K --sessions M
//       T threads each commit K increments of attribute "counter" on sessions
//       1..M; prints {"committed":..,"failed":..,"unknown":..,"reconnects":..}
//       and exits 0.
//   e2e_client hold --store H:P --secret S --process-id N --session X
//       takes session X, prints "holding", then for each line on stdin
//       ("write <value>") sets "v" and commits, printing "committed" or the
//       LockError name (lock_lost, unknown_outcome, ...).
#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "net/client.h"

using latchkey::core::Mode;
using latchkey::core::Portion;
using latchkey::net::Client;
using latchkey::net::ClientOptions;
using latchkey::net::Lock;
using latchkey::net::LockError;
using latchkey::net::LockErrorName;
using latchkey::net::LockErrorOf;

int main(int argc, char** argv) {
  CLI::App app{"e2e_client"};
  app.require_subcommand(1);
  ClientOptions o;
  int threads = 4, increments = 100, sessions = 3;
  std::uint64_t session = 1;
  app.add_option("--store", o.stores)->required();
  app.add_option("--secret", o.secret)->required();
  app.add_option("--process-id", o.process_id)->required();
  auto* counter = app.add_subcommand("counter");
  counter->add_option("--threads", threads);
  counter->add_option("--increments", increments);
  counter->add_option("--sessions", sessions);
  auto* hold = app.add_subcommand("hold");
  hold->add_option("--session", session)->required();
  CLI11_PARSE(app, argc, argv);
  o.connect_timeout = std::chrono::milliseconds(10000);
  auto client = Client::Connect(o);
  if (!client.ok()) {
    std::fprintf(stderr, "e2e_client: %s\n", client.status().message().c_str());
    return 1;
  }

  if (*counter) {
    std::atomic<int> committed{0}, failed{0}, unknown{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int i = 0; i < increments; ++i) {
          auto s = static_cast<latchkey::core::SessionId>(1 + (t + i) % sessions);
          Lock lock = client.value()->Acquire(s, Portion::Of({"counter"}, Mode::kExclusive),
                                              std::chrono::seconds(20));
          if (!lock.held()) {
            ++failed;
            continue;
          }
          auto v = lock.Get("counter");
          long n = v.ok() && v.value() ? std::stol(*v.value()) : 0;
          lock.Set("counter", std::to_string(n + 1));
          auto status = lock.Commit();
          if (status.ok()) {
            ++committed;
          } else if (LockErrorOf(status) == LockError::kUnknownOutcome) {
            ++unknown;
          } else {
            ++failed;
          }
        }
      });
    }
    for (auto& w : workers) w.join();
    std::printf("{\"committed\":%d,\"failed\":%d,\"unknown\":%d,\"reconnects\":%llu}\n",
                committed.load(), failed.load(), unknown.load(),
                static_cast<unsigned long long>(client.value()->stats().reconnects));
    return 0;
  }

  Lock lock =
      client.value()->Acquire(session, Portion::Whole(Mode::kExclusive), std::chrono::seconds(10));
  if (!lock.held()) {
    std::printf("%s\n", std::string(LockErrorName(LockErrorOf(lock.status()))).c_str());
    return 1;
  }
  std::printf("holding\n");
  std::fflush(stdout);
  for (std::string line; std::getline(std::cin, line);) {
    if (line.rfind("write ", 0) != 0) continue;
    latchkey::net::Status status = lock.Set("v", line.substr(6));
    if (status.ok()) status = lock.Commit();
    std::printf("%s\n", status.ok() ? "committed"
                                    : std::string(LockErrorName(LockErrorOf(status))).c_str());
    std::fflush(stdout);
    break;
  }
  return 0;
}
